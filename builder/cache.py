"""The build cache: step key -> the image state after that step, kept in the store.

Each entry is `<root>/buildcache/entries/<key>.json` naming a manifest (config + layers after the step). That
manifest is held (holds/buildcache-<key>) so gc keeps its config and layer blobs (not its unpacked layers: the
prunes remove those, and a build unpacks them again when the entry is used); it carries
an annotation so its digest never equals a real image's (a hold on a tagged image would block `rmi`)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil

from dockyard import mediatypes as mt
from dockyard.digest import Digest
from dockyard.errors import DockyardError
from dockyard.fsutil import atomic_write
from dockyard.image import Descriptor, Image, canonical_json, manifest_for
from dockyard.sizes import disk_usage
from dockyard.store import Store

HOLD_PREFIX = "buildcache-"
KEY_ANNOTATION = "io.dockyard.buildcache.key"


def step_key(*parts: object) -> str:
    """A cache key: sha256 of the canonical JSON of everything the step's result depends on."""
    return hashlib.sha256(canonical_json(list(parts))).hexdigest()


class BuildCache:
    """Step results by key, stored next to the images they share blobs with."""

    def __init__(self, store: Store):
        self.store = store
        self.root = os.path.join(store.root, "buildcache")
        self.entries_dir = os.path.join(self.root, "entries")
        self.mounts_dir = os.path.join(self.root, "mounts")
        self.contexts_dir = os.path.join(self.root, "contexts")

    def _entry_path(self, key: str) -> str:
        return os.path.join(self.entries_dir, key + ".json")

    def get(self, key: str) -> Image | None:
        """The image state recorded for `key`, or None (also when its blobs have gone)."""
        try:
            with open(self._entry_path(key), "rb") as f:
                entry = json.load(f)
            image = self.store.image(Digest.parse(entry["manifest"]))
        except (OSError, ValueError, KeyError, DockyardError):
            return None
        return image if all(self.store.has_blob(d.digest) for d in image.layers) else None

    def put(self, key: str, config_bytes: bytes, layers: list[Descriptor], added: set[Digest]) -> None:
        """Record the state after a step (its canonical config JSON and layers), held against gc."""
        config_digest = self.store.write_blob_bytes(config_bytes, added=added)
        manifest = manifest_for(Descriptor(mt.OCI_CONFIG, config_digest, len(config_bytes)), layers,
                                {KEY_ANNOTATION: key})
        data = canonical_json(manifest)
        digest = self.store.write_blob_bytes(data, added=added)
        # The hold goes first: an entry must never point at something gc may already have swept.
        self.store.hold(HOLD_PREFIX + key, [digest], mounts=False)
        os.makedirs(self.entries_dir, exist_ok=True)
        atomic_write(self._entry_path(key), json.dumps({"manifest": str(digest)}).encode())

    def context_hashes(self, context: str) -> str:
        """The file keeping a context directory's content hashes between builds (BuildContext's `hashes`)."""
        name = hashlib.sha256(os.fsencode(os.path.realpath(context))).hexdigest()[:32]
        return os.path.join(self.contexts_dir, name + ".json")

    def mount_dir(self, mount_id: str) -> str:
        """The persistent directory behind `RUN --mount=type=cache,id=…` (created on first use)."""
        path = os.path.join(self.mounts_dir, hashlib.sha256(mount_id.encode()).hexdigest()[:32])
        os.makedirs(path, mode=0o755, exist_ok=True)
        return path

    def prune(self, drop_unpacked: bool = True) -> tuple[int, int]:
        """Drop every entry and cache mount, then gc the store (unpacked layers no container mounts too, unless
        `drop_unpacked` is False); returns (entries removed, bytes freed)."""
        count = 0
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self.entries_dir):
                key = name.removesuffix(".json")
                self.store.release(HOLD_PREFIX + key)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.entries_dir, name))
                count += 1
        freed = disk_usage([self.mounts_dir, self.contexts_dir])
        shutil.rmtree(self.mounts_dir, ignore_errors=True)
        shutil.rmtree(self.contexts_dir, ignore_errors=True)
        return count, freed + self.store.gc(drop_unpacked)
