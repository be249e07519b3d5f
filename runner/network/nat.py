"""Masquerading, port DNAT and the loopback guard: an nftables table (sets and maps, so containers only add
elements), else iptables.

The guard: bridges have route_localnet on, so that the host's own 127.0.0.1:PORT can be DNATed to a container;
the kernel then no longer drops loopback addresses arriving on them as martians. A container with CAP_NET_RAW
could address a frame to the bridge with destination 127.0.0.1 and reach services the host binds to loopback only
(CVE-2020-8558). So packets coming in from our bridges to a loopback destination are dropped before conntrack
and NAT (raw priority). Legitimate traffic never has one there: the replies of a DNATed 127.0.0.1
connection come back addressed to the bridge's gateway and are translated to 127.0.0.1 only later, at dstnat.

Isolation: as docker's DOCKER-ISOLATION chains, traffic routed from one of our bridges to another is dropped, so a
container reaches only the networks it is on; a published port (DNATed) stays reachable from every network."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from dockyard.errors import DockyardError
from runner.network.store import PortMapping

Rule = tuple[PortMapping, str]  # a published port and the container address it goes to


class Nat(Protocol):
    """What networks and published ports need from the packet filter."""

    def add_network(self, subnet: str, bridge: str) -> None: ...
    def remove_network(self, subnet: str, bridge: str) -> None: ...
    def add_ports(self, rules: list[Rule]) -> None: ...
    def remove_ports(self, rules: list[Rule]) -> None: ...
    def destroy(self) -> None: ...


def detect() -> str:
    """nftables when `nft` is installed, iptables otherwise."""
    import shutil  # (here: every bridged start imports this module)

    for kind, tool in (("nftables", "nft"), ("iptables", "iptables")):
        if shutil.which(tool):
            return kind
    raise DockyardError("bridge networking needs nftables (nft) or iptables installed")


def backend(kind: str, table: str) -> Nat:
    """The backend of that kind working on `table`."""
    if kind not in BACKENDS:
        raise DockyardError(f"unknown NAT backend {kind!r} (want nftables or iptables)")
    return BACKENDS[kind](table)


def _run(argv: list[str], script: str, check: bool = True) -> bool:
    import subprocess  # here: a container start without published ports runs no packet filter tool

    p = subprocess.run(argv, input=script, capture_output=True, text=True)
    if p.returncode and check:
        raise DockyardError(f"{argv[0]} failed: {p.stderr.strip() or p.returncode}")
    return p.returncode == 0


class Nftables:
    """Table `ip <table>`: static rules that look addresses and ports up in sets and maps."""

    def __init__(self, table: str) -> None:
        self.table = table

    def _base(self) -> str:
        t = f"ip {self.table}"
        return f"""
add table {t}
add set {t} subnets {{ type ipv4_addr; flags interval; }}
add set {t} bridges {{ type ifname; }}
add map {t} ports_any {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}
add map {t} ports_ip {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}
add chain {t} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}
add chain {t} output {{ type nat hook output priority -100; policy accept; }}
add chain {t} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}
add chain {t} ports
add chain {t} guard {{ type filter hook prerouting priority raw; policy accept; }}
add map {t} isolation {{ type ifname : verdict; }}
add chain {t} forward {{ type filter hook forward priority filter; policy accept; }}
flush chain {t} prerouting
flush chain {t} output
flush chain {t} postrouting
flush chain {t} ports
flush chain {t} guard
flush chain {t} forward
add rule {t} guard iifname @bridges ip daddr 127.0.0.0/8 drop
add rule {t} forward iifname vmap @isolation
add rule {t} prerouting fib daddr type local jump ports
add rule {t} output fib daddr type local jump ports
add rule {t} ports dnat ip to ip daddr . meta l4proto . th dport map @ports_ip
add rule {t} ports dnat ip to meta l4proto . th dport map @ports_any
add rule {t} postrouting ip saddr @subnets oifname != @bridges masquerade
add rule {t} postrouting oifname @bridges ip saddr 127.0.0.0/8 masquerade
add rule {t} postrouting oifname @bridges ip saddr @subnets ct status dnat masquerade
"""
        # Why the last three: containers going out; 127.0.0.1:PORT on the host (the reply must come back to the
        # host, not to the container's own lo); and container→published port→container on the same bridge.

    def add_network(self, subnet: str, bridge: str) -> None:
        # The flush+add of the static rules makes this idempotent, and one transaction keeps it atomic.
        t, chain = f"ip {self.table}", f"iso-{bridge}"
        # Traffic in from this bridge: to itself (bridged, seen here with br_netfilter) or DNATed passes; to
        # another of our bridges it is dropped.
        _run(["nft", "-f", "-"], self._base() + f"""add element {t} subnets {{ {subnet} }}
add element {t} bridges {{ "{bridge}" }}
add chain {t} {chain}
flush chain {t} {chain}
add rule {t} {chain} oifname "{bridge}" return
add rule {t} {chain} ct status dnat return
add rule {t} {chain} oifname @bridges drop
add element {t} isolation {{ "{bridge}" : jump {chain} }}
""")

    def remove_network(self, subnet: str, bridge: str) -> None:
        t = f"ip {self.table}"
        for what in (f"element {t} subnets {{ {subnet} }}", f'element {t} bridges {{ "{bridge}" }}',
                     f'element {t} isolation {{ "{bridge}" }}', f"chain {t} iso-{bridge}"):
            _run(["nft", "-f", "-"], f"delete {what}\n", check=False)

    def _elements(self, rules: list[Rule], verb: str) -> str:
        lines = []
        for m, ip in rules:
            value = f" : {ip} . {m.container_port}" if verb == "add" else ""
            if m.host_ip:
                lines.append(f"{verb} element ip {self.table} ports_ip "
                             f"{{ {m.host_ip} . {m.proto} . {m.host_port}{value} }}")
            else:
                lines.append(f"{verb} element ip {self.table} ports_any {{ {m.proto} . {m.host_port}{value} }}")
        return "\n".join(lines) + "\n"

    def add_ports(self, rules: list[Rule]) -> None:
        if rules:
            _run(["nft", "-f", "-"], self._elements(rules, "add"))

    def remove_ports(self, rules: list[Rule]) -> None:
        if rules and not _run(["nft", "-f", "-"], self._elements(rules, "delete"), check=False):
            # One missing element fails the whole batch; fall back to one at a time so the rest still go.
            for r in rules:
                _run(["nft", "-f", "-"], self._elements([r], "delete"), check=False)

    def destroy(self) -> None:
        _run(["nft", "-f", "-"], f"delete table ip {self.table}\n", check=False)


class Iptables:
    """Chains `<TABLE>` (DNAT, jumped to for local destinations) and `<TABLE>-POSTROUTING` in the nat table,
    `<TABLE>-GUARD` (the loopback guard, see above) in the raw table, and `<TABLE>-ISOLATION[2]` (isolation, see
    above) in the filter table."""

    def __init__(self, table: str) -> None:
        self.dnat = table.upper()
        self.post = f"{self.dnat}-POSTROUTING"
        self.guard = f"{self.dnat}-GUARD"
        self.isolate, self.isolate2 = f"{self.dnat}-ISOLATION", f"{self.dnat}-ISOLATION2"  # docker's two stages

    @staticmethod
    def _restore(table: str, lines: list[str], check: bool = True) -> bool:
        return _run(["iptables-restore", "--noflush"], f"*{table}\n" + "\n".join(lines) + "\nCOMMIT\n", check)

    def _chains(self) -> dict[str, tuple[list[str], list[str]]]:
        """Per iptables table: our chains, and the jumps to them from the built-in ones."""
        local = "-m addrtype --dst-type LOCAL"
        return {"nat": ([self.dnat, self.post], [f"PREROUTING {local} -j {self.dnat}", f"OUTPUT {local} -j {self.dnat}",
                                                 f"POSTROUTING -j {self.post}"]),
                "raw": ([self.guard], [f"PREROUTING -j {self.guard}"]),
                "filter": ([self.isolate, self.isolate2], [f"FORWARD -j {self.isolate}"])}

    def _ensure(self) -> None:
        import subprocess

        for table, (chains, jumps) in self._chains().items():  # each table on its own: the guard came later
            if subprocess.run(["iptables", "-t", table, "-S", chains[0]], capture_output=True).returncode:
                self._restore(table, [f"-N {c}" for c in chains] + [f"-A {j}" for j in jumps])

    def _network_rules(self, subnet: str, bridge: str) -> dict[str, list[str]]:
        return {"nat": [f"{self.post} -s {subnet} ! -o {bridge} -j MASQUERADE",
                        f"{self.post} -o {bridge} -s 127.0.0.0/8 -j MASQUERADE",
                        f"{self.post} -o {bridge} -s {subnet} -m conntrack --ctstate DNAT -j MASQUERADE"],
                "raw": [f"{self.guard} -i {bridge} -d 127.0.0.0/8 -j DROP"],
                "filter": [f"{self.isolate} -i {bridge} ! -o {bridge} -m conntrack ! --ctstate DNAT -j {self.isolate2}",
                           f"{self.isolate2} -o {bridge} -j DROP"]}

    def add_network(self, subnet: str, bridge: str) -> None:
        self._ensure()
        for table, rules in self._network_rules(subnet, bridge).items():
            self._restore(table, [f"-D {r}" for r in rules], check=False)  # no duplicates when set up again
            self._restore(table, [f"-A {r}" for r in rules])

    def remove_network(self, subnet: str, bridge: str) -> None:
        for table, rules in self._network_rules(subnet, bridge).items():
            for r in rules:
                self._restore(table, [f"-D {r}"], check=False)

    def _port_rule(self, m: PortMapping, ip: str) -> str:
        dest = f"-d {m.host_ip}/32 " if m.host_ip else ""
        return (f"{self.dnat} {dest}-p {m.proto} -m {m.proto} --dport {m.host_port} "
                f"-j DNAT --to-destination {ip}:{m.container_port}")

    def add_ports(self, rules: list[Rule]) -> None:
        if rules:
            self._restore("nat", [f"-A {self._port_rule(m, ip)}" for m, ip in rules])

    def remove_ports(self, rules: list[Rule]) -> None:
        for m, ip in rules:
            self._restore("nat", [f"-D {self._port_rule(m, ip)}"], check=False)

    def destroy(self) -> None:
        for table, (chains, jumps) in self._chains().items():
            self._restore(table, [f"-D {j}" for j in jumps], check=False)
            self._restore(table, [f"-F {c}" for c in chains] + [f"-X {c}" for c in chains], check=False)


BACKENDS: dict[str, Callable[[str], Nat]] = {"nftables": Nftables, "iptables": Iptables}
