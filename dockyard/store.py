"""The local image store: an OCI image layout plus an unpacked-layer cache, safe for concurrent processes.

Layout under the root (DOCKYARD_ROOT, default /var/lib/dockyard for root, ~/.local/share/dockyard otherwise):
  images/            an OCI image layout (oci-layout, index.json, blobs/<algo>/<hex>) that skopeo and umoci read
  layers/<chain>/    each layer unpacked once, in overlay format, keyed by chain ID: ready as an overlay lowerdir.
                     A cache: only holders that mount them (containers) need them; the rest is unpacked again from
                     the blob when used, so `gc(drop_unpacked=True)` (the prunes) may remove it
  holds/<owner>      manifest digests that something outside the store (a container, a build) still uses; a first
                     line `blobs-only` marks an owner that needs the blobs but not the unpacked layers
  sizes/<diff_id>    each layer's unpacked size as docker counts it, recorded once (the unpacked copy may go)
  referrers/<subject>/<referrer>
                     artifacts (SBOMs, provenance) whose subject is an image: untagged, kept while the subject is
  summaries.json     what listings show of each image (ID, created, unpacked and compressed size) by manifest
                     digest: a cache, so `images` reads one file rather than every manifest and config
  tmp/               temp files, on the same filesystem so a rename publishes them atomically
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from dockyard import mediatypes as mt
from dockyard import reference
from dockyard import summaries as image_summaries
from dockyard.digest import CHUNK, Digest, Reader, new_hash, verify
from dockyard.errors import DockyardError, NotFound
from dockyard.fsutil import (
    WRITEBACK_STEP,
    atomic_file,
    atomic_write,
    drop_cached,
    durable_tree,
    fsync_dir,
    fsync_path,
    locked,
    small_tree,
    spread_subdirectories,
    start_writeback,
)
from dockyard.image import Descriptor, Image, InvalidImage, Platform, select_platform
from dockyard.referrers import Records, Referrer, referrer_of
from dockyard.roots import default_root
from dockyard.sizes import content_size, disk_usage

OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
# Temp files older than this are left-overs of a crashed process and may be swept.
STALE_TEMP_SECONDS = 3600
# The first line of a hold whose owner needs the images' blobs but not their unpacked layers.
BLOBS_ONLY = "blobs-only"
# A layer blob this big is unpacked on a thread of its own as it is written: hashing and writing the blob and
# unpacking it then each take a core (a 64 MiB layer pulls in 0.56 s rather than 0.70 s). For a smaller one
# the thread's start and hand-offs cost more than the overlap wins, and a pull's parallel layers keep the cores busy.
UNPACK_THREAD_SIZE = 8 << 20
# An unpacked layer of at most this many files and directories is put on disk by an fsync of each (and of its blob),
# a bigger one by one syncfs. A syncfs also waits for every other writer's dirty data on the filesystem: with 100 MB
# written (not synced) before each pull, 40 one-file layers pulled in 0.261 s with a syncfs each vs 0.238 s with
# fsyncs (ext4 without a journal; with one, 0.477 vs 0.274 s), and with nothing else dirty 0.214 vs 0.209 s (with a
# journal 0.265 vs 0.279 s). But an fsync per entry costs ~0.3 ms where a syncfs of many small files costs ~0.02 ms
# a file (see fsutil.durable_tree), so a big tree takes the syncfs.
SMALL_TREE = 8
# The least a blob of known size is read by at a time (a buffer of its size, up to CHUNK: its pages are all touched).
SMALL_READ = 64 << 10
# Unpacked layers being removed are first renamed into tmp/ under this prefix (see Store.gc).
_GONE = "gone-"
_HEX_PREFIX = re.compile(r"^(?:sha256:)?([a-f0-9]{1,64})$")


class Conflict(DockyardError):
    """An operation would break something still in use."""


class Added(set):
    """What a transaction put in the store: blob digests (the set itself) and unpacked layers (`layers`)."""

    def __init__(self) -> None:
        super().__init__()
        self.layers: set[Digest] = set()  # chain IDs


@dataclass(frozen=True)
class Entry:
    """One index.json entry: a manifest and the name it is tagged with (None when dangling)."""

    descriptor: Descriptor

    @property
    def name(self) -> str | None:
        return self.descriptor.annotations.get(mt.REF_NAME)

    @property
    def digest(self) -> Digest:
        return self.descriptor.digest


@dataclass(frozen=True)
class Summary:
    """What a listing shows of an image; content-addressed by its manifest digest, so a cached one is never stale."""

    id: str  # the config digest
    created: str | None
    size: int  # the layers' unpacked size, as docker's SIZE
    compressed: int  # the config and layer blobs' size
    platforms: str  # an image index's platforms, comma-separated ("" for a plain manifest)


class Store:
    """The local image store rooted at one directory."""

    def __init__(self, root: str | None = None):
        self.root = os.path.abspath(root or default_root())
        self.layout = os.path.join(self.root, "images")
        self.layers_dir = os.path.join(self.root, "layers")
        self.holds_dir = os.path.join(self.root, "holds")
        self.tmp_dir = os.path.join(self.root, "tmp")
        self.locks_dir = os.path.join(self.root, "locks")
        self.sizes_dir = os.path.join(self.root, "sizes")
        self.referrer_records = Records(os.path.join(self.root, "referrers"))
        self._index_path = image_summaries.index_path(self.root)
        self._init()

    def _init(self) -> None:
        new = not os.path.exists(self._index_path)
        if new:
            # Before its subdirectories exist: each gets an inode group of its own, away from the parent's.
            os.makedirs(self.root, exist_ok=True)
            spread_subdirectories(self.root)
        # Every start: cheap, and a store made by an older version gains the directories added since.
        blobs = os.path.join(self.layout, "blobs")
        made = [d for d in (self.layout, blobs, os.path.join(blobs, "sha256"), self.layers_dir, self.holds_dir,
                            self.tmp_dir, self.locks_dir, self.sizes_dir) if not os.path.isdir(d)]
        for d in made:
            os.makedirs(d, exist_ok=True)
        # Their names on disk before anything is written into them: after a power loss the store's own directories
        # must still be there for what was stored in them (a new root's own name too).
        for parent in dict.fromkeys(os.path.dirname(d) for d in ([self.root] if new else []) + made):
            fsync_dir(parent)
        if not new:
            return
        with locked(self._lock_path("index")):
            if not os.path.exists(self._index_path):
                atomic_write(os.path.join(self.layout, "oci-layout"), OCI_LAYOUT)
                self._write_index([])

    def _lock_path(self, name: str) -> str:
        return os.path.join(self.root, f".{name}.lock")  # `index`: image_summaries.index_lock

    # ---- content guard -------------------------------------------------------------------------

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Hold while adding content that is not indexed yet, or from taking unpacked layers until they are held
        (see `gc`), so a concurrent gc cannot sweep them."""
        with locked(self._lock_path("gc"), shared=True):
            yield

    # ---- blobs -----------------------------------------------------------------------------------

    def blob_path(self, digest: Digest) -> str:
        """Where a blob lives in the layout (it may not exist)."""
        return os.path.join(self.layout, "blobs", digest.algorithm, digest.hex)

    def has_blob(self, digest: Digest) -> bool:
        return os.path.exists(self.blob_path(digest))

    def open_blob(self, digest: Digest) -> BinaryIO:
        """Open a blob for reading; NotFound names it when missing."""
        try:
            return open(self.blob_path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob not found in store: {digest}") from None

    def read_blob(self, digest: Digest) -> bytes:
        with self.open_blob(digest) as f:
            return f.read()

    @contextlib.contextmanager
    def temp_path(self, prefix: str = "blob-") -> Iterator[str]:
        """A fresh temp file on the store's filesystem, removed at the end unless adopted meanwhile."""
        import tempfile

        fd, path = tempfile.mkstemp(prefix=prefix, dir=self.tmp_dir)
        os.close(fd)
        try:
            yield path
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def adopt_blob(self, tmp_path: str, digest: Digest, added: set[Digest] | None = None) -> None:
        """Move a fully written, fsynced temp file whose digest was computed while writing into place."""
        dest = self.blob_path(digest)
        if added is not None and not os.path.exists(dest):
            added.add(digest)
        os.chmod(tmp_path, 0o644)
        try:
            os.rename(tmp_path, dest)
        except FileNotFoundError:  # the first blob of its algorithm (makedirs first cost 3 syscalls per blob)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            os.rename(tmp_path, dest)

    def write_blob(self, stream: Reader, expected: Digest | None = None, size: int | None = None,
                   what: str | None = None, added: set[Digest] | None = None,
                   check: Callable[[], None] | None = None, cached: bool = True,
                   durable: Callable[[int], None] | None = None) -> tuple[Digest, int]:
        """Stream a blob into the store, verifying digest and size when given; nothing is kept on mismatch.

        `check` runs once the blob is read and verified, before it is kept; if it raises, the blob is not kept.
        cached=False leaves none of the blob in the page cache once it is on disk (see _Incoming); `durable` puts
        the written temp file (its descriptor) on disk instead of an fsync of its own (see _Incoming.keep).
        """
        with self._incoming(expected, cached) as blob:
            for chunk in _chunks(stream, CHUNK if size is None else min(max(size, SMALL_READ), CHUNK)):
                blob.write(chunk)
            return blob.keep(expected, size, what, added, check, durable)

    @contextlib.contextmanager
    def _incoming(self, expected: Digest | None, cached: bool = True) -> Iterator[_Incoming]:
        """A blob to write; whatever of it is not kept by the end is removed."""
        blob = _Incoming(self, expected, cached)
        try:
            yield blob
        finally:
            blob.discard()

    def write_blob_bytes(self, data: bytes, expected: Digest | None = None,
                         added: set[Digest] | None = None) -> Digest:
        """Store an in-memory blob (manifests, configs) atomically."""
        digest = Digest.of_bytes(data, expected.algorithm if expected else "sha256")
        if expected:
            verify(expected, digest, str(expected))
        if not self.has_blob(digest):
            if added is not None:
                added.add(digest)
            os.makedirs(os.path.dirname(self.blob_path(digest)), exist_ok=True)
            with atomic_file(self.blob_path(digest), tmpdir=self.tmp_dir) as f:
                f.write(data)
        return digest

    # ---- index -----------------------------------------------------------------------------------

    def _read_entries(self) -> list[Entry]:
        with open(self._index_path, "rb") as f:
            index = json.load(f)
        return [Entry(Descriptor.from_json(d)) for d in index.get("manifests") or []]

    def _write_index(self, entries: list[Entry]) -> None:
        index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                 "manifests": [e.descriptor.to_json() for e in entries]}
        atomic_write(self._index_path, json.dumps(index, indent=2).encode() + b"\n")

    @contextlib.contextmanager
    def _editing(self) -> Iterator[list[Entry]]:
        """Read-modify-write index.json under the index lock."""
        with locked(self._lock_path("index")):
            entries = self._read_entries()
            before = list(entries)
            yield entries
            if entries != before or [e.name for e in entries] != [e.name for e in before]:
                if {e.digest for e in entries} - {e.digest for e in before}:
                    self._sync_blob_names()
                    fsync_dir(self.layers_dir)  # its layers' renames too (adopt_layer_dir)
                self._write_index(entries)

    def _sync_blob_names(self) -> None:
        """Put the blobs' directory entries on disk before index.json names an image made of them: adopt_blob's
        renames are not fsynced one by one, so after a power loss the index could name blobs that are gone."""
        blobs = os.path.join(self.layout, "blobs")
        for algorithm in os.listdir(blobs):
            fsync_dir(os.path.join(blobs, algorithm))

    def entries(self) -> list[Entry]:
        """The index entries: one per tag, and one per dangling (untagged) image."""
        with locked(self._lock_path("index"), shared=True):
            return self._read_entries()

    # ---- images ----------------------------------------------------------------------------------

    def image(self, manifest_digest: Digest, platform: Platform | None = None, strict: bool = False) -> Image:
        """Load an image's manifest and config from the store; an index gives its child for `platform` (see
        `_child`)."""
        manifest = json.loads(self.read_blob(manifest_digest))
        if "manifests" in manifest:
            return self._child(manifest_digest, manifest, platform, strict)
        config = json.loads(self.read_blob(Digest.parse(manifest["config"]["digest"])))
        have = Platform.of(config) if strict and platform is not None else None
        if have is not None and platform is not None and not platform.matches(config):
            raise NotFound(f"image {manifest_digest.short} is {have}, not {platform}")
        return Image(manifest_digest, manifest, config)

    def images(self) -> list[tuple[Image, list[str]]]:
        """Every image with its tags (an empty list for a dangling image), in index order."""
        return [(self.image(d), names) for d, names in self._tagged().items()]

    def _tagged(self) -> dict[Digest, list[str]]:
        """Each manifest digest in the index with its tags, in index order."""
        return {Digest.parse(d): names for d, names in image_summaries.index_names(self.root).items()}

    def summaries(self) -> list[tuple[Digest, Summary, list[str]]]:
        """Every image's summary with its tags, in index order: `images()` without reading each manifest and config."""
        return [(Digest.parse(d), Summary(*row), names) for d, row, names in image_summaries.read(self.root)]

    def summary_row(self, manifest_digest: str) -> image_summaries.Row:
        """An image's row in the summaries cache (see dockyard.summaries)."""
        digest = Digest.parse(manifest_digest)
        image = self.image(digest)
        platforms = [str(p) for p, _ in self.index_children(digest) if p is not None] if image.index else []
        return [str(image.id), image.config.get("created"), self.unpacked_size(image), image.size, ",".join(platforms)]

    def tags_of(self, manifest_digest: Digest) -> list[str]:
        return image_summaries.index_names(self.root).get(str(manifest_digest), [])

    def resolve(self, text: str, platform: Platform | None = None) -> Image:
        """Find an image by name[:tag], name@digest, image ID or a unique ID prefix; of a multi-platform image,
        the one for `platform` (default: the host's); a given `platform` must be the image's."""
        by_digest = image_summaries.index_names(self.root)  # a digest is parsed (checked) when it is used
        try:
            ref = reference.parse(text)
        except DockyardError:
            ref = None
        if ref is not None:
            for d, names in by_digest.items():
                if (ref.digest and d == str(ref.digest)) or (not ref.digest and ref.ref_name in names):
                    try:
                        return self.image(Digest.parse(d), platform, strict=True)
                    except NotFound as err:
                        raise NotFound(f"{text}: {err}") from None
        m = _HEX_PREFIX.match(text)
        if m:
            prefix = m.group(1)
            found = {img.manifest_digest: img for img in (self.image(Digest.parse(d)) for d in by_digest)
                     if img.id.hex.startswith(prefix)}
            if len(found) == 1:
                return next(iter(found.values()))
            if len(found) > 1 and len({i.id for i in found.values()}) == 1:
                return next(iter(found.values()))
        raise NotFound(f"No such image: {ref if ref is not None else text}")

    def add_image(self, manifest: bytes, names: Sequence[reference.Reference] = (),
                  added: set[Digest] | None = None, unpack: bool = False) -> Image:
        """Store a manifest whose config and layers are already in the store, and tag it.

        With `unpack`, for images from outside (pull, load), every layer is first unpacked into the layer
        cache (where the store `unpacks`): a layer that would not unpack, or whose content is not its diff_id,
        is refused now, not at run.
        """
        obj = json.loads(manifest)
        for d in [obj["config"], *(obj.get("layers") or [])]:
            if not self.has_blob(Digest.parse(d["digest"])):
                raise NotFound(f"blob not found in store: {d['digest']}")
        try:
            config = json.loads(self.read_blob(Digest.parse(obj["config"]["digest"])))
        except (ValueError, RecursionError) as e:
            raise InvalidImage(f"config {obj['config']['digest']} is not valid JSON ({e})") from None
        image = Image(Digest.of_bytes(manifest), obj, config)
        try:
            stack = image.layer_stack()
        except (AttributeError, TypeError) as e:
            raise InvalidImage(f"config {image.id} is malformed ({e})") from None
        if unpack and self.unpacks:
            for layer in stack:
                self.unpack_layer(*layer, added=added)
        media_type = obj.get("mediaType") or mt.OCI_MANIFEST
        digest = self.write_blob_bytes(manifest, added=added)
        desc = Descriptor(media_type, digest, len(manifest))
        with self._editing() as entries:
            self._place(entries, desc, [n.ref_name for n in names])
        return self.image(digest)

    @staticmethod
    def _place(entries: list[Entry], desc: Descriptor, names: list[str]) -> None:
        """Point each name at desc; a manifest that loses its last tag stays as a dangling entry."""
        for name in names:
            for i, e in enumerate(entries):
                if e.name == name:
                    old = e.digest
                    del entries[i]
                    if old != desc.digest and not any(x.digest == old for x in entries):
                        entries.append(Entry(Descriptor(e.descriptor.media_type, old, e.descriptor.size)))
                    break
            entries.append(Entry(Descriptor(desc.media_type, desc.digest, desc.size, {mt.REF_NAME: name})))
        present = [e for e in entries if e.digest == desc.digest]
        if not present:
            entries.append(Entry(Descriptor(desc.media_type, desc.digest, desc.size)))
        elif any(e.name for e in present):
            # A tagged image needs no dangling entry.
            entries[:] = [e for e in entries if e.digest != desc.digest or e.name]

    def tag(self, image: Image, ref: reference.Reference) -> None:
        """Point a name at an image (at its index, for one of a multi-platform image)."""
        entry = next(e for e in self.entries() if e.digest == image.top)
        with self._editing() as entries:
            self._place(entries, entry.descriptor, [ref.ref_name])

    def untag(self, name: str) -> Image | None:
        """Remove one tag; returns the image it named, or None when no such tag exists."""
        with self._editing() as entries:
            for i, e in enumerate(entries):
                if e.name == name:
                    del entries[i]
                    if not any(x.digest == e.digest for x in entries):
                        entries.append(Entry(Descriptor(e.descriptor.media_type, e.digest, e.descriptor.size)))
                    return self.image(e.digest)
        return None

    def delete_image(self, manifest_digest: Digest) -> None:
        """Drop every index entry of a manifest (its blobs go at the next gc)."""
        with self._editing() as entries:
            entries[:] = [e for e in entries if e.digest != manifest_digest]

    # ---- referrers (artifacts whose subject is an image) -------------------------------------------

    def add_referrer(self, manifest: bytes, added: set[Digest] | None = None, replace: bool = False) -> Referrer:
        """Store an artifact manifest whose blobs are in the store, as a referrer of its subject (untagged, kept
        while the subject is); with `replace`, the subject's other referrers of the same artifactType go."""
        digest = Digest.of_bytes(manifest)
        subject, referrer = referrer_of(digest, manifest)
        obj = json.loads(manifest)
        for d in [obj["config"], *(obj.get("layers") or [])]:
            if not self.has_blob(Digest.parse(d["digest"])):
                raise NotFound(f"blob not found in store: {d['digest']}")
        self.write_blob_bytes(manifest, added=added)
        # The record is what lists the artifact, so its blobs' names (renamed in unsynced, see adopt_blob) go first.
        self._sync_blob_names()
        if replace:
            for old in self.referrers(subject, referrer.artifact_type):
                if old.digest != digest:
                    self.referrer_records.remove(subject, old.digest)
        self.referrer_records.add(subject, referrer)
        return referrer

    def referrers(self, subject: Digest, artifact_type: str | None = None) -> list[Referrer]:
        """The referrers of a manifest in the store (only of `artifact_type` when given)."""
        return [r for r in self.referrer_records.of(subject)
                if (artifact_type is None or r.artifact_type == artifact_type) and self.has_blob(r.digest)]

    # ---- multi-platform images (image indexes) ---------------------------------------------------

    def _child(self, digest: Digest, index: dict, platform: Platform | None, strict: bool) -> Image:
        """An index's image for `platform` (default: the host's); unless `strict`, its first one when it has
        none for the host (what listings show), else NotFound listing the platforms it has."""
        wanted = platform or Platform.host()
        manifests = index.get("manifests")
        if not isinstance(manifests, list):
            raise InvalidImage(f"index {digest}: its manifests are not a list")
        found = select_platform(index, wanted.os, wanted.architecture, wanted.variant)
        if found is None and not strict and platform is None and manifests:
            found = manifests[0]
        if found is None:
            have = ", ".join(str(p) for p, _ in self.index_children(digest)) or "no platforms"
            raise NotFound(f"no {wanted} image in index {digest.short} (it has {have})")
        child = Descriptor.from_json(found)
        image = self.image(child.digest)
        if image.index is not None:
            raise InvalidImage(f"index {digest}: child {child.digest} is an index itself")
        image.index = digest
        return image

    def index_children(self, digest: Digest) -> list[tuple[Platform | None, Descriptor]]:
        """The platforms and manifests of an image index (empty for a plain manifest)."""
        obj = json.loads(self.read_blob(digest))
        if not isinstance(obj.get("manifests"), list):
            return []
        try:
            return [(Platform.of(d.get("platform") or {}), Descriptor.from_json(d)) for d in obj["manifests"]]
        except (KeyError, TypeError, ValueError, AttributeError, DockyardError) as e:
            raise InvalidImage(f"index {digest}: a child descriptor is malformed ({e})") from None

    def add_index(self, data: bytes, names: Sequence[reference.Reference] = (),
                  added: set[Digest] | None = None) -> Digest:
        """Store an image index whose child manifests are already in the store, and tag it; the children's
        own untagged entries go (the index keeps them)."""
        digest = self.write_blob_bytes(data, added=added)
        children = {d.digest for _, d in self.index_children(digest)}
        for child in children:
            if not self.has_blob(child):
                raise NotFound(f"index {digest}: child manifest not in store: {child}")
            if self.image(child).index is not None:
                raise InvalidImage(f"index {digest}: child {child} is an index itself")
        with self._editing() as entries:
            self._place(entries, Descriptor(mt.OCI_INDEX, digest, len(data)), [n.ref_name for n in names])
            entries[:] = [e for e in entries if e.name or e.digest not in children]
        return digest

    # ---- holds -----------------------------------------------------------------------------------

    def hold(self, owner: str, manifest_digests: list[Digest], durable: bool = True, mounts: bool = True) -> None:
        """Record that `owner` (a container, a build) uses these images, so gc and rmi keep them.

        durable=False for an owner that does not outlive a reboot (no fsync; see fsutil.atomic_file).
        mounts=False for an owner that needs the blobs only (a build-cache entry): the prunes may then remove
        the images' unpacked layers, which are unpacked again when used.
        """
        lines = ([BLOBS_ONLY] if not mounts else []) + [str(d) for d in manifest_digests]
        atomic_write(os.path.join(self.holds_dir, owner), "".join(f"{x}\n" for x in lines).encode(),
                     durable=durable)

    def release(self, owner: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.holds_dir, owner))

    def holds(self) -> dict[str, tuple[list[Digest], bool]]:
        """Each owner's held manifests and whether it mounts their unpacked layers, by owner."""
        out = {}
        for owner in sorted(os.listdir(self.holds_dir)):
            with contextlib.suppress(FileNotFoundError), open(os.path.join(self.holds_dir, owner)) as f:
                words = f.read().split()
                mounts = words[:1] != [BLOBS_ONLY]
                out[owner] = ([Digest.parse(x) for x in words[0 if mounts else 1:]], mounts)
        return out

    def holders(self, manifest_digest: Digest) -> list[str]:
        """Owners that hold an image."""
        return [owner for owner, (digests, _) in self.holds().items() if manifest_digest in digests]

    def held(self, mounted: bool = False) -> set[Digest]:
        """Every manifest some holder uses (read once, for checks over many images); with `mounted`, only those
        whose unpacked layers a holder mounts."""
        return {d for digests, mounts in self.holds().values() if mounts or not mounted for d in digests}

    # ---- garbage collection ---------------------------------------------------------------------

    def _reachable(self, roots: set[Digest]) -> tuple[set[Digest], set[str], set[str]]:
        """Blobs, layer-cache chain IDs and diff_ids (hex) reachable from root manifests (indexes reach children)."""
        blobs: set[Digest] = set()
        chains: set[str] = set()
        diff_ids: set[str] = set()
        todo = list(roots)
        while todo:
            d = todo.pop()
            if d in blobs or not self.has_blob(d):
                continue
            blobs.add(d)
            todo.extend(r.digest for r in self.referrers(d))  # kept alive by their subject
            obj = json.loads(self.read_blob(d))
            if "manifests" in obj:
                todo.extend(Digest.parse(c["digest"]) for c in obj["manifests"])
                continue
            cfg = Digest.parse(obj["config"]["digest"])
            blobs.add(cfg)
            blobs.update(Digest.parse(layer["digest"]) for layer in obj.get("layers") or [])
            if self.has_blob(cfg):
                image = self.image(d)
                chains.update(c.hex for c in image.chain_ids)
                diff_ids.update(c.hex for c in image.diff_ids)
        return blobs, chains, diff_ids

    def gc(self, drop_unpacked: bool = False) -> int:
        """Remove blobs and unpacked layers no image or holder needs; returns bytes freed (as du counts them).

        With drop_unpacked (the prunes), unpacked layers are kept only for holders that mount them (containers):
        an image or a build-cache entry unpacks its layers again from their blobs when next used.
        """
        # The protocol with the users of unpacked layers in other processes: whoever takes a layer dir from
        # layers/ to mount it (`lowerdirs`, `unpack_layer`) is inside `writing()`, the shared side of the gc lock,
        # from that lookup until its mounting hold is written (a container) or until it is done with the dir (a
        # build, whose whole run is one transaction). gc holds the exclusive side, so it runs wholly before the
        # lookup (which then unpacks the layer again) or wholly after the hold (and keeps the layer). A layer dir
        # goes by a rename out of layers/ first, so a lookup finds the whole dir or none, even if gc is killed
        # half-way through deleting it (the renamed remains are swept on the next gc).
        freed = 0
        seen: set[tuple[int, int]] = set()
        with locked(self._lock_path("gc")):
            holds = self.holds()
            roots = {e.digest for e in self.entries()} | {d for ds, _ in holds.values() for d in ds}
            blobs, chains, diff_ids = self._reachable(roots)
            if drop_unpacked:
                chains = self._reachable({d for ds, mounts in holds.values() if mounts for d in ds})[1]
            blob_root = os.path.join(self.layout, "blobs")
            for algo in os.listdir(blob_root):
                for name in os.listdir(os.path.join(blob_root, algo)):
                    path = os.path.join(blob_root, algo, name)
                    if Digest(algo, name) not in blobs:
                        freed += disk_usage([path], seen)
                        os.unlink(path)
            for name in os.listdir(self.layers_dir):
                if name not in chains:
                    freed += self._drop_layer(name, seen)
            for name in os.listdir(self.locks_dir):
                if name.startswith("layer-") and name[6:] not in chains:
                    _remove(os.path.join(self.locks_dir, name))
            for name in os.listdir(self.sizes_dir):
                if name not in diff_ids:
                    _remove(os.path.join(self.sizes_dir, name))
            live = {d.hex for d in blobs}
            for subject in self.referrer_records.subjects():
                if subject not in live:
                    self.referrer_records.forget(subject)  # dropped with their subject
            now = time.time()
            for name in os.listdir(self.tmp_dir):
                path = os.path.join(self.tmp_dir, name)
                with contextlib.suppress(FileNotFoundError):
                    if name.startswith(_GONE) or now - os.lstat(path).st_mtime > STALE_TEMP_SECONDS:
                        _remove(path)
        return freed

    def _drop_layer(self, chain_hex: str, seen: set[tuple[int, int]] | None = None) -> int:
        """Remove an unpacked layer (under the exclusive gc lock): renamed out of layers/ first, then deleted;
        returns the bytes it used."""
        import tempfile

        gone = tempfile.mkdtemp(prefix=_GONE, dir=self.tmp_dir)
        try:
            os.rename(os.path.join(self.layers_dir, chain_hex), os.path.join(gone, chain_hex))
        except FileNotFoundError:
            pass
        size = disk_usage([os.path.join(gone, chain_hex)], seen)
        _remove(gone)
        return size

    def discard(self, candidates: set[Digest], layers: set[Digest] | frozenset[Digest] = frozenset()) -> None:
        """Remove blobs and unpacked layers (chain IDs) a failed operation added, unless something has come
        to reference them meanwhile."""
        if not candidates and not layers:
            return
        with locked(self._lock_path("gc")):
            blobs, chains, _ = self._reachable({e.digest for e in self.entries()} | self.held())
            for d in candidates - blobs:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.blob_path(d))
            for chain in layers:
                if chain.hex not in chains:
                    self._drop_layer(chain.hex)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[set[Digest]]:
        """Guard a multi-blob write: yields a set to record new blobs in; on failure they are discarded."""
        added = Added()
        try:
            with self.writing():
                yield added
        except BaseException:
            self.discard(added, added.layers)
            raise

    # ---- unpacked layers -------------------------------------------------------------------------

    def layer_dir(self, chain_id: Digest) -> str:
        return os.path.join(self.layers_dir, chain_id.hex)

    @property
    def unpacks(self) -> bool:
        """Whether layers can be unpacked here: the overlay format needs root (opaque directories are marked with
        trusted.* xattrs). A non-root user's store keeps blobs only; their layers are checked when first unpacked."""
        return os.geteuid() == 0

    def lowerdirs(self, image: Image) -> list[str]:
        """The image's layers unpacked (each once) in overlay format, top-most first, for an overlay mount."""
        return [self.unpack_layer(*layer) for layer in image.layer_stack()][::-1]

    def unpack_layer(self, desc: Descriptor, diff_id: Digest, chain: Digest, added: set[Digest] | None = None) -> str:
        """The layer's directory in the cache, unpacked from its blob first if need be (its diff_id checked)."""
        path = self.layer_dir(chain)
        if os.path.isdir(path):
            return path
        with self.writing(), locked(os.path.join(self.locks_dir, f"layer-{chain.hex}")):
            if os.path.isdir(path):
                return path
            from dockyard.layers import apply_layer  # costly import, needed only to unpack

            tmp = self._unpack_dir()
            try:
                with _layer_errors(desc), self.open_blob(desc.digest) as f:
                    got = apply_layer(f, tmp, overlay=True)
                verify(diff_id, got, f"layer {desc.digest}")
            except BaseException:
                _remove(tmp)
                raise
            return self.adopt_layer_dir(tmp, chain, added)

    def write_layer(self, stream: Reader, desc: Descriptor, layer: Callable[[], tuple[Digest, Digest]],
                    added: set[Digest]) -> str:
        """Stream a layer blob into the store and unpack it into the layer cache from the same reads.

        `layer` gives the diff_id and chain ID the layer must have (it may wait for the config). Blob and
        unpacked layer are kept only when the blob is its digest and its content its diff_id; otherwise
        neither the temp file nor the partly unpacked tree stays. The blob leaves the page cache as it reaches
        the disk (a run reads the unpacked copy), so its pages serve the unpacked files' writes.
        """
        chain: list[Digest] = []
        synced: list[bool] = []

        def check(got: Digest) -> None:
            diff_id, chain_id = layer()
            verify(diff_id, got, f"layer {desc.digest}")
            chain.append(chain_id)

        def durable(blob_fd: int) -> None:
            """The blob's temp file and the unpacked tree on disk before either is renamed: a small tree entry by
            entry with the blob, a bigger one in one syncfs with it (see SMALL_TREE)."""
            entries = small_tree(tmp, SMALL_TREE)
            if entries is not None:
                os.fsync(blob_fd)
                for path, is_dir in entries:
                    fsync_path(path, is_dir)
            else:
                durable_tree(tmp)
                if os.fstat(blob_fd).st_dev != os.stat(tmp).st_dev:  # tmp/ and layers/ on different filesystems
                    os.fsync(blob_fd)
            synced.append(True)

        with self.writing():
            tmp = self._unpack_dir()
            try:
                if desc.size >= UNPACK_THREAD_SIZE:
                    self._write_and_unpack_apart(stream, desc, tmp, added, check, durable)
                else:
                    self._write_and_unpack(stream, desc, tmp, added, check, durable)
                return self.adopt_layer_dir(tmp, chain[0], added, synced=bool(synced))
            finally:
                _remove(tmp)

    def _unpack_dir(self) -> str:
        """A fresh directory to unpack a layer into, to be adopted under `writing()`.

        It is made in layers/ itself: adopting it is then a rename within one directory, and making it does not
        queue behind the blob temp files made in tmp/ (the kernel creates one directory's entries one at a time,
        ~1 ms each on a busy filesystem). gc, which drops whatever in layers/ is no image's layer, waits for
        `writing()` to end, so it never sees one in use, and drops one a crash left.
        """
        import tempfile

        return tempfile.mkdtemp(prefix=".unpack-", dir=self.layers_dir)

    def _write_and_unpack(self, stream: Reader, desc: Descriptor, tmp: str, added: set[Digest],
                          check: Callable[[Digest], None], durable: Callable[[int], None]) -> None:
        """write_layer in one thread: the unpacker reads the stream, and each read also goes to the blob."""
        from dockyard.layers import LayerError, apply_layer  # costly imports, needed only to unpack
        from dockyard.layers.unpacker import Tee

        what = f"blob {desc.digest}"
        with self._incoming(desc.digest, cached=False) as blob:
            teed = Tee(stream, blob.write)
            try:
                with _layer_errors(desc):
                    got = apply_layer(teed, tmp, overlay=True)  # type: ignore[arg-type]
            except LayerError:
                # A blob that is not its digest is reported as such (the more exact fault) before the unpack's.
                _drain(teed)
                blob.verify(desc.digest, desc.size, what)
                raise
            _drain(teed)  # bytes after the compressed stream's end are the blob's too
            blob.keep(desc.digest, desc.size, what, added, lambda: check(got), durable)

    def _write_and_unpack_apart(self, stream: Reader, desc: Descriptor, tmp: str, added: set[Digest],
                                check: Callable[[Digest], None], durable: Callable[[int], None]) -> None:
        """write_layer with the unpack on a thread of its own, fed the bytes as they are read."""
        from dockyard.layers.unpacker import StreamUnpacker, Tee  # costly import, needed only to unpack

        def finished() -> None:
            with _layer_errors(desc):
                got = unpacker.finish()
            check(got)

        unpacker = StreamUnpacker(tmp)
        try:
            self.write_blob(Tee(stream, unpacker.feed), desc.digest, desc.size, f"blob {desc.digest}", added, finished,
                            cached=False, durable=durable)
        finally:
            unpacker.abort()

    def adopt_layer_dir(self, tmp_dir: str, chain_id: Digest, added: set[Digest] | None = None,
                        discard: Callable[[str], None] | None = None, synced: bool = False) -> str:
        """Publish a directory already in overlay format (a build step's upperdir) as the unpacked layer of
        `chain_id`, so it need not be extracted again; when one exists already `tmp_dir` is given to `discard`
        (which by default removes it at once). `synced`: the caller has put the tree on disk since it was written.

        The rename itself is put on disk by the index commit that names an image of the layer (`_editing`): one
        fsync of layers/ for a pull's layers, not one each. A rename a power loss takes back loses nothing but
        time (the layer is unpacked again from its blob); a directory found there is always whole.
        """
        path = self.layer_dir(chain_id)
        if not synced and not os.path.isdir(path):
            # unpack_layer trusts any layer directory it finds: after a power loss one must not be there with
            # files the disk never got (the rename's metadata written, their data not; containerd #8895).
            durable_tree(tmp_dir)
        # One lock for all layers, held only to look and rename: a lock file per layer was one more inode to
        # make per layer pulled (unpack_layer's per-layer lock keeps two processes from unpacking one layer twice).
        with locked(self._lock_path("layers")):
            if os.path.isdir(path):
                (discard or _remove)(tmp_dir)
            else:
                os.rename(tmp_dir, path)
                if isinstance(added, Added):
                    added.layers.add(chain_id)
        return path

    def layer_size(self, desc: Descriptor, diff_id: Digest, chain: Digest) -> int:
        """A layer's unpacked size as docker counts it (its files' sizes, hard links once): recorded the first
        time it is asked for, from the unpacked copy when there is one, else from the blob's tar stream."""
        record = os.path.join(self.sizes_dir, diff_id.hex)
        with contextlib.suppress(FileNotFoundError, ValueError), open(record, "rb") as f:
            return int(f.read())
        path = self.layer_dir(chain)
        if os.path.isdir(path):
            size = content_size(path)
        else:
            import tarfile

            from dockyard.compression import decompressed  # costly imports, needed only when nothing is recorded
            from dockyard.layers.tarread import TarReader

            size = 0
            with _layer_errors(desc), self.open_blob(desc.digest) as f:
                for m in TarReader(decompressed(f)):
                    if m.type in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE):
                        size += m.size
                    elif m.type == tarfile.SYMTYPE:
                        size += len(os.fsencode(m.linkname))
        atomic_write(record, str(size).encode(), durable=False)  # a cache: a lost record is computed again
        return size

    def unpacked_size(self, image: Image) -> int:
        """The image's SIZE as docker shows it: the sum of its layers' unpacked sizes."""
        return sum(self.layer_size(*layer) for layer in image.layer_stack())

    def usage(self) -> Usage:
        """What the store's content uses on disk (as du counts it, each file once), for `system df`."""
        with locked(self._lock_path("gc"), shared=True):  # a consistent view: no gc removes things meanwhile
            holds = self.holds()
            mounted = {d for ds, mounts in holds.values() if mounts for d in ds}
            images = {e.digest for e in self.entries()} | mounted
            blobs, chains, _ = self._reachable(images)
            used_blobs, used_chains, _ = self._reachable(mounted)
            seen: set[tuple[int, int]] = set()
            owned: dict[str, int] = {}
            held_blobs: set[Digest] = set()
            counted_chains = set(chains)
            for owner, (digests, mounts) in holds.items():
                if mounts:
                    continue
                b, c, _ = self._reachable(set(digests))
                owned[owner] = self._bytes(b - blobs - held_blobs, c - counted_chains, seen)
                held_blobs |= b
                counted_chains |= c
            # Blobs a holder shares stay after a prune; unpacked layers go unless a container mounts them.
            reclaimable = self._bytes(blobs - used_blobs - held_blobs, chains - used_chains, seen)
            size = reclaimable + self._bytes(blobs, chains, seen)  # the rest: `seen` skips what is counted
        return Usage(size, reclaimable, owned)

    def _bytes(self, blobs: set[Digest], chains: set[str], seen: set[tuple[int, int]]) -> int:
        """du's bytes of these blobs and unpacked layers, each inode once across calls sharing `seen`."""
        return disk_usage([*(self.blob_path(d) for d in blobs),
                           *(os.path.join(self.layers_dir, c) for c in chains)], seen)


@dataclass
class Usage:
    """Bytes the store's content uses on disk, each file counted once."""

    images: int  # the blobs and unpacked layers of images (and of the images containers use)
    reclaimable: int  # of those, what no container and no blobs-only holder needs
    holders: dict[str, int]  # what each blobs-only holder (a build-cache entry) adds beyond images and earlier ones


class _Incoming:
    """A blob on its way into the store: hashed as written into a temp file, or only hashed when the store has it
    already (content addressing: nothing to write, but what is offered must still be what it claims to be).

    With cached=False the pages written go back to the kernel as they reach the disk, for the next writes to reuse:
    a pulled layer's blob is seldom read again soon (its unpacked copy is), and fresh pages cost dearly on a VM
    (see fsutil.drop_cached).
    """

    def __init__(self, store: Store, expected: Digest | None, cached: bool = True):
        self._store = store
        self._cached = cached
        self.algorithm = expected.algorithm if expected else "sha256"
        self._hash = new_hash(self.algorithm)
        self.size = 0
        self._flushed = 0
        self._tmp: str | None = None
        self._file: BinaryIO | None = None
        if not (expected and store.has_blob(expected)):
            import tempfile

            fd, self._tmp = tempfile.mkstemp(prefix="blob-", dir=store.tmp_dir)
            self._file = os.fdopen(fd, "wb")

    def write(self, data: bytes | memoryview) -> None:
        self._hash.update(data)
        self.size += len(data)
        if self._file is not None:
            self._file.write(data)
            if self.size - self._flushed >= WRITEBACK_STEP:  # so the fsync at the end has little left to wait for
                self._file.flush()
                start_writeback(self._file.fileno(), self._flushed, self.size - self._flushed)
                if not self._cached:  # what was sent to the disk a step ago is likely written by now
                    drop_cached(self._file.fileno(), 0, self._flushed)
                self._flushed = self.size

    def verify(self, expected: Digest | None, size: int | None, what: str | None) -> Digest:
        """The digest of what was written, which must be `expected` (and `size` bytes) when given."""
        actual = Digest(self.algorithm, self._hash.hexdigest())
        if expected:
            verify(expected, actual, what or str(expected), size, self.size)
        return actual

    def keep(self, expected: Digest | None, size: int | None, what: str | None, added: set[Digest] | None,
             check: Callable[[], None] | None, durable: Callable[[int], None] | None = None) -> tuple[Digest, int]:
        """Verify, run `check`, make durable, then move into place (durable before anything can refer to it).

        `durable`, given the temp file's descriptor, puts it on disk instead of an fsync: write_layer's one syncfs
        for the blob and its unpacked tree together. It is not called when the store has the blob already.
        """
        actual = self.verify(expected, size, what)
        if check:
            check()
        if self._file is not None:
            self._file.flush()
            (durable or os.fsync)(self._file.fileno())
            if not self._cached:
                drop_cached(self._file.fileno())
        if self._tmp is not None:
            self._store.adopt_blob(self._tmp, actual, added)
            self._tmp = None
        return actual, self.size

    def discard(self) -> None:
        """Close the temp file and remove it unless kept."""
        if self._file is not None:
            self._file.close()
        if self._tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)


def _drain(stream: Reader) -> None:
    """Read a stream to its end."""
    for _ in _chunks(stream):
        pass


def _chunks(stream: Reader, size: int = CHUNK) -> Iterator[bytes | memoryview]:
    """A stream's content in pieces of up to `size`; with readinto, one reused buffer (no allocation or copy per
    piece), which a small blob's expected size keeps small: every page of it is faulted in and zeroed."""
    if not hasattr(stream, "readinto"):
        while chunk := stream.read(size):
            yield chunk
        return
    buf = memoryview(bytearray(size))
    while n := stream.readinto(buf):
        yield buf[:n]


@contextlib.contextmanager
def _layer_errors(desc: Descriptor) -> Iterator[None]:
    """Name the layer blob in an unpack error (which names the entry)."""
    from dockyard.layers import LayerError

    try:
        yield
    except LayerError as e:
        raise LayerError(f"layer {desc.digest}: {e}") from None


def _remove(path: str) -> None:
    import shutil

    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
