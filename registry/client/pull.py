"""Pull: fetch a manifest (resolving an index to one platform) and its blobs, verified, into the store."""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from dockyard import mediatypes as mt
from dockyard.digest import CHUNK, Digest, InvalidDigest, verify
from dockyard.distribution import RegistryError
from dockyard.errors import DigestMismatch, DockyardError, NotFound
from dockyard.image import Descriptor, Image, Platform, select_platform
from dockyard.reference import Reference
from dockyard.store import Store
from registry.client.connections import Response
from registry.client.progress import Progress
from registry.client.remote import Remote
from registry.client.transport import Transport, Unreachable, backoff, check, one_line

MANIFEST_LIMIT = 4 << 20  # distribution's own limit on manifest size
# An image config is read whole (to learn its layers' diff_ids); real ones are a few KiB.
CONFIG_LIMIT = 8 << 20
ACCEPT = ", ".join((mt.OCI_MANIFEST, mt.OCI_INDEX, mt.DOCKER_MANIFEST, mt.DOCKER_LIST))


class Cancelled(DockyardError):
    """A transfer stopped because a sibling transfer failed."""


def run_transfers(config: Callable[[], None] | None, layers: list[Callable[[Callable[[], None]], None]],
                  parallel: int, cancel: threading.Event) -> None:
    """Move the config beside the layers (at most `parallel` of those at once); raise the first failure.

    Each layer job is called with `release`, which frees its slot before the job returns: a pulled layer whose
    bytes are all in lets the next one download while it finishes unpacking and syncing. A failing transfer
    sets `cancel`, so its siblings stop and no new one starts; so does Ctrl-C, before it propagates. Twice
    `parallel` worker threads take the layers in order (so that many can be downloading or finishing): a
    thread per layer cost a start each, which on a busy machine waits to be scheduled. Plain threads:
    concurrent.futures (and the logging it imports) costs ~3 ms to import.
    """
    errors: dict[int, BaseException] = {}
    slots = threading.Semaphore(max(1, parallel))
    pending = iter(enumerate(layers, start=1))
    taking = threading.Lock()

    def run(i: int, job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as e:
            errors[i] = e
            cancel.set()

    def worker() -> None:
        while True:
            slots.acquire()
            held = True

            def release() -> None:
                nonlocal held
                if held:  # only this worker's own thread calls it
                    held = False
                    slots.release()

            try:
                with taking:
                    i, job = next(pending, (0, None))
                if job is None or cancel.is_set():
                    return
                run(i, functools.partial(job, release))
            finally:
                release()

    threads = [threading.Thread(target=run, args=(0, config))] if config else []
    # The config is tiny: on its own thread it does not hold back a layer, nor wait behind one.
    threads += [threading.Thread(target=worker) for _ in range(min(len(layers), 2 * max(1, parallel)))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    except BaseException:
        cancel.set()
        for t in threads:
            if t.ident is not None:  # started (Ctrl-C may come between creating and starting one)
                t.join()  # they stop at their next read or send; then the caller can undo what they added
        raise
    real = [errors[i] for i in sorted(errors) if not isinstance(errors[i], Cancelled)]
    if real:
        raise real[0]


@dataclass
class PullResult:
    """What a pull stored: the image, the manifest digest it keeps, and whether anything new arrived."""

    image: Image
    digest: Digest
    downloaded: bool


def fetch_manifest(t: Transport, remote: Remote, ref: str | Digest, what: str) -> tuple[bytes, str, Digest]:
    """GET a manifest by tag or digest; returns exact bytes, media type and verified digest."""
    r = check(t.request("GET", f"/v2/{remote.repository}/manifests/{ref}", (remote.scope(),),
                        headers={"Accept": ACCEPT}, limit=MANIFEST_LIMIT), what)
    data = r.read()
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        raise RegistryError(message=f"manifest for {what} is not valid JSON") from None
    if not isinstance(obj, dict):
        raise RegistryError(message=f"manifest for {what} is not a JSON object")
    if obj.get("schemaVersion") == 1:
        raise RegistryError(message=f"{what} has a Docker schema 1 manifest, which is not supported")
    media_type = obj.get("mediaType") or r.headers.get("Content-Type", "").split(";")[0].strip()
    if not isinstance(media_type, str):
        raise RegistryError(message=f"manifest for {what} has a malformed mediaType")
    if not media_type:
        media_type = mt.OCI_INDEX if "manifests" in obj else mt.OCI_MANIFEST
    # By digest, the content must match what was asked for; by tag, what the registry says it served.
    expected = ref if isinstance(ref, Digest) else _header_digest(r.headers.get("Docker-Content-Digest"))
    actual = Digest.of_bytes(data, expected.algorithm if expected else "sha256")
    if expected:
        verify(expected, actual, f"manifest {what}")
    return data, media_type, actual


def _header_digest(text: str | None) -> Digest | None:
    """A Docker-Content-Digest header's digest; None when absent or in an algorithm we do not know."""
    try:
        return Digest.parse(text) if text else None
    except DockyardError:
        return None


def resolve_manifest(t: Transport, remote: Remote, ref: Reference,
                     platform: Platform) -> tuple[bytes, Digest, list[Descriptor]]:
    """The image manifest a reference names (an index resolved to the platform), its digest and blobs."""
    what = f"{remote.host}/{remote.repository}:{ref.tag}" if not ref.digest else f"{ref.name}@{ref.digest}"
    selector = ref.digest or ref.tag
    assert selector is not None, "a parsed reference has a tag or a digest"
    data, media_type, digest = fetch_manifest(t, remote, selector, what)
    if media_type in mt.INDEXES:
        with _malformed(f"manifest list of {what}"):
            child = select_platform(json.loads(data), platform.os, platform.architecture, platform.variant)
            if child is None:
                raise NotFound(f"no matching manifest for {platform} in the manifest list entries of {what}")
            desc = Descriptor.from_json(child)
        data, media_type, digest = fetch_manifest(t, remote, desc.digest, f"{what} ({platform})")
        verify(desc.digest, digest, f"manifest of {what} for {platform}", desc.size, len(data))
    if media_type not in mt.IMAGE_MANIFESTS:
        raise RegistryError(message=f"{what} is not an image (media type {one_line(repr(media_type))})")
    with _malformed(f"manifest for {what}"):
        obj = json.loads(data)
        blobs = [Descriptor.from_json(obj["config"])] + [Descriptor.from_json(d) for d in obj.get("layers") or []]
    if blobs[0].size > CONFIG_LIMIT:
        raise RegistryError(message=f"config of {what} is larger than {CONFIG_LIMIT} bytes")
    return data, digest, blobs


@contextlib.contextmanager
def _malformed(what: str) -> Iterator[None]:
    """Turn a registry's JSON of the wrong shape (a list for an object, a missing key…) into one error."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError, InvalidDigest) as e:
        raise RegistryError(message=f"malformed {what}: {type(e).__name__} {one_line(str(e))}") from None


class BlobReader:
    """A blob's HTTP body as a stream: resumes with a Range request after a dropped connection.

    `received` is called once the whole body is in (and before the reader is drained of anything beyond it).
    """

    def __init__(self, t: Transport, remote: Remote, desc: Descriptor, key: str, progress: Progress,
                 cancel: threading.Event, received: Callable[[], None] = lambda: None):
        self.t, self.remote, self.desc, self.key = t, remote, desc, key
        self.progress, self.cancel, self.received = progress, cancel, received
        self.done = 0
        self.failures = 0
        self.response: Response | None = None

    def _open(self) -> Response:
        headers = {"Range": f"bytes={self.done}-"} if self.done else {}
        r = self.t.request("GET", f"/v2/{self.remote.repository}/blobs/{self.desc.digest}",
                           (self.remote.scope(),), headers=headers, stream=True)
        check(r, f"blob {self.desc.digest} in {self.remote.repository}", (200, 206))
        if self.done and r.status_code == 200:
            # The server ignored the Range: skip what we already have.
            skip = self.done
            while skip:
                chunk = r.read(min(skip, CHUNK))
                if not chunk:
                    raise RegistryError(message=f"blob {self.desc.digest} ended early")
                skip -= len(chunk)
        self.response = r
        return r

    def read(self, n: int = -1) -> bytes:
        buf = bytearray(min(n if n and n > 0 else CHUNK, max(self.desc.size - self.done, 1)))
        got = self.readinto(buf)
        return bytes(buf) if got == len(buf) else bytes(buf[:got])

    def readinto(self, buf) -> int:
        """Fill `buf` from the body (fewer bytes only at its end); 0 at the declared size."""
        if self.cancel.is_set():
            raise Cancelled("cancelled")
        if self.done >= self.desc.size:
            self.received()
            # Anything beyond the declared size means the blob is not what the manifest says.
            extra = self.response.read(1) if self.response is not None else b""
            if extra:
                raise DigestMismatch(f"size mismatch for {self.desc.digest}: more than {self.desc.size} bytes")
            return 0
        view = memoryview(buf)[:self.desc.size - self.done]
        while True:
            try:
                response = self.response if self.response is not None else self._open()
                got = response.readinto(view)
                if not got:
                    raise ConnectionError("connection closed before the end of the blob")
                break
            except (OSError, http.client.HTTPException) as e:
                # A body cut short; reopening (with Range) is itself retried inside request().
                self.close()
                self.failures += 1
                if self.failures >= self.t.config.max_attempts:
                    raise RegistryError(
                        message=f"download of {self.desc.digest} from {self.remote.host} failed after "
                        f"{self.failures} attempts: {_why(e)}") from None
                backoff_wait = backoff(self.failures)
                if self.cancel.wait(backoff_wait):
                    raise Cancelled("cancelled") from None
        self.done += got
        self.progress.advance(self.key, got)
        return got

    def close(self) -> None:
        if self.response is not None:
            self.response.close()
            self.response = None


def _why(e: Exception) -> str:
    text = str(e)
    return text if len(text) < 200 and "password" not in text.lower() else type(e).__name__


def pull_image(store: Store, transports: list[Transport], remote: Remote, ref: Reference, names: list[Reference],
               platform: Platform, progress: Progress, parallel: int,
               alongside: Callable[[Digest], None] | None = None) -> PullResult:
    """Pull one image; the store gains it whole or (on any failure) stays as it was.

    As docker does, each layer is unpacked (into the layer cache, where the store `unpacks`): a layer that would
    not unpack, or that is not the diff_id the config gives it, fails the pull, not a later run. A downloading
    layer is unpacked as its bytes arrive, so it is ready when its last byte is. `alongside` is called with the
    manifest's digest on the config's thread once the config is in, while the layers still download (its round
    trips then cost no time of their own); it keeps its own errors.
    """
    last: Exception | None = None
    for t in transports:
        try:
            data, digest, blobs = resolve_manifest(t, remote, ref, platform)
            source = t
            break
        except (Unreachable, NotFound, RegistryError) as e:
            # A mirror that fails or lacks the image falls through to the next, then to the registry.
            last = e
    else:
        raise last  # type: ignore[misc]
    cancel = threading.Event()
    configured = threading.Event()
    stack: list[tuple[Descriptor, Digest, Digest]] = []
    missing = [d for d in blobs if not store.has_blob(d.digest)]
    downloaded = bool(missing) or not store.has_blob(digest)

    def fetch(desc: Descriptor, shown: Progress, added: set[Digest], i: int = 0,
              received: Callable[[], None] = lambda: None) -> None:
        """Download blob `i` (0: the config); a layer, where the store `unpacks`, is unpacked on the way."""
        key = desc.digest.short
        shown.start(key, "Downloading", desc.size)
        reader = BlobReader(source, remote, desc, key, shown, cancel, received)
        try:
            if i and store.unpacks:
                # A dropped body resumes (Range) inside the reader, so the unpacker still sees one whole stream.
                store.write_layer(reader, desc, functools.partial(diff_and_chain, i), added)
            else:
                store.write_blob(reader, desc.digest, desc.size, f"blob {desc.digest}", added)
        finally:
            reader.close()

    def diff_and_chain(i: int) -> tuple[Digest, Digest]:
        """Layer i's diff_id and chain ID, from the config (waited for)."""
        configured.wait()
        if cancel.is_set():
            raise Cancelled("cancelled")
        return stack[i - 1][1:]

    def config(added: set[Digest]) -> None:
        """Fetch the config (silently, like docker) and pair each layer with its diff_id for the unpackers."""
        try:
            if blobs[0] in missing:
                fetch(blobs[0], Progress(), added)
            with _malformed(f"config of {ref}"):
                image = Image(digest, json.loads(data), json.loads(store.read_blob(blobs[0].digest)))
                stack.extend(image.layer_stack())
        except BaseException:
            cancel.set()  # before the layers waiting for the config wake up
            raise
        finally:
            configured.set()
        if alongside and not cancel.is_set():  # (a failed pull lists nothing)
            alongside(digest)

    def layer(i: int, added: set[Digest], release: Callable[[], None]) -> None:
        desc = blobs[i]
        if desc in missing:
            fetch(desc, progress, added, i, release)  # its download slot is free once the bytes are in
            progress.finish(desc.digest.short, "Pull complete")
            return
        progress.finish(desc.digest.short, "Already exists")
        if store.unpacks:
            store.unpack_layer(desc, *diff_and_chain(i), added=added)

    with store.transaction() as added:
        run_transfers(functools.partial(config, added),
                      [functools.partial(layer, i, added) for i in range(1, len(blobs))], parallel, cancel)
        image = store.add_image(data, names, added)
    return PullResult(image, digest, downloaded)
