"""What a fork needs of the threads of the process that forks."""

from __future__ import annotations

import os
import sys
import time


def joined_threads_gone(patience: float = 0.1) -> None:
    """Before a fork that must copy no thread, wait until the threads Python has joined are gone from the kernel too:
    until 3.13, join() returns before the thread's own exit, and a fork in that moment copies it (3.12 warns)."""
    threading = sys.modules.get("threading")
    if threading is None or threading.active_count() > 1:
        return  # no thread was ever started; or one lives on, which waiting would not mend
    deadline = time.monotonic() + patience
    try:
        while len(os.listdir("/proc/self/task")) > 1 and time.monotonic() < deadline:
            time.sleep(0.0002)
    except OSError:  # no /proc to ask: fork as before
        pass
