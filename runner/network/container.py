"""One container's networking around a run: its netns made, put on its network, and taken down again."""

from __future__ import annotations

import os

from runner.containers import Container
from runner.network.endpoint import EndpointConfig


def endpoint_configs(c: Container) -> list[EndpointConfig]:
    """The networks a container joins at start, in order (a record older than several networks: its one)."""
    if c.networks:
        return [EndpointConfig.from_settings(name, settings) for name, settings in c.networks.items()]
    return [EndpointConfig(c.host_config["NetworkMode"], c.host_config.get("IP") or "")]


def joined_id(c: Container) -> str:
    """The id of the container whose network namespace this one joins (--network container:<id>), else ""."""
    mode = c.host_config.get("NetworkMode") or ""
    return mode.removeprefix("container:") if mode.startswith("container:") else ""


def make_netns(root: str, c: Container) -> str | None:
    """Make the (still empty) netns of a container on a bridge or user network, or pin the one of the container
    it joins; None for host/none."""
    if c.host_config["NetworkMode"] in ("host", "none"):
        return None
    from runner.create import NETNS_DIR
    from runner.network import netns

    path = os.path.join(NETNS_DIR, c.id)
    netns.remove(path)  # a left-over of a crashed run
    if other_id := joined_id(c):
        return netns.pin(f"/proc/{_running_pid(root, other_id)}/ns/net", path)
    return netns.create(path)


def _running_pid(root: str, cid: str) -> int:
    """The host pid of a container whose namespace another joins; refused when it is gone or not running."""
    from dockyard.errors import DockyardError, NotFound
    from runner.containers import Containers
    from runner.listing import host_pid

    try:
        other = Containers(root).load(cid)
    except NotFound:
        raise NotFound(f"cannot join the network of container {cid[:12]}: it no longer exists") from None
    pid = host_pid(other) if other.status == "running" else 0
    if not pid:
        raise DockyardError(f"cannot join the network of container {other.name}: it is not running")
    return pid


def attach_netns(root: str, c: Container, path: str) -> None:
    """Put the container's netns (from make_netns) on its networks: veths, addresses, ports, /etc/hosts."""
    if joined_id(c):
        return  # another container's namespace: plumbed already, its owner's
    from runner.network import attach, hosts, ports

    hc = c.host_config
    publish = [ports.PortMapping(**p) for p in hc.get("PortBindings") or []]
    first, *more = endpoint_configs(c)
    attach.attach(path, c.id, c.name, network=first.network, ip=first.ip or None, aliases=first.aliases,
                  publish=publish, hostname=c.config["Hostname"], hosts_path=os.path.join(c.bundle, "hosts"),
                  extra_hosts=[hosts.parse_add_host(h) for h in hc.get("ExtraHosts") or []],
                  links=[hosts.parse_link(link) for link in hc.get("Links") or []], more=more, root=root)


def network_down(root: str, c: Container, settle: bool = True) -> None:
    """Undo make_netns and attach_netns (idempotent).

    settle=False returns before the veths have vanished (it takes the kernel ~10 ms after the container's
    exit); a forked child sees to them. For a process about to exit.
    """
    if c.host_config.get("NetworkMode") in ("host", "none"):
        return
    from runner.create import NETNS_DIR
    from runner.network import attach, bridge, netns

    if joined_id(c):
        netns.remove(os.path.join(NETNS_DIR, c.id))  # our pin only: the namespace is its owner's
        return
    pending = attach.detach(c.id, root=root, netns_path=os.path.join(NETNS_DIR, c.id), wait=settle)
    if pending:
        bridge.await_gone_later(pending)
