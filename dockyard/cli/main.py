"""Entry point: builds the argument parser from each area's `register()` and runs the chosen command."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

# Each area's CLI module; they import only argparse-level things at the top so startup stays fast.
AREAS = ("dockyard.cli.images", "dockyard.cli.archive", "dockyard.cli.system", "dockyard.cli.registry",
         "dockyard.cli.transfer", "dockyard.cli.build", "dockyard.cli.containers", "dockyard.cli.network")
USAGE_ERROR = 125  # docker's status for a command it could not even start


class _Parser(argparse.ArgumentParser):
    """argparse with docker's exit status for usage errors."""

    def error(self, message: str) -> None:
        self.print_usage(sys.stderr)
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\nSee '{self.prog} --help'.\n")


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every area's subcommands."""
    parser = _Parser(prog="dockyard", description="Build, store, ship and run OCI images.")
    parser.add_argument("--root", help="store root (default: $DOCKYARD_ROOT or /var/lib/dockyard)")
    parser.add_argument("-v", "--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in AREAS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one dockyard command; user errors print one line and exit non-zero, never a traceback."""
    from dockyard.errors import DockyardError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.root:
        os.environ["DOCKYARD_ROOT"] = os.path.abspath(args.root)
    if args.version:
        from dockyard import __version__

        print(f"dockyard version {__version__}")
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args) or 0
    except DockyardError as e:
        print(f"Error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output closed early (e.g. piped into head): not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        print(f"Error: {e.strerror or e}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
