"""Links via iproute2, batched (`ip -batch -`) so a container costs two `ip` runs: bridges, veth pairs, eth0 setup."""

from __future__ import annotations

import os
import subprocess

from dockyard.errors import DockyardError
from runner.network import netns


def ip_batch(lines: list[str], netns_path: str | None = None, force: bool = False) -> None:
    """Run `ip` commands in one process, in the host namespace or in the one at `netns_path`.

    force=True runs every line even after failures (for cleanup) and raises nothing.
    """
    fd, preexec = netns.enter(netns_path) if netns_path else (-1, None)
    try:
        p = subprocess.run(["ip", *(["-force"] if force else []), "-batch", "-"], input="\n".join(lines) + "\n",
                           capture_output=True, text=True, preexec_fn=preexec)
    finally:
        if fd >= 0:
            os.close(fd)
    if p.returncode and not force:
        raise DockyardError(f"network setup failed: {p.stderr.strip().splitlines()[-1] if p.stderr.strip() else p.returncode}")


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


def add_veth(netns_path: str, bridge: str, veth_host: str, ifname: str, mac: str, ip: str, prefix_len: int,
             gateway: str | None) -> None:
    """A veth pair: host side on the bridge, the other side created straight inside the namespace as `ifname`."""
    ip_batch([
        f"link add {veth_host} type veth peer name {ifname} address {mac} netns {netns_path}",
        f"link set {veth_host} master {bridge} up",
    ])
    try:
        inside = ["link set lo up", f"addr add {ip}/{prefix_len} dev {ifname}", f"link set {ifname} up"]
        if gateway:
            inside.append(f"route add default via {gateway} dev {ifname}")
        ip_batch(inside, netns_path)
    except BaseException:
        delete_link(veth_host)
        raise


def loopback_up(netns_path: str) -> None:
    """Bring `lo` up in a namespace (all `--network none` needs)."""
    ip_batch(["link set lo up"], netns_path)


def _sysctl(path: str, value: str) -> None:
    with open(path) as f:
        if f.read().strip() == value:
            return
    with open(path, "w") as f:
        f.write(value)
