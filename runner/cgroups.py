"""Per-container cgroups on v1 (one hierarchy per controller) and v2 (unified) hosts."""

from __future__ import annotations

import errno
import os
import signal
import time

ROOT = "/sys/fs/cgroup"
# Controllers a container's cgroup is created in on a v1 host (others stay at the caller's cgroup).
V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids", "freezer", "devices")


def container_path(cid: str) -> str:
    """The cgroupsPath of a dockyard container (the same under every hierarchy)."""
    return f"/dockyard/{cid}"


def is_v2() -> bool:
    """A pure v2 host has cgroup.controllers at the top of /sys/fs/cgroup."""
    return os.path.exists(os.path.join(ROOT, "cgroup.controllers"))


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read_counter(path: str, key: str) -> int:
    """A `key value` line from a flat-keyed cgroup file; 0 when absent."""
    try:
        with open(path) as f:
            for line in f:
                k, _, v = line.partition(" ")
                if k == key:
                    return int(v)
    except FileNotFoundError:
        pass
    return 0


class Cgroup:
    """One container's cgroup, named by its path relative to each hierarchy root (e.g. /dockyard/<id>)."""

    def __init__(self, path: str):
        self.path = path
        rel = os.path.normpath("/" + self.path).lstrip("/")
        if not rel or rel.startswith(".."):
            raise ValueError(f"invalid cgroupsPath {self.path!r}")
        self.v2 = is_v2()
        if self.v2:
            self.dirs = {"": os.path.join(ROOT, rel)}
        else:
            self.dirs = {}
            seen = set()
            for ctl in V1_CONTROLLERS:
                mnt = os.path.join(ROOT, ctl)
                real = os.path.realpath(mnt)
                if os.path.isdir(mnt) and real not in seen:  # cpu and cpuacct may be one hierarchy
                    seen.add(real)
                    self.dirs[ctl] = os.path.join(mnt, rel)

    @classmethod
    def of_container(cls, cid: str) -> Cgroup:
        """The cgroup of a dockyard container."""
        return cls(container_path(cid))

    def _dir(self, ctl: str) -> str | None:
        return self.dirs.get("" if self.v2 else ctl)

    def create(self, resources: dict) -> None:
        """Make the cgroup directories and apply `linux.resources` limits."""
        if self.v2:
            self._enable_v2_controllers()
        for d in self.dirs.values():
            os.makedirs(d, exist_ok=True)
        try:
            self._apply(resources or {})
        except OSError as e:
            self.remove()
            raise OSError(e.errno, f"set cgroup limits: {e.strerror}", e.filename) from None

    def _enable_v2_controllers(self) -> None:
        """Delegate memory/cpu/pids down to the container's parent (v2 needs subtree_control at each level)."""
        top = self.dirs[""]
        parts = os.path.relpath(top, ROOT).split(os.sep)[:-1]
        cur = ROOT
        for part in [None, *parts]:
            if part:
                cur = os.path.join(cur, part)
                os.makedirs(cur, exist_ok=True)
            with open(os.path.join(cur, "cgroup.controllers")) as f:
                available = set(f.read().split())
            wanted = [c for c in ("cpu", "memory", "pids") if c in available]
            if wanted:
                _write(os.path.join(cur, "cgroup.subtree_control"), " ".join("+" + c for c in wanted))

    def _apply(self, res: dict) -> None:
        mem, cpu, pids = res.get("memory") or {}, res.get("cpu") or {}, res.get("pids") or {}
        d: str | None
        if self.v2:
            d = self.dirs[""]
            if mem.get("limit") is not None:
                _write(os.path.join(d, "memory.max"), _max(mem["limit"]))
                swap = mem.get("swap")
                if swap is not None and os.path.exists(os.path.join(d, "memory.swap.max")):
                    # OCI swap is memory+swap; v2 limits swap alone.
                    _write(os.path.join(d, "memory.swap.max"), "max" if swap < 0 else str(max(swap - mem["limit"], 0)))
            if cpu.get("quota") is not None or cpu.get("period") is not None:
                quota = cpu.get("quota")
                _write(os.path.join(d, "cpu.max"),
                       f"{_max(quota if quota is not None else -1)} {cpu.get('period') or 100000}")
            if cpu.get("shares"):
                _write(os.path.join(d, "cpu.weight"), str(1 + ((cpu["shares"] - 2) * 9999) // 262142))
            if pids.get("limit") is not None:
                _write(os.path.join(d, "pids.max"), _pids_max(pids["limit"]))
            return
        if (d := self._dir("memory")) and mem.get("limit") is not None:
            _write(os.path.join(d, "memory.limit_in_bytes"), str(mem["limit"]))
            swap = mem.get("swap")
            if swap is not None and os.path.exists(os.path.join(d, "memory.memsw.limit_in_bytes")):
                _write(os.path.join(d, "memory.memsw.limit_in_bytes"), str(swap))
        if d := self._dir("cpu"):
            if cpu.get("period"):
                _write(os.path.join(d, "cpu.cfs_period_us"), str(cpu["period"]))
            if cpu.get("quota") is not None:
                _write(os.path.join(d, "cpu.cfs_quota_us"), str(cpu["quota"]))
            if cpu.get("shares"):
                _write(os.path.join(d, "cpu.shares"), str(cpu["shares"]))
        if (d := self._dir("pids")) and pids.get("limit") is not None:
            _write(os.path.join(d, "pids.max"), _pids_max(pids["limit"]))
        if (d := self._dir("devices")) and res.get("devices"):
            for rule in res["devices"]:
                line = (f"{rule.get('type', 'a')} {_dev(rule.get('major'))}:{_dev(rule.get('minor'))} "
                        f"{rule.get('access', 'rwm')}")
                _write(os.path.join(d, "devices.allow" if rule.get("allow") else "devices.deny"), line)

    def join(self) -> None:
        """Move the calling process, which must be single-threaded (a fresh fork), into the cgroup.

        On v1 it moves as a thread (`tasks`): a process move (`cgroup.procs`) takes a global lock whose RCU
        grace period costs ~10 ms, and one thread is all of a single-threaded process.
        """
        name = "cgroup.procs" if self.v2 else "tasks"
        for d in self.dirs.values():
            _write(os.path.join(d, name), "0")

    def oom_killed(self) -> bool:
        """Whether the kernel OOM killer killed a process of this cgroup."""
        if self.v2:
            return _read_counter(os.path.join(self.dirs[""], "memory.events"), "oom_kill") > 0
        d = self._dir("memory")
        return d is not None and _read_counter(os.path.join(d, "memory.oom_control"), "oom_kill") > 0

    def pids(self) -> list[int]:
        """Processes currently in the cgroup."""
        d = self._dir("pids") or next(iter(self.dirs.values()))
        try:
            with open(os.path.join(d, "cgroup.procs")) as f:
                return [int(x) for x in f.read().split()]
        except FileNotFoundError:
            return []
        except OSError as e:
            if e.errno != errno.ENODEV:  # ENODEV: the cgroup is being removed under us
                raise
            return []

    def kill_all(self) -> None:
        """SIGKILL everything in the cgroup (frozen first on v1 so nothing forks in between)."""
        if self.v2 and os.path.exists(os.path.join(self.dirs[""], "cgroup.kill")):
            _write(os.path.join(self.dirs[""], "cgroup.kill"), "1")
            return
        freezer = self._dir("freezer")
        if freezer and os.path.isdir(freezer):
            try:
                _write(os.path.join(freezer, "freezer.state"), "FROZEN")
            except OSError as e:
                # Removed meanwhile (e.g. by runc delete): only an empty cgroup can go, so nothing is left to kill.
                if e.errno in (errno.ENOENT, errno.ENODEV):
                    return
                raise
        try:
            for pid in self.pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        finally:
            if freezer and os.path.isdir(freezer):
                try:
                    _write(os.path.join(freezer, "freezer.state"), "THAWED")
                except OSError as e:
                    if e.errno not in (errno.ENOENT, errno.ENODEV):  # emptied and removed meanwhile
                        raise

    def remove(self, timeout: float = 5.0) -> None:
        """Remove the cgroup directories, waiting for exiting processes to leave them."""
        deadline = time.monotonic() + timeout
        for d in self.dirs.values():
            while True:
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise
                    time.sleep(0.005)


def _max(v: int) -> str:
    return "max" if v is None or v < 0 else str(v)


def _pids_max(limit: int) -> str:
    """OCI (and Docker) treat a pids limit of 0 or below as unlimited."""
    return "max" if limit <= 0 else str(limit)


def _dev(n: int | None) -> str:
    return "*" if n is None or n < 0 else str(n)
