"""Address management: subnets, gateways, free addresses and free subnets (pure functions over ipaddress)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from dockyard.errors import DockyardError

IPv4Net = ipaddress.IPv4Network
PRIVATE = [IPv4Net("10.0.0.0/8"), IPv4Net("172.16.0.0/12"), IPv4Net("192.168.0.0/16")]


def parse_subnet(text: str) -> IPv4Net:
    """A CIDR subnet with room for a gateway and at least one container."""
    try:
        net = ipaddress.IPv4Network(text, strict=True)
    except ValueError as e:
        raise DockyardError(f"invalid subnet {text}: {e}") from None
    if net.prefixlen > 30:
        raise DockyardError(f"invalid subnet {text}: too small for a gateway and a container")
    return net


def parse_address(text: str, what: str = "IP address") -> ipaddress.IPv4Address:
    """An IPv4 address, or a one-line error naming it."""
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise DockyardError(f"invalid {what} {text}") from None


def gateway_for(subnet: IPv4Net, gateway: str | None = None) -> str:
    """The gateway: the given address (checked to be a host of the subnet) or the subnet's first host."""
    if gateway is None:
        return str(subnet.network_address + 1)
    addr = parse_address(gateway, "gateway")
    if not _is_host(subnet, addr):
        raise DockyardError(f"gateway {gateway} is not a usable address in subnet {subnet}")
    return str(addr)


def _is_host(subnet: IPv4Net, addr: ipaddress.IPv4Address) -> bool:
    return addr in subnet and addr not in (subnet.network_address, subnet.broadcast_address)


def allocate(subnet: IPv4Net, gateway: str, used: Iterable[str], requested: str | None = None) -> str:
    """The requested address if free, else the lowest free host address of the subnet."""
    taken = {ipaddress.IPv4Address(a) for a in used} | {ipaddress.IPv4Address(gateway)}
    if requested is not None:
        addr = parse_address(requested)
        if not _is_host(subnet, addr):
            raise DockyardError(f"address {requested} is not a usable address in subnet {subnet}")
        if addr in taken:
            raise DockyardError(f"address {requested} is already in use on subnet {subnet}")
        return str(addr)
    first, last = int(subnet.network_address) + 1, int(subnet.broadcast_address) - 1
    for n in range(first, last + 1):
        if ipaddress.IPv4Address(n) not in taken:
            return str(ipaddress.IPv4Address(n))
    raise DockyardError(f"no free address left in subnet {subnet}")


def routed_subnets() -> list[IPv4Net]:
    """The destinations of the host's IPv4 routes (the default route excluded), from /proc/net/route."""
    nets = []
    with open("/proc/net/route") as f:
        next(f)
        for line in f:
            fields = line.split()
            # Network-order bytes printed as a little-endian hex number.
            dest, mask = (ipaddress.IPv4Address(int(x, 16).to_bytes(4, "little")) for x in (fields[1], fields[7]))
            net = ipaddress.IPv4Network(f"{dest}/{mask}", strict=False)
            if net.prefixlen:
                nets.append(net)
    return nets


def free_subnet(pool_start: IPv4Net, taken: Iterable[IPv4Net]) -> IPv4Net:
    """The first subnet of pool_start's size, counting up from it, that overlaps nothing taken; within the private
    range (RFC 1918) pool_start lies in, else within its /8."""
    taken = list(taken)
    block = next((b for b in PRIVATE if pool_start.subnet_of(b)), None) or \
        pool_start.supernet(new_prefix=min(8, pool_start.prefixlen))
    for n in range(int(pool_start.network_address), int(block.broadcast_address) + 1, pool_start.num_addresses):
        candidate = ipaddress.IPv4Network((n, pool_start.prefixlen))
        if not any(candidate.overlaps(t) for t in taken):
            return candidate
    raise DockyardError(f"no free /{pool_start.prefixlen} subnet left after {pool_start}; give one with --subnet")


def mac_for(ip: str) -> str:
    """A locally administered MAC derived from the address (as docker does), so one IP always has one MAC."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)
