"""Where this process sees the cgroup hierarchies mounted: one reader of /proc/self/mountinfo for the runtime (a
container's view of them) and the resident server (joining a caller's cgroups)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_ESCAPE = re.compile(r"\\([0-7]{3})")  # mountinfo's octal escapes of space, tab, newline and backslash


@dataclass(frozen=True)
class CgroupMount:
    """One mount of a cgroup (v1) or cgroup2 hierarchy: where, the hierarchy's directory mounted there, and its
    superblock options without rw/ro (a v1 hierarchy's controllers, name=… and flags)."""

    point: str
    fstype: str
    root: str
    options: tuple[str, ...]


def _unescape(field: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def cgroup_mounts() -> list[CgroupMount]:
    """The cgroup and cgroup2 mounts, in mountinfo's order."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            fstype = fields[sep + 1]
            if fstype in ("cgroup", "cgroup2"):
                options = tuple(o for o in fields[sep + 3].split(",") if o not in ("rw", "ro"))
                found.append(CgroupMount(_unescape(fields[4]), fstype, _unescape(fields[3]), options))
    return found
