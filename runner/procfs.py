"""Facts about processes read from /proc."""

from __future__ import annotations


def proc_start_time(pid: int) -> str | None:
    """The start time (clock ticks since boot) of a live, non-zombie pid; None when it is gone or a zombie.

    A pid and its start time name one process: a recycled pid has another start time."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None if fields[0] in "ZX" else fields[19]
