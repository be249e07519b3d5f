"""`--build-context NAME=oci-layout://PATH[@TAG]`: an image of an OCI layout directory, loaded into the store."""

from __future__ import annotations

import io
import json
import os
import tarfile

from dockyard import mediatypes as mt
from dockyard.errors import DockyardError
from dockyard.image import Image
from dockyard.store import Store


class LayoutError(DockyardError):
    """An OCI layout does not hold the image asked for."""


def load_layout(store: Store, path: str, tag: str) -> Image:
    """The image tagged `tag` (org.opencontainers.image.ref.name; or the only one) in the layout at `path`, loaded
    untagged. The layout is read as an archive of its own, so its blobs are verified and no link is followed."""
    from dockyard.archive import load

    try:
        with open(os.path.join(path, "index.json"), "rb") as f:
            index = json.load(f)
        manifests = index.get("manifests") or []
    except (OSError, ValueError, AttributeError) as e:
        raise LayoutError(f"oci-layout://{path}: cannot read index.json: {e}") from None
    chosen = [m for m in manifests if isinstance(m, dict) and (m.get("annotations") or {}).get(mt.REF_NAME) == tag]
    if not chosen and len(manifests) == 1:
        chosen = manifests
    if not chosen:
        raise LayoutError(f"oci-layout://{path}@{tag}: no image tagged {tag} in the layout")
    with store.temp_path("layout-") as tmp:
        with tarfile.open(tmp, "w") as tf:
            data = json.dumps({"schemaVersion": 2, "manifests": [chosen[0]]}).encode()
            info = tarfile.TarInfo("index.json")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
            tf.add(os.path.join(path, "blobs"), "blobs")  # symlinks stay links, which the loader never reads
        with open(tmp, "rb") as f:
            return load(store, f, f"oci-layout://{path}")[0].image
