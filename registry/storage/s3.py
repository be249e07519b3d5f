"""The S3 storage driver (boto3): paths are keys under an optional prefix in one bucket, as distribution's s3-aws.

How the driver contract (registry.storage.driver) maps onto S3, which has no rename, no directories, no locks:
- Directories are key prefixes: one exists while a key lies under it; its mtime is the newest of its first
  listing page's keys.
- A writer keeps full parts of `chunksize` bytes in a multipart upload of the path's key, and what is left below
  the part minimum (S3 refuses smaller non-last parts) in a hidden tail object `<dir>/.tmp-tail.<name>`, so a
  writer closed after one PATCH is resumed by the next (in any process) from the upload's parts plus the tail, as
  distribution buffers below the minimum.  The tail names the upload and its part count (and carries the writer's
  note: an upload's digest so far costs no object of its own), so the open write is
  found without a listing: `stat` of it is the parts' sizes plus the tail's (a tail older than the last part, left
  by a writer killed mid-write, is inside that part and does not count).  A writer killed before its first close
  left no tail: its upload is no part of the file, and GC's purge of partial writes removes it.
  `commit` uploads the tail as the last part and completes the upload (or, for a write smaller than one part,
  puts the object once): the key appears whole or not at all.
- `move` is a server-side copy then a delete of the source; `touch` copies an object onto itself (new mtime).
- `lock` is a Redis lock when the config has a `[redis]` section: every replica on every host, and `registry gc`,
  share it.  Without one, an flock on a file mirroring the path under a local `lockdirectory`, which serialises
  the processes of one host only (see registry.storage.locks).
- The calls a registry request makes (one object's GET/HEAD/PUT/DELETE/copy, listings, batch deletes) go out as
  signed HTTP requests on one connection pool (registry.storage.s3http): botocore costs ten times their CPU.
  Multipart uploads (blobs above `chunksize`) and copies above 5 GiB stay on botocore.
- Transient failures (throttling, 5xx, connection errors) are retried with backoff; anything else becomes a
  StorageError, which the server answers with a 500 and the spec's error body.
"""

from __future__ import annotations

import base64
import builtins
import contextlib
import email.utils
import functools
import hashlib
import io
import os
import tempfile
import urllib.parse
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, BinaryIO
from xml.sax.saxutils import escape

from dockyard.fsutil import TEMP_PREFIX
from registry.storage.driver import FileInfo, FileWriter, StorageDriver, StorageError, check_path
from registry.storage.locks import RedisSettings, open_locks
from registry.storage.s3http import S3Error, S3Http, xml

MIN_PART = 5 << 20  # S3's smallest part but the last
DEFAULT_CHUNK = 10 << 20  # distribution's default chunksize
MAX_COPY = 5 << 30  # the largest object CopyObject (and one UploadPartCopy) takes
_TAIL = f"{TEMP_PREFIX}tail."
# The tail object's metadata: the upload it continues (if any), how many parts it had when the tail was written, and
# the writer's note.
_TAIL_UPLOAD = "upload"
_TAIL_PARTS = "parts"
_TAIL_NOTE = "note"
_NOT_FOUND = {"404", "NoSuchKey", "NotFound", "NoSuchUpload"}


def _bool(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "yes", "1"):
        return True
    if str(value).lower() in ("false", "no", "0"):
        return False
    raise StorageError(f"storage.s3.{name}: expected true or false, got {value!r}")


class S3Driver(StorageDriver):
    """Keys under `root` in `bucket` of the S3 service `client` talks to; locks in Redis, or under the local
    `lockdir`."""

    params = ("bucket", "region", "regionendpoint", "accesskey", "secretkey", "rootdirectory", "secure", "v4auth",
              "chunksize", "forcepathstyle", "lockdirectory")

    # Keys per listing page: S3's maximum (1000), smaller in tests so a few keys take several pages.
    page_size = 1000

    def __init__(self, client_args: dict, bucket: str, root: str, chunksize: int, lockdir: str,
                 redis: RedisSettings | None = None):
        self._client_args = client_args
        self.bucket = bucket
        self.prefix = f"{root.strip('/')}/" if root.strip("/") else ""
        self.chunksize = chunksize
        # Not the endpoint: replicas may reach one S3 service by different names.
        self.locks = open_locks(redis, f"s3:{bucket}/{self.prefix}", lockdir, make_parents=True)

    @classmethod
    def from_params(cls, params: dict) -> S3Driver:
        if not params.get("bucket"):
            raise StorageError("storage.s3.bucket is required")
        secure = _bool(params.get("secure", True), "secure")
        endpoint = params.get("regionendpoint") or None
        if endpoint and "://" not in endpoint:
            endpoint = f"{'https' if secure else 'http'}://{endpoint}"
        try:
            chunksize = int(params.get("chunksize", DEFAULT_CHUNK))
        except ValueError:
            raise StorageError(f"storage.s3.chunksize: not a number: {params['chunksize']!r}") from None
        if chunksize < MIN_PART:
            raise StorageError(f"storage.s3.chunksize must be at least {MIN_PART} (S3's smallest part)")
        client_args = {
            "region_name": params.get("region") or "us-east-1", "endpoint_url": endpoint, "use_ssl": secure,
            "aws_access_key_id": params.get("accesskey") or None,
            "aws_secret_access_key": params.get("secretkey") or None,
            "signature_version": "s3v4" if _bool(params.get("v4auth", True), "v4auth") else "s3",
            "addressing_style": "path" if _bool(params.get("forcepathstyle", False), "forcepathstyle") else "auto",
        }
        root = str(params.get("rootdirectory") or "")
        lockdir = params.get("lockdirectory") or os.path.join(
            tempfile.gettempdir(), "dockyard-s3-locks",
            hashlib.sha256(f"{endpoint} {params['bucket']} {root}".encode()).hexdigest()[:16])
        return cls(client_args, str(params["bucket"]), root, chunksize, str(lockdir), params.get("redis"))

    @functools.cached_property
    def _session(self) -> Any:
        """The botocore session with the configured keys (else the usual credential chain), made on first use: the
        server's master process opens the driver too, and botocore imported there (before a gevent worker patches
        ssl) breaks every TLS context the worker makes later."""
        import botocore.session

        session = botocore.session.get_session()
        if self._client_args["aws_access_key_id"]:
            session.set_credentials(self._client_args["aws_access_key_id"], self._client_args["aws_secret_access_key"])
        return session

    @functools.cached_property
    def client(self) -> Any:
        """The boto3 client, for the calls that stay on botocore (multipart uploads, copies above 5 GiB)."""
        import boto3
        from botocore.config import Config

        args = {k: v for k, v in self._client_args.items() if not k.startswith("aws_")}
        config = Config(
            signature_version=args.pop("signature_version"), s3={"addressing_style": args.pop("addressing_style")},
            retries={"mode": "standard", "max_attempts": 5},
            # distribution sends no checksums either: CRCs of every part cost CPU that S3's own checks make moot.
            request_checksum_calculation="when_required", response_checksum_validation="when_required",
        )
        return boto3.session.Session(botocore_session=self._session).client("s3", config=config, **args)

    @functools.cached_property
    def http(self) -> S3Http:
        """Signed requests on botocore's URL of the bucket, with its credentials and CA bundle."""
        from botocore.httpsession import get_cert_path

        credentials = self._session.get_credentials()
        if credentials is None:
            raise StorageError(f"S3 bucket {self.bucket}: no credentials (storage.s3.accesskey and secretkey, or "
                               "the AWS environment)")
        url = self.client.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": "k"})
        bucket_url = url.partition("?")[0].removesuffix("k")
        ca_bundle = self._session.get_config_variable("ca_bundle") or get_cert_path(True)
        return S3Http(bucket_url, self.bucket, self.client.meta.region_name, credentials, ca_bundle,
                      v4=self._client_args["signature_version"] == "s3v4")

    @property
    def _pages(self) -> dict:
        return {"PageSize": self.page_size}

    # -- keys -----------------------------------------------------------------------------------------------
    def _key(self, path: str) -> str:
        return self.prefix + check_path(path)

    def _dir_prefix(self, path: str) -> str:
        return f"{self._key(path)}/" if path else self.prefix

    def _tail_key(self, key: str) -> str:
        parent, _, name = key.rpartition("/")
        return f"{parent}/{_TAIL}{name}" if parent else f"{_TAIL}{name}"

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """S3's "no such key" as FileNotFoundError; every other failure (after botocore's retries) as StorageError."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in _NOT_FOUND:
                raise FileNotFoundError(code) from None
            raise StorageError(f"S3 bucket {self.bucket}: {e}") from None
        except BotoCoreError as e:
            raise StorageError(f"S3 bucket {self.bucket}: {e}") from None

    def _listing(self, query: dict[str, str], marks: dict[str, str]) -> Iterator[Any]:
        """Every page of a bucket listing, as XML; `marks`: the next request's parameter for each field of a
        truncated page that continues it."""
        query = {**query, "max-uploads" if "uploads" in query else "max-keys": str(self.page_size)}
        while True:
            page = xml(self.http.request("GET", "", query).data)
            yield page
            if page.findtext("IsTruncated") != "true":
                return
            query.update({param: page.findtext(field) or "" for field, param in marks.items()})

    def _objects(self, prefix: str, delimiter: str = "") -> Iterator[tuple[builtins.list[dict], builtins.list[str]]]:
        """Every page of a listing (ListObjectsV2 returns at most 1000 keys a page): its keys (Key, LastModified
        as a timestamp) and, with a delimiter, its common prefixes."""
        query = {"list-type": "2", "prefix": prefix, **({"delimiter": delimiter} if delimiter else {})}
        for page in self._listing(query, {"NextContinuationToken": "continuation-token"}):
            yield ([{"Key": c.findtext("Key") or "", "LastModified": _time(c.findtext("LastModified"))}
                    for c in page.iterfind("Contents")],
                   [c.findtext("Prefix") or "" for c in page.iterfind("CommonPrefixes")])

    def _keys(self, prefix: str) -> Iterator[dict]:
        for keys, _ in self._objects(prefix):
            yield from keys

    def _uploads(self, prefix: str) -> Iterator[dict]:
        """Open multipart uploads of keys starting with `prefix` (Key, UploadId, Initiated as a timestamp)."""
        for page in self._listing({"uploads": "", "prefix": prefix},
                                  {"NextKeyMarker": "key-marker", "NextUploadIdMarker": "upload-id-marker"}):
            for u in page.iterfind("Upload"):
                yield {"Key": u.findtext("Key") or "", "UploadId": u.findtext("UploadId") or "",
                       "Initiated": _time(u.findtext("Initiated"))}

    def _head(self, key: str) -> tuple[int, float]:
        """An object's size and modification time."""
        r = self.http.request("HEAD", key)
        return int(r.headers["Content-Length"]), _http_time(r.headers["Last-Modified"])

    def _delete_keys(self, keys: builtins.list[str]) -> None:
        for i in range(0, len(keys), 1000):
            body = ("<Delete><Quiet>true</Quiet>" + "".join(f"<Object><Key>{escape(k)}</Key></Object>"
                                                            for k in keys[i:i + 1000]) + "</Delete>").encode()
            # DeleteObjects requires a body checksum.
            md5 = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
            out = xml(self.http.request("POST", "", {"delete": ""}, {"Content-MD5": md5}, body).data)
            error = out.find("Error")
            if error is not None:
                raise StorageError(f"S3 bucket {self.bucket}: cannot delete {error.findtext('Key')}: "
                                   f"{error.findtext('Message')}")

    def _copy(self, source: str, target: str, headers: dict[str, str] | None = None) -> None:
        """A server-side CopyObject (up to 5 GiB)."""
        self.http.request("PUT", target, headers={"x-amz-copy-source": _quote(f"/{self.bucket}/{source}"),
                                                  **(headers or {})})

    def _abort(self, key: str, upload_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.http.request("DELETE", key, {"uploadId": upload_id})

    # -- the driver interface -------------------------------------------------------------------------------
    def get_content(self, path: str) -> bytes:
        return self.http.request("GET", self._key(path)).data

    def put_content(self, path: str, data: bytes, durable: bool = True) -> None:
        self.http.request("PUT", self._key(path), body=data)

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            return self.http.body(self.http.request("GET", self._key(path), headers=headers, stream=True))
        except S3Error as e:
            if e.code != "InvalidRange":
                raise
        self._head(self._key(path))  # S3 refuses a range that starts past the end: empty, if the file is there
        return io.BytesIO(b"")

    def writer(self, path: str, append: bool = False, new: bool = False) -> FileWriter:
        return _Writer(self, self._key(path), append, new)

    def stat(self, path: str) -> FileInfo:
        key = self._key(path)
        if not path:
            return FileInfo(path, 0, 0.0, True)
        try:
            size, mtime = self._head(key)
            return FileInfo(path, size, mtime, False)
        except FileNotFoundError:
            pass
        for keys, _ in self._objects(f"{key}/"):
            if keys:
                return FileInfo(path, 0, max(o["LastModified"] for o in keys), True)
            break
        pending = _Pending.find(self, key)
        if pending is None:
            raise FileNotFoundError(path)
        return FileInfo(path, pending.size, pending.mtime, False)

    def is_file(self, path: str) -> bool:
        # One HEAD: stat of a missing key goes on to look for a directory and an open write.
        try:
            self._head(self._key(path))
            return True
        except FileNotFoundError:
            return False

    def require_dir(self, path: str) -> None:
        # One listing of a key under it: a directory on S3 is any key with its prefix.
        found = xml(self.http.request("GET", "", {"list-type": "2", "prefix": self._dir_prefix(path),
                                                  "max-keys": "1"}).data)
        if found.find("Contents") is None:
            raise FileNotFoundError(path)

    def list(self, path: str) -> builtins.list[str]:
        prefix = self._dir_prefix(path)
        names = []
        for keys, prefixes in self._objects(prefix, "/"):
            names += [p[len(prefix):].rstrip("/") for p in prefixes]
            names += [o["Key"][len(prefix):] for o in keys]
        return [n for n in names if n and not n.startswith(TEMP_PREFIX)]

    def walk(self, path: str) -> Iterator[tuple[str, builtins.list[str], builtins.list[str]]]:
        tree: dict[str, tuple[set[str], builtins.list[str]]] = {}
        for obj in self._keys(self._dir_prefix(path)):
            parent, _, name = obj["Key"][len(self.prefix):].rpartition("/")
            entry = tree.setdefault(parent, (set(), []))
            if not name.startswith(TEMP_PREFIX):
                entry[1].append(name)
            while parent and parent != path:  # every directory between it and `path` has a child
                grand, _, dirname = parent.rpartition("/")
                tree.setdefault(grand, (set(), []))[0].add(dirname)
                parent = grand

        def visit(directory: str) -> Iterator[tuple[str, builtins.list[str], builtins.list[str]]]:
            subdirs = sorted(tree[directory][0])
            yield directory, subdirs, tree[directory][1]
            for sub in subdirs:  # the caller's edits of `subdirs` prune the walk, as os.walk's
                yield from visit(f"{directory}/{sub}" if directory else sub)

        if path in tree:
            yield from visit(path)

    def move(self, src: str, dst: str) -> None:
        source, target = self._key(src), self._key(dst)
        size = self._head(source)[0]
        if size <= MAX_COPY:
            self._copy(source, target)
        else:  # a multipart copy: the target appears whole all the same
            from boto3.s3.transfer import TransferConfig

            with self._errors():
                self.client.copy({"Bucket": self.bucket, "Key": source}, self.bucket, target,
                                 Config=TransferConfig(multipart_threshold=MAX_COPY,
                                                       multipart_chunksize=MAX_COPY // 5))
        self.http.request("DELETE", source)

    def commit_to(self, writer: FileWriter, path: str, dst: str) -> None:
        if isinstance(writer, _Writer) and writer.single_put:  # written once, where it belongs: no copy
            writer.commit(self._key(dst), keep_tail=True)
        else:
            super().commit_to(writer, path, dst)

    def delete(self, path: str) -> bool:
        key, prefix = self._key(path), self._dir_prefix(path)
        keys = [o["Key"] for o in self._keys(key if path else prefix) if o["Key"] == key or
                o["Key"].startswith(prefix)]
        uploads = [u for u in self._uploads(key if path else prefix) if u["Key"] == key or
                   u["Key"].startswith(prefix)]
        # A file's pending write keeps a tail object beside it; a directory has none.
        tail = self._tail_key(key) if path and not any(k.startswith(prefix) for k in keys) else None
        if tail is not None:
            with contextlib.suppress(FileNotFoundError):
                self._head(tail)
                keys.append(tail)
        for upload in uploads:
            self._abort(upload["Key"], upload["UploadId"])
        self._delete_keys(keys)
        self.locks.forget(path)  # the tree's lock files go with it
        return bool(keys or uploads)

    def delete_files(self, path: str, names: Iterable[str]) -> None:
        # One DeleteObjects of the known keys (and their tails, which cost nothing more there), no listings.
        keys = [self._key(f"{path}/{name}" if path else name) for name in names]
        self._delete_keys(keys + [self._tail_key(key) for key in keys])
        self.locks.forget(path)

    def touch(self, path: str) -> None:
        key = self._key(path)
        self._copy(key, key, {"x-amz-metadata-directive": "REPLACE"})

    def purge_partial_writes(self, cutoff: float, dry_run: bool = False) -> int:
        removed: set[str] = set()
        for upload in self._uploads(self.prefix):
            if upload["Initiated"] < cutoff:
                if not dry_run:
                    self._abort(upload["Key"], upload["UploadId"])
                removed.add(upload["Key"])
        tails = []
        for obj in self._keys(self.prefix):
            parent, _, name = obj["Key"].rpartition("/")
            if name.startswith(_TAIL) and obj["LastModified"] < cutoff:
                tails.append(obj["Key"])
                removed.add(f"{parent}/{name[len(_TAIL):]}" if parent else name[len(_TAIL):])
        if not dry_run:
            self._delete_keys(tails)
        return len(removed)



def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe="/~")


def _time(iso: str | None) -> float:
    """A listing's time (ISO 8601) as a timestamp."""
    return datetime.fromisoformat(iso or "1970-01-01T00:00:00Z").timestamp()


def _http_time(value: str) -> float:
    """An HTTP date header as a timestamp."""
    return email.utils.parsedate_to_datetime(value).timestamp()


class _Pending:
    """An open (closed, uncommitted) write of one key: its multipart upload's parts and its tail object."""

    def __init__(self, upload_id: str | None, parts: list[dict], tail: bytes, mtime: float, note: bytes):
        self.upload_id = upload_id
        self.parts = parts
        self.tail = tail
        self.mtime = mtime
        self.note = note

    @property
    def size(self) -> int:
        return sum(p["Size"] for p in self.parts) + len(self.tail)

    @classmethod
    def find(cls, driver: S3Driver, key: str) -> _Pending | None:
        """The pending write of `key` (its tail names its upload), or None when there is none."""
        try:
            got = driver.http.request("GET", driver._tail_key(key))
        except FileNotFoundError:
            return None
        tail, mtime = got.data, _http_time(got.headers["Last-Modified"])
        upload_id = got.headers.get(f"x-amz-meta-{_TAIL_UPLOAD}") or None
        note = got.headers.get(f"x-amz-meta-{_TAIL_NOTE}", "").encode("ascii", "replace")
        parts: list[dict] = []
        if upload_id is not None:
            with driver._errors():
                for page in driver.client.get_paginator("list_parts").paginate(
                        Bucket=driver.bucket, Key=key, UploadId=upload_id, PaginationConfig=driver._pages):
                    parts += [{"PartNumber": p["PartNumber"], "ETag": p["ETag"], "Size": p["Size"]}
                              for p in page.get("Parts", [])]
                    mtime = max([mtime] + [p["LastModified"].timestamp() for p in page.get("Parts", [])])
            # A writer's first new part begins with the tail's bytes: parts beyond those the tail was written
            # after mean a writer was killed before it wrote its own tail, and these bytes are in that part.
            if len(parts) > int(got.headers.get(f"x-amz-meta-{_TAIL_PARTS}") or len(parts)):
                tail = note = b""  # the note told of the bytes up to that tail
        return cls(upload_id, parts, tail, mtime, note)


class _Writer(FileWriter):
    """Full parts go to the key's multipart upload as they fill; the rest waits in memory (in the tail on close)."""

    def __init__(self, driver: S3Driver, key: str, append: bool, new: bool):
        self._d = driver
        self._key = key
        self._closed = False
        self._upload_id: str | None = None
        self._parts: list[dict] = []
        self._buf = bytearray()
        self._tail = False  # a tail object to remove at commit
        self._note = b""
        if new:  # a fresh upload session's file: nothing to look for
            return
        pending = _Pending.find(driver, key)
        if not append:  # a new, empty file: whatever was there goes
            if pending is not None and pending.upload_id is not None:
                driver._abort(key, pending.upload_id)
            driver._delete_keys([key, driver._tail_key(key)])
        elif pending is not None:
            self._upload_id, self._parts, self._note = pending.upload_id, pending.parts, pending.note
            self._buf, self._tail = bytearray(pending.tail), True
        else:
            self._resume_committed()

    def _resume_committed(self) -> None:
        """Append to a committed object: its bytes become the first parts (server-side copies) or the buffer."""
        try:
            size = self._d._head(self._key)[0]
        except FileNotFoundError:
            return
        if size < self._d.chunksize:
            self._buf += self._d.http.request("GET", self._key).data
            return
        count = -(-size // MAX_COPY)  # equal ranges, so none is below the part minimum
        step = -(-size // count)
        source = {"Bucket": self._d.bucket, "Key": self._key}
        for start in range(0, size, step):
            end = min(start + step, size) - 1
            with self._d._errors():
                out = self._d.client.upload_part_copy(Bucket=self._d.bucket, Key=self._key,
                                                      UploadId=self._open_upload(), PartNumber=len(self._parts) + 1,
                                                      CopySource=source, CopySourceRange=f"bytes={start}-{end}")
            self._parts.append({"PartNumber": len(self._parts) + 1, "ETag": out["CopyPartResult"]["ETag"],
                                "Size": end - start + 1})

    def _open_upload(self) -> str:
        if self._upload_id is None:
            with self._d._errors():
                self._upload_id = self._d.client.create_multipart_upload(Bucket=self._d.bucket,
                                                                         Key=self._key)["UploadId"]
        return self._upload_id

    def _upload_part(self, data: bytes) -> None:
        number = len(self._parts) + 1
        out = self._d.http.request("PUT", self._key, {"partNumber": str(number), "uploadId": self._open_upload()},
                                   body=data)
        self._parts.append({"PartNumber": number, "ETag": out.headers["ETag"], "Size": len(data)})

    def write(self, data: bytes) -> int:
        if self._closed:
            raise ValueError(f"writer of {self._key} is closed")
        self._buf += data
        while len(self._buf) >= self._d.chunksize:
            self._upload_part(bytes(self._buf[:self._d.chunksize]))
            del self._buf[:self._d.chunksize]
        return len(data)

    @property
    def size(self) -> int:
        return sum(p["Size"] for p in self._parts) + len(self._buf)

    @property
    def note(self) -> bytes:
        return self._note

    @note.setter
    def note(self, value: bytes) -> None:
        self._note = value

    @property
    def single_put(self) -> bool:
        """Whether commit writes the object in one PUT (it has no multipart upload)."""
        return self._upload_id is None

    def commit(self, key: str | None = None, keep_tail: bool = False) -> None:
        """Commit (a single PUT, to `key` instead of the writer's own when given); keep_tail: the caller's
        delete_files removes the tail, in the same request as the rest."""
        if self._closed:
            raise ValueError(f"writer of {self._key} is closed")
        self._closed = True
        if self._upload_id is None:  # smaller than one part: the object is written once
            self._d.http.request("PUT", key or self._key, body=bytes(self._buf))
        else:
            if self._buf:
                self._upload_part(bytes(self._buf))
            with self._d._errors():
                # radosgw 16 answers this with an empty ETag; nothing here needs it.
                self._d.client.complete_multipart_upload(
                    Bucket=self._d.bucket, Key=self._key, UploadId=self._upload_id,
                    MultipartUpload={"Parts": [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]}
                                               for p in self._parts]})
        if self._tail and not keep_tail:
            self._d.http.request("DELETE", self._d._tail_key(self._key))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Written even when empty: the tail is what makes a just-created write exist (stat) before any part.
        meta = {f"x-amz-meta-{_TAIL_PARTS}": str(len(self._parts))}
        if self._upload_id is not None:
            meta[f"x-amz-meta-{_TAIL_UPLOAD}"] = self._upload_id
        if self._note:
            meta[f"x-amz-meta-{_TAIL_NOTE}"] = self._note.decode("ascii")
        self._d.http.request("PUT", self._d._tail_key(self._key), body=bytes(self._buf), headers=meta)

    def cancel(self) -> None:
        self._closed = True
        if self._upload_id is not None:
            self._d._abort(self._key, self._upload_id)
        self._d._delete_keys([self._key, self._d._tail_key(self._key)])
