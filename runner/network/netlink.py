"""rtnetlink requests that plumb a container's veth pair (what `ip` would do, without starting it)."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import struct
from collections.abc import Iterator

from dockyard.errors import DockyardError
from runner import linux

AF_INET, AF_NETLINK, NETLINK_ROUTE, SOCK_DGRAM, SOCK_RAW = 2, 16, 0, 2, 3
RTM_NEWLINK, RTM_NEWADDR, RTM_NEWROUTE, NLMSG_ERROR = 16, 20, 24, 2
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
IFF_UP, IFA_ADDRESS, IFA_LOCAL, RTA_OIF, RTA_GATEWAY = 0x1, 1, 2, 4, 5
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MASTER, IFLA_LINKINFO, IFLA_NET_NS_FD = 1, 3, 10, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 3, 0, 1
SIOCGIFINDEX = 0x8933


def add_veth(name: str, peer: str, peer_mac: str, netns_fd: int) -> None:
    """A veth pair: `name` in the calling thread's namespace, `peer` (with MAC peer_mac) in netns_fd's."""
    peer_info = (_ifinfo(0) + _attr(IFLA_IFNAME, peer.encode() + b"\0")
                 + _attr(IFLA_ADDRESS, bytes.fromhex(peer_mac.replace(":", "")))
                 + _attr(IFLA_NET_NS_FD, struct.pack("=I", netns_fd)))
    linkinfo = _attr(IFLA_INFO_KIND, b"veth") + _attr(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer_info))
    with _socket() as fd:
        _request(fd, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL,
                 _ifinfo(0) + _attr(IFLA_IFNAME, name.encode() + b"\0") + _attr(IFLA_LINKINFO, linkinfo),
                 f"veth pair {name}/{peer}")


def set_master_up(name: str, master: str) -> None:
    """Enslave link `name` to the bridge `master` and bring it up (`ip link set NAME master MASTER up`)."""
    with _socket() as fd:
        _request(fd, RTM_NEWLINK, 0, _ifinfo(_index(name), IFF_UP)
                 + _attr(IFLA_MASTER, struct.pack("=I", _index(master))), f"{name} on {master}")


def configure(ifname: str, ip: str, prefix_len: int, gateway: str | None) -> None:
    """In the calling thread's namespace: lo and `ifname` up, ip/prefix_len on it, default route via gateway."""
    linux.loopback_up()
    with _socket() as fd:
        index = _index(ifname)
        addr = ipaddress.IPv4Address(ip).packed
        _request(fd, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL,
                 struct.pack("=BBBBI", AF_INET, prefix_len, 0, RT_SCOPE_UNIVERSE, index)
                 + _attr(IFA_LOCAL, addr) + _attr(IFA_ADDRESS, addr), f"address {ip}/{prefix_len} on {ifname}")
        _request(fd, RTM_NEWLINK, 0, _ifinfo(index, IFF_UP), f"{ifname} up")
        if gateway:
            _request(fd, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL,
                     struct.pack("=BBBBBBBBI", AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE,
                                 RTN_UNICAST, 0)
                     + _attr(RTA_GATEWAY, ipaddress.IPv4Address(gateway).packed)
                     + _attr(RTA_OIF, struct.pack("=i", index)),
                     f"default route via {gateway}")


@contextlib.contextmanager
def _socket() -> Iterator[int]:
    """A NETLINK_ROUTE socket of the calling thread's network namespace."""
    fd = linux.socket_fd(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE)
    try:
        yield fd
    finally:
        os.close(fd)


def _ifinfo(index: int, up: int = 0) -> bytes:
    """An ifinfomsg for link `index` (0: named by IFLA_IFNAME); up=IFF_UP sets that flag, leaving the others."""
    return struct.pack("=BxHiII", 0, 0, index, up, up)


def _attr(kind: int, data: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(data), kind) + data
    return raw + b"\0" * (-len(raw) % 4)


def _request(fd: int, kind: int, flags: int, body: bytes, what: str) -> None:
    """Send one request and wait for its acknowledgement; a one-line error naming `what` if the kernel refuses."""
    os.write(fd, struct.pack("=IHHII", 16 + len(body), kind, NLM_F_REQUEST | NLM_F_ACK | flags, 1, 0) + body)
    reply = os.read(fd, 8192)
    if struct.unpack_from("=H", reply, 4)[0] == NLMSG_ERROR and (error := -struct.unpack_from("=i", reply, 16)[0]):
        raise DockyardError(f"network setup failed: {what}: {os.strerror(error)}")


def _index(ifname: str) -> int:
    """An interface's index in the calling thread's namespace (SIOCGIFINDEX)."""
    import fcntl

    fd = linux.socket_fd(AF_INET, SOCK_DGRAM)
    try:
        try:
            ifreq = fcntl.ioctl(fd, SIOCGIFINDEX, struct.pack("16si20x", ifname.encode(), 0))
        except OSError as e:
            raise DockyardError(f"network setup failed: {ifname}: {e.strerror}") from None
        return struct.unpack_from("i", ifreq, 16)[0]
    finally:
        os.close(fd)
