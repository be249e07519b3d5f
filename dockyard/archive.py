"""Image archives: `save` writes docker-archive (with an OCI layout inside, as Docker 25+ does) or
oci-archive; `load` reads either, as docker and podman write them, verifying every digest."""

from __future__ import annotations

import contextlib
import io
import json
import os
import posixpath
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, BinaryIO

from dockyard import mediatypes as mt
from dockyard import reference
from dockyard.compression import decompressed, sniff
from dockyard.digest import CHUNK, Digest, HashingWriter, InvalidDigest, verify
from dockyard.errors import DockyardError
from dockyard.fsutil import atomic_file
from dockyard.image import Descriptor, Image, canonical_json, manifest_for, to_oci_manifest
from dockyard.importer import InvalidArchive
from dockyard.layers import LayerBlob, compress_layer
from dockyard.store import OCI_LAYOUT, Store

CONTAINERD_NAME = "io.containerd.image.name"
_FIXED_MTIME = 0  # archives we write are reproducible: same images, same bytes
MANIFEST_LIMIT = 4 << 20  # distribution's own limit on a manifest's size


# ---- save ----------------------------------------------------------------------------------------

def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, _FIXED_MTIME
    tf.addfile(info, io.BytesIO(data))


def _add_dir(tf: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, _FIXED_MTIME
    tf.addfile(info)


def _add_file(tf: tarfile.TarFile, name: str, path: str) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = os.path.getsize(path), 0o644, _FIXED_MTIME
    with open(path, "rb") as f:
        tf.addfile(info, f)


def _add_blob_dirs(tf: tarfile.TarFile) -> None:
    _add_dir(tf, "blobs/")
    _add_dir(tf, "blobs/sha256/")


def _add_layout_files(tf: tarfile.TarFile, entries: list[dict]) -> None:
    """The OCI layout's own files, after its blobs: oci-layout and an index of `entries`."""
    _add_bytes(tf, "oci-layout", OCI_LAYOUT)
    _add_bytes(tf, "index.json", canonical_json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                                                 "manifests": entries}))


def _blob_name(d: Digest) -> str:
    return f"blobs/{d.algorithm}/{d.hex}"


@contextlib.contextmanager
def _output(dest: str | BinaryIO) -> Iterator[BinaryIO]:
    """The archive's destination: a file (by path) written atomically, or a stream (standard output, a spool)."""
    if not isinstance(dest, str):
        yield dest
        return
    with atomic_file(dest) as f:
        yield f


def save(store: Store, images: list[tuple[Image, list[str]]], dest: str | BinaryIO,
         fmt: str = "docker-archive") -> None:
    """Write images (with the names to record) as a docker-archive or an oci-archive to a path or a stream."""
    with _output(dest) as out, tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        if fmt == "oci-archive":
            _save_oci(store, images, tf)
        elif fmt == "docker-archive":
            _save_docker(store, images, tf)
        else:
            raise DockyardError(f"unknown archive format {fmt!r} (use docker-archive or oci-archive)")


def _save_oci(store: Store, images: list[tuple[Image, list[str]]], tf: tarfile.TarFile) -> None:
    written: set[Digest] = set()
    entries = []
    _add_blob_dirs(tf)
    for image, names in images:
        top = _add_whole(store, image, tf, written)
        for name in names or [""]:
            ann = {mt.REF_NAME: name} if name else {}
            entries.append(Descriptor(top.media_type, top.digest, top.size, ann).to_json())
    _add_layout_files(tf, entries)


def _add_whole(store: Store, image: Image, tf: tarfile.TarFile, written: set[Digest]) -> Descriptor:
    """Add an image's blobs as the store keeps them (of a multi-platform image: its index and every platform's
    image); returns the descriptor of its top (index or manifest)."""
    children = [store.image(d.digest) for _, d in store.index_children(image.index)] if image.index else [image]
    for child in children:
        for d in [child.manifest_digest, child.id, *(layer.digest for layer in child.layers)]:
            if d not in written:
                _add_file(tf, _blob_name(d), store.blob_path(d))
                written.add(d)
    top = image.top
    if top not in written:
        _add_file(tf, _blob_name(top), store.blob_path(top))
        written.add(top)
    media_type = mt.OCI_INDEX if image.index else image.manifest.get("mediaType") or mt.OCI_MANIFEST
    return Descriptor(media_type, top, os.path.getsize(store.blob_path(top)))


def _save_docker(store: Store, images: list[tuple[Image, list[str]]], tf: tarfile.TarFile) -> None:
    written: set[Digest] = set()
    sizes: dict[Digest, int] = {}
    manifest_json: list[dict] = []
    repositories: dict[str, dict] = {}
    entries: list[dict] = []
    _add_blob_dirs(tf)
    for image, names in images:
        if image.index:
            # As docker with the containerd store: the whole index in the OCI layout (what `load` restores), and
            # manifest.json naming the host's image with its layers as stored (compressed; docker load reads them).
            top = _add_whole(store, image, tf, written)
            layers = [_blob_name(d.digest) for d in image.layers]
        else:
            top = _add_uncompressed(store, image, tf, written, sizes)
            layers = [_blob_name(d) for d in image.diff_ids]
        manifest_json.append({"Config": _blob_name(image.id), "RepoTags": list(names), "Layers": layers})
        for name in names:
            ref = reference.parse(name)
            if image.diff_ids:
                repositories.setdefault(ref.name, {})[ref.tag] = image.diff_ids[-1].hex
        for name in names or [""]:
            ann = {}
            if name:  # a name:tag
                ann = {CONTAINERD_NAME: name, mt.REF_NAME: reference.parse(name).tag or ""}
            entries.append(Descriptor(top.media_type, top.digest, top.size, ann).to_json())
    _add_bytes(tf, "manifest.json", json.dumps(manifest_json).encode())
    _add_bytes(tf, "repositories", json.dumps(repositories).encode())
    _add_layout_files(tf, entries)


def _add_uncompressed(store: Store, image: Image, tf: tarfile.TarFile, written: set[Digest],
                      sizes: dict[Digest, int]) -> Descriptor:
    """Add an image as Docker 25+ saves one: layers uncompressed, named by diffID, under a manifest of its own;
    returns that manifest's descriptor."""
    cfg = store.read_blob(image.id)
    if image.id not in written:
        _add_bytes(tf, _blob_name(image.id), cfg)
        written.add(image.id)
    layer_descs = []
    for desc, diff_id, _ in image.layer_stack():
        if diff_id not in written:
            with store.temp_path("save-") as tmp:
                with store.open_blob(desc.digest) as src, open(tmp, "wb") as dst:
                    w = HashingWriter(dst)
                    plain = decompressed(src)
                    while chunk := plain.read(CHUNK):
                        w.write(chunk)
                verify(diff_id, w.digest(), f"layer {desc.digest}")
                _add_file(tf, _blob_name(diff_id), tmp)
            written.add(diff_id)
            sizes[diff_id] = w.size
        layer_descs.append(Descriptor(mt.OCI_LAYER, diff_id, sizes[diff_id]))
    manifest = canonical_json(manifest_for(Descriptor(mt.OCI_CONFIG, image.id, len(cfg)), layer_descs))
    mdigest = Digest.of_bytes(manifest)
    if mdigest not in written:
        _add_bytes(tf, _blob_name(mdigest), manifest)
        written.add(mdigest)
    return Descriptor(mt.OCI_MANIFEST, mdigest, len(manifest))


# ---- load ----------------------------------------------------------------------------------------

@dataclass
class Loaded:
    """What a load put in the store: the image and the names it was tagged with."""

    image: Image
    names: list[str]


class _Archive:
    """Random access to the members of a (possibly compressed, possibly streamed) tar archive."""

    def __init__(self, tf: tarfile.TarFile, what: str):
        self.tf, self.what = tf, what
        self.members = {}
        for m in tf.getmembers():
            self.members[posixpath.normpath(m.name.lstrip("/")).removeprefix("./")] = m

    def has(self, name: str) -> bool:
        return posixpath.normpath(name) in self.members

    def open(self, name: str) -> IO[bytes]:
        m = self.members.get(posixpath.normpath(name))
        f = self.tf.extractfile(m) if m is not None and m.isfile() else None
        if f is None:
            raise InvalidArchive(f"{self.what}: missing file {name!r} in archive")
        return f

    def read(self, name: str, limit: int = 64 << 20) -> bytes:
        with self.open(name) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise InvalidArchive(f"{self.what}: {name!r} is too large")
        return data

    def json(self, name: str):
        try:
            return json.loads(self.read(name))
        except ValueError as e:
            raise InvalidArchive(f"{self.what}: {name!r} is not valid JSON ({e})") from None


@contextlib.contextmanager
def _open_archive(store: Store, source: BinaryIO, what: str) -> Iterator[_Archive]:
    """Open an archive for random access, spooling it to a plain temp file when compressed or piped."""
    seekable = False
    with contextlib.suppress(OSError, AttributeError, io.UnsupportedOperation):
        seekable = source.seekable()
    head = b""
    if seekable:
        head = source.read(512)
        source.seek(0)
    if seekable and sniff(head) == "none":
        try:
            with tarfile.open(fileobj=source, mode="r:") as tf:
                yield _Archive(tf, what)
        except tarfile.TarError as e:
            raise InvalidArchive(f"{what}: not a valid tar archive ({e})") from None
        return
    with store.temp_path("load-") as tmp:
        try:
            with open(tmp, "wb") as f:
                shutil.copyfileobj(decompressed(source), f, CHUNK)
            with tarfile.open(tmp, mode="r:") as tf:
                yield _Archive(tf, what)
        except (tarfile.TarError, EOFError) as e:
            raise InvalidArchive(f"{what}: not a valid tar archive ({e})") from None


def load(store: Store, source: BinaryIO, what: str) -> list[Loaded]:
    """Load every image in a docker-archive or oci-archive into the store."""
    with _open_archive(store, source, what) as ar, store.transaction() as added:
        if ar.has("manifest.json"):
            return _load_docker(store, ar, added)
        if ar.has("index.json"):
            return _load_oci(store, ar, added)
        raise InvalidArchive(f"{what}: neither a docker-archive (manifest.json) nor an OCI archive (index.json)")


def _parse_names(names: list[str], what: str) -> list[reference.Reference]:
    try:
        return [reference.parse(n) for n in names]
    except DockyardError as e:
        raise InvalidArchive(f"{what}: {e}") from None


def _load_docker(store: Store, ar: _Archive, added: set[Digest]) -> list[Loaded]:
    out = []
    # A multi-platform image (docker's containerd store saves its index in the OCI layout) is restored whole;
    # manifest.json's entry for its host image then adds nothing.
    restored: set[tuple[Digest, str]] = set()
    if ar.has("index.json"):
        for desc in _index_entries(ar):
            if desc.media_type in mt.INDEXES:
                out.append(_load_oci_entry(store, ar, desc, added))
                restored |= {(store.image(d.digest).id, name) for _, d in store.index_children(desc.digest)
                             for name in out[-1].names or [""]}
    layers: dict[Digest, LayerBlob] = {}
    items = ar.json("manifest.json")
    if not isinstance(items, list):
        raise InvalidArchive(f"{ar.what}: manifest.json is not a list")
    for item in items:
        try:
            cfg_name, layer_names = item["Config"], list(item.get("Layers") or [])
        except (TypeError, KeyError):
            raise InvalidArchive(f"{ar.what}: malformed manifest.json entry") from None
        cfg = ar.read(cfg_name)
        cfg_digest = Digest.of_bytes(cfg)
        if all((cfg_digest, name) in restored for name in item.get("RepoTags") or [""]):
            continue
        named = posixpath.basename(cfg_name).removesuffix(".json")
        if len(named) == 64 and named != cfg_digest.hex:
            raise InvalidArchive(f"{ar.what}: digest mismatch for config {cfg_name}: got {cfg_digest}")
        try:
            diff_ids = Image(cfg_digest, {"config": {}}, json.loads(cfg)).diff_ids
        except (ValueError, InvalidDigest, AttributeError) as e:
            raise InvalidArchive(f"{ar.what}: config {cfg_name} is invalid ({e})") from None
        if len(diff_ids) != len(layer_names):
            raise InvalidArchive(f"{ar.what}: {cfg_name} lists {len(diff_ids)} diff_ids, manifest.json "
                                 f"{len(layer_names)} layers")
        descs = []
        for name, diff_id in zip(layer_names, diff_ids, strict=True):
            if diff_id not in layers:
                with store.temp_path("load-") as tmp:
                    blob = compress_layer(decompressed(ar.open(name)), tmp, "gzip")
                    verify(diff_id, blob.diff_id, f"layer {name} in {ar.what}")
                    store.adopt_blob(tmp, blob.digest, added)
                layers[diff_id] = blob
            blob = layers[diff_id]
            descs.append(Descriptor(blob.media_type, blob.digest, blob.size))
        store.write_blob_bytes(cfg, added=added)
        manifest = canonical_json(manifest_for(Descriptor(mt.OCI_CONFIG, cfg_digest, len(cfg)), descs))
        names = item.get("RepoTags") or []
        image = store.add_image(manifest, _parse_names(names, ar.what), added, unpack=True)
        out.append(Loaded(image, names))
    return out


def _copy_blob(store: Store, ar: _Archive, desc: Descriptor, added: set[Digest]) -> None:
    """Copy one blob from the archive into the store, verifying digest and size."""
    with ar.open(_blob_name(desc.digest)) as f:
        store.write_blob(f, desc.digest, desc.size, f"blob {desc.digest} in {ar.what}", added)


def _index_entries(ar: _Archive) -> list[Descriptor]:
    """The descriptors index.json lists."""
    index = ar.json("index.json")
    try:
        return [Descriptor.from_json(d) for d in index.get("manifests") or []]
    except (KeyError, ValueError, TypeError, AttributeError, InvalidDigest) as e:
        raise InvalidArchive(f"{ar.what}: index.json is invalid ({e})") from None


def _load_oci(store: Store, ar: _Archive, added: set[Digest]) -> list[Loaded]:
    return [_load_oci_entry(store, ar, desc, added) for desc in _index_entries(ar)]


def _load_oci_entry(store: Store, ar: _Archive, desc: Descriptor, added: set[Digest]) -> Loaded:
    """One image index.json names (a manifest, or an index with every platform's image) into the store."""
    manifest_bytes = _read_manifest(ar, desc.digest)
    try:
        manifest = json.loads(manifest_bytes)
    except (ValueError, RecursionError) as e:
        raise InvalidArchive(f"{ar.what}: manifest {desc.digest} is not valid JSON ({e})") from None
    if not isinstance(manifest, dict):
        raise InvalidArchive(f"{ar.what}: manifest {desc.digest} is not a JSON object")
    names = [n for n in [_oci_name(desc.annotations)] if n]
    refs = _parse_names(names, ar.what)
    if desc.media_type in mt.INDEXES or "manifests" in manifest:
        # A multi-platform image stays one: every platform's image, then its index (tagged).
        try:
            children = [Descriptor.from_json(d) for d in manifest.get("manifests") or []]
        except (KeyError, ValueError, TypeError, AttributeError, InvalidDigest) as e:
            raise InvalidArchive(f"{ar.what}: index {desc.digest} is invalid ({e})") from None
        if not children:
            raise InvalidArchive(f"{ar.what}: index {desc.digest} lists no images")
        before = {e.digest for e in store.entries()}
        try:
            for child in children:
                _load_oci_manifest(store, ar, child.digest, _read_manifest(ar, child.digest), [], added)
            store.add_index(manifest_bytes, refs, added)
        except BaseException:
            # None of a broken index's platforms stays behind (the caller's transaction then drops their blobs).
            for child in children:
                if child.digest not in before:
                    store.delete_image(child.digest)
            raise
        return Loaded(store.image(desc.digest), names)
    return Loaded(_load_oci_manifest(store, ar, desc.digest, manifest_bytes, refs, added), names)


def _read_manifest(ar: _Archive, digest: Digest) -> bytes:
    """A manifest or index blob of the archive, bounded (distribution's 4 MiB) and verified."""
    data = ar.read(_blob_name(digest), MANIFEST_LIMIT)
    verify(digest, Digest.of_bytes(data, digest.algorithm), f"manifest {digest} in {ar.what}")
    return data


def _load_oci_manifest(store: Store, ar: _Archive, digest: Digest, data: bytes, names: list[reference.Reference],
                       added: set[Digest]) -> Image:
    """One image manifest of the archive and its blobs into the store."""
    try:
        manifest = json.loads(data)
        blobs = [Descriptor.from_json(d) for d in [manifest["config"], *(manifest.get("layers") or [])]]
    except (KeyError, ValueError, TypeError, AttributeError, RecursionError, InvalidDigest):
        raise InvalidArchive(f"{ar.what}: {digest} is not an image manifest") from None
    for blob in blobs:
        _copy_blob(store, ar, blob, added)
    oci = to_oci_manifest(manifest)
    return store.add_image(canonical_json(oci) if oci is not manifest else data, names, added, unpack=True)


def _oci_name(annotations: dict[str, str]) -> str | None:
    """The image name an OCI index entry carries: containerd's full name, or a full ref.name."""
    if annotations.get(CONTAINERD_NAME):
        return annotations[CONTAINERD_NAME]
    ref_name = annotations.get(mt.REF_NAME)
    if ref_name and ("/" in ref_name or ":" in ref_name or "@" in ref_name):
        return ref_name
    return None
