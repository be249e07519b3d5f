"""What `ps`, `inspect` and `port` show of containers: listings with docker's filters, the inspect document and the
published ports. Every `ps` runs this, so it reads records only: the runtime and the network code are imported
where a running container needs them."""

from __future__ import annotations

import os
from dataclasses import dataclass

from dockyard.errors import DockyardError
from runner.containers import Container, Containers

PS_FILTERS = ("status", "name", "id", "exited", "ancestor", "label")


@dataclass
class PortBinding:
    """One published port: container side and host side."""

    container_port: int
    proto: str
    host_ip: str
    host_port: int

    @property
    def key(self) -> str:
        """docker's `80/tcp`."""
        return f"{self.container_port}/{self.proto}"

    @property
    def host(self) -> str:
        """docker's `0.0.0.0:8080`."""
        return f"{self.host_ip or '0.0.0.0'}:{self.host_port}"


@dataclass
class ProcessTable:
    """`top`: ps's header and its lines for the container's processes, as ps printed them."""

    header: str
    lines: list[str]

    def as_docker(self) -> dict:
        """docker's {"Titles": [...], "Processes": [[...]]} (the last column keeps its spaces)."""
        titles = self.header.split()
        return {"Titles": titles, "Processes": [line.split(None, len(titles) - 1) for line in self.lines]}


def _attachment(root: str, c: Container):
    """The network side's record of a running container on a bridge or user network (else None)."""
    if c.host_config.get("NetworkMode") in ("host", "none") or not c.running:
        return None
    from runner.network import attach

    return attach.attachment(c.id, root=root)


def ports(root: str, c: Container, private: str | None = None) -> list[PortBinding]:
    """The container's published ports; `private` (`80` or `80/tcp`) narrows them and must match one."""
    att = _attachment(root, c)
    out = [PortBinding(p.container_port, p.proto, p.host_ip, p.host_port)
           for ep in (att.endpoints.values() if att else []) for p in ep.ports]
    if private:
        out = [p for p in out if private in (p.key, str(p.container_port))]
        if not out:
            raise DockyardError(f"no public port '{private}' published for {c.name}")
    return out


def _ps_match(c: Container, filters: dict[str, list[str]]) -> bool:
    """docker ps --filter: every key must match (a key given twice: any of its values)."""
    def one(key: str, value: str) -> bool:
        if key == "status":
            return c.status == value
        if key == "name":
            return value.lstrip("/") in c.name
        if key == "id":
            return c.id.startswith(value)
        if key == "exited":
            return not (c.running or c.status == "created") and str(c.exit_code) == value
        if key == "ancestor":
            return value in (c.image, c.image_id, c.image_digest)
        k, eq, v = value.partition("=")  # label
        labels = c.config.get("Labels") or {}
        return k in labels and (not eq or labels[k] == v)
    return all(all(one(key, v) for v in values) for key, values in filters.items())


def parse_filters(items: list[str]) -> dict[str, list[str]]:
    """`key=value` flags as docker's filter map."""
    out: dict[str, list[str]] = {}
    for item in items:
        key, _, value = item.partition("=")
        out.setdefault(key, []).append(value)
    return out


def list_containers(root: str, all: bool = False, filters: dict[str, list[str]] | None = None,
                    limit: int = -1) -> list[Container]:
    """docker ps: running containers (every one with `all`, a limit or a status/exited filter), newest first."""
    filters = filters or {}
    for key in filters:
        if key not in PS_FILTERS:
            raise DockyardError(f"invalid filter {key!r}")
    cs = Containers(root).all()
    if not (all or limit >= 0 or "status" in filters or "exited" in filters):
        cs = [c for c in cs if c.running]
    cs = [c for c in cs if _ps_match(c, filters)]
    return cs[:limit] if limit >= 0 else cs


def host_pid(c: Container) -> int:
    """The container's pid 1 on the host (under runc only its cgroup knows it); 0 when it is not running."""
    if not c.running:
        return 0
    if c.pid:
        return c.pid
    from runner.lifecycle import init_pid  # the runtime: only for a running container that lost its recorded pid

    return init_pid(c.id)


def inspect(root: str, c: Container) -> dict:
    """docker's `inspect` JSON for a container."""
    from runner.network.container import joined_id  # not at the top: `ps` does not need the network code

    att = _attachment(root, c)
    networks: dict[str, dict] = {}
    ports_: dict[str, list[dict[str, str]]] = {}
    for name, chosen in c.networks.items():  # as docker: what was asked for, with no address while stopped
        networks[name] = {**chosen, "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "",
                          "IPPrefixLen": 0, "MacAddress": "", "DNSNames": None}
    for ep in (att.endpoints.values() if att else []):
        networks[ep.network] = {"IPAMConfig": None, **networks.get(ep.network, {}), "NetworkID": ep.network_id,
                                "EndpointID": ep.veth_host, "Gateway": ep.gateway, "IPAddress": ep.ip,
                                "IPPrefixLen": ep.prefix_len, "MacAddress": ep.mac, "Aliases": ep.aliases or None,
                                "DNSNames": [c.name, *ep.aliases, c.short_id]}
        for p in ep.ports:
            ports_.setdefault(f"{p.container_port}/{p.proto}", []).append(
                {"HostIp": p.host_ip or "0.0.0.0", "HostPort": str(p.host_port)})
    first = next(iter(networks.values()), {})
    etc = Containers(root).path(joined_id(c)) if joined_id(c) else c.bundle  # docker points at the shared files
    args = [*(c.config.get("Entrypoint") or []), *(c.config.get("Cmd") or [])]
    return {
        "Id": c.id, "Created": c.created, "Path": args[0] if args else "", "Args": args[1:],
        "State": {"Status": c.status, "Running": c.running and c.status != "restarting",
                  "Paused": c.status == "paused", "Restarting": c.status == "restarting", "OOMKilled": c.oom_killed,
                  "Dead": False, "Pid": host_pid(c), "ExitCode": c.exit_code, "Error": c.error,
                  "StartedAt": c.started_at, "FinishedAt": c.finished_at,
                  **({"Health": c.health} if c.health else {})},
        "Image": c.image_id, "ResolvConfPath": os.path.join(etc, "resolv.conf"),
        "HostnamePath": os.path.join(etc, "hostname"), "HostsPath": os.path.join(etc, "hosts"),
        "LogPath": os.path.join(c.bundle, f"{c.id}-json.log"), "Name": "/" + c.name,
        "RestartCount": c.restart_count, "Driver": "overlay", "Platform": "linux",
        "HostConfig": {**c.host_config, "PortBindings": _port_bindings(c.host_config.get("PortBindings") or [])},
        "Mounts": c.mounts, "Config": c.config,
        "GraphDriver": {"Name": "overlay", "Data": {"UpperDir": os.path.join(c.bundle, "diff"),
                                                   "WorkDir": os.path.join(c.bundle, "work")}},
        "NetworkSettings": {"Ports": ports_, "Networks": networks, "IPAddress": first.get("IPAddress", ""),
                            "Gateway": first.get("Gateway", ""), "MacAddress": first.get("MacAddress", "")},
    }


def _port_bindings(recorded: list[dict]) -> dict[str, list[dict[str, str]]]:
    """The -p flags as recorded (PortMapping fields) in docker's HostConfig.PortBindings shape: what was asked,
    "" for a port or address left to choose."""
    out: dict[str, list[dict[str, str]]] = {}
    for p in recorded:
        out.setdefault(f"{p['container_port']}/{p.get('proto', 'tcp')}", []).append(
            {"HostIp": p.get("host_ip", ""), "HostPort": str(p["host_port"]) if p.get("host_port") else ""})
    return out
