"""Work in a forked child whose failure comes back as `code:message` on a pipe (setns/chroot need a child)."""

from __future__ import annotations

import os
from typing import Callable


def in_child(work: Callable[[int], int], meanwhile: Callable[[], None] | None = None) -> tuple[int, bytes]:
    """Fork; the child runs work(errw) and exits with its result, or reports `125:<error>` on errw if it raises.

    `meanwhile()` runs here while the child works (the other end of a data pipe). Returns the child's exit
    status and whatever it wrote on the error pipe.
    """
    errr, errw = os.pipe2(os.O_CLOEXEC)
    child = os.fork()
    if child == 0:
        code = 125
        try:
            os.close(errr)
            code = work(errw)
        except BaseException as e:  # this forked child must end here, whatever happened
            os.write(errw, f"125:{describe(e)}".encode(errors="replace"))
        os._exit(code)
    os.close(errw)
    try:
        if meanwhile:
            meanwhile()
    finally:
        data = b""
        while chunk := os.read(errr, 4096):
            data += chunk
        os.close(errr)
        _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    return (128 - code if code < 0 else code), data


def describe(e: BaseException) -> str:
    """One line for an exception, an OSError's file name included."""
    msg = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
    return msg + (f": {e.filename}" if isinstance(e, OSError) and e.filename else "")


def split_report(data: bytes) -> tuple[int, str]:
    """(code, message) of a `code:message` report."""
    head, _, message = data.decode(errors="replace").partition(":")
    return (int(head), message) if head.isdigit() else (125, data.decode(errors="replace"))
