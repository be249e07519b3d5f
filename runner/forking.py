"""Work in a forked child whose failure comes back as one `code:message` line on a pipe (setns/chroot need a child).

The one protocol of the container's init, exec and cp: the child reports a failure with report() or
report_failure() and exits with the code; the parent turns what it read into a StartError with start_error().
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

from dockyard.errors import DockyardError


class StartError(DockyardError):
    """The container's process could not be started; exit_code follows Docker (125 setup, 126, 127)."""

    def __init__(self, message: str, exit_code: int = 125):
        super().__init__(message)
        self.exit_code = exit_code


def in_child(work: Callable[[int], int], meanwhile: Callable[[], None] | None = None) -> tuple[int, bytes]:
    """Fork; the child runs work(errw) and exits with its result, or reports what it raises on errw.

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
            code = report_failure(errw, e)
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


_batch: list[Callable[[], None]] | None = None  # detached() work gathered by batched_detached()


def detached(work: Callable[[], None]) -> None:
    """Run work() in a forked child cut off from our terminal and pipes, so nobody waits for it: the cleanup a process
    about to exit leaves behind (the child is not reaped here; once we are gone, init reaps it). Inside
    batched_detached(), the work waits for the block's end and shares its child."""
    if _batch is not None:
        _batch.append(work)
        return
    if os.fork():
        return
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.closerange(3, 1 << 16)
        work()
    finally:
        os._exit(0)


@contextlib.contextmanager
def batched_detached() -> Iterator[None]:
    """The detached() work of the block done in one child forked at its end (one fork, ~1 ms, rather than one each)."""
    global _batch
    outer, _batch = _batch, []
    try:
        yield
    finally:
        works, _batch = _batch, outer

        def each() -> None:
            for work in works:
                with contextlib.suppress(Exception):  # one failing must not cost the others
                    work()
        if works:
            detached(each)


def describe(e: BaseException) -> str:
    """One line for an exception: an OSError's with its file name, ours as they say, others with their type."""
    if isinstance(e, OSError):
        msg = e.strerror or str(e)
        return msg + (f": {e.filename}" if e.filename else "")
    return str(e) if isinstance(e, DockyardError) else f"{type(e).__name__}: {e}"


def report(errw: int, code: int, message: str) -> int:
    """(in the child) Write `code:message` as one line on errw (nobody reading is fine); returns `code`."""
    try:
        os.write(errw, f"{code}:{message}".replace("\n", " ").encode(errors="replace"))
    except OSError:
        pass
    return code


def report_failure(errw: int, e: BaseException) -> int:
    """(in the child) Report `e` on errw; returns the exit code it implies (a StartError's own, else 125)."""
    return report(errw, e.exit_code if isinstance(e, StartError) else 125, describe(e))


def split_report(data: bytes) -> tuple[int, str]:
    """(code, message) of a `code:message` report; anything else is a setup failure saying itself."""
    head, _, message = data.decode(errors="replace").partition(":")
    return (int(head), message) if head.isdigit() else (125, data.decode(errors="replace"))


def start_error(data: bytes) -> StartError:
    """The StartError a child's `code:message` report stands for."""
    code, message = split_report(data)
    return StartError(message, code)
