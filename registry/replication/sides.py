"""The two ends of a copy: this registry (its storage, written through the model as a push is) and a remote
registry (the distribution API, through registry.client). Blobs travel through a spool file, never whole in
memory, and are verified by digest on the way."""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Protocol, cast
from urllib.parse import urlsplit

from dockyard import mediatypes as mt
from dockyard.digest import CHUNK, Digest, verify
from dockyard.distribution import RegistryError
from dockyard.errors import NotFound
from dockyard.image import Descriptor

if TYPE_CHECKING:
    from registry.client.transport import Transport
    from registry.model.db import Database
    from registry.model.policy import Actor
    from registry.model.replication import Endpoint
    from registry.storage.layout import Layout

MANIFEST_MAX = 4 << 20  # as distribution's own limit


class Side(Protocol):
    """What a copy needs of either end."""

    name: str

    def repositories(self) -> list[str]: ...
    def tags(self, repo: str) -> list[str]: ...
    def manifest(self, repo: str, ref: str) -> tuple[bytes, str, Digest]: ...
    def resolve(self, repo: str, ref: str) -> Digest | None: ...
    def has_blob(self, repo: str, digest: Digest) -> bool: ...
    def mount(self, repo: str, digest: Digest, source: str) -> bool: ...
    def fetch_blob(self, repo: str, desc: Descriptor, path: str) -> None: ...
    def put_blob(self, repo: str, desc: Descriptor, path: str) -> None: ...
    def put_manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> None: ...
    def delete(self, repo: str, digest: Digest) -> bool: ...


def _spool(stream, path: str, desc: Descriptor, what: str) -> None:
    """Copy `stream` to `path`, checking the bytes against the descriptor's digest and size."""
    hasher = desc.digest.hasher()
    size = 0
    with open(path, "wb") as out:
        while True:
            chunk = stream.read(CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > desc.size:
                break
            hasher.update(chunk)
            out.write(chunk)
    verify(desc.digest, Digest(desc.digest.algorithm, hasher.hexdigest()), what, desc.size, size)


def media_type_of(data: bytes, given: str) -> str:
    """A manifest's media type: its own mediaType field, else what the registry said."""
    try:
        doc = json.loads(data)
    except ValueError:
        return given
    declared = doc.get("mediaType") if isinstance(doc, dict) else None
    return declared if isinstance(declared, str) and declared else given


# -- this registry -------------------------------------------------------------------------------------------------
class LocalSide:
    """This registry's storage; writes go through the model as a push does (quota, immutability, events, audit),
    with the policy as the actor."""

    def __init__(self, db: Database, storage: Layout, actor: Actor):
        self.db, self.storage, self.actor = db, storage, actor
        self.name = "local"

    def repositories(self) -> list[str]:
        return self.storage.repositories()

    def tags(self, repo: str) -> list[str]:
        return self.storage.list_tags(repo) or []

    def resolve(self, repo: str, ref: str) -> Digest | None:
        if ":" in ref:
            d = Digest.parse(ref)
            return d if self.storage.manifest_media_type(repo, d) is not None else None
        return self.storage.resolve_tag(repo, ref)

    def manifest(self, repo: str, ref: str) -> tuple[bytes, str, Digest]:
        digest = self.resolve(repo, ref)
        found = self.storage.get_manifest(repo, digest) if digest is not None else None
        if digest is None or found is None:
            raise NotFound(f"not found: {repo}:{ref}" if ":" not in ref else f"not found: {repo}@{ref}")
        return found[0], found[1], digest

    def has_blob(self, repo: str, digest: Digest) -> bool:
        return self.storage.blob_linked(repo, digest) is not None

    def mount(self, repo: str, digest: Digest, source: str) -> bool:
        """Link a blob this storage holds (under any repository) into `repo`: no bytes move."""
        info = self.storage.blob_info(digest)
        if info is None or not self.storage.link_blob(repo, digest):
            return False
        self._charge(repo, digest, info.size)
        return True

    def fetch_blob(self, repo: str, desc: Descriptor, path: str) -> None:
        with self.storage.open_blob(desc.digest) as f:
            _spool(f, path, desc, f"blob {desc.digest} of {repo}")

    def put_blob(self, repo: str, desc: Descriptor, path: str) -> None:
        if self.mount(repo, desc.digest, ""):
            return
        info = self.storage.create_upload(repo)
        with open(path, "rb") as f:
            self.storage.commit_upload(repo, info.id, desc.digest, f)
        self._charge(repo, desc.digest, desc.size)

    def _charge(self, repo: str, digest: Digest, size: int) -> None:
        """Count the blob in the project's quota as an upload is; over it, unlink it again (as the v2 API does)."""
        from registry.model import quota
        from registry.model.policy import Refused
        try:
            quota.charge_blob(self.db, repo, str(digest), size, self.actor)
        except Refused:
            self.storage.unlink_blob(repo, digest)
            raise

    def put_manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> None:
        from registry import manifests
        from registry.model import artifacts
        artifacts.ensure_indexed(self.db, self.storage)

        def admit(digest: Digest, parsed_type: str, tag: str | None) -> artifacts.Manifest:
            manifest = artifacts.read_manifest(str(digest), data, parsed_type)
            artifacts.admit_push(self.db, self.storage, repo, manifest, tag, self.actor)
            return manifest

        manifests.store(self.storage, repo, ref, data, media_type, admit,
                        lambda manifest, tag: artifacts.record_push(self.db, self.storage, repo, manifest, tag,
                                                                    self.actor))

    def delete(self, repo: str, digest: Digest) -> bool:
        from registry.model import artifacts
        return artifacts.delete_artifact(self.db, self.storage, repo, str(digest), self.actor)


# -- a remote registry ---------------------------------------------------------------------------------------------
class _SpoolFile:
    """The one blob an Uploader sends: it asks a store for a blob's path."""

    def __init__(self, path: str):
        self.path = path

    def blob_path(self, _digest: Digest) -> str:
        return self.path


class _NoMounts:
    """Mount sources for the Uploader: the engine tries its own mounts first."""

    def get(self, _digest: Digest) -> list[str]:
        return []


def transport(endpoint: Endpoint, attempts: int = 1, read_timeout: float = 30.0) -> Transport:
    """The client's transport to an endpoint, with its credentials (never the server's own docker config) and
    its scheme as the URL says; `insecure` skips TLS verification."""
    from registry.client.auth import Authenticator, Credentials
    from registry.client.config import ClientConfig
    from registry.client.transport import Transport
    parts = urlsplit(endpoint.url)
    host = parts.netloc
    config = ClientConfig(insecure_registries=[host] if endpoint.insecure else [], max_attempts=attempts,
                          read_timeout=read_timeout)
    t = Transport(host, config)
    t.auth = Authenticator(host, Credentials(endpoint.username, endpoint.password) if endpoint.username else None)
    t.base = f"{parts.scheme}://{host}"
    return t


def ping(endpoint: Endpoint) -> str:
    """"" when the endpoint answers the distribution API with these credentials, else why not (one line)."""
    from registry.client.transport import check
    t = transport(endpoint)
    try:
        r = check(t.request("GET", "/v2/", ("registry:catalog:*",)), f"registry {t.host}")
        r.close()
        return ""
    except Exception as e:  # any failure is the answer: the endpoint does not work
        return str(e) or type(e).__name__
    finally:
        t.close()


class RemoteSide:
    """A registry reached through the distribution API."""

    def __init__(self, endpoint: Endpoint):
        self.t = transport(endpoint)
        self.name = endpoint.name

    def close(self) -> None:
        self.t.close()

    def _remote(self, repo: str):
        from registry.client.remote import Remote
        return Remote(self.t.host, repo)

    def repositories(self) -> list[str]:
        from registry.client.search import catalog
        return list(catalog(self.t))

    def tags(self, repo: str) -> list[str]:
        from registry.client.search import list_tags
        try:
            return list_tags(self.t, self._remote(repo))
        except NotFound:
            return []

    def resolve(self, repo: str, ref: str) -> Digest | None:
        from registry.client.pull import ACCEPT
        from registry.client.transport import check
        remote = self._remote(repo)
        r = self.t.request("HEAD", f"/v2/{repo}/manifests/{ref}", (remote.scope(),), headers={"Accept": ACCEPT})
        r.close()
        if r.status_code == 404:
            return None
        check(r, f"manifest {self.t.host}/{repo}:{ref}")
        header = r.headers.get("Docker-Content-Digest")
        return Digest.parse(header) if header else None

    def manifest(self, repo: str, ref: str) -> tuple[bytes, str, Digest]:
        from registry.client.pull import fetch_manifest
        target: str | Digest = Digest.parse(ref) if ":" in ref else ref
        data, media_type, digest = fetch_manifest(self.t, self._remote(repo), target, f"{self.t.host}/{repo}:{ref}")
        return data, media_type_of(data, media_type), digest

    def has_blob(self, repo: str, digest: Digest) -> bool:
        from registry.client.transport import check
        r = self.t.request("HEAD", f"/v2/{repo}/blobs/{digest}", (self._remote(repo).scope("pull,push"),))
        r.close()
        if r.status_code in (200, 404):
            return r.status_code == 200
        check(r, f"blob {digest} in {self.t.host}/{repo}")
        return False

    def mount(self, repo: str, digest: Digest, source: str) -> bool:
        """A cross-repository mount from `source` on the same registry; False when it did not happen."""
        r = self.t.request("POST", f"/v2/{repo}/blobs/uploads/",
                           (self._remote(repo).scope("pull,push"), f"repository:{source}:pull"),
                           params={"mount": str(digest), "from": source})
        r.close()
        if r.status_code == 202 and r.headers.get("Location"):
            # The registry opened an ordinary upload instead: close it rather than leave it behind.
            self.t.request("DELETE", r.headers["Location"], (self._remote(repo).scope("pull,push"),)).close()
        return r.status_code == 201

    def fetch_blob(self, repo: str, desc: Descriptor, path: str) -> None:
        from registry.client.progress import Progress
        from registry.client.pull import BlobReader
        reader = BlobReader(self.t, self._remote(repo), desc, str(desc.digest), Progress(), threading.Event())
        try:
            _spool(reader, path, desc, f"blob {desc.digest} of {self.t.host}/{repo}")
        finally:
            reader.close()

    def put_blob(self, repo: str, desc: Descriptor, path: str) -> None:
        from dockyard.store import Store
        from registry.client.progress import Progress
        from registry.client.push import MountSources, Uploader
        up = Uploader(self.t, self._remote(repo), cast(Store, _SpoolFile(path)), cast(MountSources, _NoMounts()),
                      threading.Event())
        up.blob(desc, str(desc.digest), Progress())

    def put_manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> None:
        from registry.client.transport import check, one_line
        remote = self._remote(repo)
        r = check(self.t.request("PUT", f"/v2/{repo}/manifests/{ref}", (remote.scope("pull,push"),),
                                 headers={"Content-Type": media_type}, body=data),
                  f"manifest {self.t.host}/{repo}:{ref}", (200, 201))
        r.close()
        got = r.headers.get("Docker-Content-Digest")
        expected = Digest.of_bytes(data)
        if got and got != str(expected):
            raise RegistryError(message=f"{self.t.host} stored the manifest of {repo}:{ref} as "
                                        f"{one_line(got, 100)}, not {expected}")

    def delete(self, repo: str, digest: Digest) -> bool:
        from registry.client.transport import check
        r = self.t.request("DELETE", f"/v2/{repo}/manifests/{digest}", (self._remote(repo).scope("pull,push,delete"),))
        r.close()
        if r.status_code == 404:
            return False
        check(r, f"delete of {self.t.host}/{repo}@{digest}", (200, 202))
        return True


def children(data: bytes, media_type: str) -> tuple[list[Descriptor], list[Descriptor]]:
    """What a manifest references: (its blobs: config and layers, its child manifests); an error naming the field
    for a malformed one."""
    try:
        doc = json.loads(data)
        if media_type in mt.INDEXES:
            return [], [Descriptor.from_json(c) for c in doc.get("manifests") or []]
        blobs = [Descriptor.from_json(doc["config"])] if doc.get("config") else []
        return blobs + [Descriptor.from_json(layer) for layer in doc.get("layers") or []], []
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise RegistryError(message=f"malformed manifest: {type(e).__name__} {str(e)[:100]}") from None
