"""Removing images: docker's rules for `rmi` (untag or delete, when force is needed) and for `image prune`.

An image is in use while some owner holds it in the store (a container, a build-cache entry: the runner and the
builder record their holds there), so these rules need nothing from those layers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dockyard import reference
from dockyard.errors import DockyardError
from dockyard.image import Image
from dockyard.imagefilters import Filters, prunable
from dockyard.store import Conflict, Store


@dataclass
class Removal:
    """What removing one image name did: the names it untagged, and the image it deleted (None: untag only)."""

    untagged: list[str] = field(default_factory=list)
    deleted: Image | None = None


@dataclass
class Pruned:
    """What a prune removed: each image with the names it had, and the bytes the store gave back."""

    images: list[tuple[Image, list[str]]]
    reclaimed: int


def remove_image(store: Store, name: str, force: bool = False) -> Removal:
    """Remove NAME as `rmi` does: one of several tags is only untagged; an image in use or named by several
    repositories (when given by ID) is refused unless forced. Unreferenced content stays until `store.gc()`."""
    image = store.resolve(name)
    tags = store.tags_of(image.top)  # a multi-platform image's tags name its index
    by_tag = None
    try:
        ref = reference.parse(name)
        by_tag = ref.ref_name if (not ref.digest and ref.ref_name in tags) else None
    except DockyardError:  # an image ID, not a name
        pass
    if by_tag and len(tags) > 1:
        store.untag(by_tag)
        return Removal([by_tag])
    holders = store.holders(image.manifest_digest) or store.holders(image.top)
    if holders and not force:
        raise Conflict(f"conflict: unable to remove {name} (must force) - image is being used by {holders[0]}")
    if not by_tag and len(tags) > 1 and not force:
        raise Conflict(f"conflict: unable to delete {image.id.short} (must be forced) - image is "
                       f"referenced in multiple repositories")
    for t in tags:
        store.untag(t)
    store.delete_image(image.top)
    return Removal(tags, image)


def prune_candidates(store: Store, filters: Filters = ()) -> list[tuple[Image, list[str]]]:
    """The images a prune with these filters would remove: those no one holds that the filters select."""
    held = store.held()
    return [(image, names) for image, names in store.images()
            if image.manifest_digest not in held and prunable(image, names, filters)]


def prune_images(store: Store, filters: Filters = (), drop_unpacked: bool = True) -> Pruned:
    """Remove every image no one holds that the filters select (untagged ones by default), then collect, with
    the unpacked layers no container mounts unless `drop_unpacked` is False (docker keeps its snapshots)."""
    removed = prune_candidates(store, filters)
    for image, names in removed:
        for t in names:
            store.untag(t)
        store.delete_image(image.top)
    return Pruned(removed, store.gc(drop_unpacked))
