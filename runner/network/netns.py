"""Network namespaces named by a path: create one pinned by a bind mount, run code in one, remove one."""

from __future__ import annotations

import contextlib
import os
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
        linux.mount("/proc/thread-self/ns/net", path, None, linux.MS_BIND)

    try:
        _and_back(pin)
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

        _and_back(entered)
    finally:
        os.close(fd)


def _and_back(fn: Callable[[], None]) -> None:
    """Run fn(), which moves the calling thread to another network namespace, and return the thread to its own.

    Network namespaces are per thread: the process's other threads never move. In this thread rather than a
    short-lived one, whose start and join hand the GIL over twice (each up to the 5 ms switch interval while
    the other side computes: most of a container start's network setup).
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        fn()
    finally:
        try:
            linux.setns(own, linux.CLONE_NEWNET)
        finally:
            os.close(own)


def remove(path: str) -> None:
    """Unpin a namespace made by create(); it goes away once no process is left in it."""
    with contextlib.suppress(OSError):
        linux.umount(path, linux.MNT_DETACH)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
