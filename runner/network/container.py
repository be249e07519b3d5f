"""One container's networking around a run: its netns made, put on its network, and taken down again."""

from __future__ import annotations

import os

from runner.containers import Container
from runner.network.store import EndpointConfig


def endpoint_configs(c: Container) -> list[EndpointConfig]:
    """The networks a container joins at start, in order (a record older than several networks: its one)."""
    if c.networks:
        return [EndpointConfig.from_settings(name, settings) for name, settings in c.networks.items()]
    return [EndpointConfig(c.host_config["NetworkMode"], c.host_config.get("IP") or "")]


def make_netns(c: Container) -> str | None:
    """Make the (still empty) netns of a container on a bridge or user network; None for host/none."""
    if c.host_config["NetworkMode"] in ("host", "none"):
        return None
    from runner.create import NETNS_DIR
    from runner.network import netns

    path = os.path.join(NETNS_DIR, c.id)
    netns.remove(path)  # a left-over of a crashed run
    return netns.create(path)


def attach_netns(root: str, c: Container, path: str) -> None:
    """Put the container's netns (from make_netns) on its networks: veths, addresses, ports, /etc/hosts."""
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
    from runner.network import attach, bridge

    pending = attach.detach(c.id, root=root, netns_path=os.path.join(NETNS_DIR, c.id), wait=settle)
    if pending:
        bridge.await_gone_later(pending)
