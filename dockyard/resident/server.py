"""The resident server: one process per user and code identity that has imported the CLI and forks a child per
command; the child takes on its caller's whole context, then runs the command as the CLI's own process would.

Only a caller whose every bound on what it may do is identical to the server's is served (same credentials,
namespaces, root, capabilities, no-new-privs, seccomp, LSM label): asking the server gains a process nothing.
Everything else (a refusal, a failure to adopt the caller's context, a command not known to work without a
controlling terminal) answers "not served", and the client runs the command itself.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import gc
import hashlib
import importlib
import io
import os
import resource
import selectors
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from dockyard.cgroupfs import cgroup_mounts
from dockyard.resident import (
    BEGAN,
    BY_CODE,
    BY_SIGNAL,
    EXITED,
    FORWARDED,
    FRAME_MAX,
    IDLE,
    IDLE_OVERRIDE,
    NOT_SERVED,
    REQUEST,
    SERVED,
    SIGNAL,
    STARTING,
    bounds,
    frame,
    identity,
    private_dir,
    served_as,
    socket_dir,
    status_fields,
)

# What a `run --rm`, the listing commands, pull, push and a fully cached `build` import, loaded once here (the
# CLI's areas come with AREAS; what only a build step that misses the cache needs, the sandbox and the fork server,
# it imports itself). None of these starts a thread or opens anything at import, nor keeps anything read then from
# the environment, the cwd, /proc, the clock or the personality: each child would be handed the server's.
PRELOAD = ("dockyard.errors", "dockyard.roots", "dockyard.store", "dockyard.cli.output", "runner.create",
           "runner.runtime", "runner.monitor", "runner.lifecycle", "runner.listing", "runner.containers",
           "registry.client.transfer", "registry.client.pull", "registry.client.push", "dockyard.layers.unpacker",
           "builder.build", "builder.output", "builder.ssh", "runner.network.hosts",
           "encodings.idna")  # (a str host's getaddrinfo encodes it so)
PACKAGES = ("dockyard", "builder", "registry", "runner", "compose")
SO_PEERPIDFD = 77  # (Linux 6.5) a pidfd of the process that connected
_RLIMITS = tuple(getattr(resource, n) for n in dir(resource) if n.startswith("RLIMIT_"))
_FORWARDED = frozenset(getattr(signal, n) for n in FORWARDED)


class NotServed(Exception):
    """The caller is answered "not served" (the message says why, for the log)."""


@dataclass(eq=False)
class Session:
    """One client's connection: its request as it arrives, then the child running its command."""

    sock: socket.socket
    buf: bytearray = field(default_factory=bytearray)
    fds: list[int] = field(default_factory=list)
    pid: int = 0
    pidfd: int = -1
    gone: bool = False  # the client hung up: no status to send


@dataclass
class Server:
    """The listening socket, the sessions, and what says the code loaded here is still the code on disk."""

    directory: str
    key: str
    launcher: str
    listener: socket.socket | None = None
    sel: selectors.BaseSelector = field(default_factory=selectors.DefaultSelector)
    sessions: list[Session] = field(default_factory=list)
    sources: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    lock_fd: int = -1
    wake: tuple[socket.socket, socket.socket] | None = None
    socket_ino: int = 0
    bounds: dict[str, object] = field(default_factory=dict)  # its own; a caller's must be the same
    stopping: bool = False
    last: float = field(default_factory=time.monotonic)

    @property
    def path(self) -> str:
        return os.path.join(self.directory, self.key + ".sock")


_log_fd = 2  # the server's stderr; a child's copy of it until its command begins


def log(message: str) -> None:
    """One line to the server's stderr (/dev/null, or $DOCKYARD_RESIDENT_LOG)."""
    try:
        os.write(_log_fd, f"{os.getpid()} {message}\n".encode(errors="replace"))
    except OSError:
        pass


def _stamp(path: str) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size, st.st_ino


def _loaded_sources(launcher: str) -> dict[str, tuple[int, int, int]]:
    """(mtime, size, inode) of the launcher and of every source file of our packages loaded here."""
    paths = [launcher] + [f for name, m in list(sys.modules.items()) if name.split(".")[0] in PACKAGES
                          and (f := getattr(m, "__file__", None))]
    return {p: _stamp(p) for p in paths}


def _stale(server: Server) -> bool:
    """Whether any loaded source changed (or went) since it was loaded."""
    for path, stamp in server.sources.items():
        try:
            if _stamp(path) != stamp:
                return True
        except OSError:
            return True
    return False


def main(key: str, launcher: str) -> None:
    """Serve until idle, stale or SIGTERM; exits at once when another server holds this identity."""
    os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])  # whatever the caller's caller let leak to it
    os.chdir("/")
    directory = socket_dir()  # (the client that started this made it)
    if not directory or identity(hashlib.sha256) != key:  # started with flags or a path that are not the caller's
        log(f"not starting: identity mismatch for {key}")
        return
    if not private_dir(directory):
        log(f"not starting: {directory} is not a private directory")
        return
    server = Server(directory, key, launcher)
    server.lock_fd = os.open(os.path.join(directory, key + ".lock"),
                             os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(server.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:  # another server for this identity is up (or starting)
        return
    from dockyard.cli.main import AREAS

    for name in (*AREAS, *PRELOAD):
        importlib.import_module(name)
    server.sources = _loaded_sources(launcher)
    server.bounds = bounds("self")
    _listen(server)
    with contextlib.suppress(FileNotFoundError):  # up: the next start after this one ends need not wait
        os.unlink(os.path.join(directory, key + STARTING))
    gc.freeze()  # what is loaded now stays put: children's pages stay shared
    log(f"serving {server.path}")
    try:
        _loop(server)
    finally:
        _stop_listening(server)
    log("exiting")


def _listen(server: Server) -> None:
    """Bind a temporary name, then rename it over the socket's (a stale one from a dead server included)."""
    tmp = os.path.join(server.directory, f".{server.key}.{os.getpid()}")
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(tmp)
    listener.listen(64)
    listener.setblocking(False)
    os.rename(tmp, server.path)
    server.socket_ino = os.stat(server.path).st_ino
    server.listener = listener
    server.sel.register(listener, selectors.EVENT_READ, None)
    server.wake = socket.socketpair()
    for end in server.wake:
        end.setblocking(False)
    server.sel.register(server.wake[0], selectors.EVENT_READ, None)
    signal.set_wakeup_fd(server.wake[1].fileno(), warn_on_full_buffer=False)

    def stop(_signum: int, _frame: object) -> None:
        server.stopping = True

    signal.signal(signal.SIGTERM, stop)
    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)


def _stop_listening(server: Server) -> None:
    """Take the socket's name away (if it is still ours) and close it: new callers start a new server."""
    if server.listener is None:
        return
    try:
        if os.stat(server.path).st_ino == server.socket_ino:
            os.unlink(server.path)
    except OSError:
        pass
    server.sel.unregister(server.listener)
    server.listener.close()
    server.listener = None


def _loop(server: Server) -> None:
    """Serve until told to stop, idle or stale; then finish the commands running (their clients wait)."""
    idle = float(os.environ.get(IDLE_OVERRIDE) or IDLE)
    while True:
        if server.stopping:
            _stop_listening(server)
        timeout = None
        if not server.sessions:
            timeout = server.last + idle - time.monotonic()
            if timeout <= 0:
                _stop_listening(server)
            if server.listener is None:
                return
        events = server.sel.select(timeout)
        for key, _ in events:
            if key.data is not None and key.data not in server.sessions:
                continue  # closed by an earlier event of this round
            if key.fileobj is server.listener:
                _accept(server)
            elif server.wake and key.fileobj is server.wake[0]:
                try:
                    server.wake[0].recv(64)
                except BlockingIOError:
                    pass
            elif isinstance(key.fileobj, int):  # a child's pidfd: it exited
                _reap(server, key.data)
            else:
                try:
                    _read(server, key.data)
                except (OSError, ValueError) as e:  # garbage, a truncated message, a dead peer: this session only
                    log(f"session closed: {e}")
                    _close(server, key.data)


def _accept(server: Server) -> None:
    try:
        sock, _ = server.listener.accept()  # type: ignore[union-attr]
    except (BlockingIOError, ConnectionAbortedError):
        return
    sock.setblocking(False)
    session = Session(sock)
    server.sessions.append(session)
    server.sel.register(sock, selectors.EVENT_READ, session)
    server.last = time.monotonic()


def _read(server: Server, session: Session) -> None:
    """Take what the client sent: the request (then start its child), or a signal for the child."""
    try:
        data, ancdata, flags, _ = session.sock.recvmsg(65536, socket.CMSG_SPACE(4 * 4), socket.MSG_CMSG_CLOEXEC)
    except BlockingIOError:
        return
    for level, ctype, raw in ancdata:
        if level == socket.SOL_SOCKET and ctype == socket.SCM_RIGHTS:
            session.fds += [int.from_bytes(raw[i:i + 4], sys.byteorder, signed=True)
                            for i in range(0, len(raw) // 4 * 4, 4)]
    if ancdata and (session.buf or session.pid or len(session.fds) != 4 or flags & socket.MSG_CTRUNC):
        raise ValueError("descriptors out of place")
    if not data:
        if session.pid and session.pidfd >= 0:  # the client died: so does its command, as if it were the CLI
            session.gone = True
            _signal_child(session, signal.SIGKILL)
            server.sel.unregister(session.sock)
            session.sock.close()
            return
        raise ValueError("hung up before the command started")
    session.buf += data
    while len(session.buf) >= 4:
        size = int.from_bytes(session.buf[:4], "big")
        if not 1 <= size <= FRAME_MAX:
            raise ValueError(f"a message of {size} bytes")
        if len(session.buf) < 4 + size:
            return
        kind, body = bytes(session.buf[4:5]), bytes(session.buf[5:4 + size])
        del session.buf[:4 + size]
        if kind == REQUEST and not session.pid:
            _start(server, session, body)
        elif kind == SIGNAL and session.pid and len(body) == 1 and body[0] in _FORWARDED:
            if session.pidfd >= 0:
                _forward(session, body[0])
        else:
            raise ValueError(f"unexpected message {kind!r}")


def _forward(session: Session, signum: int) -> None:
    """Deliver a signal the client got to its child. SIGTSTP with the default action stops it with SIGSTOP: the
    kernel discards a stop from the terminal's signals in an orphaned process group, which the child's is."""
    if signum == signal.SIGTSTP:
        status = status_fields(session.pid)
        if not (int(status["SigIgn"], 16) | int(status["SigCgt"], 16)) >> (signum - 1) & 1:
            signum = signal.SIGSTOP
    _signal_child(session, signum)


def _signal_child(session: Session, signum: int) -> None:
    """Send the session's child a signal, through its pidfd (an exited child's pid may be another's by now)."""
    try:
        signal.pidfd_send_signal(session.pidfd, signum)
    except ProcessLookupError:
        pass


def _parse(body: bytes) -> tuple[list[bytes], dict[bytes, bytes]]:
    """argv and environ from a request (a count, then NUL-separated argv and NAME=value words)."""
    count = int.from_bytes(body[:4], "big")
    words = body[4:].split(b"\0")
    if not 1 <= count <= len(words):
        raise ValueError("a request without argv")
    env = {}
    for word in words[count:]:
        name, eq, value = word.partition(b"=")
        if not name or not eq:
            raise ValueError("an environment word without a name")
        env[name] = value
    return words[:count], env


def _start(server: Server, session: Session, body: bytes) -> None:
    """Fork the child for a request; or answer "not served" (a stale server also stops)."""
    argv, env = _parse(body)
    if len(session.fds) != 4:
        raise ValueError("a request without its descriptors")
    if _stale(server):
        log("stale: a source changed; not served, exiting")
        _send(session, NOT_SERVED)
        _stop_listening(server)
        _close(server, session)
        return
    if len(os.listdir("/proc/self/task")) != 1:
        raise AssertionError("the server must be single-threaded to fork")
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _FORWARDED)  # until the child has its caller's handlers
    pid = os.fork()
    if pid == 0:
        _child(server, session, argv, env)
    signal.pthread_sigmask(signal.SIG_SETMASK, old)
    session.pid = pid
    session.pidfd = os.pidfd_open(pid)
    server.sel.register(session.pidfd, selectors.EVENT_READ, session)
    for fd in session.fds:
        os.close(fd)
    session.fds = []
    server.last = time.monotonic()


def _reap(server: Server, session: Session) -> None:
    """The child exited: its status goes to its client."""
    result = os.waitid(os.P_PIDFD, session.pidfd, os.WEXITED)
    session.pid = 0
    if result is not None and not session.gone:
        killed = result.si_code in (os.CLD_KILLED, os.CLD_DUMPED)
        _send(session, EXITED, bytes([BY_SIGNAL if killed else BY_CODE, result.si_status & 0xFF]))
    _close(server, session)
    server.last = time.monotonic()


def _send(session: Session, kind: bytes, body: bytes = b"") -> None:
    try:
        session.sock.setblocking(True)
        session.sock.sendall(frame(kind, body))
    except OSError:  # the client is gone
        pass


def _close(server: Server, session: Session) -> None:
    """End a session: its socket, its received descriptors, its pidfd (a running child is killed first)."""
    if session.pidfd >= 0:
        server.sel.unregister(session.pidfd)
        if session.pid:
            _signal_child(session, signal.SIGKILL)
            try:
                os.waitid(os.P_PIDFD, session.pidfd, os.WEXITED)
            except ChildProcessError:
                pass
        os.close(session.pidfd)
        session.pidfd = -1
    if session.sock.fileno() >= 0:
        server.sel.unregister(session.sock)
        session.sock.close()
    for fd in session.fds:
        os.close(fd)
    session.fds = []
    server.sessions.remove(session)


# --- the child ---


def _child(server: Server, session: Session, argv: list[bytes], env: dict[bytes, bytes]) -> NoReturn:
    """Take on the caller's context, run its command if it is served; never returns into the server."""
    global _log_fd
    status, began = 1, False
    try:
        _log_fd = os.dup(2)  # (fd 2 becomes the caller's)
        _drop_server(server, session)
        try:
            pid = _adopt(session, server.bounds, argv, env)
        except (NotServed, OSError, ValueError) as e:
            log(f"refused: {e}")
            _send(session, NOT_SERVED)
            os._exit(0)

        def begin(command: str | None) -> None:
            """The command runs here: tell the client, and let go of everything of the server's."""
            nonlocal began
            if not began:
                log(f"served {pid}: {command}")
                began = True
                _send(session, BEGAN)
                os.close(session.sock.detach())
                os.close(_log_fd)

        def admit(command: str | None, args: Any) -> None:
            """Called by the CLI after parsing: run the command here, or answer "not served" and end."""
            # `-i` with a terminal for stdin: only the terminal's foreground job may read it, so a direct run in the
            # background stops (SIGTTIN); this child, in no session of that terminal, would read on and take the
            # shell's input.
            runs = served_as(command, args)
            if command is not None and (runs not in SERVED or getattr(args, "tty", False)
                                        or (getattr(args, "interactive", False) and os.isatty(0))
                                        or (runs == "start" and (args.attach or args.interactive))):
                log(f"not served {pid}: {command}")
                _send(session, NOT_SERVED)
                os._exit(0)
            begin(command)

        status = _run_cli(admit, begin)
    except BaseException:  # a bug here: the caller runs the command itself, unless it began
        if began:
            traceback.print_exc()
        else:
            log("child failed:\n" + traceback.format_exc())
            _send(session, NOT_SERVED)
    finally:
        os._exit(status)


def _drop_server(server: Server, session: Session) -> None:
    """Close everything of the server's but this session's socket: detach each object first, so that no
    finalizer closes a descriptor number reused later."""
    signal.set_wakeup_fd(-1)
    server.sel.close()
    for s in [server.listener, *(server.wake or ()), *(o.sock for o in server.sessions if o is not session)]:
        if s is not None and s.fileno() >= 0:
            os.close(s.detach())
    for o in server.sessions:
        if o.pidfd >= 0:
            os.close(o.pidfd)
        if o is not session:
            for fd in o.fds:
                os.close(fd)
    os.close(server.lock_fd)
    session.sock.setblocking(True)
    atexit._clear()  # the server's exit hooks are not the command's


def _peer(sock: socket.socket, mine: dict[str, object]) -> tuple[int, int]:
    """The caller's pid and a pidfd of it, refused unless it is bounded exactly as this process (`mine`)."""
    try:
        pidfd = sock.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD)
    except OSError as e:
        raise NotServed(f"no SO_PEERPIDFD ({e})") from e
    with open(f"/proc/self/fdinfo/{pidfd}") as f:
        pid = int(next(line.split()[1] for line in f if line.startswith("Pid:")))
    if pid <= 0:
        raise NotServed("the caller is gone")
    theirs = bounds(pid)
    differ = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
    if differ:
        raise NotServed(f"{pid}: differs in {', '.join(differ)}")
    return pid, pidfd


def _alive(pidfd: int) -> None:
    """Refuse if the caller ended: then its pid, and all read under it, may be another process's."""
    try:
        signal.pidfd_send_signal(pidfd, 0)
    except ProcessLookupError:
        raise NotServed("the caller is gone") from None


def _adopt(session: Session, mine: dict[str, object], argv: list[bytes], env: dict[bytes, bytes]) -> int:
    """Become the caller's CLI process: its session, cgroups, limits, priority, signals, descriptors, cwd,
    environment and argv; the caller's pid."""
    pid, pidfd = _peer(session.sock, mine)
    os.setsid()
    status = status_fields(pid)
    _join_cgroups(pid)
    limits = {r: resource.prlimit(pid, r) for r in _RLIMITS}
    nice = os.getpriority(os.PRIO_PROCESS, pid)
    with open(f"/proc/{pid}/oom_score_adj") as f:
        oom = f.read().strip()
    cpus = os.sched_getaffinity(pid)
    _alive(pidfd)
    os.close(pidfd)
    for r, limit in limits.items():
        resource.setrlimit(r, limit)
    os.setpriority(os.PRIO_PROCESS, 0, nice)
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write(oom)
    os.sched_setaffinity(0, cpus)
    os.umask(int(status["Umask"], 8))
    for target, fd in enumerate(session.fds[:3]):
        os.dup2(fd, target)
    os.fchdir(session.fds[3])
    for fd in session.fds:
        os.close(fd)
    session.fds = []
    _rebuild_stdio()
    os.environ.clear()
    os.environ.update({os.fsdecode(k): os.fsdecode(v) for k, v in env.items()})
    time.tzset()  # the time zone the server's start read from its own $TZ and /etc/localtime: the caller's now
    sys.argv = [os.fsdecode(a) for a in argv]
    _adopt_signals(int(status["SigIgn"], 16), int(status["SigBlk"], 16))
    return pid


def _join_cgroups(pid: int) -> None:
    """Move into the caller's cgroup in every hierarchy where it is in another one than this process."""
    def cgroups(who: int | str) -> dict[str, str]:
        with open(f"/proc/{who}/cgroup") as f:
            return {h: p for h, _, p in (line.rstrip("\n").rpartition(":") for line in f)}

    mine, theirs = cgroups("self"), cgroups(pid)
    if mine == theirs:
        return
    # A hierarchy's whole tree (root "/"): paths in /proc/PID/cgroup are from its root. A v1 hierarchy is the mount
    # whose options hold its controllers (a controller is in one hierarchy only; flags such as xattr come along).
    whole = [m for m in cgroup_mounts() if m.root == "/"]
    for hierarchy, path in theirs.items():
        if mine.get(hierarchy) == path:
            continue
        number, _, controllers = hierarchy.partition(":")
        wanted = set(controllers.split(","))
        where = next((m.point for m in whole if (m.fstype == "cgroup2") == (number == "0") and
                      (number == "0" or wanted <= set(m.options))), None)
        if where is None or ".." in path.split("/"):
            raise NotServed(f"cannot join cgroup {hierarchy}:{path}")
        with open(os.path.join(where, path.lstrip("/"), "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))


def _rebuild_stdio() -> None:
    """sys.stdin/stdout/stderr over the new fds 0-2, as Python's start makes them: encoding, errors and buffering
    as this process's (the code identity makes them the caller's), line-buffered on a terminal and for stderr."""
    def stream(fd: int, old: Any, mode: str) -> io.TextIOWrapper:
        line = (fd == 2 or os.isatty(fd)) and not old.write_through
        return io.TextIOWrapper(open(fd, mode + "b", closefd=False), encoding=old.encoding, errors=old.errors,
                                newline="\n", line_buffering=line and mode == "w", write_through=old.write_through)

    # (The streams replaced were made with closefd=False, as Python's start makes them: freed, they close nothing.)
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        new = stream(fd, getattr(sys, f"__{name}__"), mode)
        setattr(sys, name, new)
        setattr(sys, f"__{name}__", new)


def _adopt_signals(ignored: int, blocked: int) -> None:
    """The caller's ignored signals ignored, every other handler the default (SIGINT Python's, as at its start),
    then the caller's blocked mask (forwarded signals held since the fork arrive now)."""
    for signum in signal.valid_signals():
        if signum in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(signum, signal.SIG_IGN if ignored >> (signum - 1) & 1 else signal.SIG_DFL)
        except (OSError, ValueError):  # the C library's own (32, 33)
            pass
    if not ignored >> (signal.SIGINT - 1) & 1:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_SETMASK, {s for s in signal.valid_signals() if blocked >> (s - 1) & 1})


def _run_cli(admit: Callable[[str | None, Any], None], begin: Callable[[str | None], None]) -> int:
    """The CLI's main, then what the interpreter's exit would do: join threads, run exit hooks, flush; the status."""
    from dockyard.cli.main import main as cli_main

    try:
        code: object = cli_main(None, admit)
    except SystemExit as e:  # argparse's usage errors and --help exit before admit: served, as a direct run
        begin("(usage)")
        code = e.code
    if "threading" in sys.modules:
        sys.modules["threading"]._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            pass
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1
