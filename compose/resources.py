"""A project's networks and volumes: their real names, creating them with compose's labels, removing them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from compose import labels
from compose.errors import ComposeError
from dockyard.errors import DockyardError, NotFound

if TYPE_CHECKING:
    from compose.model import Project
    from dockyard.api import Client


def network_name(project: Project, key: str) -> str:
    """The real name of a top-level network key (its `name`, else `<project>_<key>`)."""
    return (project.networks.get(key) or {}).get("name") or f"{project.name}_{key}"


def volume_name(project: Project, key: str) -> str:
    """The real name of a top-level volume key (its `name`, else `<project>_<key>`)."""
    return (project.volumes.get(key) or {}).get("name") or f"{project.name}_{key}"


def used_networks(project: Project, services: list[str]) -> list[str]:
    """The network keys these services join, in the order the project declares them."""
    used = {key for s in services for key in (project.service(s).get("networks") or {})}
    declared = [k for k in project.networks if k in used]
    return declared + sorted(used - set(declared))


def used_volumes(project: Project, services: list[str]) -> list[str]:
    """The top-level volume keys these services mount."""
    used = {v["source"] for s in services for v in project.service(s).get("volumes") or []
            if v.get("type") == "volume" and v.get("source")}
    return [k for k in project.volumes if k in used] + sorted(used - set(project.volumes))


def ensure_networks(client: Client, project: Project, keys: list[str]) -> list[str]:
    """Create the missing networks among `keys` (external ones must exist); the names of those created."""
    created = []
    for key in keys:
        spec = project.networks.get(key) or {}
        name = network_name(project, key)
        if _exists(client.networks, name):
            continue
        if spec.get("external"):
            raise ComposeError(f"network {name} declared as external, but could not be found")
        for unsupported in ("internal", "driver_opts", "enable_ipv6", "attachable"):
            if spec.get(unsupported):
                raise ComposeError(f"networks.{key}.{unsupported}: not supported (dockyard networks are bridges)")
        pools = [{"Subnet": c.get("subnet"), "Gateway": c.get("gateway")}
                 for c in (spec.get("ipam") or {}).get("config") or []]
        if len(pools) > 1:
            raise ComposeError(f"networks.{key}.ipam.config: only one pool is supported")
        try:
            client.networks.create(name, spec.get("driver"), ipam={"Config": pools} if pools else None, labels={
                **(spec.get("labels") or {}), labels.NETWORK: key, labels.PROJECT: project.name,
                labels.VERSION: labels.COMPOSE_VERSION})
        except DockyardError as e:
            raise ComposeError(f"network {name}: {e}") from None
        created.append(name)
    return created


def ensure_volumes(client: Client, project: Project, keys: list[str]) -> list[str]:
    """Create the missing named volumes among `keys` (external ones must exist); the names of those created."""
    created = []
    for key in keys:
        spec = project.volumes.get(key)
        if spec is None:
            raise ComposeError(f"service refers to undefined volume {key}")
        name = volume_name(project, key)
        if _exists(client.volumes, name):
            continue
        if spec.get("external"):
            raise ComposeError(f"external volume {name!r} not found")
        try:
            client.volumes.create(name, spec.get("driver"), spec.get("driver_opts"), labels={
                **(spec.get("labels") or {}), labels.VOLUME: key, labels.PROJECT: project.name,
                labels.VERSION: labels.COMPOSE_VERSION})
        except DockyardError as e:
            raise ComposeError(f"volume {name}: {e}") from None
        created.append(name)
    return created


def remove_networks(client: Client, names: list[str], say: Any = None) -> None:
    """Remove these networks, skipping those gone or still in use (another project's containers may hold them)."""
    for name in names:
        try:
            client.networks.remove(name)
        except DockyardError:  # gone or in use: either way nothing for us to do
            continue
        if say:
            say("Network", name, "Removed")


def remove_volumes(client: Client, names: list[str], say: Any = None) -> None:
    """Remove these volumes, skipping those gone or still in use."""
    for name in names:
        try:
            client.volumes.get(name).remove()
        except DockyardError:  # gone or in use: either way nothing for us to do
            continue
        if say:
            say("Volume", name, "Removed")


def project_networks(client: Client, project: Project) -> list[str]:
    """The networks down removes: those labelled with the project, and its declared non-external ones."""
    found = [n.name for n in client.networks.list()
             if (n.attrs.get("Labels") or {}).get(labels.PROJECT) == project.name]
    declared = [network_name(project, k) for k, spec in project.networks.items() if not spec.get("external")]
    return found + [n for n in declared if n not in found]


def project_volumes(client: Client, project: Project) -> list[str]:
    """The named volumes `down -v` removes: those labelled with the project, and its declared non-external ones."""
    found = [v.name for v in client.volumes.list()
             if (v.attrs.get("Labels") or {}).get(labels.PROJECT) == project.name]
    declared = [volume_name(project, k) for k, spec in project.volumes.items() if not spec.get("external")]
    return found + [v for v in declared if v not in found]


def _exists(collection: Any, name: str) -> bool:
    try:
        collection.get(name)
    except NotFound:
        return False
    return True
