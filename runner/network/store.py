"""Network records on disk: one JSON state file under `<store root>/networks/`, changed only under its lock."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

from dockyard.errors import DockyardError, NotFound

PREDEFINED = ("bridge", "host", "none")  # names a user network may not take


@dataclass
class PortMapping:
    """One published port: traffic to host_ip:host_port/proto goes to the container's container_port."""

    container_port: int
    host_port: int = 0  # 0: pick a free one when publishing
    proto: str = "tcp"
    host_ip: str = ""  # "" means every host address

    def __str__(self) -> str:
        return f"{self.host_ip or '0.0.0.0'}:{self.host_port}->{self.container_port}/{self.proto}"


@dataclass
class Network:
    """A bridge network: its own Linux bridge and subnet; the gateway address sits on the bridge."""

    id: str
    name: str
    bridge: str
    subnet: str
    gateway: str
    created: str
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def short_id(self) -> str:
        return self.id[:12]


@dataclass
class Endpoint:
    """A container's interface on one network."""

    network: str  # network name
    network_id: str
    ip: str
    mac: str
    gateway: str
    prefix_len: int
    veth_host: str
    ifname: str  # name inside the container (eth0, eth1, …)
    aliases: list[str] = field(default_factory=list)
    ports: list[PortMapping] = field(default_factory=list)

    @classmethod
    def from_json(cls, d: dict) -> Endpoint:
        return cls(**{**d, "ports": [PortMapping(**p) for p in d.get("ports", [])]})


@dataclass
class Attachment:
    """What the network side knows about one container: its endpoints and what goes into its /etc/hosts."""

    container_id: str
    name: str
    hostname: str = ""
    hosts_path: str = ""  # host-side file bind-mounted at /etc/hosts, rewritten when peers come and go
    extra_hosts: list[list[str]] = field(default_factory=list)  # [host, ip] from --add-host
    links: list[list[str]] = field(default_factory=list)  # [container name, alias] from --link
    endpoints: dict[str, Endpoint] = field(default_factory=dict)  # by network id

    @classmethod
    def from_json(cls, d: dict) -> Attachment:
        eps = {k: Endpoint.from_json(v) for k, v in d.get("endpoints", {}).items()}
        return cls(**{**d, "endpoints": eps})


@dataclass
class State:
    """Everything in networks.json: settings, networks by id, attachments by container id."""

    nat_backend: str  # "nftables" or "iptables"
    nat_table: str  # nftables table (or iptables chain prefix) this store's networks use
    pool: str  # user networks without --subnet get the first free subnet of this size, counting up from it
    networks: dict[str, Network] = field(default_factory=dict)
    attachments: dict[str, Attachment] = field(default_factory=dict)
    # Host veth -> address of endpoints released while their veth was still going away (detach without wait):
    # the address stays taken until the veth is gone, so no new container shares it with a dying one.
    lingering: dict[str, str] = field(default_factory=dict)
    # Version of the packet filter rules set up for the networks (networks.NAT_RULES when they are current).
    nat_rules: int = 0

    def network(self, ref: str) -> Network:
        """A network by name, full ID or unique ID prefix."""
        for n in self.networks.values():
            if n.name == ref or n.id == ref:
                return n
        matches = [n for n in self.networks.values() if ref and n.id.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise DockyardError(f"network {ref} is ambiguous ({len(matches)} matches found on name)")
        raise NotFound(f"network {ref} not found")

    def nat(self):
        """The packet filter backend for this store's networks."""
        from runner.network import nat

        return nat.backend(self.nat_backend, self.nat_table)

    def members(self, network_id: str) -> list[Attachment]:
        """The containers with an endpoint on a network."""
        return [a for a in self.attachments.values() if network_id in a.endpoints]

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> State:
        return cls(
            nat_backend=d["nat_backend"],
            nat_table=d["nat_table"],
            pool=d["pool"],
            networks={k: Network(**v) for k, v in d.get("networks", {}).items()},
            attachments={k: Attachment.from_json(v) for k, v in d.get("attachments", {}).items()},
            lingering=d.get("lingering", {}),
            nat_rules=d.get("nat_rules", 0),
        )


def networks_dir(root: str | None = None) -> str:
    """`<store root>/networks`."""
    if root is None:
        from dockyard.store import default_root

        root = default_root()
    return os.path.join(root, "networks")


def read(root: str | None = None) -> State | None:
    """The state as last written (no lock: each write is atomic), or None before the first network exists."""
    raw = _read_raw(root)
    return State.from_json(raw) if raw is not None else None


def _read_raw(root: str | None) -> dict | None:
    try:
        with open(os.path.join(networks_dir(root), "networks.json")) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def transaction(root: str | None = None, new_state=None) -> Iterator[State]:
    """Yield the state under an exclusive lock and write it back atomically if the block succeeds.

    `new_state()` makes the first state when there is none yet (it creates the default network record).
    """
    from dockyard.fsutil import atomic_write, locked

    directory = networks_dir(root)
    os.makedirs(directory, exist_ok=True)
    with locked(os.path.join(directory, ".lock")):
        raw = _read_raw(root)
        state = State.from_json(raw) if raw is not None else new_state()
        yield state
        data = state.to_json()
        if data == raw:
            return  # nothing changed (e.g. detaching a container that is attached nowhere)
        # Attachments are runtime state that a reboot voids; only the rest (network definitions) must be durable.
        durable = raw is None or any(data[k] != raw.get(k) for k in data if k not in ("attachments", "lingering"))
        atomic_write(os.path.join(directory, "networks.json"), json.dumps(data).encode(), durable=durable)
