"""Published ports: parsing `-p`/`-P`, and choosing host ports that nothing else holds."""

from __future__ import annotations

from collections.abc import Iterable

from dockyard.errors import DockyardError
from runner.network.ipam import parse_address
from runner.network.store import PortMapping

PROTOS = ("tcp", "udp", "sctp")


def _port_range(text: str, spec: str) -> list[int]:
    lo, _, hi = text.partition("-")
    try:
        first, last = int(lo), int(hi or lo)
    except ValueError:
        raise DockyardError(f"invalid port {text!r} in {spec!r}") from None
    if not (0 < first <= last <= 65535):
        raise DockyardError(f"invalid port {text!r} in {spec!r}")
    return list(range(first, last + 1))


def parse_publish(spec: str) -> list[PortMapping]:
    """`-p [IP:][HOSTPORT[-END]:]CTRPORT[-END][/PROTO]` into mappings (host port 0: pick one)."""
    rest, _, proto = spec.partition("/")
    proto = proto or "tcp"
    if proto not in PROTOS:
        raise DockyardError(f"invalid protocol {proto!r} in {spec!r}")
    host_ip, host, ctr = "", "", rest
    if rest.startswith("["):
        raise DockyardError(f"IPv6 host addresses are not supported: {spec!r}")
    parts = rest.split(":")
    if len(parts) == 2:
        host, ctr = parts
    elif len(parts) == 3:
        host_ip, host, ctr = parts
        if host_ip:
            host_ip = str(parse_address(host_ip, "host IP"))
    elif len(parts) > 3:
        raise DockyardError(f"invalid publish spec {spec!r}: want [IP:][HOSTPORT:]CTRPORT[/PROTO]")
    ctr_ports = _port_range(ctr, spec)
    host_ports = _port_range(host, spec) if host else [0] * len(ctr_ports)
    if len(host_ports) != len(ctr_ports):
        if len(ctr_ports) != 1:
            raise DockyardError(f"port ranges differ in length in {spec!r}")
        host_ports = host_ports[:1]  # docker: a host range for one container port takes the first port
    return [PortMapping(c, h, proto, "" if host_ip == "0.0.0.0" else host_ip)
            for h, c in zip(host_ports, ctr_ports, strict=True)]


def from_exposed(exposed: Iterable[str]) -> list[PortMapping]:
    """`-P`: every port of the image's ExposedPorts ("80/tcp", "53/udp") to a free host port."""
    out = []
    for key in exposed:
        port, _, proto = key.partition("/")
        out += [PortMapping(p, 0, proto or "tcp") for p in _port_range(port, key)]
    return out


def _overlap(a: PortMapping, b: PortMapping) -> bool:
    return (a.proto == b.proto and a.host_port == b.host_port
            and (not a.host_ip or not b.host_ip or a.host_ip == b.host_ip))


def _probe(m: PortMapping) -> int:
    """Bind the host port as a listener would; returns the port (the kernel's pick for 0) or raises."""
    import socket  # here: only runs that publish ports need it (~1.5 ms to import)

    kind = socket.SOCK_DGRAM if m.proto == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, kind) as s:
        if kind == socket.SOCK_STREAM:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers do not hold a port
        try:
            s.bind((m.host_ip or "0.0.0.0", m.host_port))
        except OSError as e:
            raise DockyardError(f"cannot publish {m.host_ip or '0.0.0.0'}:{m.host_port}/{m.proto}: "
                                f"{e.strerror}") from None
        return s.getsockname()[1]


def assign(wanted: list[PortMapping], published: list[PortMapping]) -> list[PortMapping]:
    """Concrete mappings: fixed host ports checked against other containers and host listeners, 0s picked."""
    done: list[PortMapping] = []
    for m in wanted:
        for _ in range(20):  # a picked port may clash with another container's; pick again
            port = _probe(m)
            candidate = PortMapping(m.container_port, port, m.proto, m.host_ip)
            clash = next((p for p in published + done if _overlap(p, candidate)), None)
            if clash is None:
                done.append(candidate)
                break
            if m.host_port:
                raise DockyardError(f"port is already allocated: {candidate.host_ip or '0.0.0.0'}:{port}/{m.proto}")
        else:
            raise DockyardError(f"no free host port for {m.container_port}/{m.proto}")
    return done
