"""The S3 storage driver (boto3): paths are keys under an optional prefix in one bucket, as distribution's s3-aws.

How the driver contract (registry.storage.driver) maps onto S3, which has no rename, no directories, no locks:
- Directories are key prefixes: one exists while a key lies under it; its mtime is the newest of its first
  listing page's keys.
- A writer keeps full parts of `chunksize` bytes in a multipart upload of the path's key, and what is left below
  the part minimum (S3 refuses smaller non-last parts) in a hidden tail object `<dir>/.tmp-tail.<name>`, so a
  writer closed after one PATCH is resumed by the next (in any process) from the upload's parts plus the tail, as
  distribution buffers below the minimum.  `stat` of such an open write is the parts' sizes plus the tail's (a
  tail older than the last part, left by a writer killed mid-write, is inside that part and does not count).
  `commit` uploads the tail as the last part and completes the upload (or, for a write smaller than one part,
  puts the object once): the key appears whole or not at all.
- `move` is a server-side copy then a delete of the source; `touch` copies an object onto itself (new mtime).
- `lock` is a Redis lock when the config has a `[redis]` section: every replica on every host, and `registry gc`,
  share it.  Without one, an flock on a file mirroring the path under a local `lockdirectory`, which serialises
  the processes of one host only (see registry.storage.locks).
- Transient failures (throttling, 5xx, connection errors) are retried by botocore with backoff; anything else
  becomes a StorageError, which the server answers with a 500 and the spec's error body.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import hashlib
import io
import os
import tempfile
from collections.abc import Iterator
from typing import Any, BinaryIO

from dockyard.fsutil import TEMP_PREFIX
from registry.storage.driver import FileInfo, FileWriter, StorageDriver, StorageError, check_path
from registry.storage.locks import RedisSettings, open_locks

MIN_PART = 5 << 20  # S3's smallest part but the last
DEFAULT_CHUNK = 10 << 20  # distribution's default chunksize
MAX_COPY = 5 << 30  # the largest object CopyObject (and one UploadPartCopy) takes
_TAIL = f"{TEMP_PREFIX}tail."
_TAIL_PARTS = "parts"  # the tail object's metadata: how many parts the upload had when it was written
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
    def client(self) -> Any:
        """The boto3 client, made on first use: the server's master process opens the driver too, and boto3
        imported there (before a gevent worker patches ssl) breaks every TLS context the worker makes later."""
        import boto3
        from botocore.config import Config

        args = dict(self._client_args)
        config = Config(
            signature_version=args.pop("signature_version"), s3={"addressing_style": args.pop("addressing_style")},
            retries={"mode": "standard", "max_attempts": 5},
        )
        return boto3.session.Session().client("s3", config=config, **args)

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

    def _objects(self, prefix: str, delimiter: str = "") -> Iterator[dict]:
        """Every page of a listing (ListObjectsV2 returns at most 1000 keys a page)."""
        kwargs = {"Bucket": self.bucket, "Prefix": prefix, **({"Delimiter": delimiter} if delimiter else {})}
        with self._errors():
            yield from self.client.get_paginator("list_objects_v2").paginate(**kwargs, PaginationConfig=self._pages)

    def _keys(self, prefix: str) -> Iterator[dict]:
        for page in self._objects(prefix):
            yield from page.get("Contents", [])

    def _uploads(self, prefix: str) -> Iterator[dict]:
        """Open multipart uploads of keys starting with `prefix`."""
        with self._errors():
            for page in self.client.get_paginator("list_multipart_uploads").paginate(
                    Bucket=self.bucket, Prefix=prefix, PaginationConfig=self._pages):
                yield from page.get("Uploads", [])

    def _upload_of(self, key: str) -> str | None:
        """The open multipart upload of exactly `key` (the newest, should a crash have left two)."""
        uploads = sorted((u for u in self._uploads(key) if u["Key"] == key), key=lambda u: u["Initiated"])
        return uploads[-1]["UploadId"] if uploads else None

    def _head(self, key: str) -> dict:
        with self._errors():
            return self.client.head_object(Bucket=self.bucket, Key=key)

    def _delete_keys(self, keys: builtins.list[str]) -> None:
        for i in range(0, len(keys), 1000):
            with self._errors():
                out = self.client.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})
            if out.get("Errors"):
                raise StorageError(f"S3 bucket {self.bucket}: cannot delete {out['Errors'][0].get('Key')}: "
                                   f"{out['Errors'][0].get('Message')}")

    def _abort(self, key: str, upload_id: str) -> None:
        with contextlib.suppress(FileNotFoundError), self._errors():
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    # -- the driver interface -------------------------------------------------------------------------------
    def get_content(self, path: str) -> bytes:
        with self.reader(path) as f:
            return f.read()

    def put_content(self, path: str, data: bytes, durable: bool = True) -> None:
        key = self._key(path)
        with self._errors():
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        key = self._key(path)
        if offset and offset >= self._head(key)["ContentLength"]:
            return io.BytesIO(b"")  # S3 refuses a range that starts past the end (InvalidRange)
        with self._errors():
            return self.client.get_object(Bucket=self.bucket, Key=key,
                                          **({"Range": f"bytes={offset}-"} if offset else {}))["Body"]

    def writer(self, path: str, append: bool = False) -> FileWriter:
        return _Writer(self, self._key(path), append)

    def stat(self, path: str) -> FileInfo:
        key = self._key(path)
        if not path:
            return FileInfo(path, 0, 0.0, True)
        try:
            head = self._head(key)
            return FileInfo(path, head["ContentLength"], head["LastModified"].timestamp(), False)
        except FileNotFoundError:
            pass
        for page in self._objects(f"{key}/"):
            if page.get("Contents"):
                return FileInfo(path, 0, max(o["LastModified"].timestamp() for o in page["Contents"]), True)
            break
        pending = _Pending.find(self, key)
        if pending is None:
            raise FileNotFoundError(path)
        return FileInfo(path, pending.size, pending.mtime, False)

    def require_dir(self, path: str) -> None:
        # One listing of a key under it: a directory on S3 is any key with its prefix.
        with self._errors():
            found = self.client.list_objects_v2(Bucket=self.bucket, Prefix=self._dir_prefix(path), MaxKeys=1)
        if not found.get("KeyCount"):
            raise FileNotFoundError(path)

    def list(self, path: str) -> builtins.list[str]:
        prefix = self._dir_prefix(path)
        names = []
        for page in self._objects(prefix, "/"):
            names += [p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", [])]
            names += [o["Key"][len(prefix):] for o in page.get("Contents", [])]
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
        from boto3.s3.transfer import TransferConfig

        source, target = self._key(src), self._key(dst)
        with self._errors():
            # One CopyObject up to 5 GiB, a multipart copy beyond: the target appears whole either way.
            self.client.copy({"Bucket": self.bucket, "Key": source}, self.bucket, target,
                             Config=TransferConfig(multipart_threshold=MAX_COPY, multipart_chunksize=MAX_COPY // 5))
            self.client.delete_object(Bucket=self.bucket, Key=source)

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

    def touch(self, path: str) -> None:
        key = self._key(path)
        with self._errors():
            self.client.copy_object(Bucket=self.bucket, Key=key, CopySource={"Bucket": self.bucket, "Key": key},
                                    MetadataDirective="REPLACE")

    def purge_partial_writes(self, cutoff: float, dry_run: bool = False) -> int:
        removed: set[str] = set()
        for upload in self._uploads(self.prefix):
            if upload["Initiated"].timestamp() < cutoff:
                if not dry_run:
                    self._abort(upload["Key"], upload["UploadId"])
                removed.add(upload["Key"])
        tails = []
        for obj in self._keys(self.prefix):
            parent, _, name = obj["Key"].rpartition("/")
            if name.startswith(_TAIL) and obj["LastModified"].timestamp() < cutoff:
                tails.append(obj["Key"])
                removed.add(f"{parent}/{name[len(_TAIL):]}" if parent else name[len(_TAIL):])
        if not dry_run:
            self._delete_keys(tails)
        return len(removed)


class _Pending:
    """An open (closed, uncommitted) write of one key: its multipart upload's parts and its tail object."""

    def __init__(self, upload_id: str | None, parts: list[dict], tail: bytes | None, mtime: float):
        self.upload_id = upload_id
        self.parts = parts
        self.tail = tail
        self.mtime = mtime

    @property
    def size(self) -> int:
        return sum(p["Size"] for p in self.parts) + len(self.tail or b"")

    @classmethod
    def find(cls, driver: S3Driver, key: str) -> _Pending | None:
        """The pending write of `key`, or None when there is none."""
        upload_id = driver._upload_of(key)
        parts: list[dict] = []
        mtime = 0.0
        if upload_id is not None:
            with driver._errors():
                for page in driver.client.get_paginator("list_parts").paginate(
                        Bucket=driver.bucket, Key=key, UploadId=upload_id, PaginationConfig=driver._pages):
                    parts += [{"PartNumber": p["PartNumber"], "ETag": p["ETag"], "Size": p["Size"]}
                              for p in page.get("Parts", [])]
                    mtime = max([mtime] + [p["LastModified"].timestamp() for p in page.get("Parts", [])])
        tail = None
        with contextlib.suppress(FileNotFoundError), driver._errors():
            got = driver.client.get_object(Bucket=driver.bucket, Key=driver._tail_key(key))
            tail = got["Body"].read()
            mtime = max(mtime, got["LastModified"].timestamp())
            # A writer's first new part begins with the tail's bytes: parts beyond those the tail was written
            # after mean a writer was killed before it wrote its own tail, and these bytes are in that part.
            if len(parts) > int(got.get("Metadata", {}).get(_TAIL_PARTS, len(parts))):
                tail = b""
        if upload_id is None and tail is None:
            return None
        return cls(upload_id, parts, tail, mtime)


class _Writer(FileWriter):
    """Full parts go to the key's multipart upload as they fill; the rest waits in memory (in the tail on close)."""

    def __init__(self, driver: S3Driver, key: str, append: bool):
        self._d = driver
        self._key = key
        self._closed = False
        pending = _Pending.find(driver, key)
        if not append:  # a new, empty file: whatever was there goes
            if pending is not None and pending.upload_id is not None:
                driver._abort(key, pending.upload_id)
            driver._delete_keys([key, driver._tail_key(key)])
            pending = None
        self._upload_id = pending.upload_id if pending else None
        self._parts = pending.parts if pending else []
        self._buf = bytearray(pending.tail or b"") if pending else bytearray()
        self._tail = pending is not None and pending.tail is not None  # a tail object to remove at commit
        if append and pending is None:
            self._resume_committed()

    def _resume_committed(self) -> None:
        """Append to a committed object: its bytes become the first parts (server-side copies) or the buffer."""
        try:
            size = self._d._head(self._key)["ContentLength"]
        except FileNotFoundError:
            return
        if size < self._d.chunksize:
            with self._d._errors():
                self._buf += self._d.client.get_object(Bucket=self._d.bucket, Key=self._key)["Body"].read()
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
        with self._d._errors():
            out = self._d.client.upload_part(Bucket=self._d.bucket, Key=self._key, UploadId=self._open_upload(),
                                             PartNumber=number, Body=data)
        self._parts.append({"PartNumber": number, "ETag": out["ETag"], "Size": len(data)})

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

    def commit(self) -> None:
        if self._closed:
            raise ValueError(f"writer of {self._key} is closed")
        self._closed = True
        if self._upload_id is None:  # smaller than one part: the object is written once
            with self._d._errors():
                self._d.client.put_object(Bucket=self._d.bucket, Key=self._key, Body=bytes(self._buf))
        else:
            if self._buf:
                self._upload_part(bytes(self._buf))
            with self._d._errors():
                # radosgw 16 answers this with an empty ETag; nothing here needs it.
                self._d.client.complete_multipart_upload(
                    Bucket=self._d.bucket, Key=self._key, UploadId=self._upload_id,
                    MultipartUpload={"Parts": [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]}
                                               for p in self._parts]})
        if self._tail:
            self._d._delete_keys([self._d._tail_key(self._key)])

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Written even when empty: the tail is what makes a just-created write exist (stat) before any part.
        with self._d._errors():
            self._d.client.put_object(Bucket=self._d.bucket, Key=self._d._tail_key(self._key), Body=bytes(self._buf),
                                      Metadata={_TAIL_PARTS: str(len(self._parts))})

    def cancel(self) -> None:
        self._closed = True
        if self._upload_id is not None:
            self._d._abort(self._key, self._upload_id)
        self._d._delete_keys([self._key, self._d._tail_key(self._key)])
