"""`compose` commands: multi-container applications from compose files (the work is in the `compose` package)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
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

    compose.set_defaults(func=lambda a: compose.print_help() or 0)


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
