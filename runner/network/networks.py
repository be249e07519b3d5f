"""Networks: the default `bridge`, user networks (create, remove, prune, inspect) and bringing their bridge up."""

from __future__ import annotations

import ipaddress
import os
import re

from dockyard.errors import DockyardError
from runner.network import bridge, ipam, nat, store
from runner.network.endpoint import DEFAULT_NETWORK
from runner.network.store import PREDEFINED, Network, State

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
DEFAULT_SUBNET = ipaddress.IPv4Network("172.17.0.0/16")
DEFAULT_POOL = "172.18.0.0/16"
NAT_RULES = 2  # bump when nat.py's rules change (2: the loopback guard), so existing bridges get the new ones


def new_state() -> State:
    """The first state of a store: the default network, from the environment (tests use their own) or defaults.

    As docker's: the default bridge on the first /16 from 172.17.0.0 that no host route covers (podman's
    10.88.0.0/16 would take podman's containers' traffic), user networks from 172.18.0.0/16 on.
    """
    env = os.environ.get
    given = env("DOCKYARD_BRIDGE_SUBNET")
    subnet = ipam.parse_subnet(given) if given else ipam.free_subnet(DEFAULT_SUBNET, ipam.routed_subnets())
    state = State(nat_backend=env("DOCKYARD_NAT_BACKEND") or nat.detect(),
                  nat_table=env("DOCKYARD_NAT_TABLE", "dockyard"),
                  pool=str(ipam.parse_subnet(env("DOCKYARD_NETWORK_POOL", DEFAULT_POOL))))
    default = Network(id=os.urandom(32).hex(), name=DEFAULT_NETWORK, bridge=env("DOCKYARD_BRIDGE", "dockyard0"),
                      subnet=str(subnet), gateway=ipam.gateway_for(subnet), created=_now())
    state.networks[default.id] = default
    return state


def _now() -> str:
    from datetime import UTC, datetime  # (here: a bridged start imports this module, and makes no network)

    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def ensure_up(state: State, network: Network) -> None:
    """Create the network's bridge and NAT if missing (first use, or after a reboot wiped them)."""
    if state.nat_rules != NAT_RULES:
        # Bridges set up by an older dockyard lack newer rules (the loopback guard): set them all up again.
        for n in state.networks.values():
            if bridge.exists(n.bridge):
                state.nat().add_network(n.subnet, n.bridge)
        state.nat_rules = NAT_RULES
    if bridge.exists(network.bridge):
        return
    # NAT first: the bridge is the marker that setup completed, so a failure in between is retried next time.
    state.nat().add_network(network.subnet, network.bridge)
    bridge.create_bridge(network.bridge, network.gateway, ipaddress.IPv4Network(network.subnet).prefixlen)


def _tear_down(state: State, network: Network) -> None:
    state.nat().remove_network(network.subnet, network.bridge)
    bridge.delete_link(network.bridge)


def create(name: str, subnet: str | None = None, gateway: str | None = None, labels: dict[str, str] | None = None,
           root: str | None = None) -> Network:
    """A user network with its own bridge `dy-<short id>`, up at once; its subnet the first free one if not given."""
    if name in PREDEFINED:
        raise DockyardError(f"network name {name} is reserved for a pre-defined network")
    if not NAME_RE.match(name):
        raise DockyardError(f"invalid network name {name!r}: use letters, digits, '_', '.' and '-'")
    if gateway and not subnet:
        raise DockyardError("--gateway needs --subnet")
    with store.transaction(root, new_state) as state:
        if any(n.name == name for n in state.networks.values()):
            raise DockyardError(f"network with name {name} already exists")
        in_use = [ipaddress.IPv4Network(n.subnet) for n in state.networks.values()]
        if subnet:
            net = ipam.parse_subnet(subnet)
            clash = next((s for s in in_use if s.overlaps(net)), None)
            if clash:
                raise DockyardError(f"subnet {net} overlaps with network subnet {clash}")
        else:
            net = ipam.free_subnet(ipaddress.IPv4Network(state.pool), in_use + ipam.routed_subnets())
        nid = os.urandom(32).hex()
        network = Network(id=nid, name=name, bridge=f"dy-{nid[:12]}", subnet=str(net),
                          gateway=ipam.gateway_for(net, gateway), created=_now(), labels=dict(labels or {}))
        state.networks[nid] = network
        try:
            ensure_up(state, network)
        except BaseException:
            _tear_down(state, network)
            raise
    return network


def remove(ref: str, root: str | None = None) -> Network:
    """Remove a user network with no containers: its record, bridge and NAT entries."""
    with store.transaction(root, new_state) as state:
        network = _user_network(state, ref)
        users = state.members(network.id)
        if users:
            raise DockyardError(f"network {network.name} has active endpoints ({', '.join(a.name for a in users)})")
        _tear_down(state, network)
        del state.networks[network.id]
    return network


def _user_network(state: State, ref: str) -> Network:
    if ref in PREDEFINED:
        raise DockyardError(f"{ref} is a pre-defined network and cannot be removed")
    network = state.network(ref)
    if network.name == DEFAULT_NETWORK:
        raise DockyardError(f"{DEFAULT_NETWORK} is a pre-defined network and cannot be removed")
    return network


def prune(root: str | None = None) -> list[str]:
    """Remove every user network no container uses; returns their names."""
    with store.transaction(root, new_state) as state:
        unused = [n for n in state.networks.values() if n.name != DEFAULT_NETWORK and not state.members(n.id)]
        for n in unused:
            _tear_down(state, n)
            del state.networks[n.id]
    return [n.name for n in unused]


def reset(root: str | None = None) -> None:
    """Tear down every network of the store, the default bridge included, and the NAT table: leave no trace."""
    if store.read(root) is None:
        return
    with store.transaction(root, new_state) as state:
        for a in state.attachments.values():
            for ep in a.endpoints.values():
                bridge.delete_link(ep.veth_host)
        for n in state.networks.values():
            bridge.delete_link(n.bridge)
        state.nat().destroy()
        state.attachments.clear()


def all_networks(root: str | None = None) -> tuple[State, list[Network]]:
    """The state and its networks, the default first, then by name."""
    with store.transaction(root, new_state) as state:  # makes the default network's record on first use
        pass
    return state, sorted(state.networks.values(), key=lambda n: (n.name != DEFAULT_NETWORK, n.name))


def inspect(ref: str, root: str | None = None) -> dict:
    """docker's `network inspect` JSON for one network."""
    state, _ = all_networks(root)
    n = state.network(ref)
    containers = {}
    for a in state.members(n.id):
        ep = a.endpoints[n.id]
        containers[a.container_id] = {"Name": a.name, "EndpointID": ep.veth_host, "MacAddress": ep.mac,
                                      "IPv4Address": f"{ep.ip}/{ep.prefix_len}", "IPv6Address": ""}
    return {
        "Name": n.name, "Id": n.id, "Created": n.created, "Scope": "local", "Driver": "bridge", "EnableIPv6": False,
        "IPAM": {"Driver": "default", "Options": {}, "Config": [{"Subnet": n.subnet, "Gateway": n.gateway}]},
        "Internal": False, "Attachable": False, "Ingress": False, "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
        "Containers": containers, "Options": {"com.docker.network.bridge.name": n.bridge}, "Labels": n.labels,
    }
