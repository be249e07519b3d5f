"""Push: upload an image's blobs (skipping, mounting or resuming where possible), then its manifest."""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator

from dockyard import mediatypes as mt
from dockyard import reference
from dockyard.digest import Digest
from dockyard.errors import DigestMismatch, DockyardError, NotFound
from dockyard.image import Descriptor, Image
from dockyard.store import Store
from registry.client.progress import Progress
from registry.client.pull import Cancelled, wait_all
from registry.client.remote import Remote, remote_for
from registry.client.transport import RegistryError, Transport, Unreachable, backoff, check

SEND_CHUNK = 1 << 20


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


class FileBody:
    """A byte range of a file as a request body of known length, sent in big chunks and counted."""

    def __init__(self, path: str, offset: int, length: int, on_chunk: Callable[[int], None],
                 cancel: threading.Event):
        self.path, self.offset, self.length = path, offset, length
        self.on_chunk, self.cancel = on_chunk, cancel

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        left = self.length
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            while left:
                if self.cancel.is_set():
                    raise Cancelled("cancelled")
                chunk = f.read(min(SEND_CHUNK, left))
                if not chunk:
                    raise DockyardError(f"{self.path} shrank while it was being pushed")
                left -= len(chunk)
                self.on_chunk(len(chunk))
                yield chunk


class Uploader:
    """Uploads one image's blobs to one repository."""

    def __init__(self, t: Transport, remote: Remote, store: Store, mount_sources: dict[Digest, list[str]],
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
        for source in self.mount_sources.get(desc.digest, []):
            r = self.t.request("POST", f"/v2/{self.remote.repository}/blobs/uploads/",
                               self.scopes + (f"repository:{source}:pull",),
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
            raise RegistryError(f"{self.remote.host} opened an upload without a Location")
        return location

    def _upload(self, desc: Descriptor, key: str, location: str | None, progress: Progress) -> None:
        """Upload with retries: one PUT for blobs up to the chunk size, resumable PATCH chunks beyond."""
        import requests
        import urllib3

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
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, Unreachable) as e:
                # Only the body transfer is retried here; the small requests retry inside request().
                failures += 1
                if failures >= self.t.config.max_attempts:
                    raise RegistryError(f"upload of {desc.digest} to {self.remote.host} failed after {failures} "
                                        f"attempts: {type(e).__name__}") from None
                if self.cancel.wait(backoff(failures)):
                    raise Cancelled("cancelled") from None
            session = self._resume(session, size)
            progress.rewind(key, session.offset)

    def _resume(self, session: "Session", size: int) -> "Session":
        """Where to continue after a cut: the server's offset when it can resume, else a fresh upload."""
        if size > self.t.config.upload_chunk_size:
            try:
                return self._status(session.location)
            except (NotFound, RegistryError):
                pass  # e.g. distribution 2.8 refuses to resume after a PATCH was cut
        return Session(self._start())

    def _status(self, location: str) -> "Session":
        """How much of an interrupted upload the server kept (GET on the upload URL)."""
        r = check(self.t.request("GET", location, self.scopes), "upload status", (204,))
        r.close()
        rng = r.headers.get("Range", "")
        end = int(rng.split("-")[1]) + 1 if "-" in rng else 0
        return Session(r.headers.get("Location") or location, end)

    def _send(self, desc: Descriptor, key: str, path: str, session: "Session", progress: Progress) -> None:
        """Send the blob from the session's offset and commit it; the session tracks what the server has."""
        size = desc.size
        chunk = self.t.config.upload_chunk_size
        advance = lambda n: progress.advance(key, n)  # noqa: E731
        octets = {"Content-Type": "application/octet-stream"}
        if size <= chunk:
            body = FileBody(path, 0, size, advance, self.cancel)
            r = self.t.request("PUT", session.location, self.scopes, params={"digest": str(desc.digest)},
                               headers=octets, body=body, retry=False)
        else:
            while session.offset < size:
                start = session.offset
                n = min(chunk, size - start)
                body = FileBody(path, start, n, advance, self.cancel)
                r = check(self.t.request("PATCH", session.location, self.scopes, body=body, retry=False,
                                         headers={**octets, "Content-Range": f"{start}-{start + n - 1}"}),
                          f"upload of {desc.digest}", (202,))
                r.close()
                session.location = r.headers.get("Location") or session.location
                session.offset = start + n
            r = self.t.request("PUT", session.location, self.scopes, params={"digest": str(desc.digest)},
                               retry=False)
        check(r, f"upload of {desc.digest} to {self.remote.host}/{self.remote.repository}", (201, 204))
        r.close()
        got = r.headers.get("Docker-Content-Digest")
        if got and got != str(desc.digest):
            raise DigestMismatch(f"registry stored {desc.digest} as {got}")


def mount_sources(store: Store, target: Remote) -> dict[Digest, list[str]]:
    """Blobs of local images named after other repositories on the same registry: candidates to mount from."""
    default = reference.default_registry()
    out: dict[Digest, list[str]] = {}
    for image, names in store.images():
        for name in names:
            ref = reference.parse(name)
            if not (ref.registry or default):
                continue
            source = remote_for(dataclasses.replace(ref, registry=ref.registry or default))
            if source.host != target.host or source.repository == target.repository:
                continue
            for d in [image.id, *(l.digest for l in image.layers)]:
                if source.repository not in out.setdefault(d, []):
                    out[d].append(source.repository)
    return out


def push_image(store: Store, t: Transport, remote: Remote, image: Image, tag_or_digest: str, progress: Progress,
               parallel: int, sources: dict[Digest, list[str]]) -> PushResult:
    """Push blobs in parallel, then the stored manifest bytes exactly (so the digest is kept)."""
    data = store.read_blob(image.manifest_digest)
    media_type = json.loads(data).get("mediaType") or mt.OCI_MANIFEST
    cancel = threading.Event()
    up = Uploader(t, remote, store, sources, cancel)
    blobs = [(d.digest.short, d) for d in image.layers]
    config = Descriptor.from_json(image.manifest["config"])

    def one(key: str, desc: Descriptor) -> None:
        try:
            up.blob(desc, key, progress)
        except BaseException:
            cancel.set()
            raise

    for key, _ in blobs:
        progress.start(key, "Preparing")
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        futures = [pool.submit(one, key, desc) for key, desc in blobs]
        errors = wait_all(futures, cancel)
    real = [e for e in errors if e is not None and not isinstance(e, Cancelled)]
    if real:
        raise real[0]
    up.blob(config, config.digest.short, Progress())
    what = f"{remote.host}/{remote.repository}:{tag_or_digest}"
    r = check(t.request("PUT", f"/v2/{remote.repository}/manifests/{tag_or_digest}", up.scopes,
                        headers={"Content-Type": media_type}, body=data), f"manifest {what}", (201, 200))
    r.close()
    got = r.headers.get("Docker-Content-Digest")
    if got and got != str(image.manifest_digest):
        raise DigestMismatch(f"registry stored the manifest of {what} as {got}, not {image.manifest_digest}")
    return PushResult(image.manifest_digest, len(data))
