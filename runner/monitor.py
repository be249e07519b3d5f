"""The per-container monitor (like conmon): runs the container, feeds its log, records exits, restarts it.

In the foreground (`run`) this process is the monitor; detached, a daemonized child is (start_detached).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from dockyard.errors import DockyardError
from dockyard.forks import joined_threads_gone
from runner.containers import Container, Containers, now, proc_start_time
from runner.forking import StartError, report, start_error
from runner.network.container import attach_netns, make_netns, network_down
from runner.runtime import ExitStatus

if TYPE_CHECKING:
    from runner.attach import Hub
    from runner.forkserver import ForkServer

STOP_MARK = "stopping"  # file in the container dir: a user stop, so no restart follows


# --- one run of the container ---


def run_once(root: str, c: Container, stdio: tuple[int, int, int], on_start, close_after_start: list[int] | None = None,
             stop_grace: float = 10.0, detached: bool = False, settle: bool = True,
             spawner: ForkServer | None = None) -> ExitStatus:
    """Run the container once to its end: network up, runtime run, network down.

    `on_start(pid)` gets the pid to signal (our init, or runc's process which passes signals on). In the
    foreground the container dies with us; a detached monitor's survives it (rm cleans up after a crash).
    settle: as for network_down. spawner: the fork server that starts the container for a monitor with threads
    (a restart with attach or stdin threads alive); the container then dies with the monitor, as in the foreground.
    """
    from runner import runtime

    close_after_start = close_after_start if close_after_start is not None else []
    try:
        netns_path = make_netns(root, c)

        def started(pid: int) -> None:
            while close_after_start:  # our copies of the container's pipe ends: EOF must reach the pumps
                os.close(close_after_start.pop())
            on_start(pid)

        if (not detached or spawner is not None) and c.host_config.get("Runtime") != "runc":
            # Our init (another process) builds its root while this one plumbs the network: the two overlap.
            prepare = (lambda: attach_netns(root, c, netns_path)) if netns_path else None
            return runtime.run(c.bundle, c.id, *stdio, stop_grace=stop_grace, on_start=started, prepare=prepare,
                               spawner=spawner)
        if netns_path:
            attach_netns(root, c, netns_path)
        if c.host_config.get("Runtime") == "runc":
            from runner import rootfs, spec
            from runner.sandbox import run_runc

            config = runtime.load_config(c.bundle)
            overlay = rootfs.Overlay.from_dict(json.loads(config["annotations"][spec.OVERLAY_ANNOTATION]))
            # runc's own pid is not the container's: record none; users find pid 1 through the cgroup.
            return run_runc(c.bundle, c.id, overlay, stdio, lambda _runc_pid: started(0))
        return _create_and_start(root, c, stdio, started)
    finally:
        network_down(root, c, settle)


def _create_and_start(root: str, c: Container, stdio: tuple[int, int, int], started) -> ExitStatus:
    """runc-style create + start, so a command that cannot start is reported before we answer the starter."""
    from runner import runtime
    from runner.cgroups import Cgroup

    sroot = Containers(root).path(c.id, "runtime")
    if os.path.isdir(os.path.join(sroot, c.id)):
        runtime.delete(c.id, sroot, force=True)  # a left-over of a crashed monitor
    pid = runtime.create(c.bundle, c.id, sroot, *stdio)["pid"]
    try:
        started(pid)
        runtime.start(c.id, sroot)
        with runtime.forward_signals(pid, 10.0):  # a monitor told to stop passes it on
            _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code
        oom = Cgroup.of_container(c.id).oom_killed()
    finally:
        runtime.delete(c.id, sroot, force=True)
    return ExitStatus(code, oom and code == 137)


def mark_stopping(root: str, cid: str) -> None:
    """Record a user's stop or kill: the monitor then restarts nothing (start_detached clears it)."""
    open(Containers(root).path(cid, STOP_MARK), "w").close()


def mark_running(c: Container, pid: int) -> None:
    """The state transition of a (re)start under this process as monitor: the last run's exit is forgotten."""
    c.status, c.pid, c.started_at, c.error = "running", pid, now(), ""
    c.exit_code, c.oom_killed = 0, False
    c.monitor_pid, c.monitor_start = os.getpid(), proc_start_time(os.getpid()) or ""
    hc = c.config.get("Healthcheck")
    if hc:  # (a container without one spares its start the checker's imports)
        from runner import health

        if health.enabled(hc):  # as docker: "starting" from the start on, not a moment later
            c.health = health.starting()


def run_foreground(root: str, c: Container, interactive: bool, tty: bool) -> int:
    """Run in this process, streaming to our stdout/stderr; the exit code. The json log is written unless --rm
    without -t. Raises StartError when the container could not start."""
    if tty:
        return _run_tty(root, c, interactive)
    stdin = 0 if interactive else None
    store = Containers(root)
    if c.host_config.get("AutoRemove") and c.host_config["RestartPolicy"]["Name"] == "no":
        # The fast path: the container writes straight to our stdout/stderr; no log, pipes or threads.
        devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC) if stdin is None else -1
        try:
            # settle=False: the CLI exits right after; the veths' vanishing is left to a forked child.
            status = run_once(root, c, (devnull if stdin is None else stdin, 1, 2),
                              lambda pid: store.update(c.id, lambda x: mark_running(x, pid)), settle=False)
        finally:
            if devnull >= 0:
                os.close(devnull)
        return status.code
    code = supervise(root, c.id, tee=(1, 2), stdin=stdin)
    err = store.load(c.id).error
    if err:
        raise StartError(err, code)
    return code


def _run_tty(root: str, c: Container, interactive: bool) -> int:
    """-t: the container gets a pty; our terminal goes raw and is copied to and from its master side."""
    import threading

    from runner import terminal

    master, slave = os.openpty()
    os.set_inheritable(master, False)
    feed = (lambda: threading.Thread(target=terminal.feed_stdin, args=(master,), daemon=True).start()) \
        if interactive else None
    # The feeding thread outlives a run: restarts then fork through a server forked while we have no thread.
    with terminal.raw_stdin(interactive), _fork_server(c, interactive) as spawner:
        return supervise(root, c.id, tee=(1, 1), stdin=slave, tty=master, first_started=feed, spawner=spawner)


def _fork_server(c: Container, threads_across_runs: bool) -> contextlib.AbstractContextManager[ForkServer | None]:
    """A fork server for the restarts of a monitor whose threads live across runs (none without restarts)."""
    if not threads_across_runs or (c.host_config.get("RestartPolicy") or {"Name": "no"})["Name"] == "no":
        return contextlib.nullcontext()
    from runner.forkserver import ForkServer

    return ForkServer.start()


def should_restart(c: Container, code: int, stopped: bool) -> bool:
    """docker's restart policy decision after an exit."""
    policy = c.host_config.get("RestartPolicy") or {"Name": "no"}
    if stopped or policy["Name"] == "no":
        return False
    if policy["Name"] == "on-failure":
        limit = policy.get("MaximumRetryCount") or 0
        return code != 0 and (limit == 0 or c.restart_count < limit)
    return True


def supervise(root: str, cid: str, tee: tuple[int, int] | None = None, stdin: int | None = None,
              ready: int | None = None, tty: int | None = None, hub: Hub | None = None,
              first_started: Callable[[], None] | None = None, spawner: ForkServer | None = None) -> int:
    """Run the container until it ends for good (restart policy applied); its last exit code.

    tee: fds that also get stdout/stderr (a foreground run); ready: a pipe written "ok", or the failure as
    runner.forking's `code:message` report, after the first start; tty: the pty master when the container has a
    terminal (its slave is stdin); hub: the attach.Hub that gets the output too. first_started(): starts the
    caller's threads once the first init is forked (none may run at a fork of ours); spawner: the fork server
    restarts go through when they do.
    """
    import threading

    from runner import events, health, logs

    store = Containers(root)
    log = logs.JsonLog(logs.log_path(root, cid))
    mark = store.path(cid, STOP_MARK)
    first = True
    code = 0
    slave_name = ""
    if tty is not None:
        assert stdin is not None  # with a tty, stdin is its slave
        slave_name = os.ttyname(stdin)
        os.close(stdin)

    def tell(failure: tuple[int, str] | None = None) -> None:
        """Answer the starter once ("ok", or the failure's code and message), closing the pipe so its read ends."""
        nonlocal ready
        if ready is not None:
            if failure is None:
                os.write(ready, b"ok")
            else:
                report(ready, *failure)
            os.close(ready)
            ready = None
    try:
        while True:
            c = store.load(cid)
            threads: list[threading.Thread] = []
            if tty is not None:
                # A fresh slave each run, closed once the container has it: the master then sees EIO at its end.
                out_w = err_w = stdin_fd = os.open(slave_name, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
                pumps = [(os.dup(tty), "stdout", tee and tee[0])]
                close = [out_w]
            else:
                out_r, out_w = os.pipe2(os.O_CLOEXEC)
                err_r, err_w = os.pipe2(os.O_CLOEXEC)
                pumps = [(out_r, "stdout", tee and tee[0]), (err_r, "stderr", tee and tee[1])]
                close = [out_w, err_w]
                stdin_fd = stdin if stdin is not None else os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)

            health_stop = threading.Event()
            checker: list[threading.Thread] = []

            def started(pid: int) -> None:
                # The pumps start only now: the container's init is forked from this process, which then must
                # have no thread (a fork with threads alive can deadlock the child); its output waits in the pipe.
                nonlocal first_started
                if first_started is not None:
                    first_started()
                    first_started = None
                for fd, stream, to in pumps:
                    threads.append(threading.Thread(target=logs.pump, args=(fd, stream, log, to, hub), daemon=True))
                    threads[-1].start()
                store.update(cid, lambda x: mark_running(x, pid))
                events.append(root, "container", "start", cid, c.name, {"image": c.image})
                tell()
                hc = c.config.get("Healthcheck") or {}
                if health.enabled(hc):
                    checker.append(threading.Thread(target=health.loop, args=(root, cid, hc, health_stop), daemon=True))
                    checker[0].start()

            try:
                status = run_once(root, c, (stdin_fd, out_w, err_w), started, close,
                                  detached=ready is not None or not first, spawner=None if first else spawner)
            except (StartError, DockyardError, OSError) as e:
                for fd in close + ([] if threads else [fd for fd, _, _ in pumps]):
                    os.close(fd)
                code = e.exit_code if isinstance(e, StartError) else 125
                message = str(e) if not isinstance(e, OSError) else f"{e.strerror}: {e.filename or ''}"
                store.update(cid, lambda x: _record_failure(x, code, message, first))
                tell((code, message))
                return code
            finally:
                health_stop.set()
                if stdin is None and tty is None:
                    os.close(stdin_fd)
            for t in threads + checker:  # a restart forks: no thread of this run may be left (a check is killed)
                t.join(5)
            code = status.code
            stopped = os.path.exists(mark)
            c = store.load(cid)
            again = should_restart(c, code, stopped)

            def mark_exited(x: Container) -> None:
                x.status = "restarting" if again else "exited"
                x.pid, x.exit_code, x.oom_killed = 0, code, status.oom_killed
                x.finished_at = now()
                if again:
                    x.restart_count += 1
            store.update(cid, mark_exited)
            if status.oom_killed:
                events.append(root, "container", "oom", cid, c.name, {"image": c.image})
            events.append(root, "container", "die", cid, c.name, {"image": c.image, "exitCode": str(code)})
            first = False
            if not again:
                return code
            delay = min(0.1 * 2 ** c.restart_count, 5.0)  # docker's growing back-off
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and not os.path.exists(mark):
                time.sleep(0.02)
            if os.path.exists(mark):
                store.update(cid, lambda x: setattr(x, "status", "exited"))
                return code
    finally:
        log.close()


def _record_failure(c: Container, code: int, message: str, first: bool) -> None:
    # docker leaves a container whose first start failed in "created", with the error and exit code.
    c.status = "created" if first else "exited"
    c.exit_code, c.error, c.pid, c.finished_at = code, message, 0, now()


def start_detached(root: str, cid: str, client: int | None = None) -> None:
    """Fork the monitor off (double fork + setsid, so it outlives us and no terminal reaches it); wait for the start.

    A container created with -i keeps its stdin open and is served on attach.sock; `client` (a socket fd,
    -i only) is attached before the start, so none of the output is missed.
    """
    store = Containers(root)
    cdir = store.path(cid)
    c = store.load(cid)
    try:
        os.unlink(os.path.join(cdir, STOP_MARK))
    except FileNotFoundError:
        pass
    r, w = os.pipe2(os.O_CLOEXEC)
    joined_threads_gone()  # e.g. a pull's, just before
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setsid()
            if os.fork():
                os._exit(0)
            _become_daemon(cdir, (w,) if client is None else (w, client))
            tty = None
            stdin = None
            if c.config.get("Tty"):
                tty, stdin = os.openpty()
                os.set_inheritable(stdin, False)
            hub = None
            serve = None
            if c.config.get("OpenStdin"):
                from runner.attach import Hub

                if tty is None:
                    stdin, feed = os.pipe()  # its write end stays here: the container never sees EOF unasked
                hub = Hub(tty if tty is not None else feed, tty is not None)

                def serve() -> None:
                    # Its threads start once the init is forked, before the output pumps: none is missed.
                    hub.serve(cdir)
                    if client is not None:
                        import socket

                        hub.add(socket.socket(fileno=client))
            with _fork_server(c, hub is not None) as spawner:
                code = supervise(root, cid, ready=w, tty=tty, stdin=stdin, hub=hub, first_started=serve,
                                 spawner=spawner)
            if hub is not None:
                hub.close()
            if c.host_config.get("AutoRemove"):
                from runner import lifecycle

                lifecycle.destroy(root, cid)
            os._exit(code & 0xFF)
        except BaseException:
            import traceback

            traceback.print_exc()
            os._exit(125)
    os.close(w)
    os.waitpid(pid, 0)
    chunks = []
    while data := os.read(r, 4096):
        chunks.append(data)
    os.close(r)
    answer = b"".join(chunks)
    if not answer:
        raise StartError(f"container {cid[:12]}: the monitor died during start (see {cdir}/monitor.log)")
    if answer != b"ok":
        raise start_error(answer)


def _become_daemon(cdir: str, keep: tuple[int, ...]) -> None:
    """stdio to /dev/null and monitor.log, every other fd closed, signals from a terminal ignored."""
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    logfd = os.open(os.path.join(cdir, "monitor.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    os.dup2(null, 0)
    os.dup2(logfd, 1)
    os.dup2(logfd, 2)
    from runner.process_setup import close_fds_except  # here: seccomp and the rest of it only in the daemon

    close_fds_except(keep)
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
