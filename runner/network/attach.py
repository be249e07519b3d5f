"""Putting containers on networks: veth + address + routes + published ports + /etc/hosts, and taking them off."""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
from collections.abc import Iterator

from dockyard.errors import DockyardError, NotFound
from runner.network import bridge, hosts, ipam, netns, networks, ports, store
from runner.network.endpoint import DEFAULT_NETWORK, EndpointConfig
from runner.network.store import Attachment, Endpoint, Network, PortMapping, State


def attach(netns_path: str, container_id: str, name: str, network: str = DEFAULT_NETWORK, ip: str | None = None,
           publish: list[PortMapping] | None = None, aliases: list[str] | None = None, hostname: str = "",
           hosts_path: str = "", extra_hosts: list[tuple[str, str]] | None = None,
           links: list[tuple[str, str]] | None = None, more: list[EndpointConfig] | None = None,
           root: str | None = None) -> Endpoint | None:
    """Connect a container's namespace (at `netns_path`) to its first network, then to the `more` ones (no
    default route, no published ports on those); the first endpoint, None for `host` and `none`.

    `hosts_path` (optional) is the file to bind-mount at /etc/hosts: it is written now and rewritten in place
    whenever containers on the same user networks come or go. `extra_hosts` and `links` are pairs as
    hosts.parse_add_host and hosts.parse_link return them.
    """
    if network == "host":
        return None
    if network == "none":
        bridge.loopback_up(netns_path)
        return None
    with store.transaction(root, networks.new_state) as state:
        if container_id in state.attachments:
            raise DockyardError(f"container {name} is already attached to a network")
        att = Attachment(container_id, name, hostname, hosts_path, [list(e) for e in extra_hosts or []],
                         [list(link) for link in links or []])
        for link, _ in att.links:
            if _by_name(state, link) is None:
                raise NotFound(f"could not link to container {link}: it is not running on a network")
        state.attachments[container_id] = att
        ep = _join(state, att, state.network(network), netns_path, ip, aliases or [], publish or [])
        try:
            for extra in more or []:
                _join(state, att, state.network(extra.network), netns_path, extra.ip or None, extra.aliases, [])
        except BaseException:  # the state is not written: undo what it would have recorded
            for joined in att.endpoints.values():
                _release(state, joined)
            raise
    return ep


@contextlib.contextmanager
def on_default_bridge(owner_id: str, root: str | None = None) -> Iterator[str]:
    """A fresh network namespace on the default bridge for the block, as a container's (the builder's RUN).

    Yields its path for the runtime to join. Its veth, address and pin are gone after the block, also when the
    block fails; the processes in it must have ended by then. The owner holds a lock next to the pin while it
    lives, so what an owner killed in the middle left behind is taken down by the next one (see _reap).
    """
    from dockyard.fsutil import locked

    _reap(root)
    path = os.path.join(netns.NETNS_DIR, owner_id)
    os.makedirs(netns.NETNS_DIR, exist_ok=True)
    with locked(path + ".lock"):
        try:
            netns.create(path)
            attach(path, owner_id, owner_id, root=root)
            yield path
        finally:
            detach(owner_id, root=root, netns_path=path)
            os.unlink(path + ".lock")


def _reap(root: str | None) -> None:
    """Take down on_default_bridge() namespaces whose owner died inside the block: their lock is free."""
    import fcntl

    state = store.read(root)
    for owner_id in state.attachments if state else []:
        path = os.path.join(netns.NETNS_DIR, owner_id)
        try:
            fd = os.open(path + ".lock", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # a container's (their leftovers are `rm`'s), or an owner that just finished
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # its owner is alive
        else:
            detach(owner_id, root=root, netns_path=path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path + ".lock")
        finally:
            os.close(fd)


def connect(netns_path: str, container_id: str, network: str, ip: str | None = None,
            aliases: list[str] | None = None, root: str | None = None) -> Endpoint:
    """Add a network to a container that attach() already put on one (`network connect`)."""
    with store.transaction(root, networks.new_state) as state:
        att = _attachment(state, container_id)
        net = state.network(network)
        if net.id in att.endpoints:
            raise DockyardError(f"container {att.name} is already connected to network {net.name}")
        return _join(state, att, net, netns_path, ip, aliases or [], [])


def disconnect(container_id: str, network: str, root: str | None = None) -> None:
    """Take a container off one network: its veth, address, ports and hosts entries go."""
    with store.transaction(root, networks.new_state) as state:
        att = _attachment(state, container_id)
        net = state.network(network)
        ep = att.endpoints.pop(net.id, None)
        if ep is None:
            raise DockyardError(f"container {att.name} is not connected to network {net.name}")
        _release(state, ep)
        _refresh_hosts(state, att, {net.id})


def detach(container_id: str, root: str | None = None, netns_path: str | None = None, wait: bool = True) -> list[str]:
    """Take a container off every network (at stop or removal); nothing happens if it was on none.

    With `netns_path` (once no process is left in it) the namespace is unpinned as well and its veth pairs die
    with it, in the kernel's own time, rather than by `ip link del` (which waits out RCU grace periods, ~20 ms).
    With `wait` none outlives the call; without, the host-side veths still to vanish are returned (for
    bridge.await_gone_later).
    """
    if netns_path:
        netns.remove(netns_path)
    if attachment(container_id, root) is None:
        return []  # (read unlocked: a container that is not starting is attached by nobody meanwhile)
    with store.transaction(root, networks.new_state) as state:
        att = state.attachments.pop(container_id, None)
        if att is None:
            return []
        for ep in att.endpoints.values():
            _release(state, ep, delete_link=not netns_path)
            if netns_path and not wait:
                state.lingering[ep.veth_host] = ep.ip
        _refresh_hosts(state, att, set(att.endpoints))
    pending = [ep.veth_host for ep in att.endpoints.values()] if netns_path else []
    if wait:
        for veth in pending:
            bridge.await_gone(veth)
        return []
    return pending


def attachment(container_id: str, root: str | None = None) -> Attachment | None:
    """A container's networks, addresses and published ports as recorded (for inspect, ps and port)."""
    state = store.read(root)
    return state.attachments.get(container_id) if state else None


def _attachment(state: State, container_id: str) -> Attachment:
    att = state.attachments.get(container_id)
    if att is None:
        raise NotFound(f"container {container_id[:12]} is not on a bridge network")
    return att


def _by_name(state: State, name: str) -> Attachment | None:
    return next((a for a in state.attachments.values() if a.name == name), None)


def _join(state: State, att: Attachment, net: Network, netns_path: str, ip: str | None, aliases: list[str],
          publish: list[PortMapping]) -> Endpoint:
    """Allocate, record and plumb one endpoint; on failure nothing stays behind."""
    subnet = ipaddress.IPv4Network(net.subnet)
    for veth in [v for v in state.lingering if not bridge.exists(v)]:
        del state.lingering[veth]
    used = [a.endpoints[net.id].ip for a in state.members(net.id)] + list(state.lingering.values())
    address = ipam.allocate(subnet, net.gateway, used, ip)
    ifnames = {ep.ifname for ep in att.endpoints.values()}
    ifname = next(f"eth{i}" for i in range(len(ifnames) + 1) if f"eth{i}" not in ifnames)
    veth = "vd" + hashlib.sha256(f"{att.container_id}/{net.id}".encode()).hexdigest()[:11]
    published = [p for a in state.attachments.values() for e in a.endpoints.values() for p in e.ports]
    ep = Endpoint(net.name, net.id, address, ipam.mac_for(address), net.gateway, subnet.prefixlen, veth, ifname,
                  list(aliases), ports.assign(publish, published))
    networks.ensure_up(state, net)
    # Only the first network gets the default route, as with docker.
    bridge.add_veth(netns_path, net.bridge, veth, ifname, ep.mac, address, subnet.prefixlen,
                    net.gateway if not ifnames else None)
    try:
        state.nat().add_ports([(p, address) for p in ep.ports])
        att.endpoints[net.id] = ep
        _refresh_hosts(state, att, {net.id})
    except BaseException:
        att.endpoints.pop(net.id, None)
        _release(state, ep)
        raise
    return ep


def _release(state: State, ep: Endpoint, delete_link: bool = True) -> None:
    """Undo an endpoint's plumbing; its address is free again once the state no longer lists it."""
    state.nat().remove_ports([(p, ep.ip) for p in ep.ports])
    if delete_link:
        bridge.delete_link(ep.veth_host)


def hosts_entries(state: State, att: Attachment) -> list[tuple[str, list[str]]]:
    """A container's /etc/hosts entries: peers on its user networks, its links and its --add-host lines."""
    entries: list[tuple[str, list[str]]] = []
    for net_id in att.endpoints:
        if state.networks[net_id].name == DEFAULT_NETWORK:
            continue  # as with docker, the default bridge resolves no names (only --link)
        for peer in state.members(net_id):
            if peer is not att:
                peer_ep = peer.endpoints[net_id]
                entries.append((peer_ep.ip, _unique([peer.name, *peer_ep.aliases])))
    for name, alias in att.links:
        linked = _by_name(state, name)
        if linked and linked.endpoints:
            shared = [i for i in linked.endpoints if i in att.endpoints] or list(linked.endpoints)
            entries.append((linked.endpoints[shared[0]].ip, _unique([alias, name])))
    entries += [(ip, [host]) for host, ip in att.extra_hosts]
    return entries


def _unique(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _refresh_hosts(state: State, changed: Attachment, nets: set[str]) -> None:
    """Rewrite the hosts files of `changed` (if still attached) and of everyone on `nets` or linking to it."""
    for a in state.attachments.values():
        if not a.hosts_path:
            continue
        if a is changed or nets & set(a.endpoints) or any(n == changed.name for n, _ in a.links):
            text = hosts.hosts_file(a.hostname, _own_ip(a), hosts_entries(state, a))
            if a is changed and not os.path.exists(a.hosts_path):
                from dockyard.fsutil import atomic_write

                atomic_write(a.hosts_path, text.encode())  # not mounted yet: an ordinary atomic write
            else:
                hosts.rewrite_in_place(a.hosts_path, text)


def _own_ip(att: Attachment) -> str | None:
    """The address the container's hostname resolves to: the one on its first interface."""
    eps = sorted(att.endpoints.values(), key=lambda e: int(e.ifname[3:]))
    return eps[0].ip if eps else None
