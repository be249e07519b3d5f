"""Our OCI runtime: run / create / start / state / kill / delete a bundle, like runc."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dockyard.errors import DockyardError, NotFound
from dockyard.forks import joined_threads_gone
from runner import linux
from runner.cgroups import Cgroup, container_path
from runner.forking import StartError, start_error
from runner.procfs import proc_start_time

if TYPE_CHECKING:
    import threading

    from runner.forkserver import ForkServer

_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


@dataclass
class ExitStatus:
    """How a container's process ended: its exit code (128+signal if killed) and whether the OOM killer did it."""

    code: int
    oom_killed: bool = False


def load_config(bundle: str) -> dict:
    """The bundle's config.json."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path) as f:
            config = json.load(f)
    except FileNotFoundError:
        raise NotFound(f"bundle {bundle}: no config.json") from None
    except ValueError as e:
        raise DockyardError(f"bundle {bundle}: config.json is not valid JSON: {e}") from None
    if not isinstance(config, dict) or "process" not in config or "root" not in config:
        raise DockyardError(f"bundle {bundle}: config.json lacks process or root")
    return config


def _check_id(container_id: str) -> None:
    # Like runc's ids: they name state dirs and cgroups, so no "/" and no leading "." or "-".
    if not container_id or len(container_id) > 128 or not set(container_id) <= _ID_CHARS or container_id[0] in ".-":
        raise DockyardError(f"invalid container id {container_id!r}")


def _cgroup(config: dict, container_id: str) -> Cgroup:
    return Cgroup((config.get("linux") or {}).get("cgroupsPath") or container_path(container_id))


def _spawn(config: dict, bundle: str, container_id: str, stdio: tuple[int, int, int],
           exec_fifo: str | None, go: int = -1, keep_fds: Sequence[int] = ()) -> tuple[int, Cgroup, int]:
    """Make the cgroup and fork the init into a new pid namespace; returns (pid, cgroup, error-pipe read end).

    `go`: the read end of a pipe the init waits on before its exec (see container_init); `keep_fds`: descriptors
    the init keeps for its mounts (sources named /proc/self/fd/N).
    """
    from runner import seccomp
    from runner.init import container_init  # imported before fork so the child imports nothing

    try:
        seccomp_filter = seccomp.prepare(config)  # compiled here: the child must not load libseccomp in its root
    except DockyardError as e:
        raise StartError(str(e)) from None
    bundle = os.path.abspath(bundle)
    cgroup = _cgroup(config, container_id)
    try:
        cgroup.create((config.get("linux") or {}).get("resources") or {})
    except OSError as e:
        raise StartError(f"cgroup {cgroup.path}: {e.strerror}" + (f": {e.filename}" if e.filename else "")) from None
    pidns = next((n for n in (config.get("linux") or {}).get("namespaces") or [] if n["type"] == "pid"), None)
    errr, errw = os.pipe()
    own_ns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC) if pidns else -1
    dumpable = linux.prctl(linux.PR_GET_DUMPABLE)
    try:
        if pidns and pidns.get("path"):
            fd = os.open(pidns["path"], os.O_RDONLY | os.O_CLOEXEC)
            try:
                linux.setns(fd, linux.CLONE_NEWPID)
            finally:
                os.close(fd)
        elif pidns:
            # Only affects our children: the next fork becomes pid 1 of the new namespace.
            linux.unshare(linux.CLONE_NEWPID)
        # The child is born non-dumpable: in a pid namespace it joins, others see it before it can conceal itself.
        linux.prctl(linux.PR_SET_DUMPABLE, 0)
        joined_threads_gone()  # e.g. a pull's, just before
        pid = os.fork()
        if pid == 0:
            container_init(config, bundle, cgroup, stdio, errw, exec_fifo, die_with_parent=exec_fifo is None, go=go,
                           seccomp_filter=seccomp_filter, keep_fds=keep_fds)
    except BaseException as e:
        os.close(errr)
        cgroup.remove()
        if isinstance(e, OSError):
            raise StartError(f"start container {container_id}: {e.strerror}") from None
        raise
    finally:
        linux.prctl(linux.PR_SET_DUMPABLE, dumpable)
        if own_ns >= 0:
            linux.setns(own_ns, linux.CLONE_NEWPID)  # later forks of ours stay in our namespace
            os.close(own_ns)
        os.close(errw)
    return pid, cgroup, errr


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    return b"".join(chunks)


def _reap(pid: int) -> int:
    """Wait for `pid`; its exit code, 128+signal when a signal ended it."""
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _finish(cgroup: Cgroup) -> bool:
    """Kill stragglers (none when pid 1 was ours), read the OOM verdict, remove the cgroup."""
    try:
        oom = cgroup.oom_killed()
        if cgroup.pids():
            cgroup.kill_all()
    finally:
        cgroup.remove()
    return oom


class forward_signals:
    """While active, SIGINT/SIGTERM/SIGHUP go to `pid`; it is SIGKILLed `grace` s later or on a second signal.

    Enter it before starting the process (pid None) and `attach` the pid after, so no signal can land
    in between with its default action and skip the cleanup. Only the main thread can own signal
    handlers; elsewhere this does nothing and the caller's own handling (or PDEATHSIG) applies.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, pid: int | None, grace: float):
        self.pid, self.grace, self.me = pid, grace, os.getpid()
        self.pending: int | None = None
        self.signalled = False
        self.timer: threading.Timer | None = None
        self.previous: dict = {}

    def attach(self, pid: int) -> None:
        """Forward to `pid` from now on, including a signal that came before it existed."""
        self.pid = pid
        if self.pending is not None:
            self._handle(self.pending, None)

    def _handle(self, signum: int, _frame: object) -> None:
        if os.getpid() != self.me:  # a forked child before it reset its handlers
            return
        if self.pid is None:
            self.pending = signum
            return
        try:
            os.kill(self.pid, signal.SIGKILL if self.signalled else signum)
        except ProcessLookupError:
            return
        if not self.signalled:
            import threading

            self.signalled = True
            self.timer = threading.Timer(self.grace, _kill_quietly, (self.pid,))
            self.timer.start()

    def __enter__(self) -> forward_signals:
        for sig in self.SIGNALS:
            try:
                self.previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (which spares `run` the threading import to ask)
                break
        return self

    def __exit__(self, *exc: object) -> None:
        if self.timer:  # joined: a monitor may fork again (a restart), which must find no thread alive
            self.timer.cancel()
            self.timer.join()
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def run(bundle: str, container_id: str, stdin: int = 0, stdout: int = 1, stderr: int = 2,
        stop_grace: float = 2.0, on_start: Callable[[int], None] | None = None,
        prepare: Callable[[], None] | None = None, keep_fds: Sequence[int] = (),
        spawner: ForkServer | None = None) -> ExitStatus:
    """Run the bundle's process to completion with the given stdio fds; StartError if it cannot start.

    SIGINT/SIGTERM/SIGHUP received meanwhile (in the main thread) are forwarded to the container's pid 1,
    which is SIGKILLed if still alive `stop_grace` seconds later (or on a second signal); the container
    dies with us too. `on_start(pid)` lets callers in other threads cancel it by killing that pid.
    `prepare()` runs while the forked init joins its cgroup and builds its root (e.g. to plumb its network
    namespace): the process execs only once it has returned. `keep_fds`: our descriptors that mount sources of
    the form /proc/self/fd/N name (the init inherits them; they are close-on-exec, so the process never has them).
    `spawner`: a fork server that does the forking for a process that has threads (see runner.forkserver).
    """
    _check_id(container_id)
    with forward_signals(None, stop_grace) as forwarder:
        start = spawner.run if spawner is not None else run_here
        return start(bundle, container_id, (stdin, stdout, stderr), keep_fds, forwarder.attach, on_start, prepare)


def run_here(bundle: str, container_id: str, stdio: tuple[int, int, int], keep_fds: Sequence[int],
             attach: Callable[[int], None], on_start: Callable[[int], None] | None,
             prepare: Callable[[], None] | None) -> ExitStatus:
    """run() forking from this process: `attach(pid)` as soon as the init exists, then prepare(), on_start(pid)."""
    config = load_config(bundle)
    go_r, go_w = os.pipe() if prepare else (-1, -1)
    try:
        pid, cgroup, errr = _spawn(config, bundle, container_id, stdio, None, go_r, keep_fds)
    except BaseException:
        if go_w >= 0:
            os.close(go_w)
        raise
    finally:
        if go_r >= 0:
            os.close(go_r)
    code = None
    try:
        attach(pid)
        if prepare:
            try:
                prepare()
                with contextlib.suppress(BrokenPipeError):  # the init failed already: errr tells why
                    os.write(go_w, b"1")
            finally:
                os.close(go_w)
                go_w = -1
        if on_start:
            on_start(pid)
        data = _read_all(errr)  # EOF (close-on-exec) means the process started
        code = _reap(pid)
        if data:
            raise start_error(data)
    finally:
        os.close(errr)
        if go_w >= 0:
            os.close(go_w)
        if code is None:  # interrupted by an exception: the container must not outlive us
            _kill_quietly(pid)
            _reap(pid)
        oom = _finish(cgroup)
    return ExitStatus(code, oom and code == 128 + signal.SIGKILL)


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# --- create / start / state / kill / delete (runc's lifecycle, state kept under state_root/<id>/) ---


def _state_dir(state_root: str, container_id: str) -> str:
    _check_id(container_id)
    return os.path.join(state_root, container_id)


def create(bundle: str, container_id: str, state_root: str, stdin: int = 0, stdout: int = 1,
           stderr: int = 2) -> dict:
    """Set the container up and leave its process waiting for `start`; returns the OCI state."""
    from dockyard.fsutil import atomic_write

    bundle = os.path.abspath(bundle)
    sdir = _state_dir(state_root, container_id)
    config = load_config(bundle)
    try:
        os.makedirs(sdir)
    except FileExistsError:
        raise DockyardError(f"container {container_id} already exists") from None
    fifo = os.path.join(sdir, "exec.fifo")
    try:
        os.mkfifo(fifo, 0o622)
        os.chmod(fifo, 0o622)  # any container user must be able to open it for writing
        pid, cgroup, errr = _spawn(config, bundle, container_id, (stdin, stdout, stderr), fifo)
        try:
            data = os.read(errr, 4096)
        finally:
            os.close(errr)
        if data != b"\0":
            _reap(pid)
            cgroup.remove()
            raise start_error(data or b"125:container init exited during setup")
    except BaseException:
        import shutil

        shutil.rmtree(sdir, ignore_errors=True)
        raise
    atomic_write(os.path.join(sdir, "init.json"), json.dumps(
        {"pid": pid, "starttime": proc_start_time(pid) or "", "cgroupsPath": cgroup.path}).encode())
    st = {"ociVersion": config.get("ociVersion", "1.0.2"), "id": container_id, "status": "created", "pid": pid,
          "bundle": bundle, "annotations": config.get("annotations") or {}}
    atomic_write(os.path.join(sdir, "state.json"), json.dumps(st).encode())
    return st


def _load(state_root: str, container_id: str) -> tuple[str, dict, dict]:
    sdir = _state_dir(state_root, container_id)
    try:
        with open(os.path.join(sdir, "state.json")) as f:
            st = json.load(f)
        with open(os.path.join(sdir, "init.json")) as f:
            init = json.load(f)
    except FileNotFoundError:
        raise NotFound(f"container {container_id} does not exist") from None
    return sdir, st, init


def state(container_id: str, state_root: str) -> dict:
    """The OCI state (ociVersion, id, status, pid, bundle, annotations) with the live status."""
    sdir, st, init = _load(state_root, container_id)
    if proc_start_time(init["pid"]) != init["starttime"]:  # gone, a zombie, or the pid reused
        st["status"] = "stopped"
    elif os.path.exists(os.path.join(sdir, "exec.fifo")):
        st["status"] = "created"
    else:
        st["status"] = "running"
    return st


def start(container_id: str, state_root: str) -> None:
    """Let a created container exec its process."""
    import select

    sdir, _, _ = _load(state_root, container_id)
    status = state(container_id, state_root)["status"]
    if status != "created":
        raise DockyardError(f"container {container_id} is {status}, not created")
    fifo = os.path.join(sdir, "exec.fifo")
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        # The init writes its "0" and execs, so a short command may have ended by the time we look again after a
        # select that timed out: an init found stopped started if its byte is there.
        while not select.select([fd], [], [], 0.1)[0] and state(container_id, state_root)["status"] != "stopped":
            pass
        try:
            byte = os.read(fd, 1)
        except BlockingIOError:  # a writer but no byte
            byte = b""
        if byte != b"0":
            raise DockyardError(f"container {container_id} exited before start")
    finally:
        os.close(fd)
    os.unlink(fifo)


def kill(container_id: str, state_root: str, sig: int = signal.SIGTERM) -> None:
    """Send `sig` to the container's process."""
    _, _, init = _load(state_root, container_id)
    status = state(container_id, state_root)["status"]
    if status == "stopped":
        raise DockyardError(f"container {container_id} is not running")
    os.kill(init["pid"], sig)


def delete(container_id: str, state_root: str, force: bool = False) -> None:
    """Remove a stopped or created container (force: also a running one): its processes, cgroup and state."""
    import shutil

    sdir, _, init = _load(state_root, container_id)
    status = state(container_id, state_root)["status"]
    if status == "running" and not force:
        raise DockyardError(f"container {container_id} is {status}; stop it first or force")
    cgroup = Cgroup(init["cgroupsPath"])
    if status != "stopped":
        _kill_quietly(init["pid"])
    try:
        if cgroup.pids():
            cgroup.kill_all()
    finally:
        _reap_if_child(init["pid"])
        cgroup.remove()
    shutil.rmtree(sdir, ignore_errors=True)


def _reap_if_child(pid: int) -> None:
    """Collect the init's exit when it is our child (create ran in this process), so no zombie stays."""
    deadline = time.monotonic() + 5
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done or time.monotonic() > deadline:
            return
        time.sleep(0.002)
