"""Container starts for a multi-threaded process, done by a single-threaded copy of it forked before any thread.

A child forked while other threads run may deadlock on a lock one of them held (Python 3.12 warns about it),
and a container's init runs Python between its fork and its exec. A build runs stages, layer compression and
output pumps in threads, so it forks this server first; each RUN then asks it for a container start.

Protocol, over SOCK_SEQPACKET pairs (one message each):
  request (control socket): pickled `Request`, with the descriptors [reply socket, stdin, stdout, stderr,
      *keep_fds] attached (SCM_RIGHTS); the server forks a shim, which runs runtime.run's body for it;
  shim -> client (reply socket): ("started", pid) once the init exists; with `prepare` the shim then waits
      for b"go" (anything else, EOF included, aborts the start); last ("exit", ExitStatus) or ("error", exception).
An EOF on the control socket ends the server: it kills the shims still running (their containers die with them,
as with the runtime in-process) and exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import signal
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dockyard.forks import joined_threads_gone
from runner import runtime
from runner.runtime import ExitStatus, StartError

# The kernel's limit of descriptors in one SCM_RIGHTS message (SCM_MAX_FD): the reply socket, stdio and keep_fds.
_MAX_FDS = 253
_MAX_MESSAGE = 1 << 16


@dataclass
class Request:
    """One container start: what runtime.run got, descriptors by their number on the client's side."""

    bundle: str
    container_id: str
    keep_fds: list[int]  # the init must find them under these numbers (mount sources are /proc/self/fd/N)
    prepare: bool


class ForkServer:
    """The client's handle on a running fork server; start() it before any thread exists, close() it after."""

    def __init__(self, pid: int, sock: socket.socket):
        self.pid, self.sock = pid, sock

    @classmethod
    def start(cls) -> ForkServer:
        """Fork the server (the caller must be single-threaded now)."""
        joined_threads_gone()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                ours.close()
                code = _serve(theirs)
            finally:
                os._exit(code)
        theirs.close()
        return cls(pid, ours)

    def close(self) -> None:
        """End the server (every start must have returned) and reap it."""
        self.sock.close()
        os.waitpid(self.pid, 0)

    def __enter__(self) -> ForkServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, bundle: str, container_id: str, stdio: tuple[int, int, int], keep_fds: Sequence[int],
            attach: Callable[[int], None], on_start: Callable[[int], None] | None,
            prepare: Callable[[], None] | None) -> ExitStatus:
        """runtime.run's body, done by a shim of the server: same arguments, same results and errors."""
        if 4 + len(keep_fds) > _MAX_FDS:  # one RUN with hundreds of mount sources: refuse, never truncate
            raise StartError(f"too many mount sources ({len(keep_fds)}; at most {_MAX_FDS - 4})")
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with mine:
            with theirs:
                request = Request(os.path.abspath(bundle), container_id, list(keep_fds), prepare is not None)
                socket.send_fds(self.sock, [pickle.dumps(request)], [theirs.fileno(), *stdio, *keep_fds])
            pid = None
            try:
                kind, value = _receive(mine)
                if kind == "started":
                    pid = value
                    attach(pid)
                    if prepare:
                        prepare()
                        mine.send(b"go")
                    if on_start:
                        on_start(pid)
                    kind, value = _receive(mine)
            except BaseException:
                if pid is not None:  # as in-process: the container must not outlive a failed start
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    mine.shutdown(socket.SHUT_WR)
                    with contextlib.suppress(StartError):
                        _receive(mine)  # the shim has cleaned up
                raise
        if kind == "error":
            raise value
        return value


def _receive(sock: socket.socket) -> tuple[str, Any]:
    """The shim's next message: ("started", pid), ("error", the exception) or ("exit", ExitStatus)."""
    data = sock.recv(_MAX_MESSAGE)
    if not data:
        raise StartError("container start: the fork server's shim died")
    return pickle.loads(data)


def _serve(control: socket.socket) -> int:
    """The server's loop: a shim per request, until EOF on `control`."""
    import runner.init  # what every start needs: imported once here, not by each shim
    import runner.seccomp  # noqa: F401

    os.setsid()  # a terminal's signals are the client's to forward, not ours
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # nor are the client's stdio ours to hold open (a caller may wait for their EOF)
        os.dup2(null, fd)
    if null > 2:
        os.close(null)
    keep = control.fileno()
    os.closerange(3, keep)  # what the client had open at the fork is not ours to hold
    os.closerange(keep + 1, 1 << 16)
    shims: set[int] = set()
    while True:
        data, fds, _, _ = socket.recv_fds(control, _MAX_MESSAGE, _MAX_FDS)
        _reap(shims)
        if not data:
            break
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                control.close()
                code = _shim(pickle.loads(data), fds)
            finally:
                os._exit(code)
        shims.add(pid)
        for fd in fds:
            os.close(fd)
    for pid in shims:  # the client is gone: so are its containers
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in shims:
        os.waitpid(pid, 0)
    return 0


def _reap(shims: set[int]) -> None:
    for pid in list(shims):
        if os.waitpid(pid, os.WNOHANG)[0]:
            shims.discard(pid)


def _shim(request: Request, fds: list[int]) -> int:
    """Run one container for the client: runtime.run's body, reporting on the reply socket."""
    fds = _place(fds, request.keep_fds)
    reply = socket.socket(fileno=fds[0])

    def send(kind: str, value: object) -> None:
        reply.send(pickle.dumps((kind, value)))

    def go() -> None:
        if reply.recv(16) != b"go":
            raise StartError("container start: cancelled")

    try:
        status = runtime.run_here(request.bundle, request.container_id, (fds[1], fds[2], fds[3]),
                                  request.keep_fds, lambda pid: send("started", pid), None,
                                  go if request.prepare else None)
    except Exception as e:
        try:
            send("error", e)
        except (pickle.PicklingError, TypeError, AttributeError):  # an error that does not pickle: its message
            send("error", StartError(str(e)))
        return 1
    send("exit", status)
    return 0


def _place(fds: list[int], targets: list[int]) -> list[int]:
    """Renumber received descriptors: each keep_fd gets the client's number, the rest go above them all."""
    floor = max([*targets, *fds]) + 1
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor) for fd in fds]
    for fd in fds:
        os.close(fd)
    keep = high[4:]
    for fd, target in zip(keep, targets, strict=False):
        os.dup2(fd, target, inheritable=False)
        os.close(fd)
    return high[:4] + list(targets)
