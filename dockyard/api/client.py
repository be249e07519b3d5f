"""The client: one store root, and a collection per kind of object (images, containers, networks, volumes)."""

from __future__ import annotations

import os
from functools import cached_property
from typing import TYPE_CHECKING, Any

from dockyard.store import default_root

if TYPE_CHECKING:  # each collection's module is imported on first use, so a script pays only for what it uses
    from dockyard.api.containers import ContainerCollection
    from dockyard.api.images import ImageCollection
    from dockyard.api.networks import NetworkCollection
    from dockyard.api.volumes import VolumeCollection


class Client:
    """Dockyard on this host, over the store at `root` (default: $DOCKYARD_ROOT, else the store's default)."""

    def __init__(self, root: str | None = None):
        self.root = os.path.abspath(root or default_root())

    @cached_property
    def images(self) -> ImageCollection:
        """Build, pull, push, list, tag and remove images."""
        from dockyard.api.images import ImageCollection

        return ImageCollection(self)

    @cached_property
    def containers(self) -> ContainerCollection:
        """Run, create, list and manage containers."""
        from dockyard.api.containers import ContainerCollection

        return ContainerCollection(self)

    @cached_property
    def networks(self) -> NetworkCollection:
        """Create, list and remove networks."""
        from dockyard.api.networks import NetworkCollection

        return NetworkCollection(self)

    @cached_property
    def volumes(self) -> VolumeCollection:
        """Create, list and remove named volumes."""
        from dockyard.api.volumes import VolumeCollection

        return VolumeCollection(self)


    def df(self) -> dict[str, Any]:
        """Disk usage of images, containers, volumes and the build cache, as docker-py's `client.df()`."""
        from dockyard.api.diskusage import df

        return df(self.root)


def from_env() -> Client:
    """A client configured from the environment ($DOCKYARD_ROOT), as docker-py's `docker.from_env()`."""
    return Client()
