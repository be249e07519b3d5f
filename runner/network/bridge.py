"""Links: bridges via iproute2 (`ip -batch -`), a container's veth pair by rtnetlink (see netlink.py)."""

from __future__ import annotations

import os
import time

from dockyard.errors import DockyardError
from runner import linux
from runner.forking import detached
from runner.network import netlink, netns


def ip_batch(lines: list[str], force: bool = False) -> None:
    """Run `ip` commands in one process, in the host namespace.

    force=True runs every line even after failures (for cleanup) and raises nothing.
    """
    import subprocess  # here: a container's start runs no `ip` (see add_veth)

    p = subprocess.run(["ip", *(["-force"] if force else []), "-batch", "-"], input="\n".join(lines) + "\n",
                       capture_output=True, text=True)
    if p.returncode and not force:
        raise DockyardError("network setup failed: "
                            f"{p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode}")


def exists(link: str) -> bool:
    """Whether a link exists in the host namespace (sysfs, no subprocess)."""
    return os.path.exists(f"/sys/class/net/{link}")


def create_bridge(name: str, gateway: str, prefix_len: int) -> None:
    """The bridge with the gateway address on it, up, and routing and localhost-DNAT enabled for it."""
    if not exists(name):
        ip_batch([f"link add {name} type bridge", f"addr add {gateway}/{prefix_len} dev {name}", f"link set {name} up"])
    _sysctl("/proc/sys/net/ipv4/ip_forward", "1")
    # Lets 127.0.0.1:HOSTPORT be DNATed out of this bridge (the kernel otherwise drops loopback sources as martians).
    _sysctl(f"/proc/sys/net/ipv4/conf/{name}/route_localnet", "1")


def delete_link(name: str) -> None:
    """Delete a bridge or veth (its peer goes with it); nothing if already gone."""
    if exists(name):
        ip_batch([f"link del {name}"], force=True)


def await_gone(name: str, timeout: float = 0.5) -> None:
    """Wait for a veth to vanish with its peer's dying namespace (up to ~15 ms after a container's exit, as the
    kernel releases the container's mounts); delete it past `timeout`, when something still holds the namespace.
    """
    deadline = time.monotonic() + timeout
    while exists(name):
        if time.monotonic() > deadline:
            delete_link(name)
            return
        time.sleep(0.0002)


def await_gone_later(names: list[str]) -> None:
    """await_gone in a detached child, so the caller need not wait; for a process about to exit."""
    def wait() -> None:
        for name in names:
            await_gone(name)

    names = [name for name in names if exists(name)]
    if names:
        detached(wait)


def add_veth(netns_path: str, bridge: str, veth_host: str, ifname: str, mac: str, ip: str, prefix_len: int,
             gateway: str | None) -> None:
    """A veth pair: host side on the bridge, the other side created straight inside the namespace as `ifname`.

    By rtnetlink from this process (inside the namespace from a thread): `ip` runs would cost ~3 ms each.
    """
    fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        netlink.add_veth(veth_host, ifname, mac, fd)
    finally:
        os.close(fd)
    try:
        netlink.set_master_up(veth_host, bridge)
        netns.run_in(netns_path, lambda: netlink.configure(ifname, ip, prefix_len, gateway))
    except BaseException:
        delete_link(veth_host)
        raise


def loopback_up(netns_path: str) -> None:
    """Bring `lo` up in a namespace (all `--network none` needs)."""
    netns.run_in(netns_path, linux.loopback_up)


def _sysctl(path: str, value: str) -> None:
    with open(path) as f:
        if f.read().strip() == value:
            return
    with open(path, "w") as f:
        f.write(value)
