"""Container commands of the run path: run, create, start and attach (the hot path: only argparse at the top)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

# Statuses for our own failures around a run (docker's convention): 125 setup, 126 cannot exec, 127 not found.
RUN_ERROR = 125


def register(sub: argparse._SubParsersAction) -> None:
    """run, create, start and attach (also under `container`)."""
    # Their ~60 options each are added only to the one parsed (see main._Parser's populate).
    sub.add_parser("run", help="create and run a new container from an image", add_help=False,
                   populate=lambda p: _add_run_args(p, cmd_run))
    sub.add_parser("create", help="create a new container", add_help=False,
                   populate=lambda p: _add_run_args(p, cmd_create))
    start = sub.add_parser("start", help="start stopped containers")
    start.add_argument("-a", "--attach", action="store_true", help="attach STDOUT/STDERR")
    start.add_argument("-i", "--interactive", action="store_true", help="attach the container's STDIN")
    start.add_argument("names", nargs="+", metavar="CONTAINER")
    start.set_defaults(func=cmd_start)
    attach = sub.add_parser("attach", help="attach this terminal's STDIN (containers run with -i), STDOUT and STDERR "
                                           "to a running container")
    attach.add_argument("name", metavar="CONTAINER")
    attach.set_defaults(func=cmd_attach)


def _add_run_args(p: argparse.ArgumentParser, func: Callable[[argparse.Namespace], int]) -> None:
    """The options of run and create, and the command to call."""
    p.set_defaults(func=func)
    p.add_argument("--help", action="help", help="show this help message and exit")
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
    p.add_argument("--network", "--net", action="append", default=[],
                   help="connect a container to a network (repeatable; long form name=NET,alias=A,ip=IP); "
                        "also host, none, container:<name|id>")
    p.add_argument("--network-alias", action="append", default=[], help="add a network-scoped alias (first network)")
    p.add_argument("--ip", default="", help="IPv4 address (first network)")
    p.add_argument("--add-host", action="append", default=[], help="add a custom host-to-IP mapping (host:ip)")
    p.add_argument("--dns", action="append", default=[], help="set custom DNS servers")
    p.add_argument("--link", action="append", default=[], help="add link to another container")
    p.add_argument("-m", "--memory", default=None, help="memory limit")
    p.add_argument("--cpus", type=float, default=None, help="number of CPUs")
    p.add_argument("--pids-limit", type=int, default=None, help="tune container pids limit (-1 for unlimited)")
    p.add_argument("--restart", default="no", help="restart policy to apply when a container exits")
    p.add_argument("--init", action="store_true",
                   help="run an init inside the container that forwards signals and reaps processes")
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
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]",
                   help="the platform to pick from a multi-platform image (foreign ones run under qemu)")
    p.add_argument("--health-cmd", default=None, help="command to run to check health")
    p.add_argument("--health-interval", default=None, help="time between running the check (ms|s|m|h)")
    p.add_argument("--health-retries", type=int, default=None, help="consecutive failures needed to report unhealthy")
    p.add_argument("--health-timeout", default=None, help="maximum time to allow one check to run (ms|s|m|h)")
    p.add_argument("--no-healthcheck", action="store_true", help="disable any container-specified HEALTHCHECK")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")


def store_root() -> str:
    """The store root the commands work on ($DOCKYARD_ROOT or --root, else the default)."""
    from dockyard.roots import default_root

    return os.path.abspath(default_root())


def _store():
    from runner.containers import Containers

    return Containers(store_root())


def _options(args: argparse.Namespace):
    from runner import create

    env = []
    for path in args.env_file:
        env += create.read_env_file(path)
    env += args.env
    labels = {}
    for item in args.label:
        key, _, value = item.partition("=")
        labels[key] = value
    mounts = []
    if args.volume or args.mount or args.tmpfs:  # (only then: a run with none spares the volume code's import)
        from runner import volumes

        mounts = [volumes.parse_volume_flag(v) for v in args.volume]
        mounts += [volumes.parse_mount_flag(m) for m in args.mount]
        mounts += [volumes.parse_tmpfs_flag(t) for t in args.tmpfs]
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    first, *more = [create.parse_network_flag(n) for n in args.network] or [create.EndpointConfig("bridge")]
    healthcheck: dict[str, Any] | None = None
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
        publish_all=args.publish_all, network=first.network, ip=args.ip or first.ip,
        aliases=[*first.aliases, *args.network_alias], networks=more, add_hosts=args.add_host, dns=args.dns,
        links=args.link, memory=create.parse_bytes(args.memory) if args.memory else None, cpus=args.cpus,
        pids_limit=args.pids_limit, restart=args.restart, init=args.init, cap_add=args.cap_add,
        cap_drop=args.cap_drop, security_opt=create.load_security_opts(args.security_opt), privileged=args.privileged,
        stop_signal=args.stop_signal, stop_timeout=args.stop_timeout,
        labels=labels, runtime=args.runtime, auto_remove=args.rm, platform=args.platform, healthcheck=healthcheck)


def _run_error(e: Exception) -> int:
    """Print a failure of create/start and return docker's status for it."""
    from runner.runtime import StartError

    print(f"Error: {e}", file=sys.stderr)
    return e.exit_code if isinstance(e, StartError) else RUN_ERROR


def _create(args: argparse.Namespace):
    from runner import lifecycle

    root = store_root()
    return root, lifecycle.create(root, _options(args))


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
            lifecycle.start(root, c.id)
        except DockyardError as e:
            return _run_error(e)
        print(c.id)
        return 0
    from runner.forking import batched_detached

    with batched_detached():  # what is left to clean up after the exit (veths, files) goes in one child
        try:
            code = monitor.run_foreground(root, c, args.interactive, args.tty)
        except DockyardError as e:
            code = _run_error(e)
        if args.rm:  # the exit code is ours to report now: the container's files go after we have exited
            lifecycle.destroy(root, c.id, later=True)
    return code


def cmd_start(args: argparse.Namespace) -> int:
    from dockyard.errors import DockyardError
    from runner import lifecycle

    root, store = store_root(), _store()
    status = 0
    attached = args.attach or args.interactive
    for name in args.names:
        try:
            c = store.find(name)
            if c.running:
                if not attached:
                    print(name)
                continue
            if attached:
                return lifecycle.start_attached(root, c.id, args.interactive)
            lifecycle.start(root, c.id)
        except DockyardError as e:
            status = _run_error(e) if attached else (print(f"Error: {e}", file=sys.stderr) or 1)
            continue
        print(name)
    return status


def cmd_attach(args: argparse.Namespace) -> int:
    from dockyard.errors import DockyardError
    from runner import attach

    root, store = store_root(), _store()
    c = store.find(args.name)
    if not c.running:
        raise DockyardError("You cannot attach to a stopped container, start it first")
    sock = attach.connect(store.path(c.id)) if c.config.get("OpenStdin") else None
    if sock is None:  # no stdin to give: the output is the log's
        from runner import logs

        for entry in logs.follow_from(root, c.id, logs.size(root, c.id)):
            logs.write_entry(entry)
    else:
        attach.relay(sock, bool(c.config.get("Tty")), stdin=True, stdin_once=False)
    return store.load(c.id).exit_code
