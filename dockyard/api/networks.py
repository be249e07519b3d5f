"""Bridge networks in docker-py's shape: `client.networks.create/get/list/prune`, and `Network` objects."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dockyard.api.errors import APIError, engine_errors
from dockyard.api.model import Model
from runner.network import attach, networks

if TYPE_CHECKING:
    from dockyard.api.client import Client


class Network(Model):
    """A network, as docker-py's `Network`: `.id`, `.short_id`, `.name`, `.attrs` (what `network inspect` prints)."""

    def __init__(self, collection: NetworkCollection, attrs: dict[str, Any]):
        self.collection = collection
        super().__init__(attrs)

    @property
    def name(self) -> str:
        return self.attrs["Name"]

    @property
    def containers(self) -> list[Any]:
        """The containers attached to it (docker-py's shape: objects from `client.containers`)."""
        return [self.collection.client.containers.get(cid) for cid in self.attrs["Containers"]]

    def reload(self) -> None:
        """Read the network's state again (its containers change as they come and go)."""
        self.attrs = self.collection.get(self.id).attrs

    def remove(self) -> None:
        """Remove the network; APIError while containers use it."""
        self.collection.remove(self.id)

    def connect(self, container: Any, *, ipv4_address: str | None = None, aliases: list[str] | None = None) -> None:
        """Attach a running container (an object with `.id`, or a name or ID) to this network."""
        from runner.create import NETNS_DIR  # the runner's whole creation path: only for a connect

        c = self.collection._running(container)
        root = self.collection.client.root
        with engine_errors():
            attach.connect(os.path.join(NETNS_DIR, c.id), c.id, self.id, ip=ipv4_address, aliases=aliases or [],
                           root=root)
        self.reload()

    def disconnect(self, container: Any, force: bool = False) -> None:
        """Detach a running container from this network (`force` is accepted for docker-py's sake)."""
        c = self.collection._running(container)
        with engine_errors():
            attach.disconnect(c.id, self.id, root=self.collection.client.root)
        self.reload()


class NetworkCollection:
    """The store's networks (docker-py's `client.networks`)."""

    def __init__(self, client: Client):
        self.client = client

    def create(self, name: str, driver: str | None = None, *, ipam: Mapping[str, Any] | None = None,
               labels: Mapping[str, str] | None = None, subnet: str | None = None,
               gateway: str | None = None) -> Network:
        """A new bridge network; its subnet and gateway from `ipam` (docker-py's IPAMConfig dict, its first pool
        config) or `subnet`/`gateway`, else the next free /16."""
        if driver not in (None, "bridge"):
            raise APIError(f"network driver {driver} is not supported (only bridge)")
        pools = (ipam or {}).get("Config") or (ipam or {}).get("pool_configs") or []
        if pools:
            pool = pools[0]
            subnet = subnet or pool.get("Subnet") or pool.get("subnet")
            gateway = gateway or pool.get("Gateway") or pool.get("gateway")
        with engine_errors():
            network = networks.create(name, subnet, gateway, dict(labels or {}), root=self.client.root)
        return self.get(network.id)

    def get(self, network_id: str) -> Network:
        """A network by name, ID or unique ID prefix; NotFound when there is none."""
        with engine_errors():
            return Network(self, networks.inspect(network_id, root=self.client.root))

    def list(self, names: list[str] | None = None, ids: list[str] | None = None) -> list[Network]:
        """Every network (the default bridge first, then by name), or those with the given names or IDs."""
        _, nets = networks.all_networks(self.client.root)
        chosen = [n for n in nets if (names is None and ids is None) or n.name in (names or ())
                  or n.id in (ids or ())]
        return [self.get(n.id) for n in chosen]

    def remove(self, network_id: str) -> None:
        """Remove a network by name, ID or unique ID prefix (as `dockyard network rm`); APIError while in use."""
        with engine_errors():
            networks.remove(network_id, root=self.client.root)

    def prune(self, filters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Remove every user network no container uses: {"NetworksDeleted": [names]}."""
        if filters:
            raise APIError("network prune takes no filters here")
        with engine_errors():
            return {"NetworksDeleted": networks.prune(self.client.root)}

    def _running(self, container: Any):
        """A running container on a bridge network (connect and disconnect need its network namespace)."""
        from runner.containers import Containers

        c = Containers(self.client.root).find(getattr(container, "id", container))
        if c.status not in ("running", "paused") or c.host_config.get("NetworkMode") in ("host", "none"):
            raise APIError(f"container {c.name} is not running on a bridge network")
        return c
