"""The build cache shared between machines: exported to and imported from a registry, an OCI layout directory or
an image's own manifest (inline), as BuildKit's remote caches.

The cache is an OCI image manifest (artifactType CACHE_ARTIFACT) whose config (CACHE_CONFIG) is
    {"records": [{"key": STEP KEY, "config": THE IMAGE CONFIG AFTER THE STEP, "layers": [INDEX, …]}, …]}
and whose layers are the cached layer blobs, each record naming its layers by index among them: any distribution
registry stores, mounts and collects them as an image's. Inline, the same document is the image manifest's
INLINE_ANNOTATION, its indices among the image's own layers. Step keys depend on the inputs of the step and on the
previous step's config digest only (no path, no time of this machine), so runner A's keys are runner B's.

Trust, as with BuildKit's registry cache: a record is a hint mapping a key to a config and layers, and whoever can
push the cache reference chooses what a step that matches gets; so only a reference as trusted as the images built
from it may be a --cache-from. What a poisoner cannot do: make a step hit whose inputs differ (keys are computed
here from our own inputs), hand over bytes other than those the record names (every blob is checked against its
digest and size as it arrives, and every layer against its config's diff_id as it is unpacked; sizes are bounded
by the manifest's), make us read outside a local cache's directory, or stop the build: a malformed document or
record is skipped with a warning, and a layer failing its checks raises Poisoned, after which the build starts
again without the records naming it (its finished steps are in the local cache by then)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

from builder.flags import CacheSpec
from dockyard import mediatypes as mt
from dockyard import reference
from dockyard.digest import Digest, chain_ids, verify
from dockyard.errors import DockyardError, NotFound
from dockyard.image import Descriptor, Image, canonical_json
from dockyard.store import Store

CACHE_ARTIFACT = "application/vnd.dockyard.buildcache.v1"
CACHE_CONFIG = "application/vnd.dockyard.buildcache.config.v1+json"
INLINE_ANNOTATION = "io.dockyard.buildcache.v1"
DOCUMENT_LIMIT = 8 << 20  # the records of a cache are read whole (as an image config is)
MANIFEST_LIMIT = 4 << 20  # distribution's own limit


class Poisoned(DockyardError):
    """A layer an imported record named is not what the record says; the build restarts without it."""


@dataclass(frozen=True)
class Record:
    """A step's result: its key, the image config after it (canonical JSON) and the layers then."""

    key: str
    config: bytes
    layers: list[Descriptor]


class BlobSource(Protocol):
    """Where an imported record's blobs come from."""

    def open(self, desc: Descriptor) -> contextlib.AbstractContextManager[BinaryIO]: ...


class _Bounded:
    """A stream cut one byte past `size`: a blob longer than its descriptor fails its check, unread beyond."""

    def __init__(self, f: BinaryIO, size: int):
        self.f, self.left = f, size + 1

    def read(self, n: int = -1) -> bytes:
        data = self.f.read(self.left if n is None or n < 0 else min(n, self.left))
        self.left -= len(data)
        return data

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf)[:self.left]
        got = self.f.readinto(view)  # type: ignore[attr-defined]
        self.left -= got
        return got


class LayoutSource:
    """Blobs of an OCI layout directory, opened without following a link out of it."""

    def __init__(self, path: str):
        self.path = path

    @contextlib.contextmanager
    def open(self, desc: Descriptor) -> Iterator[BinaryIO]:
        with _open_file(self.path, f"blobs/{desc.digest.algorithm}/{desc.digest.hex}") as f:
            yield _Bounded(f, desc.size)  # type: ignore[misc]


@contextlib.contextmanager
def _open_file(root: str, rel: str) -> Iterator[BinaryIO]:
    """A regular file of a local cache directory, its path and links resolved inside the directory."""
    import stat

    from dockyard.inroot import fd_path, open_beneath

    try:
        where = open_beneath(root, rel)
        try:
            fd = os.open(fd_path(where), os.O_RDONLY | os.O_CLOEXEC)
        finally:
            os.close(where)
    except OSError as e:
        raise NotFound(f"{root}/{rel}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotFound(f"{root}/{rel}: not a regular file")
        yield f


class RegistrySource:
    """Blobs of a repository, through the registry client (resumed, bounded to their declared size)."""

    def __init__(self, transport: Any, remote: Any):
        self.transport, self.remote = transport, remote

    @contextlib.contextmanager
    def open(self, desc: Descriptor) -> Iterator[BinaryIO]:
        from registry.client.progress import Progress
        from registry.client.pull import BlobReader

        reader = BlobReader(self.transport, self.remote, desc, desc.digest.short, Progress(), threading.Event())
        try:
            yield reader  # type: ignore[misc]
        finally:
            reader.close()


def _read(source: BlobSource, desc: Descriptor, limit: int, what: str) -> bytes:
    """A small blob read whole, its size bounded and its digest checked."""
    if desc.size > limit:
        raise DockyardError(f"{what} is larger than {limit} bytes")
    data = b""
    with source.open(desc) as f:
        while len(data) <= desc.size and (chunk := f.read(desc.size + 1 - len(data))):
            data += chunk
    verify(desc.digest, Digest.of_bytes(data, desc.digest.algorithm), what, desc.size, len(data))
    return data


class CacheImport:
    """The records of every --cache-from source, and where each record's layers can be fetched from (lazily)."""

    def __init__(self, store: Store, warn: Callable[[str], None]):
        self.store, self.warn = store, warn
        self.records: dict[str, tuple[dict[str, Any], list[Descriptor]]] = {}
        self.where: dict[Digest, BlobSource] = {}
        self.bad: set[Digest] = set()  # layers that failed their checks: records naming them are ignored
        self._checked: set[tuple[Digest, Digest]] = set()  # (blob, diff_id) pairs found true
        self._lock = threading.Lock()
        self._transports: Any = None

    def close(self) -> None:
        if self._transports is not None:
            self._transports.close()

    # -- loading ----------------------------------------------------------------------------------------

    def add(self, spec: CacheSpec, platform: str) -> None:
        """Read the records of one source; one that cannot be read is a warning (as buildx's), not a failure."""
        try:
            if spec.kind == "local":
                self._add_layout(spec.path)
            else:
                self._add_registry(spec.ref, platform)
        except DockyardError as e:
            self.warn(f"[Warning] --cache-from {spec}: not imported: {e}")

    def add_image(self, image: Image) -> None:
        """The inline records of a local image (its layers are in the store already)."""
        text = (image.manifest.get("annotations") or {}).get(INLINE_ANNOTATION)
        if isinstance(text, str):
            self._load(text.encode(), image.layers, None, f"image {image.id.short}")

    def _add_registry(self, text: str, platform: str) -> None:
        from registry.client.pull import Platform, resolve_manifest
        from registry.client.remote import Transports, qualify, remote_for

        ref = qualify(reference.parse(text))
        if not ref.tag and not ref.digest:
            ref = ref.with_tag("latest")
        remote = remote_for(ref)
        if self._transports is None:
            self._transports = Transports()
        t = self._transports.for_pull(remote)[-1]
        data, _, blobs = resolve_manifest(t, remote, ref, Platform.parse(platform))
        source = RegistrySource(t, remote)
        self._add_manifest(data, blobs, source, text)

    def _add_layout(self, path: str) -> None:
        source = LayoutSource(path)
        try:
            index = json.loads(_read_file(path, "index.json", MANIFEST_LIMIT))
            found = [Descriptor.from_json(m) for m in index["manifests"]
                     if m.get("artifactType") == CACHE_ARTIFACT or m.get("mediaType") == mt.OCI_MANIFEST]
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
            raise DockyardError(f"{path}/index.json is malformed ({type(e).__name__})") from None
        if not found:
            raise DockyardError(f"{path}: no cache manifest in index.json")
        data = _read(source, found[0], MANIFEST_LIMIT, f"manifest {found[0].digest}")
        try:
            obj = json.loads(data)
            blobs = [Descriptor.from_json(obj["config"])] + [Descriptor.from_json(d) for d in obj.get("layers") or []]
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
            raise DockyardError(f"manifest {found[0].digest} is malformed ({type(e).__name__})") from None
        self._add_manifest(data, blobs, source, path)

    def _add_manifest(self, data: bytes, blobs: list[Descriptor], source: BlobSource, what: str) -> None:
        """A cache manifest (records in its config) or an image's (records inline, if any)."""
        config, layers = blobs[0], blobs[1:]
        if config.media_type == CACHE_CONFIG:
            self._load(_read(source, config, DOCUMENT_LIMIT, f"cache config {config.digest}"), layers, source, what)
            return
        try:
            text = (json.loads(data).get("annotations") or {}).get(INLINE_ANNOTATION)
        except (ValueError, AttributeError, RecursionError):
            text = None
        if not isinstance(text, str):
            raise DockyardError("neither a build cache nor an image with inline cache records")
        self._load(text.encode(), layers, source, what)

    def _load(self, data: bytes, layers: list[Descriptor], source: BlobSource | None, what: str) -> None:
        """Keep each well-formed record (the first source to name a key wins); warn of the rest."""
        try:
            records = json.loads(data)["records"]
            if not isinstance(records, list):
                raise TypeError("records is not a list")
        except (ValueError, KeyError, TypeError, RecursionError) as e:
            self.warn(f"[Warning] cache {what}: malformed records ignored ({type(e).__name__})")
            return
        skipped = 0
        for obj in records:
            record = _record(obj, layers)
            if record is None:
                skipped += 1
                continue
            key, config, named = record
            self.records.setdefault(key, (config, named))
            if source is not None:
                for d in named:
                    self.where.setdefault(d.digest, source)
        if skipped:
            self.warn(f"[Warning] cache {what}: {skipped} malformed record(s) ignored")

    # -- use ----------------------------------------------------------------------------------------------

    def get(self, key: str) -> tuple[dict[str, Any], list[Descriptor]] | None:
        """The config (a fresh copy) and layers recorded for `key`; None without one, or if one of its layers
        failed its checks."""
        found = self.records.get(key)
        if found is None or any(d.digest in self.bad for d in found[1]):
            return None
        return json.loads(canonical_json(found[0])), list(found[1])

    def fetch(self, config: dict[str, Any], layers: Sequence[object], added: set[Digest]) -> None:
        """Bring the imported layers among `layers` (a state's; pending local ones are skipped) into the store,
        unpacked where the store unpacks; each checked against its digest, size and diff_id."""
        diff_ids = [Digest.parse(d) for d in config["rootfs"]["diff_ids"]]
        for layer, diff_id, chain in zip(layers, diff_ids, chain_ids(diff_ids), strict=False):
            if not isinstance(layer, Descriptor) or layer.digest not in self.where:
                continue
            with self._lock:
                if (layer.digest, diff_id) in self._checked and self.store.has_blob(layer.digest):
                    continue
                try:
                    if self.store.has_blob(layer.digest):
                        # A blob we have may still not be the diff_id the record pairs it with.
                        with self.store.open_blob(layer.digest) as f:
                            verify(diff_id, _plain_digest(f), f"layer {layer.digest}")
                    else:
                        with self.where[layer.digest].open(layer) as f:
                            if self.store.unpacks:
                                self.store.write_layer(f, layer, _pair(diff_id, chain), added)
                            else:
                                self.store.write_blob(f, layer.digest, layer.size, f"blob {layer.digest}", added)
                except DockyardError as e:
                    self.bad.add(layer.digest)
                    raise Poisoned(f"cache layer {layer.digest.short}: {e}") from None
                self._checked.add((layer.digest, diff_id))


def _pair(diff_id: Digest, chain: Digest) -> Callable[[], tuple[Digest, Digest]]:
    """What write_layer asks of a layer: its diff_id and chain ID."""
    return lambda: (diff_id, chain)


def _plain_digest(f: BinaryIO) -> Digest:
    """The digest of a layer blob's uncompressed content."""
    import zlib

    from dockyard.compression import decompressed

    try:
        return Digest.of_stream(decompressed(f))[0]
    except (OSError, EOFError, ValueError, zlib.error) as e:
        raise DockyardError(f"cannot decompress: {e}") from None


def _read_file(root: str, rel: str, limit: int) -> bytes:
    """A small file of a local cache directory (no link followed out of it), bounded."""
    with _open_file(root, rel) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise DockyardError(f"{root}/{rel} is larger than {limit} bytes")
    return data


def _record(obj: Any, layers: list[Descriptor]) -> tuple[str, dict[str, Any], list[Descriptor]] | None:
    """A record checked for shape: a sha256 hex key, a config whose diff_ids pair with the layers it names."""
    try:
        key, config, indices = obj["key"], obj["config"], obj["layers"]
        if not (isinstance(key, str) and len(key) == 64 and all(c in "0123456789abcdef" for c in key)):
            return None
        if not isinstance(config, dict) or not isinstance(config.get("config", {}), dict):
            return None
        diff_ids = config["rootfs"]["diff_ids"]
        if not isinstance(indices, list) or not isinstance(diff_ids, list) or len(diff_ids) != len(indices):
            return None
        for d in diff_ids:
            Digest.parse(d)
        named = [layers[i] for i in indices if isinstance(i, int) and not isinstance(i, bool) and i >= 0]
        if len(named) != len(indices) or any(d.media_type not in mt.LAYER_COMPRESSION for d in named):
            return None
        return key, config, named
    except (KeyError, TypeError, IndexError, AttributeError, DockyardError):
        return None


# -- export -------------------------------------------------------------------------------------------------


def document(records: list[Record], layers: list[Descriptor]) -> bytes:
    """The records JSON, each record's layers as indices among `layers` (which must hold them all)."""
    index = {d.digest: i for i, d in enumerate(layers)}
    return canonical_json({"records": [{"key": r.key, "config": json.loads(r.config),
                                        "layers": [index[d.digest] for d in r.layers]} for r in records]})


def inline_annotation(records: list[Record], image_layers: list[Descriptor]) -> str:
    """The inline cache of an image: the records whose layers are all the image's own."""
    mine = {d.digest for d in image_layers}
    return document([r for r in records if all(d.digest in mine for d in r.layers)], image_layers).decode()


def export(store: Store, spec: CacheSpec, records: list[Record]) -> None:
    """Write the records and their layers as a cache manifest to a registry or an OCI layout directory."""
    with store.transaction() as added:
        if spec.compression:
            records = _recompressed(store, records, spec.compression, added)
        layers = list({d.digest: d for r in records for d in r.layers}.values())
        data = document(records, layers)
        config = Descriptor(CACHE_CONFIG, store.write_blob_bytes(data, added=added), len(data))
        manifest = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "artifactType": CACHE_ARTIFACT,
                    "config": config.to_json(), "layers": [d.to_json() for d in layers]}
        body = canonical_json(manifest)
        image = Image(store.write_blob_bytes(body, added=added), manifest, {})
        if spec.kind == "local":
            _write_layout(store, spec.path, image, [config, *layers], len(body))
        else:
            _push(store, spec.ref, image)


def _recompressed(store: Store, records: list[Record], compression: str, added: set[Digest]) -> list[Record]:
    """The records with every layer not in `compression` compressed again (same content, other blob)."""
    from dockyard.compression import decompressed
    from dockyard.layers import compress_layer

    done: dict[Digest, Descriptor] = {}
    for d in {d.digest: d for r in records for d in r.layers}.values():
        if mt.LAYER_COMPRESSION.get(d.media_type) == compression:
            done[d.digest] = d
            continue
        with store.open_blob(d.digest) as src, store.temp_path("layer-") as tmp:
            blob = compress_layer(decompressed(src), tmp, compression)
            store.adopt_blob(tmp, blob.digest, added)
        done[d.digest] = Descriptor(blob.media_type, blob.digest, blob.size)
    return [Record(r.key, r.config, [done[d.digest] for d in r.layers]) for r in records]


def _push(store: Store, text: str, image: Image) -> None:
    from registry.client.progress import Progress
    from registry.client.push import MountSources, push_image
    from registry.client.remote import Transports, qualify, remote_for

    ref = qualify(reference.parse(text))
    remote = remote_for(ref)
    transports = Transports()
    try:
        push_image(store, transports.get(remote.host), remote, image, str(ref.digest or ref.tag or "latest"),
                   Progress(), transports.config.max_concurrent_uploads, MountSources(store, remote))
    finally:
        transports.close()


def _write_layout(store: Store, path: str, image: Image, blobs: list[Descriptor], size: int) -> None:
    """An OCI layout holding the cache manifest (replacing the one there), its config and layers."""
    from dockyard.fsutil import atomic_write

    for d in [*blobs, Descriptor(mt.OCI_MANIFEST, image.manifest_digest, size)]:
        dest = os.path.join(path, "blobs", d.digest.algorithm, d.digest.hex)
        if not os.path.exists(dest):
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copyfile(store.blob_path(d.digest), dest + ".tmp")
            os.replace(dest + ".tmp", dest)
    atomic_write(os.path.join(path, "oci-layout"), b'{"imageLayoutVersion":"1.0.0"}')
    entry = {"mediaType": mt.OCI_MANIFEST, "artifactType": CACHE_ARTIFACT, "digest": str(image.manifest_digest),
             "size": size}
    atomic_write(os.path.join(path, "index.json"),
                 canonical_json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [entry]}))
