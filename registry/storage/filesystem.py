"""The filesystem storage driver: content-addressed blobs, per-repository link files, on-disk upload sessions."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import threading
import time
import uuid
from collections import OrderedDict
from typing import BinaryIO, Iterator

from dockyard.digest import CHUNK, Digest, InvalidDigest, verify
from dockyard.errors import DigestMismatch
from dockyard.fsutil import TEMP_PREFIX, WRITEBACK_STEP, atomic_write, fsync_dir, locked, start_writeback
from dockyard.reference import NAME_MAX, REPOSITORY_RE, TAG_RE
from registry.storage.base import BlobInfo, Storage, UploadInfo, UploadOffsetMismatch, UploadUnknown
from registry.storage.driver import FileInfo, FileWriter, StorageDriver, check_path

_UPLOAD_ID_RE = re.compile(r"^[0-9a-f]{32}$")
# Hash state kept in-process so a chunk sequence served by one worker is hashed once, while streaming.
_HASHER_CACHE_MAX = 256


class FilesystemStorage(Storage):
    """Everything under one root directory; every visible file appears by an atomic rename."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self._blobs = os.path.join(self.root, "blobs")
        self._repos = os.path.join(self.root, "repositories")
        self._uploads = os.path.join(self.root, "uploads")
        self._gc_lock = os.path.join(self.root, "gc.lock")
        for d in (self._blobs, self._repos, self._uploads):
            os.makedirs(d, exist_ok=True)
        self._hashers: OrderedDict[str, tuple[object, int]] = OrderedDict()
        self._hashers_lock = threading.Lock()

    # -- paths ----------------------------------------------------------------------------------------------
    def _blob_dir(self, d: Digest) -> str:
        return os.path.join(self._blobs, d.algorithm, d.hex[:2], d.hex)

    def _blob_path(self, d: Digest) -> str:
        return os.path.join(self._blob_dir(d), "data")

    def _repo_dir(self, repo: str) -> str:
        # Handlers validate names; this re-check keeps every path inside the root whatever the caller does.
        if len(repo) > NAME_MAX or not REPOSITORY_RE.match(repo):
            raise ValueError(f"invalid repository name {repo!r}")
        return os.path.join(self._repos, repo)

    def _layer_link(self, repo: str, d: Digest) -> str:
        return os.path.join(self._repo_dir(repo), "_layers", d.algorithm, d.hex)

    def _revision_link(self, repo: str, d: Digest) -> str:
        return os.path.join(self._repo_dir(repo), "_manifests", "revisions", d.algorithm, d.hex)

    def _tags_dir(self, repo: str) -> str:
        return os.path.join(self._repo_dir(repo), "_manifests", "tags")

    def _tag_path(self, repo: str, tag: str) -> str:
        if not TAG_RE.match(tag):
            raise ValueError(f"invalid tag {tag!r}")
        return os.path.join(self._tags_dir(repo), tag)

    def _referrers_dir(self, repo: str, subject: Digest) -> str:
        return os.path.join(self._repo_dir(repo), "_referrers", subject.algorithm, subject.hex)

    def _upload_dir(self, upload_id: str) -> str:
        if not _UPLOAD_ID_RE.match(upload_id):
            raise UploadUnknown(f"unknown upload {upload_id!r}")
        return os.path.join(self._uploads, upload_id)

    @contextlib.contextmanager
    def _gc_guard(self, exclusive: bool = False) -> Iterator[None]:
        """Writers that make a blob live hold this shared; GC holds it exclusive to delete."""
        with locked(self._gc_lock, shared=not exclusive):
            yield

    @staticmethod
    def _write_link(path: str, text: str) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write(path, text.encode())

    # -- blobs ----------------------------------------------------------------------------------------------
    def blob_info(self, digest: Digest) -> BlobInfo | None:
        path = self._blob_path(digest)
        try:
            st = os.stat(path)
            return BlobInfo(digest, st.st_size, path, st.st_mtime)
        except FileNotFoundError:
            return None

    def open_blob(self, digest: Digest) -> BinaryIO:
        return open(self._blob_path(digest), "rb")

    def put_blob_bytes(self, data: bytes, digest: Digest) -> None:
        with self._gc_guard():
            self._put_blob_bytes_locked(data, digest)

    def _put_blob_bytes_locked(self, data: bytes, digest: Digest) -> None:
        path = self._blob_path(digest)
        try:
            os.utime(path)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            atomic_write(path, data)

    def iter_blobs(self) -> Iterator[tuple[Digest, float]]:
        for algo in _listdir(self._blobs):
            for prefix in _listdir(os.path.join(self._blobs, algo)):
                for hexpart in _listdir(os.path.join(self._blobs, algo, prefix)):
                    try:
                        d = Digest.parse(f"{algo}:{hexpart}")
                        yield d, os.stat(self._blob_path(d)).st_mtime
                    except (InvalidDigest, FileNotFoundError):
                        continue

    def delete_blob_if_older(self, digest: Digest, cutoff: float) -> bool:
        path = self._blob_path(digest)
        with self._gc_guard(exclusive=True):
            try:
                if os.stat(path).st_mtime >= cutoff:
                    return False
                os.unlink(path)
            except FileNotFoundError:
                return False
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(path))
        return True

    # -- links ----------------------------------------------------------------------------------------------
    def blob_linked(self, repo: str, digest: Digest) -> BlobInfo | None:
        if not os.path.exists(self._layer_link(repo, digest)):
            return None
        return self.blob_info(digest)

    def link_blob(self, repo: str, digest: Digest) -> bool:
        with self._gc_guard():
            try:
                os.utime(self._blob_path(digest))
            except FileNotFoundError:
                return False
            link = self._layer_link(repo, digest)
            if not os.path.exists(link):
                self._write_link(link, str(digest))
        return True

    def unlink_blob(self, repo: str, digest: Digest) -> bool:
        return _unlink(self._layer_link(repo, digest))

    def unlink_blob_if_absent(self, repo: str, digest: Digest) -> bool:
        with self._gc_guard(exclusive=True):
            if os.path.exists(self._blob_path(digest)):
                return False
            return self.unlink_blob(repo, digest)

    def iter_blob_links(self, repo: str) -> Iterator[Digest]:
        yield from _iter_digest_dir(os.path.join(self._repo_dir(repo), "_layers"))

    # -- manifests ------------------------------------------------------------------------------------------
    def put_manifest(self, repo: str, digest: Digest, data: bytes, media_type: str) -> None:
        with self._gc_guard():
            self._put_blob_bytes_locked(data, digest)
            self._write_link(self._revision_link(repo, digest), media_type)

    def manifest_media_type(self, repo: str, digest: Digest) -> str | None:
        try:
            with open(self._revision_link(repo, digest), encoding="utf-8") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def get_manifest(self, repo: str, digest: Digest) -> tuple[bytes, str] | None:
        media_type = self.manifest_media_type(repo, digest)
        if media_type is None:
            return None
        try:
            with open(self._blob_path(digest), "rb") as f:
                return f.read(), media_type
        except FileNotFoundError:
            return None

    def delete_manifest(self, repo: str, digest: Digest) -> bool:
        if not _unlink(self._revision_link(repo, digest)):
            return False
        for tag in self.list_tags(repo) or []:
            if self.resolve_tag(repo, tag) == digest:
                self.delete_tag(repo, tag)
        return True

    def iter_manifests(self, repo: str) -> Iterator[Digest]:
        yield from _iter_digest_dir(os.path.join(self._repo_dir(repo), "_manifests", "revisions"))

    # -- tags -----------------------------------------------------------------------------------------------
    def set_tag(self, repo: str, tag: str, digest: Digest) -> None:
        self._write_link(self._tag_path(repo, tag), str(digest))

    def resolve_tag(self, repo: str, tag: str) -> Digest | None:
        try:
            with open(self._tag_path(repo, tag), encoding="ascii") as f:
                return Digest.parse(f.read())
        except (FileNotFoundError, InvalidDigest):
            return None

    def delete_tag(self, repo: str, tag: str) -> bool:
        return _unlink(self._tag_path(repo, tag))

    def list_tags(self, repo: str) -> list[str] | None:
        if not self.repository_exists(repo):
            return None
        return sorted(t for t in _listdir(self._tags_dir(repo)) if not t.startswith("."))

    # -- referrers ------------------------------------------------------------------------------------------
    def add_referrer(self, repo: str, subject: Digest, descriptor: dict) -> None:
        d = Digest.parse(descriptor["digest"])
        path = os.path.join(self._referrers_dir(repo, subject), f"{d.algorithm}-{d.hex}")
        self._write_link(path, json.dumps(descriptor, sort_keys=True))

    def remove_referrer(self, repo: str, subject: Digest, digest: Digest) -> None:
        _unlink(os.path.join(self._referrers_dir(repo, subject), f"{digest.algorithm}-{digest.hex}"))

    def list_referrers(self, repo: str, subject: Digest) -> list[dict]:
        directory = self._referrers_dir(repo, subject)
        out = []
        for name in sorted(_listdir(directory)):
            if name.startswith("."):
                continue
            with contextlib.suppress(FileNotFoundError, ValueError):
                with open(os.path.join(directory, name), encoding="utf-8") as f:
                    out.append(json.load(f))
        return out

    # -- repositories ---------------------------------------------------------------------------------------
    def repository_exists(self, repo: str) -> bool:
        return os.path.isdir(self._repo_dir(repo))

    def repositories(self) -> list[str]:
        names = []
        for dirpath, dirnames, _ in os.walk(self._repos):
            if "_manifests" in dirnames or "_layers" in dirnames:
                names.append(os.path.relpath(dirpath, self._repos))
            # Repository path components never start with "_", so these are our own metadata directories.
            dirnames[:] = [d for d in dirnames if not d.startswith("_") and not d.startswith(".")]
        return sorted(names)

    # -- uploads --------------------------------------------------------------------------------------------
    def create_upload(self, repo: str) -> UploadInfo:
        self._repo_dir(repo)
        upload_id = uuid.uuid4().hex
        directory = os.path.join(self._uploads, upload_id)
        os.makedirs(directory)
        started = time.time()
        open(os.path.join(directory, "data"), "wb").close()
        # The info file is written last and atomically: a session without it does not exist yet.
        atomic_write(os.path.join(directory, "info"), json.dumps({"repository": repo, "started": started}).encode())
        return UploadInfo(upload_id, repo, 0, started)

    def _read_info(self, upload_id: str, repo: str | None) -> UploadInfo:
        directory = self._upload_dir(upload_id)
        try:
            with open(os.path.join(directory, "info"), encoding="utf-8") as f:
                meta = json.load(f)
            size = os.stat(os.path.join(directory, "data")).st_size
        except (FileNotFoundError, ValueError):
            raise UploadUnknown(f"unknown upload {upload_id!r}") from None
        if repo is not None and meta.get("repository") != repo:
            raise UploadUnknown(f"unknown upload {upload_id!r}")
        return UploadInfo(upload_id, meta.get("repository", ""), size, float(meta.get("started", 0)))

    def upload_info(self, repo: str, upload_id: str) -> UploadInfo:
        return self._read_info(upload_id, repo)

    @contextlib.contextmanager
    def _upload_locked(self, repo: str, upload_id: str) -> Iterator[UploadInfo]:
        directory = self._upload_dir(upload_id)
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(locked(os.path.join(directory, "lock")))
            except FileNotFoundError:  # no such session, or it was just removed
                raise UploadUnknown(f"unknown upload {upload_id!r}") from None
            yield self._read_info(upload_id, repo)

    def append_upload(self, repo: str, upload_id: str, stream: BinaryIO, offset: int | None) -> UploadInfo:
        with self._upload_locked(repo, upload_id) as info:
            if offset is not None and offset != info.size:
                raise UploadOffsetMismatch(info.size)
            size = self._append(info, stream)
            return UploadInfo(upload_id, repo, size, info.started)

    def _append(self, info: UploadInfo, stream: BinaryIO) -> int:
        """Append everything in `stream`, hashing as it goes when the hash so far is known."""
        hasher = self._take_hasher(info.id, info.size)
        size = info.size
        data_path = os.path.join(self._uploads, info.id, "data")
        try:
            with open(data_path, "ab") as f:
                flushed = size
                while chunk := stream.read(CHUNK):
                    f.write(chunk)
                    size += len(chunk)
                    if hasher is not None:
                        hasher.update(chunk)
                    if size - flushed >= WRITEBACK_STEP:
                        # Start writeback now so the fsync at commit has little left to wait for.
                        f.flush()
                        start_writeback(f.fileno(), flushed, size - flushed)
                        flushed = size
        finally:
            # Even a broken-off chunk leaves a consistent (file, hash) pair for the client to resume from.
            if hasher is not None:
                self._keep_hasher(info.id, hasher, size)
                # Another worker may get the closing PUT: leave it the digest so far, so it need not rehash.
                _write_quick(os.path.join(self._uploads, info.id, "sha256"), f"{size} {hasher.hexdigest()}")
        return size

    def _take_hasher(self, upload_id: str, size: int):
        if size == 0:
            return hashlib.sha256()
        with self._hashers_lock:
            entry = self._hashers.pop(upload_id, None)
        if entry is not None and entry[1] == size:
            return entry[0]
        return None

    def _keep_hasher(self, upload_id: str, hasher, size: int) -> None:
        with self._hashers_lock:
            self._hashers[upload_id] = (hasher, size)
            while len(self._hashers) > _HASHER_CACHE_MAX:
                self._hashers.popitem(last=False)

    def commit_upload(self, repo: str, upload_id: str, digest: Digest, stream: BinaryIO | None = None) -> BlobInfo:
        with self._upload_locked(repo, upload_id) as info:
            size = self._append(info, stream) if stream is not None else info.size
            directory = self._upload_dir(upload_id)
            data_path = os.path.join(directory, "data")
            try:
                verify(digest, self._upload_digest(upload_id, data_path, digest.algorithm, size), "upload")
            except DigestMismatch:
                self._remove_upload(upload_id)
                raise
            with open(data_path, "rb+") as f:
                os.fsync(f.fileno())
            dest = self._blob_path(digest)
            with self._gc_guard():
                try:
                    os.utime(dest)
                except FileNotFoundError:
                    os.makedirs(os.path.dirname(dest), exist_ok=True)
                    os.rename(data_path, dest)
                    fsync_dir(os.path.dirname(dest))
                link = self._layer_link(repo, digest)
                if not os.path.exists(link):
                    self._write_link(link, str(digest))
            self._remove_upload(upload_id)
            return BlobInfo(digest, size, dest)

    def _upload_digest(self, upload_id: str, data_path: str, algorithm: str, size: int) -> Digest:
        with self._hashers_lock:
            entry = self._hashers.pop(upload_id, None)
        if algorithm == "sha256":
            if entry is not None and entry[1] == size:
                return Digest("sha256", entry[0].hexdigest())
            try:
                with open(os.path.join(os.path.dirname(data_path), "sha256"), encoding="ascii") as f:
                    recorded_size, hexdigest = f.read().split()
                if int(recorded_size) == size:
                    return Digest("sha256", hexdigest)
            except (FileNotFoundError, ValueError):
                pass
        return Digest.of_file(data_path, algorithm)

    def cancel_upload(self, repo: str, upload_id: str) -> None:
        with self._upload_locked(repo, upload_id):
            self._remove_upload(upload_id)

    def _remove_upload(self, upload_id: str) -> None:
        with self._hashers_lock:
            self._hashers.pop(upload_id, None)
        directory = self._upload_dir(upload_id)
        # Drop the info file first so the session stops existing before its data goes.
        _unlink(os.path.join(directory, "info"))
        shutil.rmtree(directory, ignore_errors=True)

    def iter_uploads(self) -> Iterator[UploadInfo]:
        for upload_id in _listdir(self._uploads):
            try:
                yield self._read_info(upload_id, None)
            except UploadUnknown:
                # A session whose info never landed (crash during create) is reported as started at its mtime.
                with contextlib.suppress(FileNotFoundError):
                    mtime = os.stat(os.path.join(self._uploads, upload_id)).st_mtime
                    if _UPLOAD_ID_RE.match(upload_id):
                        yield UploadInfo(upload_id, "", 0, mtime)

    def upload_count(self) -> int:
        return len(_listdir(self._uploads))

    def upload_last_used(self, upload_id: str) -> float:
        directory = self._upload_dir(upload_id)
        times = []
        for name in _listdir(directory):
            if name != "lock":  # taking the lock (GC does too) is no use of the session
                with contextlib.suppress(FileNotFoundError):
                    times.append(os.stat(os.path.join(directory, name)).st_mtime)
        if times:
            return max(times)
        try:  # a create cut short before any file: the directory's own time
            return os.stat(directory).st_mtime
        except FileNotFoundError:
            return 0.0

    def purge_upload(self, upload_id: str, cutoff: float) -> bool:
        if self.upload_last_used(upload_id) >= cutoff:
            return False
        try:
            with locked(os.path.join(self._upload_dir(upload_id), "lock"), wait=False):
                # Again under the lock: a request may have written to it meanwhile.
                if self.upload_last_used(upload_id) >= cutoff:
                    return False
                self._remove_upload(upload_id)
                return True
        except (FileNotFoundError, BlockingIOError):  # gone already, or a request is using it right now
            return False

    def purge_temp_files(self, cutoff: float, dry_run: bool = False) -> int:
        removed = 0
        for dirpath, _, filenames in os.walk(self.root):
            for name in filenames:
                if not name.startswith(TEMP_PREFIX):
                    continue
                path = os.path.join(dirpath, name)
                with contextlib.suppress(FileNotFoundError):
                    if os.stat(path).st_mtime < cutoff:
                        if not dry_run:
                            os.unlink(path)
                        removed += 1
        return removed


class FilesystemDriver(StorageDriver):
    """Files under `root`; writes are atomic (temp file, fsync, rename) and readers get real files (sendfile)."""

    params = ("rootdirectory",)

    def __init__(self, root: str):
        self.root = os.path.abspath(root)

    @classmethod
    def from_params(cls, params: dict) -> "FilesystemDriver":
        return cls(params["rootdirectory"])

    def _full(self, path: str) -> str:
        return os.path.join(self.root, check_path(path)) if path else self.root

    def get_content(self, path: str) -> bytes:
        with open(self._full(path), "rb") as f:
            return f.read()

    def put_content(self, path: str, data: bytes, durable: bool = True) -> None:
        full = self._full(path)
        try:
            atomic_write(full, data, durable=durable)
        except FileNotFoundError:  # the first file of its directory
            os.makedirs(os.path.dirname(full), exist_ok=True)
            atomic_write(full, data, durable=durable)

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        f = open(self._full(path), "rb")
        if offset:
            f.seek(offset)
        return f

    def writer(self, path: str, append: bool = False) -> FileWriter:
        full = self._full(path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        return _Writer(full, append)

    def stat(self, path: str) -> FileInfo:
        st = os.stat(self._full(path))
        return FileInfo(path, st.st_size, st.st_mtime, stat.S_ISDIR(st.st_mode))

    def list(self, path: str) -> list[str]:
        try:
            names = os.listdir(self._full(path))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [n for n in names if not n.startswith(TEMP_PREFIX)]

    def walk(self, path: str) -> Iterator[tuple[str, list[str], list[str]]]:
        for dirpath, dirnames, filenames in os.walk(self._full(path)):
            rel = os.path.relpath(dirpath, self.root)
            # dirnames is os.walk's own list, so a caller's pruning takes effect.
            yield ("" if rel == "." else rel), dirnames, [n for n in filenames if not n.startswith(TEMP_PREFIX)]

    def move(self, src: str, dst: str) -> None:
        full_dst = self._full(dst)
        os.makedirs(os.path.dirname(full_dst), exist_ok=True)
        os.rename(self._full(src), full_dst)
        fsync_dir(os.path.dirname(full_dst))

    def delete(self, path: str) -> bool:
        full = self._full(path)
        try:
            os.unlink(full)
        except FileNotFoundError:
            return False
        except IsADirectoryError:
            shutil.rmtree(full, ignore_errors=True)  # a concurrent delete may take parts of it first
        return True

    def touch(self, path: str) -> None:
        os.utime(self._full(path))

    def lock(self, path: str, shared: bool = False, wait: bool = True) -> contextlib.AbstractContextManager[None]:
        # The lock file's directory is not created: locking inside a removed directory fails (FileNotFoundError).
        return locked(self._full(path), shared=shared, wait=wait)

    def purge_partial_writes(self, cutoff: float, dry_run: bool = False) -> int:
        removed = 0
        for dirpath, _, filenames in os.walk(self.root):
            for name in filenames:
                if not name.startswith(TEMP_PREFIX):
                    continue
                path = os.path.join(dirpath, name)
                with contextlib.suppress(FileNotFoundError):
                    if os.stat(path).st_mtime < cutoff:
                        if not dry_run:
                            os.unlink(path)
                        removed += 1
        return removed

    def local_path(self, path: str) -> str | None:
        return self._full(path)


class _Writer(FileWriter):
    """Appends to the file in place, starting writeback as it goes so the fsync at commit has little left."""

    def __init__(self, path: str, append: bool):
        self._path = path
        self._file = open(path, "ab" if append else "wb")
        self._size = self._flushed = os.fstat(self._file.fileno()).st_size

    def write(self, data: bytes) -> int:
        n = self._file.write(data)
        self._size += n
        if self._size - self._flushed >= WRITEBACK_STEP:
            self._file.flush()
            start_writeback(self._file.fileno(), self._flushed, self._size - self._flushed)
            self._flushed = self._size
        return n

    @property
    def size(self) -> int:
        return self._size

    def commit(self) -> None:
        if self._file.closed:
            raise ValueError(f"writer of {self._path} is closed")
        with self._file:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def cancel(self) -> None:
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)


def _write_quick(path: str, text: str) -> None:
    """Replace a small cache file by rename, without fsync: losing it in a crash only costs a rehash."""
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(text)
    os.rename(tmp, path)


def _unlink(path: str) -> bool:
    """Remove a file; False if it was not there."""
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _iter_digest_dir(base: str) -> Iterator[Digest]:
    """Digests stored as `<base>/<algo>/<hex>` entries."""
    for algo in _listdir(base):
        for hexpart in _listdir(os.path.join(base, algo)):
            with contextlib.suppress(InvalidDigest):
                yield Digest.parse(f"{algo}:{hexpart}")
