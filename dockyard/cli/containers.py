"""Container commands besides the run path (cli.run): stop, kill, rm, ps, logs, exec, cp, commit… and `container`."""

from __future__ import annotations

import argparse
import os
import sys

from dockyard.cli.run import _run_error, store_root


def register(sub: argparse._SubParsersAction) -> None:
    """The top-level container commands, the `container` group, and the container part of `inspect` and `info`."""
    from dockyard.cli import images, run, system

    images.INSPECTORS.append(("container", _container_inspector))
    system.INFO_SECTIONS.append(_info)
    _commands(sub, top=True)

    def group_commands(group: argparse.ArgumentParser) -> None:
        gsub = group.add_subparsers(dest="container_command", metavar="COMMAND")
        run.register(gsub)
        _commands(gsub, top=False)

        def usage(_: argparse.Namespace) -> int:
            group.print_help()
            return 0

        group.set_defaults(func=usage)

    sub.add_parser("container", help="manage containers", populate=group_commands)  # built when named


def _commands(sub: argparse._SubParsersAction, top: bool) -> None:
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


def _client():
    from dockyard.api import Client

    return Client(store_root())


def _store():
    from runner.containers import Containers

    return Containers(store_root())


def _each(names: list[str], action, echo: bool = True) -> int:
    """Apply `action(container)` (an API Container) to each name (echoing it), reporting failures like docker and
    going on."""
    from dockyard.errors import DockyardError

    containers = _client().containers
    status = 0
    for name in names:
        try:
            action(containers.get(name))
            if echo:
                print(name)
        except DockyardError as e:
            print(f"Error: {e}", file=sys.stderr)
            status = 1
    return status


def cmd_stop(args: argparse.Namespace) -> int:
    return _each(args.names, lambda c: c.stop(args.time, signal=args.signal))


def cmd_restart(args: argparse.Namespace) -> int:
    return _each(args.names, lambda c: c.restart(args.time))


def cmd_kill(args: argparse.Namespace) -> int:
    from runner.lifecycle import parse_signal

    parse_signal(args.signal)  # a bad signal is one error, not one per container
    return _each(args.names, lambda c: c.kill(args.signal))


def cmd_rm(args: argparse.Namespace) -> int:
    return _each(args.names, lambda c: c.remove(force=args.force, v=args.volumes))


def cmd_wait(args: argparse.Namespace) -> int:
    return _each(args.names, lambda c: print(c.wait()["StatusCode"]), echo=False)


def cmd_prune(args: argparse.Namespace) -> int:
    removed = _client().containers.prune()["ContainersDeleted"]
    if removed:
        print("Deleted Containers:", *removed, sep="\n")
    return 0


# --- ps / inspect ---


def _command_text(c) -> str:
    return " ".join([*(c.config.get("Entrypoint") or []), *(c.config.get("Cmd") or [])])


def _status_text(c) -> str:
    from dockyard.cli.output import status_text

    return status_text({"Status": c.status, "ExitCode": c.exit_code, "StartedAt": c.started_at,
                        "FinishedAt": c.finished_at, "Health": c.health})


def _ports_text(root: str, c) -> str:
    from runner import listing

    return ", ".join(f"{p.host}->{p.key}" for p in listing.ports(root, c))


def cmd_ps(args: argparse.Namespace) -> int:
    from dockyard.cli.output import ago, print_formatted, table
    from dockyard.times import parse_time
    from runner import listing

    root = store_root()
    cs = listing.list_containers(root, args.all, listing.parse_filters(args.filter), 1 if args.latest else args.last)
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
                     "State": c.status, "Ports": _ports_text(root, c), "Names": c.name,
                     "Labels": ",".join(f"{k}={v}" for k, v in (c.config.get("Labels") or {}).items()),
                     "Mounts": ",".join(m.get("Name") or m["Source"] for m in c.mounts)})
    if args.format:
        print_formatted(args.format, rows)
        return 0
    table(["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"],
          [[r["ID"], r["Image"], r["Command"], r["RunningFor"], r["Status"], r["Ports"], r["Names"]] for r in rows])
    return 0


def _inspect(c) -> dict:
    from runner import listing

    return listing.inspect(store_root(), c)


def _container_inspector(name: str) -> dict | None:
    from dockyard.errors import NotFound

    try:
        return _inspect(_store().find(name))
    except NotFound:
        return None


def cmd_inspect(args: argparse.Namespace) -> int:
    from dockyard.cli.output import print_inspected
    from dockyard.errors import NotFound

    store = _store()
    found, status = [], 0
    for name in args.names:
        try:
            found.append(_inspect(store.find(name)))
        except NotFound as e:
            print(f"Error: {e}", file=sys.stderr)
            status = 1
    print_inspected(args.format, found)
    return status


# --- logs ---


def cmd_logs(args: argparse.Namespace) -> int:
    from dockyard.errors import DockyardError
    from runner import logs

    c = _store().find(args.name)
    if args.tail != "all" and not args.tail.isdigit():
        raise DockyardError(f"invalid --tail {args.tail!r}: want a number or 'all'")
    tail = None if args.tail == "all" else int(args.tail)
    for entry in logs.read(store_root(), c.id, tail, logs.timestamp(args.since), logs.timestamp(args.until),
                           args.follow):
        logs.write_entry(entry, args.timestamps)
    return 0


# --- exec / top / port / rename / pause ---


def cmd_exec(args: argparse.Namespace) -> int:
    from dockyard.errors import DockyardError
    from runner import lifecycle

    c = _store().find(args.name)
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    lifecycle.check_exec(c, command, args.tty and args.interactive)
    try:
        return lifecycle.exec_run(store_root(), c, command, user=args.user, workdir=args.workdir, env=args.env,
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
    from runner import listing

    for p in listing.ports(store_root(), _store().find(args.name), args.private):
        print(p.host if args.private else f"{p.key} -> {p.host}")
    return 0


def cmd_rename(args: argparse.Namespace) -> int:
    _client().containers.get(args.name).rename(args.new_name)
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    return _each(args.names, lambda c: c.pause() if args.verb == "pause" else c.unpause())


# --- cp / export / commit ---


def cmd_cp(args: argparse.Namespace) -> int:
    from dockyard.errors import DockyardError
    from runner import copy

    src_c, _, src_path = (args.src.partition(":") if ":" in args.src and not args.src.startswith(("/", ".", "-"))
                          else ("", "", args.src))
    dst_c, _, dst_path = (args.dest.partition(":") if ":" in args.dest and not args.dest.startswith(("/", ".", "-"))
                          else ("", "", args.dest))
    if bool(src_c) == bool(dst_c):
        raise DockyardError("cp copies between a container and the local filesystem: "
                            "one of SRC and DEST must be CONTAINER:PATH")
    store = _store()
    if src_c:
        copy.copy_out(store_root(), store.find(src_c), src_path, dst_path, follow=args.follow_link)
    else:
        copy.copy_in(store_root(), store.find(dst_c), src_path, dst_path, follow=args.follow_link)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from runner import copy

    c = _store().find(args.name)
    if args.output:
        from dockyard.fsutil import atomic_file

        with atomic_file(args.output) as f:
            copy.export(store_root(), c, f.fileno())
    else:
        if os.isatty(1):
            from dockyard.errors import DockyardError

            raise DockyardError("refusing to write a tar archive to a terminal; use -o or redirect")
        copy.export(store_root(), c, 1)
    return 0


def cmd_commit(args: argparse.Namespace) -> int:
    from runner import commit

    c = _store().find(args.name)
    image = commit.commit(store_root(), c, args.repository, changes=args.change, message=args.message,
                          author=args.author, pause=args.pause)
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
    from runner import events
    from runner.logs import moment

    def ns(text: str | None) -> int | None:
        at = moment(text)
        return None if at is None else int(at.timestamp() * 1e9)

    filters: dict[str, list[str]] = {}
    for f in args.filter:
        key, _, value = f.partition("=")
        filters.setdefault(key, []).append(value)
    since, until = ns(args.since), ns(args.until)
    now = time.time_ns()
    follow = until is None or until > now  # like docker: stream new events unless --until is in the past
    for ev in events.read(store_root(), now if since is None else since, until, follow, filters):
        if args.format in ("json", "{{json .}}"):
            print(json.dumps(ev), flush=True)
        elif args.format:
            print(render(args.format, ev), flush=True)
        else:
            when = datetime.fromtimestamp(ev["timeNano"] / 1e9).astimezone().isoformat()
            attrs = ", ".join(f"{k}={v}" for k, v in sorted(ev["Actor"]["Attributes"].items()))
            print(f"{when} {ev['Type']} {ev['Action']} {ev['id']} ({attrs})", flush=True)
    return 0


