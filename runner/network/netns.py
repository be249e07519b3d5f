"""Network namespaces named by a path: create one pinned by a bind mount, enter one, remove one."""

from __future__ import annotations

import contextlib
import os
import threading

from runner import linux

NETNS_DIR = "/run/dockyard/netns"


def create(path: str) -> str:
    """Make a new network namespace (only a down `lo` in it) and pin it at `path` with a bind mount."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "x"):
        pass
    error: list[BaseException] = []

    def pin() -> None:
        # unshare(CLONE_NEWNET) moves only the calling thread, so a short-lived thread keeps this process where it was.
        try:
            linux.unshare(linux.CLONE_NEWNET)
            linux.mount(f"/proc/self/task/{threading.get_native_id()}/ns/net", path, None, linux.MS_BIND)
        except BaseException as e:  # re-raised in the caller's thread
            error.append(e)

    t = threading.Thread(target=pin)
    t.start()
    t.join()
    if error:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise error[0]
    return path


def remove(path: str) -> None:
    """Unpin a namespace made by create(); it goes away once no process is left in it."""
    with contextlib.suppress(OSError):
        linux.umount(path, linux.MNT_DETACH)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def enter(path: str):
    """A preexec_fn that moves a child process into the namespace at `path` before it execs."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def preexec() -> None:
        linux.setns(fd, linux.CLONE_NEWNET)

    return fd, preexec
