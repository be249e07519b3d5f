"""Container commands: run, create, start, stop, kill, rm, ps, logs, exec, cp, commit… and the `container` group."""

from __future__ import annotations

import argparse
import os
import sys

# Statuses for our own failures around a run (docker's convention): 125 setup, 126 cannot exec, 127 not found.
RUN_ERROR = 125


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-d", "--detach", action="store_true", help="run in the background and print the container ID")
    p.add_argument("-i", "--interactive", action="store_true", help="keep STDIN open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument("--name", default="", help="assign a name to the container")
    p.add_argument("-e", "--env", action="append", default=[], help="set environment variables")
    p.add_argument("--env-file", action="append", default=[], help="read in a file of environment variables")
    p.add_argument("-w", "--workdir", default="", help="working directory inside the container")
    p.add_argument("-u", "--user", default="", help="username or UID (format: <name|uid>[:<group|gid>])")
    p.add_argument("--entrypoint", default=None, help="overwrite the default ENTRYPOINT of the image")
    p.add_argument("-h", "--hostname", default="", help="container host name")
    p.add_argument("-v", "--volume", action="append", default=[], help="bind mount a volume")
    p.add_argument("--volumes-from", action="append", default=[], help="mount volumes from the specified container(s)")
    p.add_argument("--mount", action="append", default=[], help="attach a filesystem mount to the container")
    p.add_argument("--tmpfs", action="append", default=[], help="mount a tmpfs directory")
    p.add_argument("--read-only", action="store_true", help="mount the container's root filesystem as read only")
    p.add_argument("-p", "--publish", action="append", default=[], help="publish a container's port(s) to the host")
    p.add_argument("-P", "--publish-all", action="store_true", help="publish all exposed ports to random ports")
    p.add_argument("--network", "--net", default="bridge", help="connect a container to a network")
    p.add_argument("--ip", default="", help="IPv4 address")
    p.add_argument("--add-host", action="append", default=[], help="add a custom host-to-IP mapping (host:ip)")
    p.add_argument("--dns", action="append", default=[], help="set custom DNS servers")
    p.add_argument("--link", action="append", default=[], help="add link to another container")
    p.add_argument("-m", "--memory", default=None, help="memory limit")
    p.add_argument("--cpus", type=float, default=None, help="number of CPUs")
    p.add_argument("--pids-limit", type=int, default=None, help="tune container pids limit (-1 for unlimited)")
    p.add_argument("--restart", default="no", help="restart policy to apply when a container exits")
    p.add_argument("--init", action="store_true", help="run an init inside the container that forwards signals and reaps processes")
    p.add_argument("--cap-add", action="append", default=[], help="add Linux capabilities")
    p.add_argument("--cap-drop", action="append", default=[], help="drop Linux capabilities")
    p.add_argument("--security-opt", action="append", default=[],
                   help="security options: seccomp=unconfined|PROFILE.json, no-new-privileges[=true|false]")
    p.add_argument("--privileged", action="store_true",
                   help="give extended privileges: all capabilities and host devices, no seccomp, nothing masked")
    p.add_argument("--stop-signal", default="", help="signal to stop the container")
    p.add_argument("--stop-timeout", type=int, default=None, help="timeout (in seconds) to stop a container")
    p.add_argument("-l", "--label", action="append", default=[], help="set meta data on a container")
    p.add_argument("--runtime", default="dockyard", help="runtime to use for this container (dockyard or runc)")
    p.add_argument("--health-cmd", default=None, help="command to run to check health")
    p.add_argument("--health-interval", default=None, help="time between running the check (ms|s|m|h)")
    p.add_argument("--health-retries", type=int, default=None, help="consecutive failures needed to report unhealthy")
    p.add_argument("--health-timeout", default=None, help="maximum time to allow one check to run (ms|s|m|h)")
    p.add_argument("--no-healthcheck", action="store_true", help="disable any container-specified HEALTHCHECK")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")


def register(sub: argparse._SubParsersAction) -> None:
    from dockyard.cli import images, system

    images.INSPECTORS.append(("container", _container_inspector))
    system.INFO_SECTIONS.append(_info)
    _commands(sub, top=True)
    group = sub.add_parser("container", help="manage containers")
    gsub = group.add_subparsers(dest="container_command", metavar="COMMAND")
    _commands(gsub, top=False)
    group.set_defaults(func=lambda a: group.print_help() or 0)
    volume = sub.add_parser("volume", help="manage volumes")
    vsub = volume.add_subparsers(dest="volume_command", metavar="COMMAND")
    vc = vsub.add_parser("create", help="create a volume")
    vc.add_argument("name", nargs="?", default="")
    vc.add_argument("--label", action="append", default=[])
    vc.add_argument("-d", "--driver", default="local")
    vc.set_defaults(func=cmd_volume_create)
    vl = vsub.add_parser("ls", aliases=["list"], help="list volumes")
    vl.add_argument("-q", "--quiet", action="store_true")
    vl.add_argument("--format")
    vl.set_defaults(func=cmd_volume_ls)
    vi = vsub.add_parser("inspect", help="display detailed information on volumes")
    vi.add_argument("names", nargs="+")
    vi.add_argument("-f", "--format")
    vi.set_defaults(func=cmd_volume_inspect)
    vr = vsub.add_parser("rm", aliases=["remove"], help="remove volumes")
    vr.add_argument("-f", "--force", action="store_true")
    vr.add_argument("names", nargs="+")
    vr.set_defaults(func=cmd_volume_rm)
    vp = vsub.add_parser("prune", help="remove unused anonymous volumes (-a: all unused)")
    vp.add_argument("-a", "--all", action="store_true")
    vp.add_argument("-f", "--force", action="store_true")
    vp.set_defaults(func=cmd_volume_prune)
    volume.set_defaults(func=lambda a: volume.print_help() or 0)


def _commands(sub: argparse._SubParsersAction, top: bool) -> None:
    run = sub.add_parser("run", help="create and run a new container from an image", add_help=False)
    run.add_argument("--help", action="help", help="show this help message and exit")
    _add_run_args(run)
    run.set_defaults(func=cmd_run)
    create = sub.add_parser("create", help="create a new container", add_help=False)
    create.add_argument("--help", action="help", help="show this help message and exit")
    _add_run_args(create)
    create.set_defaults(func=cmd_create)
    start = sub.add_parser("start", help="start stopped containers")
    start.add_argument("-a", "--attach", action="store_true", help="attach STDOUT/STDERR")
    start.add_argument("-i", "--interactive", action="store_true", help="attach the container's STDIN")
    start.add_argument("names", nargs="+", metavar="CONTAINER")
    start.set_defaults(func=cmd_start)
    stop = sub.add_parser("stop", help="stop running containers")
    stop.add_argument("-t", "--time", type=int, default=None, help="seconds to wait before killing it")
    stop.add_argument("-s", "--signal", default=None, help="signal to send to the container")
    stop.add_argument("names", nargs="+", metavar="CONTAINER")
    stop.set_defaults(func=cmd_stop)
    restart = sub.add_parser("restart", help="restart containers")
    restart.add_argument("-t", "--time", type=int, default=None, help="seconds to wait before killing it")
    restart.add_argument("names", nargs="+", metavar="CONTAINER")
    restart.set_defaults(func=cmd_restart)
    kill = sub.add_parser("kill", help="kill running containers")
    kill.add_argument("-s", "--signal", default="KILL", help="signal to send to the container")
    kill.add_argument("names", nargs="+", metavar="CONTAINER")
    kill.set_defaults(func=cmd_kill)
    rm = sub.add_parser("rm", aliases=[] if top else ["remove"], help="remove containers")
    rm.add_argument("-f", "--force", action="store_true", help="force the removal of a running container")
    rm.add_argument("-v", "--volumes", action="store_true", help="remove anonymous volumes of the container")
    rm.add_argument("names", nargs="+", metavar="CONTAINER")
    rm.set_defaults(func=cmd_rm)
    ps = sub.add_parser("ps" if top else "ls", aliases=[] if top else ["ps", "list"], help="list containers")
    ps.add_argument("-a", "--all", action="store_true", help="show all containers (default shows just running)")
    ps.add_argument("-q", "--quiet", action="store_true", help="only display container IDs")
    ps.add_argument("-n", "--last", type=int, default=-1, help="show n last created containers")
    ps.add_argument("-l", "--latest", action="store_true", help="show the latest created container")
    ps.add_argument("-f", "--filter", action="append", default=[], help="filter output based on conditions")
    ps.add_argument("--format", help="'json' or a Go-template subset")
    ps.add_argument("--no-trunc", action="store_true", help="don't truncate output")
    ps.set_defaults(func=cmd_ps)
    logs = sub.add_parser("logs", help="fetch the logs of a container")
    logs.add_argument("-f", "--follow", action="store_true", help="follow log output")
    logs.add_argument("-n", "--tail", default="all", help="number of lines to show from the end of the logs")
    logs.add_argument("-t", "--timestamps", action="store_true", help="show timestamps")
    logs.add_argument("--since", default=None, help="show logs since timestamp or relative (e.g. 42m)")
    logs.add_argument("--until", default=None, help="show logs before a timestamp or relative")
    logs.add_argument("name", metavar="CONTAINER")
    logs.set_defaults(func=cmd_logs)
    wait = sub.add_parser("wait", help="block until containers stop, then print their exit codes")
    wait.add_argument("names", nargs="+", metavar="CONTAINER")
    wait.set_defaults(func=cmd_wait)
    if not top:  # the top-level `inspect` is the images module's, which asks INSPECTORS (ours included)
        inspect = sub.add_parser("inspect", help="display detailed information on containers")
        inspect.add_argument("-f", "--format")
        inspect.add_argument("names", nargs="+", metavar="CONTAINER")
        inspect.set_defaults(func=cmd_inspect)
        prune = sub.add_parser("prune", help="remove all stopped containers")
        prune.add_argument("-f", "--force", action="store_true")
        prune.set_defaults(func=cmd_prune)
    ex = sub.add_parser("exec", help="execute a command in a running container")
    ex.add_argument("-d", "--detach", action="store_true", help="run the command in the background")
    ex.add_argument("-i", "--interactive", action="store_true", help="keep STDIN open")
    ex.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    ex.add_argument("-u", "--user", default="", help="username or UID")
    ex.add_argument("-w", "--workdir", default="", help="working directory inside the container")
    ex.add_argument("-e", "--env", action="append", default=[], help="set environment variables")
    ex.add_argument("--privileged", action="store_true", help="give extended privileges to the command")
    ex.add_argument("name", metavar="CONTAINER")
    ex.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")
    ex.set_defaults(func=cmd_exec)
    top_ = sub.add_parser("top", help="display the running processes of a container")
    top_.add_argument("name", metavar="CONTAINER")
    top_.add_argument("ps_args", nargs=argparse.REMAINDER)
    top_.set_defaults(func=cmd_top)
    port = sub.add_parser("port", help="list port mappings of a container")
    port.add_argument("name", metavar="CONTAINER")
    port.add_argument("private", nargs="?", metavar="PRIVATE_PORT[/PROTO]")
    port.set_defaults(func=cmd_port)
    rename = sub.add_parser("rename", help="rename a container")
    rename.add_argument("name", metavar="CONTAINER")
    rename.add_argument("new_name", metavar="NEW_NAME")
    rename.set_defaults(func=cmd_rename)
    for verb in ("pause", "unpause"):
        p = sub.add_parser(verb, help=f"{verb} all processes within containers")
        p.add_argument("names", nargs="+", metavar="CONTAINER")
        p.set_defaults(func=cmd_pause, verb=verb)
    attach = sub.add_parser("attach", help="attach this terminal's STDIN (containers run with -i), STDOUT and STDERR "
                                           "to a running container")
    attach.add_argument("name", metavar="CONTAINER")
    attach.set_defaults(func=cmd_attach)
    cp = sub.add_parser("cp", help="copy files between a container and the local filesystem")
    cp.add_argument("-a", "--archive", action="store_true", help="keep uid/gid")
    cp.add_argument("-L", "--follow-link", action="store_true", help="follow symlinks in SRC_PATH")
    cp.add_argument("src", metavar="SRC")
    cp.add_argument("dest", metavar="DEST")
    cp.set_defaults(func=cmd_cp)
    export = sub.add_parser("export", help="export a container's filesystem as a tar archive")
    export.add_argument("-o", "--output", help="write to a file instead of STDOUT")
    export.add_argument("name", metavar="CONTAINER")
    export.set_defaults(func=cmd_export)
    commit = sub.add_parser("commit", help="create a new image from a container's changes")
    commit.add_argument("-c", "--change", action="append", default=[], help="apply Dockerfile instruction")
    commit.add_argument("-m", "--message", default="", help="commit message")
    commit.add_argument("-a", "--author", default="", help="author")
    commit.add_argument("-p", "--pause", action="store_true", default=True, help="pause during commit (default)")
    commit.add_argument("name", metavar="CONTAINER")
    commit.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]")
    commit.set_defaults(func=cmd_commit)
    stats = sub.add_parser("stats", help="display resource usage statistics of containers")
    stats.add_argument("-a", "--all", action="store_true")
    stats.add_argument("--no-stream", action="store_true", help="print the first result only")
    stats.add_argument("--format")
    stats.add_argument("--no-trunc", action="store_true")
    stats.add_argument("names", nargs="*", metavar="CONTAINER")
    stats.set_defaults(func=cmd_stats)
    if top:
        events = sub.add_parser("events", help="get real time events")
        events.add_argument("--since", default=None)
        events.add_argument("--until", default=None)
        events.add_argument("-f", "--filter", action="append", default=[])
        events.add_argument("--format")
        events.set_defaults(func=cmd_events)


# --- helpers ---


def _info() -> dict:
    """Container counts for `dockyard info`, as docker shows them."""
    cs = _store().all()
    return {"Containers": len(cs), "ContainersRunning": sum(c.status in ("running", "restarting") for c in cs),
            "ContainersPaused": sum(c.status == "paused" for c in cs),
            "ContainersStopped": sum(not c.running for c in cs)}


def _root() -> str:
    from dockyard.store import default_root

    return os.path.abspath(default_root())


def _store():
    from runner.containers import Containers

    return Containers(_root())


def _options(args: argparse.Namespace):
    from runner import create, volumes

    env = []
    for path in args.env_file:
        env += create.read_env_file(path)
    env += args.env
    labels = {}
    for item in args.label:
        key, _, value = item.partition("=")
        labels[key] = value
    mounts = [volumes.parse_volume_flag(v) for v in args.volume]
    mounts += [volumes.parse_mount_flag(m) for m in args.mount]
    mounts += [volumes.parse_tmpfs_flag(t) for t in args.tmpfs]
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    healthcheck = None
    if args.no_healthcheck:
        healthcheck = {"Test": ["NONE"]}
    elif args.health_cmd:
        from dockyard.changes import parse_duration

        healthcheck = {"Test": ["CMD-SHELL", args.health_cmd]}
        for key, value in (("Interval", args.health_interval), ("Timeout", args.health_timeout)):
            if value:
                healthcheck[key] = parse_duration(value)
        if args.health_retries is not None:
            healthcheck["Retries"] = args.health_retries
    return create.Options(
        image=args.image, command=command, entrypoint=args.entrypoint, name=args.name, env=env,
        workdir=args.workdir, user=args.user, hostname=args.hostname, tty=args.tty, interactive=args.interactive,
        mounts=mounts, volumes_from=args.volumes_from, read_only=args.read_only, publish=args.publish,
        publish_all=args.publish_all, network=args.network, ip=args.ip, add_hosts=args.add_host, dns=args.dns,
        links=args.link, memory=create.parse_bytes(args.memory) if args.memory else None, cpus=args.cpus,
        pids_limit=args.pids_limit, restart=args.restart, init=args.init, cap_add=args.cap_add,
        cap_drop=args.cap_drop, security_opt=create.load_security_opts(args.security_opt), privileged=args.privileged,
        stop_signal=args.stop_signal, stop_timeout=args.stop_timeout,
        labels=labels, runtime=args.runtime, auto_remove=args.rm, healthcheck=healthcheck)


def _run_error(e: Exception) -> int:
    """Print a failure of create/start and return docker's status for it."""
    from runner.runtime import StartError

    print(f"Error: {e}", file=sys.stderr)
    return e.exit_code if isinstance(e, StartError) else RUN_ERROR


def _create(args: argparse.Namespace):
    from runner import lifecycle

    root = _root()
    return root, lifecycle.create(root, _options(args))


# --- run / create / start ---


def cmd_create(args: argparse.Namespace) -> int:
    from dockyard.errors import DockyardError

    try:
        _, c = _create(args)
    except DockyardError as e:
        return _run_error(e)
    print(c.id)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from dockyard.errors import DockyardError

    try:
        root, c = _create(args)
    except DockyardError as e:
        return _run_error(e)
    from runner import lifecycle, monitor

    if args.detach:
        try:
            monitor.start_detached(root, c.id)
        except DockyardError as e:
            return _run_error(e)
        print(c.id)
        return 0
    try:
        code = monitor.run_foreground(root, c, args.interactive, args.tty)
    except DockyardError as e:
        code = _run_error(e)
    if args.rm:
        lifecycle.destroy(root, c.id)
    return code


def cmd_start(args: argparse.Namespace) -> int:
    from dockyard.errors import DockyardError
    from runner import monitor

    root, store = _root(), _store()
    status = 0
    attached = args.attach or args.interactive
    for name in args.names:
        try:
            c = store.find(name)
            if c.running:
                if not attached:
                    print(name)
                continue
            if attached and c.config.get("OpenStdin"):
                return _start_attached(root, c, args.interactive)
            offset = _log_size(root, c.id)
            monitor.start_detached(root, c.id)
        except DockyardError as e:
            status = _run_error(e) if attached else (print(f"Error: {e}", file=sys.stderr) or 1)
            continue
        if attached:
            _follow_log(root, c.id, offset)
            return store.load(c.id).exit_code
        print(name)
    return status


# --- stop / kill / restart / rm / wait ---


def _each(names: list[str], action, echo: bool = True) -> int:
    """Apply `action(container)` to each name (echoing it), reporting failures like docker and going on."""
    from dockyard.errors import DockyardError

    store = _store()
    status = 0
    for name in names:
        try:
            action(store.find(name))
            if echo:
                print(name)
        except DockyardError as e:
            print(f"Error: {e}", file=sys.stderr)
            status = 1
    return status


def cmd_stop(args: argparse.Namespace) -> int:
    from runner import lifecycle

    root = _root()
    return _each(args.names, lambda c: lifecycle.stop(root, c.id, args.time, args.signal))


def cmd_restart(args: argparse.Namespace) -> int:
    from runner import lifecycle

    root = _root()
    return _each(args.names, lambda c: lifecycle.restart(root, c.id, args.time))


def cmd_kill(args: argparse.Namespace) -> int:
    from runner import lifecycle

    root = _root()
    lifecycle.parse_signal(args.signal)  # a bad signal is one error, not one per container
    return _each(args.names, lambda c: lifecycle.kill(root, c.id, args.signal))


def cmd_rm(args: argparse.Namespace) -> int:
    from runner import lifecycle

    root = _root()
    return _each(args.names, lambda c: lifecycle.remove(root, c.id, args.force, args.volumes))


def cmd_wait(args: argparse.Namespace) -> int:
    from runner import lifecycle

    root = _root()
    return _each(args.names, lambda c: print(lifecycle.wait(root, c.id)), echo=False)


def cmd_prune(args: argparse.Namespace) -> int:
    from runner import lifecycle

    removed = lifecycle.prune(_root())
    if removed:
        print("Deleted Containers:", *removed, sep="\n")
    return 0


# --- ps / inspect ---


def _command_text(c) -> str:
    return " ".join([*(c.config.get("Entrypoint") or []), *(c.config.get("Cmd") or [])])


def _status_text(c) -> str:
    from dockyard.cli.output import ago, human_duration
    from dockyard.image import parse_time

    if c.status == "created":
        return "Created"
    if c.status == "restarting":
        return f"Restarting ({c.exit_code}) {ago(parse_time(c.finished_at))}"
    if c.running:
        started = parse_time(c.started_at)
        from datetime import datetime, timezone

        up = human_duration((datetime.now(timezone.utc) - started).total_seconds()) if started else ""
        health = f" ({c.health['Status']})" if c.health and c.health.get("Status") else ""
        return f"Up {up}" + (" (Paused)" if c.status == "paused" else health)
    return f"Exited ({c.exit_code}) {ago(parse_time(c.finished_at))}"


def _ports_text(c) -> str:
    from runner import lifecycle

    return ", ".join(f"{p.host}->{p.key}" for p in lifecycle.ports(_root(), c))


def cmd_ps(args: argparse.Namespace) -> int:
    from dockyard.cli.output import ago, print_formatted, table
    from dockyard.image import parse_time

    from runner import lifecycle

    cs = lifecycle.list_containers(_root(), args.all, lifecycle.parse_filters(args.filter),
                                   1 if args.latest else args.last)
    if args.quiet:
        for c in cs:
            print(c.id if args.no_trunc else c.short_id)
        return 0
    rows = []
    for c in cs:
        cmd = _command_text(c)
        if not args.no_trunc and len(cmd) > 20:
            cmd = cmd[:19] + "…"
        rows.append({"ID": c.id if args.no_trunc else c.short_id, "Image": c.image, "Command": f'"{cmd}"',
                     "CreatedAt": c.created, "RunningFor": ago(parse_time(c.created)), "Status": _status_text(c),
                     "State": c.status, "Ports": _ports_text(c), "Names": c.name,
                     "Labels": ",".join(f"{k}={v}" for k, v in (c.config.get("Labels") or {}).items()),
                     "Mounts": ",".join(m.get("Name") or m["Source"] for m in c.mounts)})
    if args.format:
        print_formatted(args.format, rows)
        return 0
    table(["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"],
          [[r["ID"], r["Image"], r["Command"], r["RunningFor"], r["Status"], r["Ports"], r["Names"]] for r in rows])
    return 0


def _inspect(c) -> dict:
    from runner import lifecycle

    return lifecycle.inspect(_root(), c)


def _container_inspector(name: str) -> dict | None:
    from dockyard.errors import NotFound

    try:
        return _inspect(_store().find(name))
    except NotFound:
        return None


def cmd_inspect(args: argparse.Namespace) -> int:
    import json

    from dockyard.cli.output import render
    from dockyard.errors import NotFound

    store = _store()
    found, status = [], 0
    for name in args.names:
        try:
            found.append(_inspect(store.find(name)))
        except NotFound as e:
            print(f"Error: {e}", file=sys.stderr)
            status = 1
    if args.format:
        for obj in found:
            print(render(args.format, obj))
    else:
        print(json.dumps(found, indent=4))
    return status


# --- logs / attach ---


def _log_size(root: str, cid: str) -> int:
    from runner import monitor

    try:
        return os.path.getsize(monitor.log_path(root, cid))
    except FileNotFoundError:
        return 0


def _parse_since(text: str | None) -> str | None:
    """docker's --since/--until: RFC 3339, a unix time, or a duration before now; as an RFC 3339 string."""
    if not text:
        return None
    from datetime import datetime, timedelta, timezone

    from dockyard.changes import parse_duration
    from dockyard.errors import DockyardError
    from dockyard.image import parse_time

    when = None
    if text.replace(".", "", 1).isdigit():
        when = datetime.fromtimestamp(float(text), timezone.utc)
    else:
        try:
            when = datetime.now(timezone.utc) - timedelta(microseconds=parse_duration(text) / 1000)
        except DockyardError:
            when = parse_time(text)
    if when is None:
        raise DockyardError(f"invalid time {text!r}")
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def _write_entry(entry: dict, timestamps: bool) -> None:
    out = sys.stdout.buffer if entry.get("stream") != "stderr" else sys.stderr.buffer
    text = entry["log"]
    if timestamps:
        text = f"{entry['time']} {text}"
    out.write(text.encode())
    out.flush()


def _follow_log(root: str, cid: str, offset: int = 0, timestamps: bool = False, until: str | None = None) -> None:
    """Print log entries from `offset` until the container stops and its log is drained."""
    import time

    from runner import jsonl, monitor

    store = monitor.Containers(root)

    def running() -> bool:
        c = store.load(cid)
        return c.running or c.status == "created"

    path = monitor.log_path(root, cid)
    while not os.path.exists(path):
        if not running():
            return
        time.sleep(0.02)
    with open(path, "rb") as f:
        f.seek(offset)
        for entry in jsonl.follow(f, running):
            if until and entry["time"] > until:
                return
            _write_entry(entry, timestamps)


def cmd_logs(args: argparse.Namespace) -> int:
    import json

    from dockyard.errors import DockyardError
    from runner import monitor

    root = _root()
    c = _store().find(args.name)
    since, until = _parse_since(args.since), _parse_since(args.until)
    path = monitor.log_path(root, c.id)
    offset = 0
    if os.path.exists(path):
        with open(path, "rb") as f:
            lines = f.readlines()
        keep = lines
        if since:
            keep = [raw for raw in keep if _entry_time(raw) >= since]
        if args.tail != "all":
            if not args.tail.isdigit():
                raise DockyardError(f"invalid --tail {args.tail!r}: want a number or 'all'")
            keep = keep[-int(args.tail):] if int(args.tail) else []
        for raw in keep:
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if until and entry["time"] > until:
                break
            _write_entry(entry, args.timestamps)
        offset = sum(len(raw) for raw in lines)
    if args.follow:
        _follow_log(root, c.id, offset, args.timestamps, until)
    return 0


def _entry_time(raw: bytes) -> str:
    import json

    try:
        return json.loads(raw)["time"]
    except (ValueError, KeyError):
        return ""


def cmd_attach(args: argparse.Namespace) -> int:
    from dockyard.errors import DockyardError
    from runner import attach

    root, store = _root(), _store()
    c = store.find(args.name)
    if not c.running:
        raise DockyardError("You cannot attach to a stopped container, start it first")
    sock = attach.connect(store.path(c.id)) if c.config.get("OpenStdin") else None
    if sock is None:  # no stdin to give: the output is the log's
        _follow_log(root, c.id, _log_size(root, c.id))
    else:
        attach.relay(sock, bool(c.config.get("Tty")), stdin=True, stdin_once=False)
    return store.load(c.id).exit_code


def _start_attached(root: str, c, interactive: bool) -> int:
    """start -a/-i of a container created with -i: attached to its monitor before it starts, our stdin its own."""
    import socket

    from dockyard.errors import DockyardError
    from runner import attach, lifecycle, monitor

    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        monitor.start_detached(root, c.id, client=theirs.fileno())
    except DockyardError as e:
        mine.close()
        return _run_error(e)
    finally:
        theirs.close()
    # docker's StdinOnce for an attached start: our EOF is the container's.
    attach.relay(mine, bool(c.config.get("Tty")), stdin=interactive, stdin_once=interactive)
    return lifecycle.wait(root, c.id)


# --- exec / top / port / rename / pause ---


def cmd_exec(args: argparse.Namespace) -> int:
    from dockyard.errors import DockyardError
    from runner import lifecycle

    c = _store().find(args.name)
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    lifecycle.check_exec(c, command)
    if args.tty and args.interactive and not os.isatty(0):
        raise DockyardError("the input device is not a TTY")  # as docker: raw keys need a terminal to come from
    try:
        return lifecycle.exec_run(_root(), c, command, user=args.user, workdir=args.workdir, env=args.env,
                             detach=args.detach, interactive=args.interactive, privileged=args.privileged,
                             tty=args.tty)
    except DockyardError as e:
        return _run_error(e)


def cmd_top(args: argparse.Namespace) -> int:
    from runner import lifecycle

    table = lifecycle.top(_store().find(args.name), args.ps_args)
    print(table.header)
    for line in table.lines:
        print(line)
    return 0


def cmd_port(args: argparse.Namespace) -> int:
    from runner import lifecycle

    for p in lifecycle.ports(_root(), _store().find(args.name), args.private):
        print(p.host if args.private else f"{p.key} -> {p.host}")
    return 0


def cmd_rename(args: argparse.Namespace) -> int:
    from runner import lifecycle

    lifecycle.rename(_root(), _store().find(args.name).id, args.new_name)
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    from runner import lifecycle

    root = _root()
    act = lifecycle.pause if args.verb == "pause" else lifecycle.unpause
    return _each(args.names, lambda c: act(root, c.id))


# --- cp / export / commit ---


def cmd_cp(args: argparse.Namespace) -> int:
    from dockyard.errors import DockyardError
    from runner import copy

    src_c, _, src_path = args.src.partition(":") if ":" in args.src and not args.src.startswith(("/", ".", "-")) else ("", "", args.src)
    dst_c, _, dst_path = args.dest.partition(":") if ":" in args.dest and not args.dest.startswith(("/", ".", "-")) else ("", "", args.dest)
    if bool(src_c) == bool(dst_c):
        raise DockyardError("cp copies between a container and the local filesystem: one of SRC and DEST must be CONTAINER:PATH")
    store = _store()
    if src_c:
        copy.copy_out(_root(), store.find(src_c), src_path, dst_path, follow=args.follow_link)
    else:
        copy.copy_in(_root(), store.find(dst_c), src_path, dst_path, follow=args.follow_link)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from runner import copy

    c = _store().find(args.name)
    if args.output:
        from dockyard.fsutil import atomic_file

        with atomic_file(args.output) as f:
            copy.export(_root(), c, f.fileno())
    else:
        if os.isatty(1):
            from dockyard.errors import DockyardError

            raise DockyardError("refusing to write a tar archive to a terminal; use -o or redirect")
        copy.export(_root(), c, 1)
    return 0


def cmd_commit(args: argparse.Namespace) -> int:
    from runner import commit

    c = _store().find(args.name)
    image = commit.commit(_root(), c, args.repository, changes=args.change, message=args.message, author=args.author,
                          pause=args.pause)
    print(str(image.id))
    return 0


# --- stats / events ---


def cmd_stats(args: argparse.Namespace) -> int:
    import time

    from dockyard.cli.output import human_size, print_formatted, table
    from runner import stats

    store = _store()
    cs = [store.find(n) for n in args.names] if args.names else [c for c in store.all() if args.all or c.running]
    prev = {c.id: stats.sample(c.id) for c in cs}  # CPU % needs two readings, as docker takes
    time.sleep(0.5)
    while True:
        rows = []
        for c in cs:
            s = stats.sample(c.id)
            cpu = stats.cpu_percent(prev[c.id], s)
            prev[c.id] = s
            rows.append({"ID": c.id if args.no_trunc else c.short_id, "Name": c.name, "CPUPerc": f"{cpu:.2f}%",
                         "MemUsage": f"{human_size(s.memory)} / {human_size(s.memory_limit)}",
                         "MemPerc": f"{100.0 * s.memory / s.memory_limit if s.memory_limit else 0:.2f}%",
                         "PIDs": str(s.pids)})
        if args.format:
            print_formatted(args.format, rows)
        else:
            table(["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"],
                  [[r["ID"], r["Name"], r["CPUPerc"], r["MemUsage"], r["MemPerc"], r["PIDs"]] for r in rows])
        if args.no_stream:
            return 0
        sys.stdout.flush()
        time.sleep(1)


def cmd_events(args: argparse.Namespace) -> int:
    import json
    import time
    from datetime import datetime

    from dockyard.cli.output import render
    from dockyard.image import parse_time
    from runner import events

    def ns(text: str | None) -> int | None:
        t = _parse_since(text)
        return None if t is None else int(parse_time(t).timestamp() * 1e9)

    filters: dict[str, list[str]] = {}
    for f in args.filter:
        key, _, value = f.partition("=")
        filters.setdefault(key, []).append(value)
    since, until = ns(args.since), ns(args.until)
    now = time.time_ns()
    follow = until is None or until > now  # like docker: stream new events unless --until is in the past
    for ev in events.read(_root(), now if since is None else since, until, follow, filters):
        if args.format in ("json", "{{json .}}"):
            print(json.dumps(ev), flush=True)
        elif args.format:
            print(render(args.format, ev), flush=True)
        else:
            when = datetime.fromtimestamp(ev["timeNano"] / 1e9).astimezone().isoformat()
            attrs = ", ".join(f"{k}={v}" for k, v in sorted(ev["Actor"]["Attributes"].items()))
            print(f"{when} {ev['Type']} {ev['Action']} {ev['id']} ({attrs})", flush=True)
    return 0


# --- volumes ---


def _volumes():
    from runner.volumes import Volumes

    return Volumes(_root())


def _volumes_in_use() -> set[str]:
    return {m["Name"] for c in _store().all() for m in c.mounts if m["Type"] == "volume"}


def cmd_volume_create(args: argparse.Namespace) -> int:
    from dockyard.errors import DockyardError

    if args.driver != "local":
        raise DockyardError(f"volume driver {args.driver} is not supported (only local)")
    labels = dict(item.partition("=")[::2] for item in args.label)
    vol, _ = _volumes().create(args.name, labels)
    print(vol.name)
    return 0


def cmd_volume_ls(args: argparse.Namespace) -> int:
    from dockyard.cli.output import print_listing

    vols = _volumes()
    rows = [{"Driver": "local", "Name": v.name, "Mountpoint": vols.data(v.name), "Labels": v.labels} for v in vols.all()]
    print_listing(rows, ["DRIVER", "VOLUME NAME"], ["Driver", "Name"], "Name" if args.quiet else None, args.format)
    return 0


def cmd_volume_inspect(args: argparse.Namespace) -> int:
    import json

    from dockyard.cli.output import render

    vols = _volumes()
    found = [vols.inspect(n) for n in args.names]
    if args.format:
        for v in found:
            print(render(args.format, v))
    else:
        print(json.dumps(found, indent=4))
    return 0


def cmd_volume_rm(args: argparse.Namespace) -> int:
    from dockyard.errors import DockyardError

    vols, in_use, status = _volumes(), _volumes_in_use(), 0
    for name in args.names:
        try:
            vols.remove(name, in_use)
            print(name)
        except DockyardError as e:
            if not (args.force and "no such volume" in str(e)):
                print(f"Error: {e}", file=sys.stderr)
                status = 1
    return status


def cmd_volume_prune(args: argparse.Namespace) -> int:
    vols, in_use = _volumes(), _volumes_in_use()
    removed = []
    for v in vols.all():
        if v.name not in in_use and (args.all or v.anonymous):
            vols.remove(v.name, in_use)
            removed.append(v.name)
    if removed:
        print("Deleted Volumes:", *removed, sep="\n")
    return 0
