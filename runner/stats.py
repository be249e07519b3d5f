"""Resource usage of a container from its cgroup: memory, CPU time and pids."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from runner.cgroups import Cgroup


@dataclass
class Sample:
    """One reading: bytes of memory in use and its limit, CPU nanoseconds used, number of pids, when."""

    memory: int
    memory_limit: int
    cpu_ns: int
    pids: int
    at: float


def _read_int(path: str | None, default: int = 0) -> int:
    try:
        with open(path or "") as f:
            text = f.read().split()[0]
    except (OSError, IndexError):
        return default
    return default if text == "max" else int(text)


def _host_memory() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


def sample(cid: str) -> Sample:
    """The cgroup's counters now (zeros for a container that is not running)."""
    cg = Cgroup.of_container(cid)
    host = _host_memory()
    if cg.v2:
        d = cg.dirs[""]
        mem, limit = _read_int(os.path.join(d, "memory.current")), _read_int(os.path.join(d, "memory.max"), host)
        cpu = 0
        try:
            with open(os.path.join(d, "cpu.stat")) as f:
                cpu = next((int(line.split()[1]) * 1000 for line in f if line.startswith("usage_usec")), 0)
        except OSError:
            pass
        pids = _read_int(os.path.join(d, "pids.current"))
    else:
        md, pd = cg.dirs.get("memory"), cg.dirs.get("pids")
        cd = cg.dirs.get("cpuacct") or cg.dirs.get("cpu")
        mem = _read_int(md and os.path.join(md, "memory.usage_in_bytes"))
        limit = _read_int(md and os.path.join(md, "memory.limit_in_bytes"), host)
        cpu = _read_int(cd and os.path.join(cd, "cpuacct.usage"))
        pids = _read_int(pd and os.path.join(pd, "pids.current"))
    return Sample(mem, min(limit, host) if host else limit, cpu, pids, time.monotonic())


def cpu_percent(before: Sample, after: Sample) -> float:
    """CPU use between two samples as a percentage of one CPU (docker shows up to N×100%)."""
    wall = after.at - before.at
    return 100.0 * (after.cpu_ns - before.cpu_ns) / 1e9 / wall if wall > 0 else 0.0
