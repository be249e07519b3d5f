"""Volumes in docker-py's shape: `client.volumes.create/get/list/prune` and the Volume model."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dockyard.api.model import Model
from runner import lifecycle
from runner.volumes import Volumes

if TYPE_CHECKING:
    from dockyard.api.client import Client


class Volume(Model):
    """A named (or anonymous) volume; `attrs` is docker's inspect object."""

    id_attribute = "Name"  # a volume's name is its id, as in docker

    def __init__(self, client: Client, attrs: dict):
        self.client = client
        super().__init__(attrs)

    def __repr__(self) -> str:
        return f"<Volume: {self.name}>"

    @property
    def name(self) -> str:
        return self.attrs["Name"]

    def reload(self) -> None:
        self.attrs = Volumes(self.client.root).inspect(self.name)

    def remove(self, force: bool = False) -> None:
        """Remove it (refused while a container uses it); force: a volume already gone is no error."""
        lifecycle.remove_volume(self.client.root, self.name, force)


class VolumeCollection:
    """The volumes of a client's store."""

    def __init__(self, client: Client):
        self.client = client

    def create(self, name: str | None = None, driver: str | None = None, driver_opts: dict | None = None,
               labels: dict[str, str] | None = None) -> Volume:
        """A volume by that name (the existing one if there is one; a new anonymous one without a name)."""
        if driver_opts:
            from dockyard.api.errors import APIError

            raise APIError("volume driver options are not supported (the local driver takes none)")
        vol = lifecycle.create_volume(self.client.root, name or "", labels, driver or "local")
        return self.get(vol.name)

    def get(self, volume_id: str) -> Volume:
        """A volume by name (NotFound otherwise)."""
        return Volume(self.client, Volumes(self.client.root).inspect(volume_id))

    def list(self, filters: dict | None = None) -> list[Volume]:
        """Every volume (filters: docker's `name`, `dangling`)."""
        filters = filters or {}
        vols = Volumes(self.client.root)
        found = [Volume(self.client, vols.inspect(v.name)) for v in vols.all()]
        if "name" in filters:
            found = [v for v in found if str(filters["name"]) in v.name]
        if "dangling" in filters:
            in_use = lifecycle.volumes_in_use(self.client.root)
            dangling = str(filters["dangling"]).lower() in ("1", "true")
            found = [v for v in found if (v.name not in in_use) == dangling]
        return found

    def prune(self, filters: dict | None = None) -> dict:
        """Remove unused anonymous volumes (filters {"all": True}: every unused one)."""
        from dockyard.sizes import disk_usage
        from runner.volumes import Volumes

        vols = Volumes(self.client.root)
        in_use = lifecycle.volumes_in_use(self.client.root)
        sizes = {v.name: disk_usage([vols.data(v.name)]) for v in vols.all() if v.name not in in_use}
        removed = lifecycle.prune_volumes(self.client.root, bool((filters or {}).get("all")))
        return {"VolumesDeleted": removed or None, "SpaceReclaimed": sum(sizes.get(n, 0) for n in removed)}


__all__ = ["Volume", "VolumeCollection"]
