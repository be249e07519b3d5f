"""The container lifecycle as typed operations: create, start, stop, kill, pause, remove, wait, top, exec…

No argument parsing and no printing: each returns records the CLI and the Python API present their own way.
Failures a user caused raise DockyardError (NotFound for a missing container). Listing, inspect and ports are
runner.listing's: they run on every `ps` and must not import the runtime.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from dockyard.errors import DockyardError
from runner import events, monitor
from runner.containers import Container, Containers

if TYPE_CHECKING:
    from runner.listing import ProcessTable


# --- create / start ---


def create(root: str, opts) -> Container:
    """Record a new container from `opts` (a runner.create.Options) and announce it."""
    from runner import create as create_

    c = create_.create(root, opts)
    events.append(root, "container", "create", c.id, c.name, {"image": c.image})
    return c


def start(root: str, cid: str, client: int | None = None) -> bool:
    """Start a container in the background under its monitor; False when it was running already.

    client: a socket fd attached to the container's stdin/output before it starts (containers created with -i).
    """
    if Containers(root).load(cid).running:
        return False
    monitor.start_detached(root, cid, client)
    return True


def start_attached(root: str, cid: str, interactive: bool) -> int:
    """docker start -a[i]: start a stopped container with its output (and with `interactive`, for a container
    created with -i, our stdin) attached to ours, through its terminal if it has one; its exit code."""
    from runner import logs

    c = Containers(root).load(cid)
    if c.running:
        raise DockyardError(f"container {c.name} is already running")
    if not c.config.get("OpenStdin"):  # no stdin to give: the output is the log's
        offset = logs.size(root, cid)
        start(root, cid)
        for entry in logs.follow_from(root, cid, offset):
            logs.write_entry(entry)
        return Containers(root).load(cid).exit_code
    import socket

    from runner import attach

    # Attached to its monitor before it starts, so no output is missed.
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        start(root, cid, client=theirs.fileno())
    except BaseException:
        mine.close()
        raise
    finally:
        theirs.close()
    # docker's StdinOnce for an attached start: our EOF is the container's.
    attach.relay(mine, bool(c.config.get("Tty")), stdin=interactive, stdin_once=interactive)
    return wait(root, cid)


def restart(root: str, cid: str, timeout: float | None = None) -> None:
    """docker restart: stop (as `stop`), then start again."""
    stop(root, cid, timeout)
    monitor.start_detached(root, cid)


# --- stop / kill / pause ---


def stop(root: str, cid: str, timeout: float | None = None, sig: str | int | None = None) -> None:
    """docker stop: the stop signal, then SIGKILL after `timeout` seconds; no restart follows."""
    store = Containers(root)
    c = store.load(cid)
    monitor.mark_stopping(root, cid)
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


def kill(root: str, cid: str, sig: str | int = "KILL") -> None:
    """docker kill: a signal to a running container's pid 1; no restart follows."""
    signum = parse_signal(sig)
    c = Containers(root).load(cid)
    if not c.running:
        raise DockyardError(f"container {c.name} is not running")
    monitor.mark_stopping(root, cid)
    send_signal(c, signum)


def send_signal(c: Container, signum: int) -> None:
    """Signal the container's pid 1 (found through the cgroup when not recorded)."""
    pid = c.pid or init_pid(c.id)
    if not pid:
        return
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


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


def pause(root: str, cid: str) -> None:
    """Freeze every process of a running container."""
    _set_paused(root, cid, True)


def unpause(root: str, cid: str) -> None:
    """Thaw a paused container."""
    _set_paused(root, cid, False)


def _set_paused(root: str, cid: str, paused: bool) -> None:
    """Freeze or thaw a container in the state that allows it, recording the new state and docker's event."""
    before, after = ("running", "paused") if paused else ("paused", "running")
    store = Containers(root)
    c = store.load(cid)
    if c.status != before:
        raise DockyardError(f"container {c.name} is not {before}")
    (freeze if paused else unfreeze)(cid)
    store.update(cid, lambda x: setattr(x, "status", after))
    events.append(root, "container", "pause" if paused else "unpause", c.id, c.name, {"image": c.image})


def _freezer(cid: str) -> str:
    from runner.cgroups import Cgroup

    cg = Cgroup.of_container(cid)
    if cg.v2:
        return os.path.join(cg.dirs[""], "cgroup.freeze")
    return os.path.join(cg.dirs["freezer"], "freezer.state")


def freeze(cid: str) -> None:
    """Freeze the container's cgroup (no state recorded: `pause` does that)."""
    path = _freezer(cid)
    with open(path, "w") as f:
        f.write("1" if path.endswith("freeze") else "FROZEN")


def unfreeze(cid: str) -> None:
    """Thaw the container's cgroup."""
    path = _freezer(cid)
    with open(path, "w") as f:
        f.write("0" if path.endswith("freeze") else "THAWED")


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


# --- wait / remove / prune / rename ---


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


def wait(root: str, cid: str, timeout: float | None = None) -> int:
    """Block until the container stops; its exit code."""
    store = Containers(root)
    if not wait_exit(store, cid, timeout):
        raise DockyardError(f"container {cid[:12]} still running after {timeout} s")
    return store.load(cid).exit_code


def remove(root: str, cid: str, force: bool = False, volumes: bool = False) -> None:
    """docker rm: a running container only with force (killed first); volumes: its anonymous volumes too."""
    c = Containers(root).load(cid)
    if c.running:
        if not force:
            raise DockyardError(f"cannot remove container {c.name}: container is {c.status}: "
                                "stop the container before removing or force remove")
        stop(root, cid, 0, "KILL")
    destroy(root, cid, volumes)


def destroy(root: str, cid: str, volumes: bool = False, later: bool = False) -> None:
    """Remove a container that no longer runs: leftovers of a crash (processes, cgroup, netns), record, hold,
    anonymous volumes (with `volumes` or --rm). later: its files go in a detached child, for a process about to
    exit (the container is gone for every command at once all the same)."""
    from runner.cgroups import Cgroup
    from runner.create import remove_files
    from runner.network.container import network_down

    store = Containers(root)
    c = store.load(cid)

    def leftovers() -> None:
        cg = Cgroup.of_container(cid)
        if cg.pids():
            cg.kill_all()
        cg.remove()
        network_down(root, c)

    if later:  # (a run's own cleanup left none: this is for a crash's)
        from runner.forking import detached

        detached(leftovers)
    else:
        leftovers()
    remove_files(root, c, later)
    anonymous = any(m["Type"] == "volume" and m.get("Anonymous") for m in c.mounts)
    if anonymous and (volumes or c.host_config.get("AutoRemove")):  # only then: this reads every container
        from runner.volumes import Volumes

        vols = Volumes(root)
        in_use = volumes_in_use(root)
        for m in c.mounts:
            if m["Type"] == "volume" and m.get("Anonymous") and m["Name"] not in in_use:
                vols.remove(m["Name"], in_use)
    events.append(root, "container", "destroy", cid, c.name, {"image": c.image})


def prune(root: str) -> list[str]:
    """Remove every stopped container; their ids."""
    removed = []
    store = Containers(root)
    store.sweep_removed()
    for c in store.all():
        if not c.running:
            destroy(root, c.id)
            removed.append(c.id)
    _prune_mount_points(root)
    return removed


def _prune_mount_points(root: str) -> None:
    """Drop the shared mount-point lowerdirs (runner.create) that no container directory's bundle names."""
    import json

    from runner import rootfs, spec
    from runner.create import MOUNT_POINTS_DIR

    shared = os.path.join(root, MOUNT_POINTS_DIR)
    if not os.path.isdir(shared):
        return
    with rootfs.mount_points_held(shared, exclusive=True):
        in_use: set[str] = set()
        containers = Containers(root).dir
        for name in os.listdir(containers):  # every directory, a record or not yet swept: its bundle may be mounted
            try:
                with open(os.path.join(containers, name, "config.json"), "rb") as f:
                    overlay = json.loads(json.load(f)["annotations"][spec.OVERLAY_ANNOTATION])
                in_use.update(os.path.normpath(p) for p in overlay["lower"])
            except (OSError, ValueError, KeyError, TypeError):
                continue  # no bundle (a lock file, the states cache) or none of ours
        rootfs.prune_mount_points(shared, in_use)


def rename(root: str, cid: str, new_name: str) -> Container:
    """Give a container another (unique) name."""
    store = Containers(root)
    new_name = new_name.lstrip("/")
    c = store.load(cid)
    renamed = store.rename(c, new_name)
    events.append(root, "container", "rename", c.id, new_name, {"oldName": "/" + c.name})
    return renamed


# --- exec / top / ports ---


def check_exec(c: Container, command: list[str], tty_from_stdin: bool = False) -> None:
    """Refuse an exec that cannot run: the container not running (or paused), no command; tty_from_stdin (-it):
    our stdin not a terminal."""
    if c.status != "running":
        raise DockyardError(f"container {c.name} is paused, unpause the container before exec" if c.status == "paused"
                            else f"container {c.name} is not running")
    if not command:
        raise DockyardError("exec needs a command")
    if tty_from_stdin and not os.isatty(0):
        raise DockyardError("the input device is not a TTY")  # as docker: raw keys need a terminal to come from


def exec_run(root: str, c: Container, command: list[str], user: str = "", workdir: str = "",
             env: Sequence[str] = (), detach: bool = False, interactive: bool = False, privileged: bool = False,
             tty: bool = False, output: int | None = None) -> int:
    """Run a command in a running container (as runner.exec.exec_in); its exit code."""
    from runner import exec as exec_

    check_exec(c, command)
    return exec_.exec_in(root, c, list(command), user=user, workdir=workdir, env=env, detach=detach,
                         interactive=interactive, privileged=privileged, output=output, tty=tty)


def top(c: Container, ps_args: list[str] | None = None) -> ProcessTable:
    """`ps` (default `-f`) narrowed to the container's processes."""
    import subprocess

    from runner.cgroups import Cgroup
    from runner.listing import ProcessTable

    if not c.running:
        raise DockyardError(f"container {c.name} is not running")
    pids = Cgroup.of_container(c.id).pids()
    p = subprocess.run(["ps", *(ps_args or ["-f"])], capture_output=True, text=True)
    lines = p.stdout.splitlines()
    if not lines:
        raise DockyardError(f"ps failed: {p.stderr.strip()}")
    header = lines[0].split()
    if "PID" not in header:
        raise DockyardError("ps output has no PID column")
    col = header.index("PID")
    mine = []
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in pids:
            mine.append(line)
    return ProcessTable(lines[0], mine)


# --- volumes ---


def volumes_in_use(root: str) -> set[str]:
    """Names of the volumes some container mounts."""
    return {m["Name"] for c in Containers(root).all() for m in c.mounts if m["Type"] == "volume"}


def create_volume(root: str, name: str = "", labels: dict[str, str] | None = None, driver: str = "local"):
    """A named volume (an existing one is returned as is); a new anonymous one when `name` is empty."""
    from runner.volumes import Volumes

    if driver != "local":
        raise DockyardError(f"volume driver {driver} is not supported (only local)")
    return Volumes(root).create(name, labels or {})[0]


def remove_volume(root: str, name: str, force: bool = False) -> None:
    """Remove a volume no container uses; force: a missing one is no error."""
    from dockyard.errors import NotFound
    from runner.volumes import Volumes

    try:
        Volumes(root).remove(name, volumes_in_use(root))
    except NotFound:
        if not force:
            raise


def prune_volumes(root: str, all: bool = False) -> list[str]:
    """Remove the unused anonymous volumes (with `all`: every unused one); their names."""
    from runner.volumes import Volumes

    vols, in_use = Volumes(root), volumes_in_use(root)
    removed = []
    for v in vols.all():
        if v.name not in in_use and (all or v.anonymous):
            vols.remove(v.name, in_use)
            removed.append(v.name)
    return removed
