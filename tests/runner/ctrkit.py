"""Container test helpers (imported as `ctrkit`): leftovers after rm, waiting, free ports, host links."""

from __future__ import annotations

import os
import subprocess

from support import read_for


def _links(part: str) -> list[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if part in line.split(":")[1]]


def _leftovers(cid: str) -> list[str]:
    """Anything of a container still on the host: mounts, cgroups, netns pin, processes in its cgroup."""
    found = []
    with open("/proc/self/mountinfo") as f:
        found += [line for line in f if cid in line]
    for ctl in os.listdir("/sys/fs/cgroup"):
        if os.path.exists(f"/sys/fs/cgroup/{ctl}/dockyard/{cid}"):
            found.append(f"cgroup {ctl}")
    if os.path.exists(f"/run/dockyard/netns/{cid}"):
        found.append("netns")
    return found


def type_until(master: int, line: bytes, expect: bytes, seconds: float) -> bytes:
    """Type `line` on a pty until `expect` shows: a shell still starting may flush what was typed ahead (its line
    editor takes the terminal with TCSAFLUSH), so type it again, up to 5 times. Returns what was seen."""
    seen = b""
    for _ in range(5):
        os.write(master, line + b"\r")
        seen += read_for(master, seconds)
        if expect in seen:
            break
    return seen
