"""`compose` commands: multi-container applications from compose files (the work is in the `compose` package)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from compose.engine import Compose
    from compose.model import Project


def register(sub: argparse._SubParsersAction) -> None:
    compose = sub.add_parser("compose", help="run multi-container applications from compose files")
    compose.add_argument("-f", "--file", dest="files", action="append", default=[],
                         help="compose file (repeatable; default: compose.yaml, compose.yml, docker-compose.yml)")
    compose.add_argument("-p", "--project-name", help="project name (default: name:, $COMPOSE_PROJECT_NAME, dir)")
    compose.add_argument("--project-directory", help="project directory (default: the first file's directory)")
    compose.add_argument("--env-file", dest="env_files", action="append", default=[],
                         help="variables file for interpolation (repeatable; default: .env in the project dir)")
    compose.add_argument("--profile", dest="profiles", action="append", default=[], help="enable a profile")
    csub = compose.add_subparsers(dest="compose_command", metavar="COMMAND")

    config = csub.add_parser("config", aliases=["convert"], help="print the resolved compose model")
    config.add_argument("--services", action="store_true", help="print the service names, one per line")
    config.add_argument("--volumes", action="store_true", help="print the volume names, one per line")
    config.add_argument("--networks", action="store_true", help="print the network names, one per line")
    config.add_argument("--profiles", dest="list_profiles", action="store_true", help="print the profile names")
    config.add_argument("--images", action="store_true", help="print the image names, one per line")
    config.add_argument("--format", choices=("yaml", "json"), default="yaml")
    config.add_argument("-q", "--quiet", action="store_true", help="only validate the files")
    config.add_argument("-o", "--output", help="write the model to this file")
    config.add_argument("selected", nargs="*", metavar="SERVICE", help="only these services (and their dependencies)")
    config.set_defaults(func=cmd_config)

    _register_lifecycle(csub)
    compose.set_defaults(func=lambda a: compose.print_help() or 0)


def _services(p: argparse.ArgumentParser) -> None:
    p.add_argument("services", nargs="*", metavar="SERVICE")


def _timeout(p: argparse.ArgumentParser) -> None:
    p.add_argument("-t", "--timeout", type=int, help="seconds to wait for a container to stop before killing it")


def _register_lifecycle(csub: argparse._SubParsersAction) -> None:
    """Every command but `config`."""
    for name, help_text in (("up", "create and start containers"), ("create", "create containers")):
        p = csub.add_parser(name, help=help_text)
        if name == "up":
            p.add_argument("-d", "--detach", action="store_true", help="run in the background")
            p.add_argument("--wait", action="store_true", help="wait for services to be running|healthy")
            p.add_argument("--wait-timeout", type=int, help="seconds to wait for --wait")
            p.add_argument("--abort-on-container-exit", action="store_true",
                           help="stop all containers if any container stops")
            p.add_argument("--exit-code-from", metavar="SERVICE",
                           help="return this service's exit code (implies --abort-on-container-exit)")
            p.add_argument("--no-log-prefix", action="store_true", help="don't prefix the log lines")
            p.add_argument("--no-color", action="store_true", help="monochrome output")
            _timeout(p)
        p.add_argument("--build", action="store_true", help="build images before starting containers")
        p.add_argument("--no-build", action="store_true", help="don't build an image, even if it is missing")
        p.add_argument("--force-recreate", action="store_true", help="recreate containers even if unchanged")
        p.add_argument("--no-recreate", action="store_true", help="don't recreate existing containers")
        p.add_argument("--no-deps", action="store_true", help="don't start linked services")
        p.add_argument("--scale", action="append", default=[], metavar="SERVICE=NUM", help="scale a service")
        p.add_argument("--remove-orphans", action="store_true", help="remove containers of undefined services")
        _services(p)
        p.set_defaults(func=cmd_up, creating=name == "create")

    p = csub.add_parser("down", help="stop and remove containers and networks")
    p.add_argument("-v", "--volumes", action="store_true", help="remove named and anonymous volumes")
    p.add_argument("--rmi", choices=("local", "all"), help="remove images used by services")
    p.add_argument("--remove-orphans", action="store_true", help="remove containers of undefined services")
    _timeout(p)
    p.set_defaults(func=cmd_down)

    p = csub.add_parser("ps", help="list containers")
    p.add_argument("-a", "--all", action="store_true", help="show stopped containers too")
    p.add_argument("-q", "--quiet", action="store_true", help="only display IDs")
    p.add_argument("--services", dest="list_services", action="store_true", help="display services")
    p.add_argument("--format", default="table", help="table, json or a Go template")
    _services(p)
    p.set_defaults(func=cmd_ps)

    p = csub.add_parser("logs", help="view output from containers")
    p.add_argument("-f", "--follow", action="store_true", help="follow log output")
    p.add_argument("-n", "--tail", default="all", help="lines to show from the end of each log")
    p.add_argument("-t", "--timestamps", action="store_true", help="show timestamps")
    p.add_argument("--no-color", action="store_true", help="monochrome output")
    p.add_argument("--no-log-prefix", action="store_true", help="don't prefix the log lines")
    _services(p)
    p.set_defaults(func=cmd_logs)

    p = csub.add_parser("build", help="build or rebuild services")
    p.add_argument("--no-cache", action="store_true", help="do not use the cache")
    p.add_argument("--pull", action="store_true", help="always pull newer base images")
    _services(p)
    p.set_defaults(func=cmd_build)

    p = csub.add_parser("pull", help="pull service images")
    p.add_argument("--ignore-pull-failures", action="store_true", help="pull what it can, warn about the rest")
    _services(p)
    p.set_defaults(func=cmd_pull)
    p = csub.add_parser("push", help="push service images")
    _services(p)
    p.set_defaults(func=cmd_push)

    p = csub.add_parser("exec", help="execute a command in a running container")
    p.add_argument("-d", "--detach", action="store_true", help="run the command in the background")
    p.add_argument("-T", "--no-TTY", dest="no_tty", action="store_true", help="disable pseudo-TTY allocation")
    p.add_argument("-e", "--env", action="append", default=[], help="set an environment variable")
    p.add_argument("-u", "--user", help="run as this user")
    p.add_argument("-w", "--workdir", help="working directory")
    p.add_argument("--privileged", action="store_true", help="extended privileges")
    p.add_argument("--index", type=int, default=1, help="index of the container (default 1)")
    p.add_argument("service", metavar="SERVICE")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")
    p.set_defaults(func=cmd_exec)

    p = csub.add_parser("run", help="run a one-off command on a service")
    p.add_argument("--rm", dest="remove", action="store_true", help="remove the container when it exits")
    p.add_argument("-d", "--detach", action="store_true", help="run in the background, print the name")
    p.add_argument("-e", "--env", action="append", default=[], help="set an environment variable")
    p.add_argument("-T", "--no-TTY", dest="no_tty", action="store_true", help="disable pseudo-TTY allocation")
    p.add_argument("-i", "--interactive", action="store_true", default=True, help="keep STDIN open (default)")
    p.add_argument("--name", help="the container's name")
    p.add_argument("--no-deps", action="store_true", help="don't start linked services")
    p.add_argument("--entrypoint", help="override the image's entrypoint")
    p.add_argument("-u", "--user", help="run as this user")
    p.add_argument("-w", "--workdir", help="working directory")
    p.add_argument("-p", "--publish", action="append", default=[], help="publish a port")
    p.add_argument("--service-ports", action="store_true", help="publish the service's ports")
    p.add_argument("--build", action="store_true", help="build the image first")
    p.add_argument("service", metavar="SERVICE")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")
    p.set_defaults(func=cmd_run)

    for verb, help_text in (("start", "start services"), ("stop", "stop services"),
                            ("restart", "restart services"), ("pause", "pause services"),
                            ("unpause", "unpause services")):
        p = csub.add_parser(verb, help=help_text)
        if verb in ("stop", "restart"):
            _timeout(p)
        _services(p)
        p.set_defaults(func=cmd_act, verb=verb)
    p = csub.add_parser("kill", help="force stop service containers")
    p.add_argument("-s", "--signal", default="SIGKILL", help="signal to send (default SIGKILL)")
    _services(p)
    p.set_defaults(func=cmd_act, verb="kill")

    p = csub.add_parser("rm", help="remove stopped service containers")
    p.add_argument("-f", "--force", action="store_true", help="don't ask to confirm removal")
    p.add_argument("-s", "--stop", action="store_true", help="stop the containers first")
    p.add_argument("-v", "--volumes", action="store_true", help="remove their anonymous volumes")
    _services(p)
    p.set_defaults(func=cmd_rm)

    p = csub.add_parser("top", help="display the running processes")
    _services(p)
    p.set_defaults(func=cmd_top)
    p = csub.add_parser("images", help="list images used by the created containers")
    p.add_argument("-q", "--quiet", action="store_true", help="only display IDs")
    p.add_argument("--format", default="table", choices=("table", "json"))
    _services(p)
    p.set_defaults(func=cmd_images)
    p = csub.add_parser("port", help="print the public port for a port binding")
    p.add_argument("--protocol", default="tcp", choices=("tcp", "udp"))
    p.add_argument("--index", type=int, default=1, help="index of the container (default 1)")
    p.add_argument("service", metavar="SERVICE")
    p.add_argument("private_port", metavar="PRIVATE_PORT", type=int)
    p.set_defaults(func=cmd_port)
    p = csub.add_parser("ls", help="list running compose projects")
    p.add_argument("-a", "--all", action="store_true", help="show stopped projects too")
    p.add_argument("-q", "--quiet", action="store_true", help="only display names")
    p.add_argument("--format", default="table", choices=("table", "json"))
    p.set_defaults(func=cmd_ls)
    p = csub.add_parser("version", help="show the compose version")
    p.add_argument("--short", action="store_true", help="only the version number")
    p.add_argument("--format", default="pretty", choices=("pretty", "json"))
    p.set_defaults(func=cmd_version)


def load_project(args: argparse.Namespace, services: list[str] | None = None) -> Project:
    """The project the global options name; `services` named on the command line are enabled whatever their
    profiles."""
    from compose.loader import load
    from compose.model import ProjectOptions

    return load(ProjectOptions(files=args.files, project_name=args.project_name,
                               project_directory=args.project_directory, env_files=args.env_files,
                               profiles=args.profiles, services=services or []))


def cmd_config(args: argparse.Namespace) -> int:
    from compose import render

    project = load_project(args, args.selected)
    if args.selected:
        project = project.selected(args.selected)
    listing = {"services": args.services, "volumes": args.volumes, "networks": args.networks,
               "profiles": args.list_profiles, "images": args.images}
    wanted = [what for what, on in listing.items() if on]
    if wanted:
        for line in render.names(project, wanted[0]):
            print(line)
        return 0
    if args.quiet:
        return 0
    text = render.config_text(project, args.format)
    if args.output:
        from dockyard.fsutil import atomic_write

        atomic_write(args.output, text.encode())
    else:
        sys.stdout.write(text)
    return 0


def _compose(args: argparse.Namespace) -> Compose:
    """The engine over the project the global options name, reporting progress on stderr."""
    from compose.engine import Compose
    from dockyard.api import Client

    named = getattr(args, "services", None) or ([args.service] if getattr(args, "service", None) else [])
    return Compose(Client(), load_project(args, named), say=_say)


def _say(kind: str, name: str, status: str) -> None:
    if kind == "Warning":
        print(f"WARN[0000] {status}", file=sys.stderr)
    else:
        print(f" {kind} {name}  {status}", file=sys.stderr)


def _scale(items: list[str]) -> dict[str, int]:
    from compose.errors import ComposeError

    out = {}
    for item in items:
        name, _, num = item.partition("=")
        if not num.isdigit():
            raise ComposeError(f"invalid --scale {item!r}: want SERVICE=NUM")
        out[name] = int(num)
    return out


def _printer(args: argparse.Namespace, project: str):
    from compose.logs import Printer

    return Printer(sys.stdout, project, color=sys.stdout.isatty() and not args.no_color,
                   prefix=not args.no_log_prefix)


def cmd_up(args: argparse.Namespace) -> int:
    from compose import attach
    from compose.engine import UpOptions
    from compose.errors import ComposeError

    if args.build and args.no_build:
        raise ComposeError("--build and --no-build are incompatible")
    if args.force_recreate and args.no_recreate:
        raise ComposeError("--force-recreate and --no-recreate are incompatible")
    detach = args.creating or args.detach
    if not args.creating and detach and (args.abort_on_container_exit or args.exit_code_from):
        raise ComposeError("--abort-on-container-exit and --exit-code-from are incompatible with --detach")
    compose = _compose(args)
    _checked(compose, args.services)
    opts = UpOptions(services=args.services, build="always" if args.build else "never" if args.no_build else "auto",
                     force_recreate=args.force_recreate, no_recreate=args.no_recreate, no_deps=args.no_deps,
                     scale=_scale(args.scale), start=not args.creating, remove_orphans=args.remove_orphans,
                     wait=not args.creating and args.wait, wait_timeout=getattr(args, "wait_timeout", None),
                     timeout=getattr(args, "timeout", None))
    containers = compose.up(opts)
    if detach or args.wait:
        return 0
    return attach.run(compose, containers, _printer(args, compose.project.name), args.abort_on_container_exit,
                      args.exit_code_from, args.timeout)


def cmd_down(args: argparse.Namespace) -> int:
    _compose(args).down(args.remove_orphans, args.volumes, args.rmi, args.timeout)
    return 0


def _command(attrs: dict) -> str:
    return " ".join([*(attrs["Config"].get("Entrypoint") or []), *(attrs["Config"].get("Cmd") or [])])


def _publishers(attrs: dict) -> list[dict]:
    out = []
    for key, bindings in sorted((attrs["NetworkSettings"].get("Ports") or {}).items()):
        port, _, proto = key.partition("/")
        for b in bindings or []:
            out.append({"URL": b.get("HostIp") or "0.0.0.0", "TargetPort": int(port),
                        "PublishedPort": int(b.get("HostPort") or 0), "Protocol": proto})
    return out


def _ps_row(c, project: str) -> dict:
    """One container as `docker compose ps --format json` prints it."""
    from compose import labels
    from dockyard.cli.output import ago, status_text
    from dockyard.image import parse_time

    attrs, state = c.attrs, c.attrs["State"]
    created = parse_time(attrs.get("Created") or "")
    ports = ", ".join(f"{p['URL']}:{p['PublishedPort']}->{p['TargetPort']}/{p['Protocol']}"
                      for p in _publishers(attrs))
    return {"ID": c.id, "Name": c.name, "Names": c.name, "Image": attrs["Config"].get("Image", ""),
            "Command": _command(attrs), "Project": project, "Service": c.labels.get(labels.SERVICE, ""),
            "Created": int(created.timestamp()) if created else 0, "State": state["Status"],
            "Status": status_text(state), "Health": (state.get("Health") or {}).get("Status", ""),
            "ExitCode": state["ExitCode"] or 0, "Publishers": _publishers(attrs),
            "Labels": ",".join(f"{k}={v}" for k, v in sorted(c.labels.items())),
            "LocalVolumes": str(sum(1 for m in attrs.get("Mounts") or [] if m.get("Type") == "volume")),
            "Mounts": ",".join(m.get("Name") or m.get("Source", "") for m in attrs.get("Mounts") or []),
            "Networks": ",".join(attrs["NetworkSettings"].get("Networks") or {}),
            "Ports": ports, "RunningFor": ago(created), "Size": "0B"}


def cmd_ps(args: argparse.Namespace) -> int:
    from dockyard.cli.output import print_formatted, table

    compose = _compose(args)
    _checked(compose, args.services)
    found = compose.containers(args.services or None, stopped=args.all, oneoff=None if args.all else False)
    if args.list_services:
        for name in dict.fromkeys(c.labels.get("com.docker.compose.service", "") for c in found):
            print(name)
        return 0
    if args.quiet:
        for c in found:
            print(c.id)
        return 0
    rows = [_ps_row(c, compose.project.name) for c in found]
    if args.format != "table":
        print_formatted(args.format, rows)
        return 0
    table(["NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS"],
          [[r["Name"], r["Image"], '"' + (r["Command"][:19] + "…" if len(r["Command"]) > 20 else r["Command"]) + '"',
            r["Service"], r["RunningFor"], r["Status"], r["Ports"]] for r in rows])
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from compose import logs

    compose = _compose(args)
    _checked(compose, args.services)
    found = compose.containers(args.services or None, oneoff=None)
    logs.show(found, _printer(args, compose.project.name), args.follow, args.tail, args.timestamps)
    return 0


def _checked(compose: Compose, names: list[str]) -> list[str]:
    """The services named on the command line, each one the project's (ComposeError naming the first that is not)."""
    for name in names:
        compose.project.service(name)
    return names


def _chosen(compose: Compose, names: list[str]) -> list[str]:
    """The named services (checked), else every enabled one."""
    return _checked(compose, names) or list(compose.project.services)


def cmd_build(args: argparse.Namespace) -> int:
    from compose import images

    compose = _compose(args)
    images.build(compose, _chosen(compose, args.services), args.no_cache, args.pull)
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    from compose import images

    compose = _compose(args)
    images.pull(compose, _chosen(compose, args.services), args.ignore_pull_failures)
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from compose import images

    compose = _compose(args)
    images.push(compose, _chosen(compose, args.services))
    return 0


def _env(items: list[str]) -> dict[str, str]:
    import os

    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if eq or key in os.environ:
            out[key] = value if eq else os.environ[key]
    return out


def cmd_exec(args: argparse.Namespace) -> int:
    from compose.errors import ComposeError

    if not args.command:
        raise ComposeError("exec needs a command")
    c = _compose(args).container(args.service, args.index)
    return c.exec_attached(args.command, tty=not args.no_tty and sys.stdin.isatty(), interactive=not args.detach,
                           user=args.user or "", environment=_env(args.env), workdir=args.workdir,
                           privileged=args.privileged, detach=args.detach)


def cmd_run(args: argparse.Namespace) -> int:
    from compose import oneoff

    compose = _compose(args)
    opts = oneoff.RunOptions(
        service=args.service, command=args.command, name=args.name, entrypoint=args.entrypoint,
        environment=args.env, user=args.user, workdir=args.workdir, publish=args.publish,
        service_ports=args.service_ports, no_deps=args.no_deps, tty=not args.no_tty and sys.stdin.isatty(),
        interactive=not args.detach, remove=args.remove, detach=args.detach, build="always" if args.build else "auto")
    c, code = oneoff.run(compose, opts)
    if args.detach:
        print(c.name)
    return code


def cmd_act(args: argparse.Namespace) -> int:
    compose = _compose(args)
    kwargs = {}
    if getattr(args, "timeout", None) is not None:
        kwargs["timeout"] = args.timeout
    if args.verb == "kill":
        kwargs["signal"] = args.signal
    compose.act(args.verb, args.services, **kwargs)
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    compose = _compose(args)
    _checked(compose, args.services)
    if not compose.remove(args.services, args.stop, args.volumes):
        print("No stopped containers", file=sys.stderr)
    return 0


def cmd_top(args: argparse.Namespace) -> int:
    from dockyard.cli.output import table

    compose = _compose(args)
    _checked(compose, args.services)
    for c in compose.containers(args.services or None, stopped=False):
        top = c.top()
        print(c.name)
        table(top["Titles"], top["Processes"])
        print()
    return 0


def cmd_images(args: argparse.Namespace) -> int:
    import json

    from dockyard.cli.output import human_size, table

    compose = _compose(args)
    _checked(compose, args.services)
    rows = []
    for c in compose.containers(args.services or None, oneoff=None):
        image = compose.client.images.get(c.attrs["Image"])
        repo, _, tag = (c.attrs["Config"].get("Image") or "").rpartition(":")
        if "/" in tag or not repo:
            repo, tag = c.attrs["Config"].get("Image") or "", "latest"
        rows.append({"ContainerName": c.name, "Repository": repo, "Tag": tag, "ID": image.id,
                     "Size": image.attrs["Size"]})
    if args.quiet:
        for image_id in dict.fromkeys(r["ID"] for r in rows):
            print(image_id)
    elif args.format == "json":
        print(json.dumps(rows))
    else:
        table(["CONTAINER", "REPOSITORY", "TAG", "IMAGE ID", "SIZE"],
              [[r["ContainerName"], r["Repository"], r["Tag"], r["ID"].removeprefix("sha256:")[:12],
                human_size(r["Size"])] for r in rows])
    return 0


def cmd_port(args: argparse.Namespace) -> int:
    from compose.errors import ComposeError

    c = _compose(args).container(args.service, args.index)
    bindings = c.attrs["NetworkSettings"]["Ports"].get(f"{args.private_port}/{args.protocol}") or []
    if not bindings:
        raise ComposeError(f"no port {args.private_port}/{args.protocol} for container {c.name}")
    print(f"{bindings[0]['HostIp'] or '0.0.0.0'}:{bindings[0]['HostPort']}")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    import json

    from compose.listing import projects
    from dockyard.api import Client
    from dockyard.cli.output import table

    found = projects(Client(), args.all)
    if args.quiet:
        for p in found:
            print(p.name)
    elif args.format == "json":
        print(json.dumps([p.as_json() for p in found]))
    else:
        table(["NAME", "STATUS", "CONFIG FILES"], [[p.name, p.status, p.config_files] for p in found])
    return 0


def cmd_version(args: argparse.Namespace) -> int:
    import json

    from compose.labels import COMPOSE_VERSION

    if args.short:
        print(COMPOSE_VERSION)
    elif args.format == "json":
        print(json.dumps({"version": f"v{COMPOSE_VERSION}"}))
    else:
        print(f"Dockyard Compose version v{COMPOSE_VERSION}")
    return 0
