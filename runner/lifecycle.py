"""The container lifecycle as typed operations: create, start, stop, kill, pause, remove, wait, list, inspect…

No argument parsing and no printing: each returns records the CLI and the Python API present their own way.
Failures a user caused raise DockyardError (NotFound for a missing container).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass

from dockyard.errors import DockyardError
from runner import events, monitor
from runner.containers import Container, Containers
from runner.network.container import joined_id

PS_FILTERS = ("status", "name", "id", "exited", "ancestor", "label")


@dataclass
class PortBinding:
    """One published port: container side and host side."""

    container_port: int
    proto: str
    host_ip: str
    host_port: int

    @property
    def key(self) -> str:
        """docker's `80/tcp`."""
        return f"{self.container_port}/{self.proto}"

    @property
    def host(self) -> str:
        """docker's `0.0.0.0:8080`."""
        return f"{self.host_ip or '0.0.0.0'}:{self.host_port}"


@dataclass
class ProcessTable:
    """`top`: ps's header and its lines for the container's processes, as ps printed them."""

    header: str
    lines: list[str]

    def as_docker(self) -> dict:
        """docker's {"Titles": [...], "Processes": [[...]]} (the last column keeps its spaces)."""
        titles = self.header.split()
        return {"Titles": titles, "Processes": [line.split(None, len(titles) - 1) for line in self.lines]}


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
    cg = Cgroup.of_container(cid)
    if cg.pids():
        cg.kill_all()
    cg.remove()
    network_down(root, c)
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
    return removed


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


def _attachment(root: str, c: Container):
    """The network side's record of a running container on a bridge or user network (else None)."""
    if c.host_config.get("NetworkMode") in ("host", "none") or not c.running:
        return None
    from runner.network import attach

    return attach.attachment(c.id, root=root)


def ports(root: str, c: Container, private: str | None = None) -> list[PortBinding]:
    """The container's published ports; `private` (`80` or `80/tcp`) narrows them and must match one."""
    att = _attachment(root, c)
    out = [PortBinding(p.container_port, p.proto, p.host_ip, p.host_port)
           for ep in (att.endpoints.values() if att else []) for p in ep.ports]
    if private:
        out = [p for p in out if private in (p.key, str(p.container_port))]
        if not out:
            raise DockyardError(f"no public port '{private}' published for {c.name}")
    return out


# --- list / inspect ---


def _ps_match(c: Container, filters: dict[str, list[str]]) -> bool:
    """docker ps --filter: every key must match (a key given twice: any of its values)."""
    def one(key: str, value: str) -> bool:
        if key == "status":
            return c.status == value
        if key == "name":
            return value.lstrip("/") in c.name
        if key == "id":
            return c.id.startswith(value)
        if key == "exited":
            return not (c.running or c.status == "created") and str(c.exit_code) == value
        if key == "ancestor":
            return value in (c.image, c.image_id, c.image_digest)
        k, eq, v = value.partition("=")  # label
        labels = c.config.get("Labels") or {}
        return k in labels and (not eq or labels[k] == v)
    return all(all(one(key, v) for v in values) for key, values in filters.items())


def parse_filters(items: list[str]) -> dict[str, list[str]]:
    """`key=value` flags as docker's filter map."""
    out: dict[str, list[str]] = {}
    for item in items:
        key, _, value = item.partition("=")
        out.setdefault(key, []).append(value)
    return out


def list_containers(root: str, all: bool = False, filters: dict[str, list[str]] | None = None,
                    limit: int = -1) -> list[Container]:
    """docker ps: running containers (every one with `all`, a limit or a status/exited filter), newest first."""
    filters = filters or {}
    for key in filters:
        if key not in PS_FILTERS:
            raise DockyardError(f"invalid filter {key!r}")
    cs = Containers(root).all()
    if not (all or limit >= 0 or "status" in filters or "exited" in filters):
        cs = [c for c in cs if c.running]
    cs = [c for c in cs if _ps_match(c, filters)]
    return cs[:limit] if limit >= 0 else cs


def host_pid(c: Container) -> int:
    """The container's pid 1 on the host (under runc only its cgroup knows it); 0 when it is not running."""
    if not c.running:
        return 0
    return c.pid or init_pid(c.id)


def inspect(root: str, c: Container) -> dict:
    """docker's `inspect` JSON for a container."""
    att = _attachment(root, c)
    networks: dict[str, dict] = {}
    ports_: dict[str, list[dict[str, str]]] = {}
    for name, chosen in c.networks.items():  # as docker: what was asked for, with no address while stopped
        networks[name] = {**chosen, "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "",
                          "IPPrefixLen": 0, "MacAddress": "", "DNSNames": None}
    for ep in (att.endpoints.values() if att else []):
        networks[ep.network] = {"IPAMConfig": None, **networks.get(ep.network, {}), "NetworkID": ep.network_id,
                                "EndpointID": ep.veth_host, "Gateway": ep.gateway, "IPAddress": ep.ip,
                                "IPPrefixLen": ep.prefix_len, "MacAddress": ep.mac, "Aliases": ep.aliases or None,
                                "DNSNames": [c.name, *ep.aliases, c.short_id]}
        for p in ep.ports:
            ports_.setdefault(f"{p.container_port}/{p.proto}", []).append(
                {"HostIp": p.host_ip or "0.0.0.0", "HostPort": str(p.host_port)})
    first = next(iter(networks.values()), {})
    etc = Containers(root).path(joined_id(c)) if joined_id(c) else c.bundle  # docker points at the shared files
    args = [*(c.config.get("Entrypoint") or []), *(c.config.get("Cmd") or [])]
    return {
        "Id": c.id, "Created": c.created, "Path": args[0] if args else "", "Args": args[1:],
        "State": {"Status": c.status, "Running": c.running and c.status != "restarting",
                  "Paused": c.status == "paused", "Restarting": c.status == "restarting", "OOMKilled": c.oom_killed,
                  "Dead": False, "Pid": host_pid(c), "ExitCode": c.exit_code, "Error": c.error,
                  "StartedAt": c.started_at, "FinishedAt": c.finished_at,
                  **({"Health": c.health} if c.health else {})},
        "Image": c.image_id, "ResolvConfPath": os.path.join(etc, "resolv.conf"),
        "HostnamePath": os.path.join(etc, "hostname"), "HostsPath": os.path.join(etc, "hosts"),
        "LogPath": os.path.join(c.bundle, f"{c.id}-json.log"), "Name": "/" + c.name,
        "RestartCount": c.restart_count, "Driver": "overlay", "Platform": "linux",
        "HostConfig": {**c.host_config, "PortBindings": _port_bindings(c.host_config.get("PortBindings") or [])},
        "Mounts": c.mounts, "Config": c.config,
        "GraphDriver": {"Name": "overlay", "Data": {"UpperDir": os.path.join(c.bundle, "diff"),
                                                   "WorkDir": os.path.join(c.bundle, "work")}},
        "NetworkSettings": {"Ports": ports_, "Networks": networks, "IPAddress": first.get("IPAddress", ""),
                            "Gateway": first.get("Gateway", ""), "MacAddress": first.get("MacAddress", "")},
    }


def _port_bindings(recorded: list[dict]) -> dict[str, list[dict[str, str]]]:
    """The -p flags as recorded (PortMapping fields) in docker's HostConfig.PortBindings shape: what was asked,
    "" for a port or address left to choose."""
    out: dict[str, list[dict[str, str]]] = {}
    for p in recorded:
        out.setdefault(f"{p['container_port']}/{p.get('proto', 'tcp')}", []).append(
            {"HostIp": p.get("host_ip", ""), "HostPort": str(p["host_port"]) if p.get("host_port") else ""})
    return out


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
