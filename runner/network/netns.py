"""Network namespaces named by a path: create one pinned by a bind mount, run code in one, remove one."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable

from runner import linux

NETNS_DIR = "/run/dockyard/netns"


def create(path: str) -> str:
    """Make a new network namespace (only a down `lo` in it) and pin it at `path` with a bind mount."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "x"):
        pass

    def pin() -> None:
        linux.unshare(linux.CLONE_NEWNET)
        linux.mount(f"/proc/self/task/{threading.get_native_id()}/ns/net", path, None, linux.MS_BIND)

    try:
        _in_thread(pin)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return path


def pin(source: str, path: str) -> str:
    """Pin an existing network namespace (e.g. /proc/<pid>/ns/net) at `path` too, with a bind mount."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "x"):
        pass
    try:
        linux.mount(source, path, None, linux.MS_BIND)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return path


def run_in(path: str, fn: Callable[[], None]) -> None:
    """Call fn() inside the namespace at `path` (e.g. to open netlink sockets there); this process stays out."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        def entered() -> None:
            linux.setns(fd, linux.CLONE_NEWNET)
            fn()

        _in_thread(entered)
    finally:
        os.close(fd)


def _in_thread(fn: Callable[[], None]) -> None:
    """Run fn() in a short-lived thread, re-raising its exception here.

    Changing network namespace moves only the calling thread, so such a thread leaves this process where it was.
    """
    error: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as e:  # re-raised in the caller's thread
            error.append(e)

    t = threading.Thread(target=target)
    t.start()
    t.join()
    if error:
        raise error[0]


def remove(path: str) -> None:
    """Unpin a namespace made by create(); it goes away once no process is left in it."""
    with contextlib.suppress(OSError):
        linux.umount(path, linux.MNT_DETACH)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
