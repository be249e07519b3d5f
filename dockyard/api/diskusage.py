"""`client.df()`: disk usage in the Engine API's /system/df shape (Images, Containers, Volumes, BuildCache).

Sizes are what files use on disk as du counts them, each file once (blobs shared by images and the build cache,
layers unpacked once for every image on them), except an image's own `Size`, which is docker's: its layers'
unpacked size. `LayersSize` is the Images row's SIZE; `LayersReclaimable` (dockyard's) its RECLAIMABLE.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from dockyard.image import parse_time
from dockyard.sizes import disk_usage
from dockyard.store import Store


def df(root: str) -> dict[str, Any]:
    """The store's disk usage as docker-py's `client.df()` returns it."""
    from runner.containers import Containers

    store = Store(root)
    usage = store.usage()
    containers = Containers(root).all()
    return {
        "LayersSize": usage.images, "LayersReclaimable": usage.reclaimable,
        "Images": _images(store, [c.image_digest for c in containers]),
        "Containers": [_container(c) for c in containers],
        "Volumes": _volumes(root, containers),
        "BuildCache": _build_cache(store, usage.holders),
    }


def _images(store: Store, used: list[str]) -> list[dict[str, Any]]:
    """Each image with docker's Size (unpacked), SharedSize (of layers other images have too) and Containers."""
    found = [(digest, summary, names, store.image(digest)) for digest, summary, names in store.summaries()]
    users: dict[str, int] = {}
    for *_, image in found:
        for diff_id in set(image.diff_ids):
            users[diff_id.hex] = users.get(diff_id.hex, 0) + 1
    out = []
    for digest, summary, names, image in found:
        shared = sum(store.layer_size(*layer) for layer in image.layer_stack() if users[layer[1].hex] > 1)
        created = parse_time(summary.created)
        out.append({
            "Id": summary.id, "ParentId": "", "RepoTags": names,
            "RepoDigests": sorted({f"{n.rpartition(':')[0]}@{digest}" for n in names}),
            "Created": int(created.timestamp()) if created else 0, "Size": summary.size, "SharedSize": shared,
            "VirtualSize": summary.size, "Labels": (image.config.get("config") or {}).get("Labels") or {},
            "Containers": used.count(str(digest)),
        })
    return out


def _container(c: Any) -> dict[str, Any]:
    """A container with its writable layer's size (SizeRw)."""
    created = parse_time(c.created)
    cfg = c.config
    return {
        "Id": c.id, "Names": ["/" + c.name], "Image": c.image, "ImageID": c.image_id,
        "Command": " ".join([*(cfg.get("Entrypoint") or []), *(cfg.get("Cmd") or [])]),
        "Created": int(created.timestamp()) if created else 0, "State": c.status, "Running": c.running,
        "SizeRw": disk_usage([os.path.join(c.bundle, "diff")]),
        "Mounts": [m for m in c.mounts if m["Type"] == "volume"],
    }


def _volumes(root: str, containers: list[Any]) -> list[dict[str, Any]]:
    """Each volume with its data's size and how many containers mount it (UsageData)."""
    from runner.volumes import Volumes

    vols = Volumes(root)
    names = [m.get("Name") for c in containers for m in c.mounts if m["Type"] == "volume"]
    return [{"Name": v.name, "Driver": "local", "Mountpoint": vols.data(v.name), "Labels": v.labels,
             "Scope": "local", "Options": None, "CreatedAt": v.created,
             "UsageData": {"Size": disk_usage([vols.data(v.name)]), "RefCount": names.count(v.name)}}
            for v in vols.all()]


def _build_cache(store: Store, holders: dict[str, int]) -> list[dict[str, Any]]:
    """The build cache's records: each step's entry (the bytes it adds), and each `RUN --mount=type=cache` dir."""
    from builder.cache import HOLD_PREFIX, BuildCache

    cache = BuildCache(store)
    records = []
    for owner, size in holders.items():
        if owner.startswith(HOLD_PREFIX):
            key = owner.removeprefix(HOLD_PREFIX)
            records.append(_record(key, "regular", "build step", size, os.path.join(cache.entries_dir, key + ".json")))
    mounts = sorted(os.listdir(cache.mounts_dir)) if os.path.isdir(cache.mounts_dir) else []
    for name in mounts:
        path = os.path.join(cache.mounts_dir, name)
        records.append(_record(name, "exec.cachemount", "cache mount", disk_usage([path]), path))
    return records


def _record(rid: str, kind: str, what: str, size: int, path: str) -> dict[str, Any]:
    """One BuildCache item as the Engine API has it (never in use: dockyard has no build daemon)."""
    try:
        st = os.stat(path)
        created, used = (datetime.fromtimestamp(t, UTC).isoformat() for t in (st.st_ctime, st.st_atime))
    except FileNotFoundError:
        created = used = ""
    return {"ID": rid, "Parent": "", "Type": kind, "Description": what, "InUse": False, "Shared": False,
            "Size": size, "CreatedAt": created, "LastUsedAt": used, "UsageCount": 0}
