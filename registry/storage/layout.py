"""The registry's storage layout, written once on top of any storage driver.

Blobs by digest, per-repository links, manifest revisions, tags, referrers, resumable upload sessions (with their
hash state) and the cleanup of stale ones.  The paths are those the registry has always stored:

    blobs/<algo>/<hex[:2]>/<hex>/data                      blob content
    repositories/<name>/_layers/<algo>/<hex>               link of a blob into a repository (holds the digest)
    repositories/<name>/_manifests/revisions/<algo>/<hex>  link of a manifest (holds its media type)
    repositories/<name>/_manifests/tags/<tag>              a tag (holds the manifest digest)
    repositories/<name>/_referrers/<algo>/<hex>/<algo>-<hex>  a referrer of a subject (its descriptor, JSON)
    uploads/<id>/{info,data,lock}                          an upload session (the digest so far: data's note;
                                                           info's "fresh": no writer has opened its data yet)
    gc.lock                                                shared by writers that make a blob live, exclusive for GC
    gc.clock                                               written by GC to read the storage's clock (its mtime)

Safety against a concurrent GC: every write that makes a blob live refreshes its mtime under the shared gc.lock,
and GC deletes a blob only under the exclusive lock after re-checking its mtime (see registry.gc).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from dockyard.digest import Digest, InvalidDigest, Reader, verify
from dockyard.errors import DigestMismatch, DockyardError
from dockyard.reference import NAME_MAX, REPOSITORY_RE, TAG_RE
from registry.storage.driver import FileWriter, StorageDriver
from registry.storage.locks import Hold

_UPLOAD_ID_RE = re.compile(r"^[0-9a-f]{32}$")
_FRESH = "fresh"  # the info file's mark of a session no writer has opened
# Hash state kept in-process so a chunk sequence served by one worker is hashed once, while streaming.
_HASHER_CACHE_MAX = 256
# Manifest bytes by digest never change: each process keeps the latest it read or wrote, up to this many bytes, so
# a manifest GET reads only its links (distribution caches blob descriptors in memory for the same reason).
_MANIFEST_CACHE_BYTES = 8 << 20
# Reads of an upload's body: gunicorn's body reader costs per call, so bigger than a client's CHUNK (at 256 KiB a
# 100 MB push to one worker took ~0.38 s against ~0.32 s at 1 MiB).
_BODY_READ = 1 << 20


class _Hasher(Protocol):
    """A running hash (hashlib's objects)."""

    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...
# Top-level directories a registry's store has from the start (for drivers that have directories).
_TOP = ("blobs", "repositories", "uploads")


class UploadUnknown(DockyardError):
    """No upload session has this id (or it belongs to another repository)."""


class UploadOffsetMismatch(DockyardError):
    """A chunk did not start where the upload currently ends."""

    def __init__(self, size: int):
        super().__init__(f"chunk does not start at offset {size}")
        self.size = size


@dataclass(frozen=True)
class BlobInfo:
    """A stored blob: its size and last-use time."""

    digest: Digest
    size: int
    mtime: float = 0.0


@dataclass(frozen=True)
class UploadInfo:
    """An open upload session."""

    id: str
    repository: str
    size: int
    started: float


def _blob_path(d: Digest) -> str:
    return f"blobs/{d.algorithm}/{d.hex[:2]}/{d.hex}/data"


def _repo_dir(repo: str) -> str:
    # Handlers validate names; this re-check keeps every path inside the store whatever the caller does.
    if len(repo) > NAME_MAX or not REPOSITORY_RE.match(repo):
        raise ValueError(f"invalid repository name {repo!r}")
    return f"repositories/{repo}"


def _layer_link(repo: str, d: Digest) -> str:
    return f"{_repo_dir(repo)}/_layers/{d.algorithm}/{d.hex}"


def _revision_link(repo: str, d: Digest) -> str:
    return f"{_repo_dir(repo)}/_manifests/revisions/{d.algorithm}/{d.hex}"


def _tags_dir(repo: str) -> str:
    return f"{_repo_dir(repo)}/_manifests/tags"


def _tag_path(repo: str, tag: str) -> str:
    if not TAG_RE.match(tag):
        raise ValueError(f"invalid tag {tag!r}")
    return f"{_tags_dir(repo)}/{tag}"


def _referrers_dir(repo: str, subject: Digest) -> str:
    return f"{_repo_dir(repo)}/_referrers/{subject.algorithm}/{subject.hex}"


def _upload_dir(upload_id: str) -> str:
    if not _UPLOAD_ID_RE.match(upload_id):
        raise UploadUnknown(f"unknown upload {upload_id!r}")
    return f"uploads/{upload_id}"


class Layout:
    """Content-addressed blobs, per-repository links, manifests, tags, referrers and upload sessions on a driver."""

    def __init__(self, driver: StorageDriver):
        self.driver = driver
        self._hashers: OrderedDict[str, tuple[_Hasher, int]] = OrderedDict()
        self._hashers_lock = threading.Lock()
        self._manifests: OrderedDict[Digest, bytes] = OrderedDict()
        self._manifest_bytes = 0
        self._manifests_lock = threading.Lock()

    def create(self) -> None:
        """Make the store's top-level directories (a server does on start; GC only works on an existing store)."""
        for name in _TOP:
            self.driver.mkdir(name)

    def exists(self) -> bool:
        """Whether the store holds a registry."""
        return any(self._exists(name) for name in _TOP)

    def _exists(self, path: str) -> bool:
        try:
            self.driver.stat(path)
            return True
        except FileNotFoundError:
            return False

    def _gc_guard(self, exclusive: bool = False) -> contextlib.AbstractContextManager[Hold]:
        """Writers that make a blob live hold this shared; GC holds it exclusive to delete."""
        return self.driver.lock("gc.lock", shared=not exclusive)

    def clock(self) -> float:
        """Now, on the clock the storage's mtimes come from (S3's: the S3 server's, not this host's)."""
        self.driver.put_content("gc.clock", b"", durable=False)
        return self.driver.stat("gc.clock").mtime

    # -- blobs ----------------------------------------------------------------------------------------------
    def blob_info(self, digest: Digest) -> BlobInfo | None:
        """Size and last-use time of a stored blob, or None."""
        try:
            st = self.driver.stat(_blob_path(digest))
        except FileNotFoundError:
            return None
        return BlobInfo(digest, st.size, st.mtime)

    def open_blob(self, digest: Digest, offset: int = 0) -> BinaryIO:
        """Open a stored blob for reading from `offset`; raises FileNotFoundError when absent."""
        return self.driver.reader(_blob_path(digest), offset)

    def blob_redirect_url(self, digest: Digest) -> str | None:
        """A URL the client may fetch the blob from directly, when the driver offers one."""
        return self.driver.redirect_url(_blob_path(digest))

    def put_blob_bytes(self, data: bytes, digest: Digest) -> None:
        """Store small content (a manifest) under its digest."""
        with self._gc_guard():
            self._put_blob_bytes_locked(data, digest)

    def _put_blob_bytes_locked(self, data: bytes, digest: Digest) -> None:
        # Written whether or not it is there: the same bytes, and a write refreshes the use time as a touch would,
        # without a failed touch first for new content (an S3 round trip).
        self.driver.put_content(_blob_path(digest), data)

    def iter_blobs(self) -> Iterator[tuple[Digest, float]]:
        """Every stored blob with its last-use time (for GC)."""
        for algo in self.driver.list("blobs"):
            for prefix in self.driver.list(f"blobs/{algo}"):
                for hexpart in self.driver.list(f"blobs/{algo}/{prefix}"):
                    try:
                        d = Digest.parse(f"{algo}:{hexpart}")
                        yield d, self.driver.stat(_blob_path(d)).mtime
                    except (InvalidDigest, FileNotFoundError):
                        continue

    def delete_blob_if_older(self, digest: Digest, cutoff: float) -> bool:
        """Remove a blob unless it was used after `cutoff`; atomic against concurrent links."""
        path = _blob_path(digest)
        with self._gc_guard(exclusive=True) as hold:
            try:
                if self.driver.stat(path).mtime >= cutoff:
                    return False
            except FileNotFoundError:
                return False
            hold.check()  # a lease that ended (a Redis lock) lets a writer in: no delete then
            # Its directory with it: under the exclusive lock no writer has a file in progress there.
            self.driver.delete(path.rsplit("/", 1)[0])
        return True

    # -- per-repository blob links --------------------------------------------------------------------------
    def blob_linked(self, repo: str, digest: Digest) -> BlobInfo | None:
        """The blob if it is stored and linked into `repo`."""
        if not self.driver.is_file(_layer_link(repo, digest)):
            return None
        return self.blob_info(digest)

    def link_blob(self, repo: str, digest: Digest, linked: bool = False) -> bool:
        """Link an existing blob into `repo` and mark it as just used; False if the blob is absent. `linked`: the
        caller saw the link (blob_linked), so only the use time is refreshed."""
        with self._gc_guard():
            try:
                self.driver.touch(_blob_path(digest))
            except FileNotFoundError:
                return False
            if not linked:
                self._write_link(_layer_link(repo, digest), digest)
        return True

    def _write_link(self, link: str, digest: Digest) -> None:
        # Written without looking first, as distribution does: a lookup of an absent path costs more than the write
        # on S3, and the content is the same either way.
        self.driver.put_content(link, str(digest).encode())

    def unlink_blob(self, repo: str, digest: Digest) -> bool:
        """Remove a repository's link to a blob; False if there was none."""
        return self.driver.delete(_layer_link(repo, digest))

    def unlink_blob_if_absent(self, repo: str, digest: Digest) -> bool:
        """Remove a link whose blob is gone (GC); atomic against a concurrent re-upload."""
        with self._gc_guard(exclusive=True):
            if self.driver.is_file(_blob_path(digest)):
                return False
            return self.unlink_blob(repo, digest)

    def iter_blob_links(self, repo: str) -> Iterator[Digest]:
        """Every blob linked into `repo`."""
        yield from self._iter_digest_dir(f"{_repo_dir(repo)}/_layers")

    def _iter_digest_dir(self, base: str) -> Iterator[Digest]:
        """Digests stored as `<base>/<algo>/<hex>` entries."""
        for algo in self.driver.list(base):
            for hexpart in self.driver.list(f"{base}/{algo}"):
                with contextlib.suppress(InvalidDigest):
                    yield Digest.parse(f"{algo}:{hexpart}")

    # -- manifests ------------------------------------------------------------------------------------------
    def put_manifest(self, repo: str, digest: Digest, data: bytes, media_type: str) -> None:
        """Store a manifest's bytes and link it into `repo` with its media type."""
        with self._gc_guard():
            self._put_blob_bytes_locked(data, digest)
            self.driver.put_content(_revision_link(repo, digest), media_type.encode())
        self._remember_manifest(digest, data)

    def _remember_manifest(self, digest: Digest, data: bytes) -> None:
        with self._manifests_lock:
            if digest in self._manifests or len(data) > _MANIFEST_CACHE_BYTES // 16:
                return
            self._manifests[digest] = data
            self._manifest_bytes += len(data)
            while self._manifest_bytes > _MANIFEST_CACHE_BYTES:
                self._manifest_bytes -= len(self._manifests.popitem(last=False)[1])

    def manifest_media_type(self, repo: str, digest: Digest) -> str | None:
        """The media type of a manifest linked into `repo`, or None."""
        try:
            return self.driver.get_content(_revision_link(repo, digest)).decode()
        except FileNotFoundError:
            return None

    def get_manifest(self, repo: str, digest: Digest) -> tuple[bytes, str] | None:
        """A manifest's exact bytes and media type, or None when it is not in `repo`."""
        media_type = self.manifest_media_type(repo, digest)  # the link says whether it is in `repo`, always read
        if media_type is None:
            return None
        with self._manifests_lock:
            data = self._manifests.get(digest)
            if data is not None:
                self._manifests.move_to_end(digest)
                return data, media_type
        try:
            data = self.driver.get_content(_blob_path(digest))
        except FileNotFoundError:
            return None
        if Digest.of_bytes(data, digest.algorithm) == digest:  # only content that matches its name is kept
            self._remember_manifest(digest, data)
        return data, media_type

    def delete_manifest(self, repo: str, digest: Digest) -> bool:
        """Unlink a manifest revision (and tags pointing at it) from `repo`."""
        if not self.driver.delete(_revision_link(repo, digest)):
            return False
        for tag in self.list_tags(repo) or []:
            if self.resolve_tag(repo, tag) == digest:
                self.delete_tag(repo, tag)
        return True

    def iter_manifests(self, repo: str) -> Iterator[Digest]:
        """Every manifest revision linked into `repo`."""
        yield from self._iter_digest_dir(f"{_repo_dir(repo)}/_manifests/revisions")

    # -- tags -----------------------------------------------------------------------------------------------
    def set_tag(self, repo: str, tag: str, digest: Digest) -> None:
        """Point a tag at a manifest digest."""
        self.driver.put_content(_tag_path(repo, tag), str(digest).encode())

    def resolve_tag(self, repo: str, tag: str) -> Digest | None:
        """The digest a tag points at, or None."""
        try:
            return Digest.parse(self.driver.get_content(_tag_path(repo, tag)).decode("ascii"))
        except (FileNotFoundError, InvalidDigest):
            return None

    def tag_time(self, repo: str, tag: str) -> float | None:
        """When a tag was last written (a pull-through cache's last check with its upstream), or None."""
        try:
            return self.driver.stat(_tag_path(repo, tag)).mtime
        except FileNotFoundError:
            return None

    def delete_tag(self, repo: str, tag: str) -> bool:
        """Remove a tag; False if it did not exist."""
        return self.driver.delete(_tag_path(repo, tag))

    def list_tags(self, repo: str) -> list[str] | None:
        """All tags of `repo` in lexical order, or None when the repository does not exist."""
        if not self.repository_exists(repo):
            return None
        return sorted(t for t in self.driver.list(_tags_dir(repo)) if not t.startswith("."))

    # -- referrers ------------------------------------------------------------------------------------------
    def add_referrer(self, repo: str, subject: Digest, descriptor: dict) -> None:
        """Record that a manifest (described by `descriptor`) refers to `subject`."""
        d = Digest.parse(descriptor["digest"])
        path = f"{_referrers_dir(repo, subject)}/{d.algorithm}-{d.hex}"
        self.driver.put_content(path, json.dumps(descriptor, sort_keys=True).encode())

    def remove_referrer(self, repo: str, subject: Digest, digest: Digest) -> None:
        """Forget a referrer."""
        self.driver.delete(f"{_referrers_dir(repo, subject)}/{digest.algorithm}-{digest.hex}")

    def list_referrers(self, repo: str, subject: Digest) -> list[dict]:
        """Descriptors of every manifest in `repo` whose subject is `subject`."""
        directory = _referrers_dir(repo, subject)
        out = []
        for name in sorted(self.driver.list(directory)):
            if name.startswith("."):
                continue
            with contextlib.suppress(FileNotFoundError, ValueError):
                out.append(json.loads(self.driver.get_content(f"{directory}/{name}")))
        return out

    # -- repositories ---------------------------------------------------------------------------------------
    def repository_exists(self, repo: str) -> bool:
        """Whether anything was ever pushed to `repo`."""
        try:
            return self.driver.stat(_repo_dir(repo)).is_dir
        except FileNotFoundError:
            return False

    def repositories(self) -> list[str]:
        """All repository names in lexical order."""
        names = []
        for dirpath, dirnames, _ in self.driver.walk("repositories"):
            if "_manifests" in dirnames or "_layers" in dirnames:
                names.append(dirpath.partition("/")[2])
            # Repository path components never start with "_", so these are our own metadata directories.
            dirnames[:] = [d for d in dirnames if not d.startswith("_") and not d.startswith(".")]
        return sorted(names)

    # -- uploads --------------------------------------------------------------------------------------------
    def create_upload(self, repo: str) -> UploadInfo:
        """Open a new upload session."""
        _repo_dir(repo)
        upload_id = uuid.uuid4().hex
        started = time.time()
        # The info file alone makes the session (written atomically); its data appears with the first chunk, and
        # a session without data has 0 bytes.  "fresh" spares the first writer looking for data (two S3 round trips
        # that find nothing); the first writer that keeps data drops it, before writing any.
        self._write_meta(upload_id, {"repository": repo, "started": started, _FRESH: True})
        return UploadInfo(upload_id, repo, 0, started)

    def _write_meta(self, upload_id: str, meta: dict) -> None:
        self.driver.put_content(f"uploads/{upload_id}/info", json.dumps(meta).encode())

    def _read_meta(self, upload_id: str, repo: str | None, locked: bool = False) -> dict:
        """A session's info file; raises UploadUnknown when it is missing, unreadable or of another repository.
        `locked`: read under the session's lock, whose files go too when the session is missing."""
        directory = _upload_dir(upload_id)
        try:
            meta = json.loads(self.driver.get_content(f"{directory}/info"))
        except FileNotFoundError:
            if locked:  # gone for good (ids are never reused), or never was
                self.driver.locks.forget(directory)
            raise UploadUnknown(f"unknown upload {upload_id!r}") from None
        except ValueError:
            raise UploadUnknown(f"unknown upload {upload_id!r}") from None
        if not isinstance(meta, dict) or (repo is not None and meta.get("repository") != repo):
            raise UploadUnknown(f"unknown upload {upload_id!r}")
        return meta

    def _read_info(self, upload_id: str, repo: str | None) -> UploadInfo:
        meta = self._read_meta(upload_id, repo)
        try:
            size = 0 if meta.get(_FRESH) is True else self.driver.stat(f"uploads/{upload_id}/data").size
        except FileNotFoundError:  # no chunk yet
            size = 0
        return UploadInfo(upload_id, meta.get("repository", ""), size, float(meta.get("started", 0)))

    def upload_info(self, repo: str, upload_id: str) -> UploadInfo:
        """Current state of a session; raises UploadUnknown."""
        return self._read_info(upload_id, repo)

    @contextlib.contextmanager
    def _upload_locked(self, repo: str, upload_id: str) -> Iterator[dict]:
        """Hold the session's lock; its info file."""
        with contextlib.ExitStack() as stack:
            # Whether the session is there is read under the lock, from its info, not looked up before it as well.
            try:
                stack.enter_context(self.driver.lock(f"{_upload_dir(upload_id)}/lock", check_dir=False))
            except FileNotFoundError:  # no such session, or it was just removed
                raise UploadUnknown(f"unknown upload {upload_id!r}") from None
            yield self._read_meta(upload_id, repo, locked=True)

    @contextlib.contextmanager
    def _session(self, repo: str, upload_id: str, last: bool) -> Iterator[tuple[UploadInfo, FileWriter]]:
        """Under the session's lock: its state and a writer appending to its data (closed after, keeping what it
        wrote for the next chunk). The writer tells the size, so the data is looked up once per request, and not at
        all in a fresh session. `last`: the request ends the session, which keeps no data it failed to finish."""
        with self._upload_locked(repo, upload_id) as meta:
            fresh = meta.pop(_FRESH, None) is True
            if fresh and not last:  # this writer keeps data: the next one must look for it
                self._write_meta(upload_id, meta)
            with self.driver.writer(f"uploads/{upload_id}/data", append=True, new=fresh) as writer:
                try:
                    yield UploadInfo(upload_id, repo, writer.size, float(meta.get("started", 0))), writer
                except BaseException:
                    if fresh and last:  # the session stays fresh: without data
                        writer.cancel()
                    raise

    def append_upload(self, repo: str, upload_id: str, stream: Reader, offset: int | None) -> UploadInfo:
        """Stream a chunk onto the session; `offset` (when given) must equal its current size."""
        with self._session(repo, upload_id, last=False) as (info, writer):
            if offset is not None and offset != info.size:
                raise UploadOffsetMismatch(info.size)
            self._append(info, writer, stream, last=False)
            return UploadInfo(upload_id, repo, writer.size, info.started)

    def _append(self, info: UploadInfo, writer: FileWriter, stream: Reader, last: bool) -> _Hasher | None:
        """Append everything in `stream`, hashing as it goes when the hash so far is known; that hash."""
        hasher = self._take_hasher(info.id, info.size)
        complete = False
        try:
            while chunk := stream.read(_BODY_READ):
                writer.write(chunk)
                if hasher is not None:
                    hasher.update(chunk)
            complete = True
        finally:
            # Even a broken-off chunk leaves a consistent (data, hash) pair for the client to resume from.
            if hasher is not None and not (last and complete):
                self._keep_hasher(info.id, hasher, writer.size)
                # Another worker (or replica) may get the closing PUT: the digest so far goes with the data, so it
                # need not rehash; in the writer's note, which costs S3 no request of its own.
                writer.note = f"{writer.size} {hasher.hexdigest()}".encode()
        return hasher

    def _take_hasher(self, upload_id: str, size: int) -> _Hasher | None:
        if size == 0:
            return hashlib.sha256()
        with self._hashers_lock:
            entry = self._hashers.pop(upload_id, None)
        if entry is not None and entry[1] == size:
            return entry[0]
        return None

    def _keep_hasher(self, upload_id: str, hasher: _Hasher, size: int) -> None:
        with self._hashers_lock:
            self._hashers[upload_id] = (hasher, size)
            while len(self._hashers) > _HASHER_CACHE_MAX:
                self._hashers.popitem(last=False)

    def commit_upload(self, repo: str, upload_id: str, digest: Digest, stream: Reader | None = None) -> BlobInfo:
        """Append a last chunk, verify against `digest` (DigestMismatch discards the session), store and link."""
        data = f"uploads/{upload_id}/data"
        with self._session(repo, upload_id, last=True) as (info, writer):
            hasher = self._append(info, writer, stream or io.BytesIO(), last=True)
            size = writer.size
            found = self._known_digest(writer, digest.algorithm, hasher)
            committed = found is None
            if found is None:  # read back, so committed first
                writer.commit()
                with self.driver.reader(data) as f:
                    found = Digest.of_stream(f, digest.algorithm)[0]
            try:
                verify(digest, found, "upload")
            except DigestMismatch:
                writer.cancel()  # the whole session goes, and an open writer would keep its bytes on close
                self._remove_upload(upload_id, finished=True)
                raise
            dest = _blob_path(digest)
            # Stored even when the blob is there already (the same bytes): the write refreshes its use time, as a
            # touch would, and a push of a new blob (the usual one) makes no failed touch first.
            with self._gc_guard():
                if committed:
                    self.driver.move(data, dest)
                else:  # straight to its place when the driver can (one PUT on S3), else committed then moved
                    self.driver.commit_to(writer, data, dest)
                self._write_link(_layer_link(repo, digest), digest)
            self._remove_upload(upload_id, finished=True)
            return BlobInfo(digest, size)

    @staticmethod
    def _known_digest(writer: FileWriter, algorithm: str, hasher: _Hasher | None) -> Digest | None:
        """The digest of the session's bytes without reading them: from this request's running hash or the one
        another worker noted with them (for exactly this many bytes); None when neither is there."""
        if algorithm != "sha256":
            return None
        if hasher is not None:
            return Digest("sha256", hasher.hexdigest())
        try:
            noted_size, hexdigest = writer.note.decode("ascii").split()
            if int(noted_size) == writer.size:
                return Digest.parse(f"sha256:{hexdigest}")
        except (ValueError, InvalidDigest):
            pass
        return None

    def cancel_upload(self, repo: str, upload_id: str) -> None:
        """Discard a session; raises UploadUnknown."""
        with self._upload_locked(repo, upload_id):
            self._remove_upload(upload_id)

    def _remove_upload(self, upload_id: str, finished: bool = False) -> None:
        """Remove a session; `finished`: its data's writer was committed or cancelled, so the files are known."""
        with self._hashers_lock:
            self._hashers.pop(upload_id, None)
        # One delete of the whole directory: cut short, a session without its info or data is unknown to requests
        # either way, and GC's stale-upload purge removes what is left (a writer killed before it kept its data
        # left a write only the full delete finds, and the purge of partial writes).
        if finished:
            self.driver.delete_files(_upload_dir(upload_id), ("info", "data"))
        else:
            self.driver.delete(_upload_dir(upload_id))

    def iter_uploads(self) -> Iterator[UploadInfo]:
        """Every open session (for GC and metrics)."""
        for upload_id in self.driver.list("uploads"):
            try:
                yield self._read_info(upload_id, None)
            except UploadUnknown:
                # A session whose info never landed (crash during create) is reported as started at its mtime.
                with contextlib.suppress(FileNotFoundError):
                    mtime = self.driver.stat(f"uploads/{upload_id}").mtime
                    if _UPLOAD_ID_RE.match(upload_id):
                        yield UploadInfo(upload_id, "", 0, mtime)

    def upload_count(self) -> int:
        """How many sessions are open (the uploads-in-progress gauge)."""
        return len(self.driver.list("uploads"))

    def upload_last_used(self, upload_id: str) -> float:
        """When a session last changed (0.0 if it is gone)."""
        directory = _upload_dir(upload_id)
        times = []
        for name in self.driver.list(directory):
            if name != "lock":  # taking the lock (GC does too) is no use of the session
                with contextlib.suppress(FileNotFoundError):
                    times.append(self.driver.stat(f"{directory}/{name}").mtime)
        if times:
            return max(times)
        try:  # a create cut short before any file: the directory's own time
            return self.driver.stat(directory).mtime
        except FileNotFoundError:
            return 0.0

    def purge_upload(self, upload_id: str, cutoff: float) -> bool:
        """Remove a session of any repository unchanged since `cutoff` and not in use by a request right now
        (stale-upload cleanup); whether it did."""
        if self.upload_last_used(upload_id) >= cutoff:
            return False
        try:
            with self.driver.lock(f"{_upload_dir(upload_id)}/lock", wait=False):
                # Again under the lock: a request may have written to it meanwhile.
                if self.upload_last_used(upload_id) >= cutoff:
                    return False
                self._remove_upload(upload_id)
                return True
        except (FileNotFoundError, BlockingIOError):  # gone already, or a request is using it right now
            return False

    def purge_temp_files(self, cutoff: float, dry_run: bool = False) -> int:
        """Remove what writers killed mid-write left behind, older than `cutoff`; how many."""
        return self.driver.purge_partial_writes(cutoff, dry_run)
