"""The client the launcher runs first: hands the command to this user's resident server and exits with its status,
or returns (silently) when it was not served, and the launcher runs the CLI itself.

It imports builtins and C modules only: `socket`, `signal` and `struct` would cost more than the server saves
(`socket` alone ~10 ms, through enum).
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]
import _socket
import _struct
import os
import sys
import time  # (built in)

from dockyard.resident import (
    ASKED,
    BEGAN,
    BY_SIGNAL,
    DIR_OVERRIDE,
    DISABLE,
    EXITED,
    FORWARDED,
    IDLE_OVERRIDE,
    LOG_OVERRIDE,
    NOT_SERVED,
    REQUEST,
    REQUEST_MAX,
    SIGNAL,
    START_RETRY,
    STARTING,
    TYPE_CHECKING,
    frame,
    identity,
    private_dir,
    socket_dir,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def _sha256() -> Callable[[bytes], Any]:
    """hashlib's sha256 without hashlib (which loads OpenSSL): the C module of this Python's version."""
    try:
        from _sha2 import sha256  # type: ignore[import-not-found]  # 3.12 on
    except ImportError:
        from _sha256 import sha256  # type: ignore[import-not-found]  # 3.11
    return sha256


# Paths that name the calling process's own descriptors (bash's <(...) gives /dev/fd/63) or /proc entries: in the
# server's child, which has only fds 0-2 of ours, they would name its own.
OWN_PATHS = ("/dev/fd/", "/proc/self/", "/proc/thread-self/")


def attempt() -> None:
    """Run this command in the resident server and exit as it did; return when it was not served (the caller
    then runs it directly)."""
    if os.environ.get(DISABLE) == "0" or ASKED.isdisjoint(sys.argv[1:]):  # (no round trip for `info` …)
        return
    if any(own in word for word in sys.argv[1:] for own in OWN_PATHS):
        return
    try:
        status = _ask()
    except OSError:  # (no /proc, no descriptor left, a directory that cannot be made …: it runs directly)
        return
    if status is not None:
        _exit_as(*status)


def _ask() -> tuple[int, int] | None:
    """The command's status from this identity's server; None when not served (starting a server if none is up)."""
    directory = socket_dir()
    # A relative sys.path entry (PYTHONPATH=.) means another directory in the server (cwd /) than here.
    if not directory or not all(os.path.isabs(p) for p in sys.path):
        return None
    key = identity(_sha256())
    if not private_dir(directory):
        if not os.path.lexists(directory):
            _start_server(key, directory)
        return None
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC)
    try:
        try:
            sock.connect(os.path.join(directory, key + ".sock"))
        except (FileNotFoundError, ConnectionRefusedError):
            _start_server(key, directory)
            return None
        return _served(sock)
    finally:
        sock.close()


def _served(sock: _socket.socket) -> tuple[int, int] | None:
    """Send the request and wait for the command's end: (how, value) of its status; None when not served."""
    argv = [os.fsencode(a) for a in sys.argv]
    payload = len(argv).to_bytes(4, "big") + b"\0".join(argv + [k + b"=" + v for k, v in os.environb.items()])
    if len(payload) > REQUEST_MAX:
        return None
    cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    # Forwarding starts before the request: a signal got while the server's child starts reaches it (the server
    # forwards from the fork on), and none takes its default action here meanwhile. Nothing that can fail comes
    # between this and the `try` that restores the handlers.
    previous, got, ready, began = _forward_signals(sock)
    status = None
    try:
        data = frame(REQUEST, payload)
        sent = sock.sendmsg([data], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, _struct.pack("4i", 0, 1, 2, cwd))])
        sock.sendall(data[sent:])
        ready()
        status = _status(sock, began)
    finally:
        os.close(cwd)
        if status is None:  # run directly: the signals got meanwhile are this process's own
            for signum, handler in previous.items():
                _signal.signal(signum, handler)
            for signum in got:
                if signum not in (_signal.SIGTSTP, _signal.SIGCONT):  # (already acted on, see forward)
                    os.kill(os.getpid(), signum)
    return status


def _forward_signals(sock: _socket.socket) -> tuple[dict[int, Any], list[int], Callable[[], None],
                                                     Callable[[], None]]:
    """Pass the signals a CLI gets on to the server's child, which takes this process's ignored signals and mask as
    its own: the handlers replaced, the signals got, the call that starts sending them (until the request is sent, a
    frame must not cut into it; those got before go then), and the call that forwards the ignored ones too once the
    command began (before, the child must still see them ignored here; the command may handle them). No signal mask
    is touched, for the same reason."""
    got: list[int] = []
    queued: list[int] = []  # got, not sent yet: each taken by one pop, so a handler run amid a drain sends none twice
    sending: list[bool] = []

    def drain() -> None:
        while sending and queued:
            try:
                signum = queued.pop(0)
            except IndexError:  # a handler run meanwhile sent the last one
                return
            try:
                sock.send(frame(SIGNAL, bytes([signum])))
            except OSError:  # the server is gone: the status read says so
                return

    def forward(signum: int, _frame: object) -> None:
        got.append(signum)
        queued.append(signum)
        drain()
        if signum == _signal.SIGTSTP and stops:  # stop here too, as the CLI's process would, until a SIGCONT
            _signal.signal(signum, _signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            _signal.signal(signum, forward)
            # Here again: after the SIGCONT (forwarded too), or at once where the kernel discarded the stop (an
            # orphaned process group, where the CLI itself would not have stopped): the child goes on either way.
            queued.append(_signal.SIGCONT)
            drain()

    def ready() -> None:
        sending.append(True)
        drain()

    def began() -> None:
        for signum in ignored:
            previous[signum] = _signal.signal(signum, forward)

    stops = _signal.getsignal(_signal.SIGTSTP) == _signal.SIG_DFL
    signals = [getattr(_signal, name) for name in FORWARDED]
    ignored = [signum for signum in signals if _signal.getsignal(signum) == _signal.SIG_IGN]
    previous = {signum: _signal.signal(signum, forward) for signum in signals if signum not in ignored}
    return previous, got, ready, began


def _status(sock: _socket.socket, on_began: Callable[[], None]) -> tuple[int, int] | None:
    """Read the server's messages to the command's status (`on_began` called when it starts); None when not
    served."""
    buf, began = b"", False
    while True:
        try:
            chunk = sock.recv(4096)
        except OSError:  # (a reset, when the server died with data unread): as its end, never a second run
            chunk = b""
        if not chunk:
            if began:  # the server died with the command: its status is lost
                os.write(2, b"dockyard: the resident server went away\n")
                return 0, 1
            return None
        buf += chunk
        while len(buf) >= 5:
            size = int.from_bytes(buf[:4], "big")
            if not 1 <= size <= 64:
                return None if not began else (0, 1)
            if len(buf) < 4 + size:
                break
            kind, body, buf = buf[4:5], buf[5:4 + size], buf[4 + size:]
            if kind == NOT_SERVED and not began:
                return None
            if kind == BEGAN and not began:
                began = True
                on_began()
            elif kind == EXITED and began and len(body) == 2:
                return body[0], body[1]


def _exit_as(how: int, value: int) -> None:
    """Exit with the child's status: its code, or death by its signal (raised here with the default action)."""
    if how == BY_SIGNAL:
        _signal.signal(value, _signal.SIG_DFL)
        _signal.pthread_sigmask(_signal.SIG_UNBLOCK, [value])
        os.kill(os.getpid(), value)
        value += 128  # a signal whose default is not to end a process
    os._exit(value)


def _start_server(key: str, directory: str) -> None:
    """Start the server for this code identity, detached: its own session, cwd /, stdio /dev/null, an environment
    of what the interpreter's start reads (it must come to the same identity) and our overrides. Not while another
    start is under way or failed less than START_RETRY seconds ago (its marker is still there)."""
    if not os.path.lexists(directory):
        os.makedirs(os.path.dirname(directory), mode=0o755, exist_ok=True)
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:  # another client's, checked below as any other
            pass
    if not private_dir(directory):
        return
    marker = os.path.join(directory, key + STARTING)
    try:
        if time.time() - os.lstat(marker).st_mtime < START_RETRY:
            return
    except FileNotFoundError:
        pass
    fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.utime(fd)
    finally:
        os.close(fd)
    import subprocess  # (cold path only: once per server life)

    # (XDG_RUNTIME_DIR: where a user other than root has the socket directory)
    keep = ("LANG", "LC_ALL", "LC_CTYPE", "XDG_RUNTIME_DIR", DIR_OVERRIDE, IDLE_OVERRIDE, LOG_OVERRIDE)
    env = {k: v for k, v in os.environ.items() if k.startswith("PYTHON") or k in keep}
    flags = subprocess._args_from_interpreter_flags()  # type: ignore[attr-defined]  # -S, -B, -E, -X …, as ours
    code = ("import sys; sys.path[:] = sys.argv[3:]\n"
            "from dockyard.resident.server import main\n"
            "main(sys.argv[1], sys.argv[2])\n")
    argv = [sys.executable, *flags, "-c", code, key,
            os.path.abspath(sys.argv[0]), *sys.path]
    log = os.environ.get(LOG_OVERRIDE)
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDWR, 0), (os.POSIX_SPAWN_DUP2, 0, 1),
               (os.POSIX_SPAWN_OPEN, 2, log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600) if log else
               (os.POSIX_SPAWN_DUP2, 0, 2)]
    try:
        os.posix_spawn(sys.executable, argv, env, file_actions=actions, setsid=True,
                       setsigdef=_signal.valid_signals(), setsigmask=())
    except (OSError, ValueError):  # the command still runs, directly
        pass
