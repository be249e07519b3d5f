"""Pull-through cache (distribution's proxy mode): the registry serves one upstream registry's content, fetching
and storing it on first pull.

- A manifest by digest is served from the cache when present, else fetched (digest verified) and stored.
- A tag is believed for `proxy.ttl` after it was last checked; then the upstream is asked (HEAD) which digest it
  names now, and a changed manifest is fetched.  When the upstream fails, the last known digest is served.
- A blob is fetched on a miss, only if a cached manifest of the repository declares it, and never longer than
  declared: it streams to the client while an upload session stores it; the last piece is held back until the
  digest is verified, so a client never receives a whole wrong blob and the store keeps nothing of one.
- Two requests for the same missing blob in one worker download it twice but store it once (the second one only
  relays); across workers both may store it, and the upload commit (an atomic move) keeps the store consistent.

The upstream is reached through the registry client (registry.client): its transport answers Basic and Bearer
challenges with the configured credentials, and bounds what it reads.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from urllib.parse import urlsplit

from dockyard import mediatypes as mt
from dockyard.digest import CHUNK, Digest, InvalidDigest
from dockyard.distribution import RegistryError
from dockyard.errors import DigestMismatch, DockyardError, NotFound
from dockyard.image import Descriptor
from registry import manifests
from registry.client.auth import Authenticator, Credentials
from registry.client.config import ClientConfig
from registry.client.progress import Progress
from registry.client.pull import ACCEPT, BlobReader, fetch_manifest
from registry.client.remote import Remote
from registry.client.transport import Transport, check, one_line
from registry.config import Config
from registry.context import ResponseAborted
from registry.names import is_tag
from registry.storage import BlobInfo, Layout, UploadUnknown

log = logging.getLogger("registry.proxy")

# Pieces of a blob queued between the upstream and the store before the download waits for the disk.
_QUEUED_PIECES = 8


class Proxy:
    """The cache's view of its upstream: refresh manifests and tags, fetch blobs into the store."""

    def __init__(self, config: Config, storage: Layout):
        assert config.proxy_remote_url, "a proxy needs proxy.remoteurl"
        url = urlsplit(config.proxy_remote_url)
        self.host, self.storage = url.netloc, storage
        self.ttl = config.proxy_ttl_seconds
        self.manifest_max = config.manifest_max
        creds = Credentials(config.proxy_username, config.proxy_password or "") if config.proxy_username else None
        # One attempt: when the upstream is down, the cache answers at once rather than after retries.
        client = ClientConfig(max_attempts=1, read_timeout=float(config.proxy_timeout), path="[proxy]")
        self.transport = Transport(self.host, client, Authenticator(self.host, creds))
        self.transport.base = f"{url.scheme}://{url.netloc}"
        self._downloading: set[Digest] = set()
        self._lock = threading.Lock()

    # -- manifests ------------------------------------------------------------------------------------------
    def refresh_manifest(self, name: str, reference: str) -> None:
        """Make the cache hold what `reference` (a tag or a digest) names upstream, as far as it can tell."""
        if ":" in reference:
            try:
                digest = Digest.parse(reference)
            except InvalidDigest:
                return  # the endpoint answers DIGEST_INVALID
            if self.storage.get_manifest(name, digest) is None:
                self._fetch_manifest(name, digest, reference)
            return
        if not is_tag(reference):
            return  # the endpoint answers MANIFEST_UNKNOWN
        cached = self.storage.resolve_tag(name, reference)
        checked = self.storage.tag_time(name, reference)
        if cached is not None and checked is not None and time.time() - checked < self.ttl \
                and self.storage.get_manifest(name, cached) is not None:
            return
        try:
            now = self._head_digest(name, reference)
            if now is None or now != cached or self.storage.get_manifest(name, now) is None:
                now = self._fetch_manifest(name, now or reference, reference)
            self.storage.set_tag(name, reference, now)  # its time is when the upstream last confirmed it
        except RegistryError as e:
            if cached is None or self.storage.get_manifest(name, cached) is None:
                raise
            log.warning("serving cached %s:%s (%s): %s", name, reference, cached, e.message)

    def _head_digest(self, name: str, tag: str) -> Digest | None:
        """The digest the upstream's tag names now (None when its answer carries none)."""
        with self._upstream(f"manifest {name}:{tag}", "MANIFEST_UNKNOWN"):
            r = check(self.transport.request("HEAD", f"/v2/{name}/manifests/{tag}", (_scope(name),),
                                             headers={"Accept": ACCEPT}), f"{self.host}/{name}:{tag}")
            r.close()
        try:
            return Digest.parse(r.headers.get("Docker-Content-Digest") or "")
        except InvalidDigest:
            return None

    def _fetch_manifest(self, name: str, ref: str | Digest, shown: str) -> Digest:
        """GET a manifest from the upstream, check it as a push would be, and store it; its digest."""
        with self._upstream(f"manifest {name}:{shown}", "MANIFEST_UNKNOWN"):
            data, media_type, digest = fetch_manifest(self.transport, Remote(self.host, name), ref,
                                                      f"{self.host}/{name}:{shown}")
            if len(data) > self.manifest_max:
                raise RegistryError(message=f"manifest larger than {self.manifest_max} bytes")
            parsed = manifests.parse(data, media_type)
        self.storage.put_manifest(name, digest, data, parsed.media_type)
        if parsed.subject is not None:
            self.storage.add_referrer(name, parsed.subject.digest, parsed.referrer_descriptor(digest, len(data)))
        return digest

    # -- blobs ----------------------------------------------------------------------------------------------
    def blob(self, name: str, digest: Digest, stream: bool) -> tuple[BlobInfo | None, Iterable[bytes] | None]:
        """A blob the repository lacks: (its info, None) once stored, or with `stream` (its info, a body that
        stores it as it is sent); (None, None) when no cached manifest of the repository declares it."""
        size = self._declared_size(name, digest)
        if size is None:
            return None, None
        if self.storage.link_blob(name, digest):  # stored already, for another repository
            return self.storage.blob_linked(name, digest), None
        stream = stream and size > 0  # an empty body is never iterated: store it now
        with self._lock:
            first_here = digest not in self._downloading
            self._downloading.add(digest)

        def done() -> None:
            reader.close()
            if first_here:
                with self._lock:
                    self._downloading.discard(digest)

        reader = BlobReader(self.transport, Remote(self.host, name), Descriptor(mt.OCI_LAYER_GZIP, digest, size),
                            digest.short, Progress(), threading.Event())
        try:
            with self._upstream(f"blob {digest} of {name}", "BLOB_UNKNOWN"):
                first = reader.read(CHUNK)  # the upstream's refusal is still an answer of ours, not a cut
            # Another request of this worker is storing it: this one only relays (a fill must store).
            body = self._relay(name, digest, reader, first, store=first_here or not stream)
        except BaseException:
            done()
            raise
        if stream:
            return BlobInfo(digest, size), _Streamed(body, done)
        try:
            for _ in body:
                pass
        finally:
            done()
        return self.storage.blob_linked(name, digest), None

    def _declared_size(self, name: str, digest: Digest) -> int | None:
        """The size a cached image manifest of `name` gives the blob, or None when none lists it."""
        wanted = str(digest)
        for manifest_digest in self.storage.iter_manifests(name):
            found = self.storage.get_manifest(name, manifest_digest)
            if found is None or found[1] not in mt.IMAGE_MANIFESTS:
                continue
            try:  # the store may hold manifests from before it was a cache: take nothing for granted
                doc = manifests.load_json(found[0])
                descs = [doc["config"], *doc["layers"]]  # type: ignore[index]
            except (RegistryError, KeyError, TypeError):
                continue
            for desc in descs:
                if not isinstance(desc, dict) or desc.get("digest") != wanted:
                    continue
                size = desc.get("size")
                if isinstance(size, int) and not isinstance(size, bool):
                    return size
        return None

    def _relay(self, name: str, digest: Digest, reader: BlobReader, first: bytes, store: bool) -> Iterator[bytes]:
        """Yield the upstream body (storing it when `store`), the last piece only once its digest is checked."""
        sink = _Sink(self.storage, name, digest) if store else None
        hasher = digest.hasher() if sink is None else None
        finished = False
        try:
            with self._upstream(f"blob {digest} of {name}", "BLOB_UNKNOWN"):
                held, piece = b"", first
                while piece:
                    if sink is not None:
                        sink.put(piece)
                    else:
                        hasher.update(piece)  # type: ignore[union-attr]
                    if held:
                        yield held
                    held, piece = piece, reader.read(CHUNK)
                if sink is not None:
                    sink.finish()
                elif hasher.hexdigest() != digest.hex:  # type: ignore[union-attr]
                    raise DigestMismatch(f"the upstream's bytes are not {digest}")
            finished = True
            if held:
                yield held
        finally:
            if sink is not None and not finished:
                sink.abort()

    @contextlib.contextmanager
    def _upstream(self, what: str, missing: str) -> Iterator[None]:
        """Turn the upstream's failures into the answer: `missing` (404) when it lacks `what`, else 503."""
        try:
            yield
        except NotFound:
            raise RegistryError(missing, {"upstream": self.host}) from None
        except DockyardError as e:
            log.warning("upstream %s: %s: %s", self.host, what, one_line(str(e)))
            raise RegistryError("UNKNOWN", {"upstream": self.host}, status=503,
                                message=f"upstream registry {self.host} unavailable for {what}: "
                                        f"{one_line(str(e))}") from None


class _Sink:
    """Stores a blob as it streams past: the pieces go through a queue into an upload session committed by a thread
    (a greenlet in the server's gevent workers); the commit verifies the digest, and a failure removes the session."""

    def __init__(self, storage: Layout, name: str, digest: Digest):
        self.storage, self.name, self.digest = storage, name, digest
        self.pieces: queue.Queue[bytes | None] = queue.Queue(_QUEUED_PIECES)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._commit, daemon=True)
        self.thread.start()

    def _commit(self) -> None:
        info = self.storage.create_upload(self.name)
        try:
            self.storage.commit_upload(self.name, info.id, self.digest, self)
        except BaseException as e:
            self.error = e
            with contextlib.suppress(UploadUnknown):
                self.storage.cancel_upload(self.name, info.id)

    def read(self, n: int = -1) -> bytes:
        """The next piece for the upload; b"" at the end."""
        piece = self.pieces.get()
        if piece is None:
            raise OSError("the upstream transfer was abandoned")
        return piece

    def put(self, piece: bytes | None) -> None:
        """Queue a piece, waiting while the store is behind; raise when the store failed."""
        while self.thread.is_alive():
            try:
                self.pieces.put(piece, timeout=0.5)
                return
            except queue.Full:
                continue
        raise self.error or OSError("storing the blob stopped")

    def finish(self) -> None:
        """Wait for the commit; DigestMismatch (nothing stored) when the bytes are not the blob."""
        self.put(b"")
        self.thread.join()
        if self.error is not None:
            raise self.error

    def abort(self) -> None:
        """Give up: the session is removed."""
        if self.thread.is_alive():
            with contextlib.suppress(OSError):
                self.put(None)
            self.thread.join()


class _Streamed:
    """A relayed blob as a response body: a failure once the answer started drops the connection (the client sees
    a body shorter than announced); `done()` runs however it ends (sent, failed, or never sent at all)."""

    def __init__(self, body: Iterator[bytes], done: Callable[[], None]):
        self.body, self.done = body, done

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self.body
        except RegistryError as e:
            raise ResponseAborted(e.message) from None
        finally:
            self.close()

    def close(self) -> None:
        """Stop relaying (the WSGI server calls it when the answer ends)."""
        body, self.body = self.body, iter(())
        if hasattr(body, "close"):
            body.close()
            self.done()


def _scope(name: str) -> str:
    return f"repository:{name}:pull"
