"""`commit`: a container's upper dir becomes a new layer on top of its image; config changes applied."""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence

from dockyard.errors import DockyardError
from runner.containers import Container

# Container settings carried into the new image's config, as docker commit does.
CARRIED = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "Labels", "ExposedPorts", "Volumes", "StopSignal",
           "Healthcheck")


def commit(root: str, c: Container, repository: str | None, changes: Sequence[str] = (), message: str = "",
           author: str = "", pause: bool = True):
    """Write the new layer and image; tag it REPO[:TAG] when given. Returns the Image."""
    from dockyard import mediatypes as mt
    from dockyard import reference
    from dockyard.changes import apply_change_line
    from dockyard.digest import Digest
    from dockyard.image import Descriptor, canonical_json, manifest_for, now_rfc3339
    from dockyard.layers import create_layer
    from dockyard.store import Store
    from runner import events, lifecycle

    store = Store(root)
    base = store.image(Digest.parse(c.image_digest))
    names = [reference.parse(repository)] if repository else []
    config = copy.deepcopy(base.config)
    cfg = config.setdefault("config", {})
    for key in CARRIED:
        value = c.config.get(key)
        if value not in (None, "", [], {}):
            cfg[key] = value
    cfg["Hostname"] = c.config.get("Hostname", "")
    for line in changes:
        apply_change_line(config, line)
    created = now_rfc3339()
    config["created"] = created
    if author:
        config["author"] = author
    frozen = pause and c.status == "running"
    if frozen:
        lifecycle.freeze(c.id)
    try:
        with store.transaction() as added, store.temp_path("commit-") as tmp:
            blob = create_layer(os.path.join(c.bundle, "diff"), tmp)
            store.adopt_blob(tmp, blob.digest, added)
            config.setdefault("rootfs", {"type": "layers", "diff_ids": []})["diff_ids"].append(str(blob.diff_id))
            config.setdefault("history", []).append(
                {"created": created,
                 "created_by": " ".join([*(c.config.get("Entrypoint") or []), *(c.config.get("Cmd") or [])]),
                 **({"comment": message} if message else {}), **({"author": author} if author else {})})
            raw = canonical_json(config)
            cfg_digest = store.write_blob_bytes(raw, added=added)
            layers = [*base.layers, Descriptor(blob.media_type, blob.digest, blob.size)]
            manifest = manifest_for(Descriptor(mt.OCI_CONFIG, cfg_digest, len(raw)), layers)
            image = store.add_image(canonical_json(manifest), names, added)
    except OSError as e:
        raise DockyardError(f"commit {c.name}: {e.strerror}: {e.filename}") from None
    finally:
        if frozen:
            lifecycle.unfreeze(c.id)
    events.append(root, "container", "commit", c.id, c.name, {"image": c.image})
    return image
