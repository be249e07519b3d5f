"""`dockyard import`: a root filesystem tarball (plain or compressed) becomes a one-layer image."""

from __future__ import annotations

import tarfile
from collections.abc import Sequence
from typing import BinaryIO

from dockyard import mediatypes as mt
from dockyard.changes import apply_change_line
from dockyard.compression import decompressed
from dockyard.errors import DockyardError
from dockyard.image import Descriptor, Image, Platform, canonical_json, empty_config, manifest_for, now_rfc3339
from dockyard.layers import compress_layer
from dockyard.reference import Reference
from dockyard.store import Store


class InvalidArchive(DockyardError):
    """An input file is not a readable tar archive."""


def check_tar(stream: BinaryIO, what: str) -> None:
    """Read a tar stream to its end, raising InvalidArchive naming `what` if it is not a valid tar."""
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tf:
            for _ in tf:
                pass
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        raise InvalidArchive(f"{what}: not a valid tar archive ({e})") from None


def import_rootfs(store: Store, source: BinaryIO, what: str, names: list[Reference],
                  changes: Sequence[str] = (), message: str = "", compression: str = "gzip",
                  platform: Platform | None = None) -> Image:
    """Import a rootfs tarball as a single-layer image of `platform` (default linux/amd64) and tag it."""
    created = now_rfc3339()
    config = empty_config(created)
    if platform is not None:
        config.update(platform.to_json())
    for line in changes:
        apply_change_line(config, line)
    with store.transaction() as added:
        with store.temp_path("import-") as tmp:
            blob = compress_layer(decompressed(source), tmp, compression)
            with open(tmp, "rb") as f:
                check_tar(decompressed(f), what)
            store.adopt_blob(tmp, blob.digest, added)
        config["rootfs"]["diff_ids"] = [str(blob.diff_id)]
        config["history"] = [{"created": created, "created_by": "dockyard import",
                              "comment": message or f"Imported from {what}"}]
        cfg = canonical_json(config)
        cfg_digest = store.write_blob_bytes(cfg, added=added)
        manifest = manifest_for(Descriptor(mt.OCI_CONFIG, cfg_digest, len(cfg)),
                                [Descriptor(blob.media_type, blob.digest, blob.size)])
        return store.add_image(canonical_json(manifest), names, added)
