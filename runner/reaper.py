"""`--init`: the container's pid 1 stays ours, forwarding signals to the process and reaping every zombie."""

from __future__ import annotations

import os
import signal
from typing import NoReturn

from runner.process_setup import close_fds_except

# Signals an init passes on to its child (as tini and catatonit do); SIGCHLD is its own business.
_FORWARDED = [s for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD)]


def reaper(child: int) -> NoReturn:
    """Be the container's pid 1 for `--init`: forward signals to `child`, reap every zombie, and exit with the
    child's status (128+signal when a signal ended it)."""
    close_fds_except(())  # the runtime waits for EOF on the error pipe: only the child's exec may give it
    try:  # ps's name for us (the command line is conceal's title)
        with open("/proc/self/comm", "wb") as comm:
            comm.write(b"dockyard-init")
    except OSError:
        pass  # no /proc in the container: cosmetic only

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for sig in _FORWARDED:
        try:
            signal.signal(sig, forward)
        except (OSError, ValueError):
            pass
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(0)
        if pid == child:
            os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
