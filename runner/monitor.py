"""The per-container monitor (like conmon): runs the container, owns its log, records exits, restarts it."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from typing import TYPE_CHECKING

from dockyard.errors import DockyardError
from runner.containers import Container, Containers, now, proc_start_time
from runner.runtime import ExitStatus, StartError

if TYPE_CHECKING:
    from runner.attach import Hub

STOP_MARK = "stopping"  # file in the container dir: a user stop, so no restart follows
LOG_CHUNK = 16 * 1024


def log_path(root: str, cid: str) -> str:
    return os.path.join(Containers(root).path(cid), f"{cid}-json.log")


class JsonLog:
    """docker's json-file log: one {"log","stream","time"} object per line."""

    def __init__(self, path: str):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.lock = threading.Lock()

    def write(self, stream: str, text: str) -> None:
        line = json.dumps({"log": text, "stream": stream, "time": now()}) + "\n"
        with self.lock:
            os.write(self.fd, line.encode())

    def close(self) -> None:
        os.close(self.fd)


def _pump(fd: int, stream: str, log: JsonLog | None, tee: int | None, hub: Hub | None = None) -> None:
    """Copy a container output fd into the log (whole lines), to `tee` and to attached clients (`hub`), until EOF
    (or EIO on a pty)."""
    pending = b""
    while True:
        try:
            chunk = os.read(fd, LOG_CHUNK)
        except OSError:  # EIO: the pty's other side is closed
            chunk = b""
        if not chunk:
            break
        if tee is not None:
            try:
                os.write(tee, chunk)
            except OSError:
                tee = None
        if hub is not None:
            hub.send(stream, chunk)
        if log is None:
            continue
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            log.write(stream, line.decode(errors="replace") + "\n")
        if len(pending) >= LOG_CHUNK:
            log.write(stream, pending.decode(errors="replace"))
            pending = b""
    if pending and log is not None:
        log.write(stream, pending.decode(errors="replace"))
    os.close(fd)


# --- networking around one run ---


def make_netns(c: Container) -> str | None:
    """Make the (still empty) netns of a container on a bridge or user network; None for host/none."""
    if c.host_config["NetworkMode"] in ("host", "none"):
        return None
    from runner.create import NETNS_DIR
    from runner.network import netns

    path = os.path.join(NETNS_DIR, c.id)
    netns.remove(path)  # a left-over of a crashed run
    return netns.create(path)


def attach_netns(root: str, c: Container, path: str) -> None:
    """Put the container's netns (from make_netns) on its network: veth, address, ports, /etc/hosts."""
    from runner.network import attach, hosts, ports

    hc = c.host_config
    publish = [ports.PortMapping(**p) for p in hc.get("PortBindings") or []]
    attach.attach(path, c.id, c.name, network=hc["NetworkMode"], ip=hc.get("IP") or None, publish=publish,
                  hostname=c.config["Hostname"], hosts_path=os.path.join(c.bundle, "hosts"),
                  extra_hosts=[hosts.parse_add_host(h) for h in hc.get("ExtraHosts") or []],
                  links=[hosts.parse_link(link) for link in hc.get("Links") or []], root=root)


def network_down(root: str, c: Container, settle: bool = True) -> None:
    """Undo make_netns and attach_netns (idempotent).

    settle=False returns before the veths have vanished (it takes the kernel ~10 ms after the container's
    exit); a forked child sees to them. For a process about to exit.
    """
    if c.host_config.get("NetworkMode") in ("host", "none"):
        return
    from runner.create import NETNS_DIR
    from runner.network import attach, bridge

    pending = attach.detach(c.id, root=root, netns_path=os.path.join(NETNS_DIR, c.id), wait=settle)
    if pending:
        bridge.await_gone_later(pending)


# --- one run of the container ---


def run_once(root: str, c: Container, stdio: tuple[int, int, int], on_start, close_after_start: list[int] | None = None,
             stop_grace: float = 10.0, detached: bool = False, settle: bool = True) -> ExitStatus:
    """Run the container once to its end: network up, runtime run, network down.

    `on_start(pid)` gets the pid to signal (our init, or runc's process which passes signals on). In the
    foreground the container dies with us; a detached monitor's survives it (rm cleans up after a crash).
    settle: as for network_down.
    """
    from runner import runtime

    close_after_start = close_after_start if close_after_start is not None else []
    try:
        netns_path = make_netns(c)

        def started(pid: int) -> None:
            while close_after_start:  # our copies of the container's pipe ends: EOF must reach the pumps
                os.close(close_after_start.pop())
            on_start(pid)

        if not detached and c.host_config.get("Runtime") != "runc":
            # Our init (another process) builds its root while this one plumbs the network: the two overlap.
            prepare = (lambda: attach_netns(root, c, netns_path)) if netns_path else None
            return runtime.run(c.bundle, c.id, *stdio, stop_grace=stop_grace, on_start=started, prepare=prepare)
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
              ready: int | None = None, tty: int | None = None, hub: Hub | None = None) -> int:
    """Run the container until it ends for good (restart policy applied); its last exit code.

    tee: fds that also get stdout/stderr (a foreground run); ready: a pipe written "ok" or "E<code>:<msg>"
    after the first start; tty: the pty master when the container has a terminal (its slave is stdin);
    hub: the attach.Hub that gets the output too.
    """
    from runner import events

    store = Containers(root)
    log = JsonLog(log_path(root, cid))
    mark = store.path(cid, STOP_MARK)
    first = True
    code = 0
    slave_name = ""
    if tty is not None:
        slave_name = os.ttyname(stdin)
        os.close(stdin)

    def tell(answer: bytes) -> None:
        """Answer the starter once, closing the pipe so its read ends."""
        nonlocal ready
        if ready is not None:
            os.write(ready, answer)
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

            def started(pid: int) -> None:
                # The pumps start only now: the container's init is forked from this process, which then must
                # have no thread (a fork with threads alive can deadlock the child); its output waits in the pipe.
                for fd, stream, to in pumps:
                    threads.append(threading.Thread(target=_pump, args=(fd, stream, log, to, hub), daemon=True))
                    threads[-1].start()

                def mark_running(x: Container) -> None:
                    x.status, x.pid, x.started_at, x.error = "running", pid, now(), ""
                    x.exit_code, x.oom_killed = 0, False
                    x.monitor_pid, x.monitor_start = os.getpid(), proc_start_time(os.getpid()) or ""
                store.update(cid, mark_running)
                events.append(root, "container", "start", cid, c.name, {"image": c.image})
                tell(b"ok")
                hc = c.config.get("Healthcheck") or {}
                if (hc.get("Test") or ["NONE"])[0] != "NONE":
                    threading.Thread(target=_health_loop, args=(root, cid, hc, health_stop), daemon=True).start()

            try:
                status = run_once(root, c, (stdin_fd, out_w, err_w), started, close, detached=ready is not None or not first)
            except (StartError, DockyardError, OSError) as e:
                for fd in close + ([] if threads else [fd for fd, _, _ in pumps]):
                    os.close(fd)
                code = getattr(e, "exit_code", 125) if isinstance(e, StartError) else 125
                message = str(e) if not isinstance(e, OSError) else f"{e.strerror}: {e.filename or ''}"
                store.update(cid, lambda x: _record_failure(x, code, message, first))
                tell(f"E{code}:{message}".encode())
                return code
            finally:
                health_stop.set()
                if stdin is None and tty is None:
                    os.close(stdin_fd)
            for t in threads:
                t.join(5)
            code = status.code
            stopped = os.path.exists(mark)
            c = store.load(cid)
            again = should_restart(c, code, stopped)

            def mark_exited(x: Container) -> None:
                x.status, x.pid, x.exit_code, x.oom_killed = ("restarting" if again else "exited"), 0, code, status.oom_killed
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


def _health_loop(root: str, cid: str, hc: dict, stop: threading.Event) -> None:
    """Run the healthcheck every Interval while the container runs; record docker's Health object."""
    import tempfile

    from runner import events
    from runner import exec as exec_

    test = hc["Test"]
    cmd = list(test[1:]) if test[0] == "CMD" else ["/bin/sh", "-c", test[1]]
    interval = (hc.get("Interval") or 30 * 10**9) / 1e9
    retries = hc.get("Retries") or 3
    store = Containers(root)
    store.update(cid, lambda x: setattr(x, "health", {"Status": "starting", "FailingStreak": 0, "Log": []}))
    while not stop.wait(interval):
        c = store.load(cid)
        if c.status != "running":
            continue
        start = now()
        with tempfile.TemporaryFile() as out:
            try:
                code = exec_.exec_in(root, c, cmd, output=out.fileno())
            except DockyardError as e:
                code = getattr(e, "exit_code", 1)
                out.write(str(e).encode())
            out.seek(0)
            text = out.read(4096).decode(errors="replace")
        if stop.is_set():
            return

        def record(x: Container) -> None:
            h = x.health or {"Status": "starting", "FailingStreak": 0, "Log": []}
            h["Log"] = [*h["Log"], {"Start": start, "End": now(), "ExitCode": code, "Output": text}][-5:]
            if code == 0:
                h["Status"], h["FailingStreak"] = "healthy", 0
            else:
                h["FailingStreak"] += 1
                if h["FailingStreak"] >= retries:
                    h["Status"] = "unhealthy"
            x.health = h
        c = store.update(cid, record)
        events.append(root, "container", f"health_status: {c.health['Status']}", cid, c.name, {"image": c.image})


def _record_failure(c: Container, code: int, message: str, first: bool) -> None:
    # docker leaves a container whose first start failed in "created", with the error and exit code.
    c.status = "created" if first else "exited"
    c.exit_code, c.error, c.pid, c.finished_at = code, message, 0, now()


def start_detached(root: str, cid: str, client: int | None = None) -> None:
    """Fork the monitor off (double fork + setsid, so it outlives us and no terminal reaches it); wait for the start.

    A container created with -i keeps its stdin open and is served on attach.sock; `client` (a socket fd,
    -i only) is attached before the start, so none of the output is missed.
    """
    from runner.containers import Containers as _C

    cdir = _C(root).path(cid)
    c = _C(root).load(cid)
    try:
        os.unlink(os.path.join(cdir, STOP_MARK))
    except FileNotFoundError:
        pass
    r, w = os.pipe2(os.O_CLOEXEC)
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
            if c.config.get("OpenStdin"):
                from runner.attach import Hub

                if tty is None:
                    stdin, feed = os.pipe()  # its write end stays here: the container never sees EOF unasked
                hub = Hub(tty if tty is not None else feed, tty is not None)
                hub.serve(cdir)
                if client is not None:
                    import socket

                    hub.add(socket.socket(fileno=client))
            code = supervise(root, cid, ready=w, tty=tty, stdin=stdin, hub=hub)
            if hub is not None:
                hub.close()
            if c.host_config.get("AutoRemove"):
                remove(root, cid)
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
    answer = b"".join(chunks).decode(errors="replace")
    if answer.startswith("E"):
        code, _, message = answer[1:].partition(":")
        raise StartError(message, int(code) if code.isdigit() else 125)
    if answer != "ok":
        raise StartError(f"container {cid[:12]}: the monitor died during start (see {cdir}/monitor.log)")


def _become_daemon(cdir: str, keep: tuple[int, ...]) -> None:
    """stdio to /dev/null and monitor.log, every other fd closed, signals from a terminal ignored."""
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    logfd = os.open(os.path.join(cdir, "monitor.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    os.dup2(null, 0)
    os.dup2(logfd, 1)
    os.dup2(logfd, 2)
    from runner.init import close_fds_except

    close_fds_except(keep)
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def init_pid(cid: str) -> int:
    """The container's pid 1 as the host sees it, from its cgroup (for runs whose pid was not recorded)."""
    from runner.cgroups import Cgroup

    for pid in Cgroup.of_container(cid).pids():
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("NSpid:") and line.split()[-1] == "1":
                        return pid
        except FileNotFoundError:
            continue
    return 0


def remove(root: str, cid: str, volumes: bool = False) -> None:
    """Remove a stopped container: leftovers of a crash (processes, cgroup, netns), record, hold, anonymous volumes."""
    from runner import events
    from runner.cgroups import Cgroup
    from runner.create import remove_files
    from runner.volumes import Volumes

    store = Containers(root)
    c = store.load(cid)
    cg = Cgroup.of_container(cid)
    if cg.pids():
        cg.kill_all()
    cg.remove()
    network_down(root, c)
    remove_files(root, c)
    anonymous = any(m["Type"] == "volume" and m.get("Anonymous") for m in c.mounts)
    if anonymous and (volumes or c.host_config.get("AutoRemove")):  # only then: this reads every container
        vols = Volumes(root)
        in_use = {m["Name"] for other in store.all() for m in other.mounts if m["Type"] == "volume"}
        for m in c.mounts:
            if m["Type"] == "volume" and m.get("Anonymous") and m["Name"] not in in_use:
                vols.remove(m["Name"], in_use)
    events.append(root, "container", "destroy", cid, c.name, {"image": c.image})


def stop(root: str, cid: str, timeout: float | None = None, sig: str | None = None) -> None:
    """docker stop: the stop signal, then SIGKILL after `timeout` seconds; no restart follows."""
    store = Containers(root)
    c = store.load(cid)
    open(store.path(cid, STOP_MARK), "w").close()
    if not c.running:
        return
    if timeout is None:
        timeout = c.config.get("StopTimeout")
        timeout = 10 if timeout is None else timeout
    signum = parse_signal(sig or c.config.get("StopSignal") or "SIGTERM")
    if c.status == "paused":
        unfreeze(cid)
    send_signal(c, signum)
    if wait_exit(store, cid, timeout):
        return
    from runner.cgroups import Cgroup

    Cgroup.of_container(cid).kill_all()
    wait_exit(store, cid, 10)


def send_signal(c: Container, signum: int) -> None:
    """Signal the container's pid 1 (found through the cgroup when not recorded)."""
    pid = c.pid or init_pid(c.id)
    if not pid:
        return
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def wait_exit(store: Containers, cid: str, timeout: float | None) -> bool:
    """Wait until the container is no longer running; False on timeout."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.005
    while True:
        c = store.load(cid)
        if not c.running:
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def parse_signal(text: str | int) -> int:
    """SIGTERM, TERM, 15 → 15."""
    if isinstance(text, int) or str(text).isdigit():
        return int(text)
    name = str(text).upper()
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise DockyardError(f"invalid signal: {text}") from None


def _freezer(cid: str) -> str:
    from runner.cgroups import Cgroup

    cg = Cgroup.of_container(cid)
    if cg.v2:
        return os.path.join(cg.dirs[""], "cgroup.freeze")
    return os.path.join(cg.dirs["freezer"], "freezer.state")


def freeze(cid: str) -> None:
    path = _freezer(cid)
    with open(path, "w") as f:
        f.write("1" if path.endswith("freeze") else "FROZEN")


def unfreeze(cid: str) -> None:
    path = _freezer(cid)
    with open(path, "w") as f:
        f.write("0" if path.endswith("freeze") else "THAWED")
