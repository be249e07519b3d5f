"""Push: upload an image's blobs (skipping, mounting or resuming where possible), then its manifest."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

from dockyard import mediatypes as mt
from dockyard import reference
from dockyard.digest import Digest
from dockyard.distribution import RegistryError
from dockyard.errors import DigestMismatch, NotFound
from dockyard.image import Descriptor, Image
from dockyard.store import Store
from registry.client.connections import FileBody, TransportError
from registry.client.progress import Progress
from registry.client.pull import Cancelled, run_transfers
from registry.client.remote import Remote, remote_for
from registry.client.transport import Transport, Unreachable, backoff, check, one_line

# The PUT completing an upload waits while the registry hashes the whole blob: silence that long is allowed.
COMMIT_PATIENCE = 5


@dataclass
class PushResult:
    """The pushed manifest's digest and size."""

    digest: Digest
    size: int


@dataclass
class Session:
    """An upload in progress: where to send the next bytes, and how many the server has."""

    location: str
    offset: int = 0


class Uploader:
    """Uploads one image's blobs to one repository."""

    def __init__(self, t: Transport, remote: Remote, store: Store, mount_sources: MountSources,
                 cancel: threading.Event):
        self.t, self.remote, self.store = t, remote, store
        self.mount_sources, self.cancel = mount_sources, cancel
        self.scopes = (remote.scope("pull,push"),)

    def blob(self, desc: Descriptor, key: str, progress: Progress) -> None:
        """Make the registry hold one blob: already there, mounted from a sibling repo, or uploaded."""
        if self._exists(desc.digest):
            progress.finish(key, "Layer already exists")
            return
        location = None
        for source in self.mount_sources.get(desc.digest):
            r = self.t.request("POST", f"/v2/{self.remote.repository}/blobs/uploads/",
                               (*self.scopes, f"repository:{source}:pull"),
                               params={"mount": str(desc.digest), "from": source})
            if r.status_code == 201:
                r.close()
                progress.finish(key, f"Mounted from {source}")
                return
            if r.status_code == 202:
                # The registry could not mount but opened an ordinary upload instead.
                location = r.headers.get("Location")
                r.close()
                break
            r.close()
        progress.start(key, "Pushing", desc.size)
        self._upload(desc, key, location, progress)
        progress.finish(key, "Pushed")

    def _stop(self) -> None:
        """Abandon a body being sent once a sibling transfer failed."""
        if self.cancel.is_set():
            raise Cancelled("cancelled")

    def _exists(self, digest: Digest) -> bool:
        r = self.t.request("HEAD", f"/v2/{self.remote.repository}/blobs/{digest}", self.scopes)
        r.close()
        if r.status_code in (200, 404):
            return r.status_code == 200
        check(r, f"blob {digest} in {self.remote.host}/{self.remote.repository}")
        return False

    def _start(self) -> str:
        r = check(self.t.request("POST", f"/v2/{self.remote.repository}/blobs/uploads/", self.scopes),
                  f"upload to {self.remote.host}/{self.remote.repository}", (202,))
        r.close()
        location = r.headers.get("Location")
        if not location:
            raise RegistryError(message=f"{self.remote.host} opened an upload without a Location")
        return location

    def _upload(self, desc: Descriptor, key: str, location: str | None, progress: Progress) -> None:
        """Upload with retries: one PUT for blobs up to the chunk size, resumable PATCH chunks beyond."""
        path = self.store.blob_path(desc.digest)
        size = os.path.getsize(path)
        if size != desc.size:
            raise DigestMismatch(f"size mismatch for {desc.digest} in the store: {size} bytes, "
                                 f"manifest says {desc.size}")
        failures = 0
        session = Session(location or self._start())
        while True:
            try:
                self._send(desc, key, path, session, progress)
                return
            except (TransportError, OSError, Unreachable) as e:
                # Only the body transfer is retried here; the small requests retry inside request().
                failures += 1
                if failures >= self.t.config.max_attempts:
                    why = type(e.cause if isinstance(e, TransportError) else e).__name__
                    raise RegistryError(message=f"upload of {desc.digest} to {self.remote.host} failed after "
                                                f"{failures} attempts: {why}") from None
                if self.cancel.wait(backoff(failures)):
                    raise Cancelled("cancelled") from None
            session = self._resume(session, size)
            progress.rewind(key, session.offset)

    def _resume(self, session: Session, size: int) -> Session:
        """Where to continue after a cut: the server's offset when it can resume, else a fresh upload."""
        if size > self.t.config.upload_chunk_size:
            try:
                return self._status(session.location)
            except (NotFound, RegistryError):
                pass  # e.g. distribution 2.8 refuses to resume after a PATCH was cut
        return Session(self._start())

    def _status(self, location: str) -> Session:
        """How much of an interrupted upload the server kept (GET on the upload URL)."""
        r = check(self.t.request("GET", location, self.scopes), "upload status", (204,))
        r.close()
        # "0-<last byte>"; anything else from the server means starting over.
        first, _, last = r.headers.get("Range", "").partition("-")
        end = int(last) + 1 if first == "0" and last.isdigit() and len(last) < 20 else 0
        return Session(r.headers.get("Location") or location, end)

    def _send(self, desc: Descriptor, key: str, path: str, session: Session, progress: Progress) -> None:
        """Send the blob from the session's offset and commit it; the session tracks what the server has."""
        size = desc.size
        chunk = self.t.config.upload_chunk_size
        advance = lambda n: progress.advance(key, n)  # noqa: E731
        octets = {"Content-Type": "application/octet-stream"}
        if size <= chunk:
            body = FileBody(path, 0, size, advance, self._stop)
            r = self.t.request("PUT", session.location, self.scopes, params={"digest": str(desc.digest)},
                               headers=octets, body=body, retry=False, patience=COMMIT_PATIENCE)
        else:
            while session.offset < size:
                start = session.offset
                n = min(chunk, size - start)
                body = FileBody(path, start, n, advance, self._stop)
                r = check(self.t.request("PATCH", session.location, self.scopes, body=body, retry=False,
                                         headers={**octets, "Content-Range": f"{start}-{start + n - 1}"}),
                          f"upload of {desc.digest}", (202,))
                r.close()
                session.location = r.headers.get("Location") or session.location
                session.offset = start + n
            r = self.t.request("PUT", session.location, self.scopes, params={"digest": str(desc.digest)},
                               retry=False, patience=COMMIT_PATIENCE)
        check(r, f"upload of {desc.digest} to {self.remote.host}/{self.remote.repository}", (201, 204))
        r.close()
        got = r.headers.get("Docker-Content-Digest")
        if got and got != str(desc.digest):
            raise DigestMismatch(f"registry stored {desc.digest} as {one_line(got, 150)}")


class MountSources:
    """Blobs of local images named after other repositories on the same registry: candidates to mount from.

    Worked out on first need (a blob the registry lacks): it reads every image in the store.
    """

    def __init__(self, store: Store, target: Remote):
        self.store, self.target = store, target
        self._found: dict[Digest, list[str]] | None = None
        self._lock = threading.Lock()

    def get(self, digest: Digest) -> list[str]:
        with self._lock:
            if self._found is None:
                self._found = self._find()
        return self._found.get(digest, [])

    def _find(self) -> dict[Digest, list[str]]:
        default = reference.default_registry()
        out: dict[Digest, list[str]] = {}
        for image, names in self.store.images():
            for name in names:
                ref = reference.parse(name)
                registry = ref.registry or default
                if not registry:
                    continue
                source = remote_for(dataclasses.replace(ref, registry=registry))
                if source.host != self.target.host or source.repository == self.target.repository:
                    continue
                for d in [image.id, *(layer.digest for layer in image.layers)]:
                    if source.repository not in out.setdefault(d, []):
                        out[d].append(source.repository)
        return out


def push_image(store: Store, t: Transport, remote: Remote, image: Image, tag_or_digest: str, progress: Progress,
               parallel: int, sources: MountSources) -> PushResult:
    """Push blobs in parallel, then the stored manifest bytes exactly (so the digest is kept)."""
    data = store.read_blob(image.manifest_digest)
    media_type = json.loads(data).get("mediaType") or mt.OCI_MANIFEST
    cancel = threading.Event()
    up = Uploader(t, remote, store, sources, cancel)
    blobs = [(d.digest.short, d) for d in image.layers]
    config = Descriptor.from_json(image.manifest["config"])

    for key, _ in blobs:
        progress.start(key, "Preparing")
    def layer(desc: Descriptor, key: str, _release: Callable[[], None]) -> None:
        up.blob(desc, key, progress)  # an upload has no tail to overlap with the next: it keeps its slot

    # The config goes silently, like docker's.
    run_transfers(functools.partial(up.blob, config, config.digest.short, Progress()),
                  [functools.partial(layer, desc, key) for key, desc in blobs], parallel, cancel)
    put_manifest(t, remote, tag_or_digest, data, media_type, image.manifest_digest)
    return PushResult(image.manifest_digest, len(data))


def put_manifest(t: Transport, remote: Remote, tag_or_digest: str, data: bytes, media_type: str,
                 digest: Digest) -> None:
    """PUT a manifest or index's stored bytes exactly, checking the registry kept its digest."""
    what = f"{remote.host}/{remote.repository}:{tag_or_digest}"
    r = check(t.request("PUT", f"/v2/{remote.repository}/manifests/{tag_or_digest}", (remote.scope("pull,push"),),
                        headers={"Content-Type": media_type}, body=data), f"manifest {what}", (201, 200))
    r.close()
    got = r.headers.get("Docker-Content-Digest")
    if got and got != str(digest):
        raise DigestMismatch(f"registry stored the manifest of {what} as {one_line(got, 150)}, not {digest}")


def push_index(store: Store, t: Transport, remote: Remote, index: Digest, tag_or_digest: str, progress: Progress,
               parallel: int, sources: MountSources) -> PushResult:
    """Push a multi-platform image: each platform's image by digest (children first), then the index."""
    for _, desc in store.index_children(index):
        push_image(store, t, remote, store.image(desc.digest), str(desc.digest), progress, parallel, sources)
    data = store.read_blob(index)
    put_manifest(t, remote, tag_or_digest, data, json.loads(data).get("mediaType") or mt.OCI_INDEX, index)
    return PushResult(index, len(data))
