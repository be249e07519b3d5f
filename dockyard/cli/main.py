"""Entry point: builds the argument parser from each area's `register()` and runs the chosen command."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from typing import Any, ClassVar, NoReturn

# Each area's CLI module, in the order `--help` lists them; they import only argparse-level things at the top so
# startup stays fast.
AREAS = ("dockyard.cli.images", "dockyard.cli.archive", "dockyard.cli.system", "dockyard.cli.registry",
         "dockyard.cli.transfer", "dockyard.cli.build", "dockyard.cli.run", "dockyard.cli.containers",
         "dockyard.cli.volumes", "dockyard.cli.network", "dockyard.cli.compose")
_IMAGES, _ARCHIVE, _SYSTEM, _REGISTRY, _TRANSFER, _BUILD, _RUN, _CONTAINERS, _VOLUMES, _NETWORK, _COMPOSE = AREAS
# Which modules a command word needs registered: its own first, then those that add to it at register time
# (container inspectors to `inspect`, sections to `info`).
COMMANDS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("images", "image", "tag", "rmi", "history"), (_IMAGES,)),
    "inspect": (_IMAGES, _CONTAINERS),
    **dict.fromkeys(("import", "save", "load"), (_ARCHIVE,)),
    "version": (_SYSTEM,),
    **dict.fromkeys(("info", "system"), (_SYSTEM, _CONTAINERS, _TRANSFER)),
    "registry": (_REGISTRY,),
    **dict.fromkeys(("push", "pull", "login", "logout", "search"), (_TRANSFER,)),
    **dict.fromkeys(("build", "builder"), (_BUILD,)),
    **dict.fromkeys(("run", "create", "start", "attach"), (_RUN,)),
    **dict.fromkeys(("stop", "restart", "kill", "rm", "ps", "logs", "wait", "exec", "top", "port", "rename", "pause",
                     "unpause", "cp", "export", "commit", "stats", "events", "container"), (_CONTAINERS,)),
    "volume": (_VOLUMES,),
    "network": (_NETWORK,),
    "compose": (_COMPOSE,),
}
USAGE_ERROR = 125  # docker's status for a command it could not even start
# Commands that leave nothing to finalize: run as the program, they end it at once instead of returning, which
# skips the interpreter's teardown of every module (~7 ms, a tenth of a `run --rm`; build: its every cleanup, the
# fork server's end included, is done before it returns).
QUICK_EXIT = ("run", "build")


def _terminal_columns() -> int:
    """The width shutil.get_terminal_size() reports ($COLUMNS, else stdout's terminal, else 80), without importing
    shutil: it loads the compressors, a cost on every command."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    out = sys.__stdout__
    try:
        return (os.get_terminal_size(out.fileno()).columns if out else 0) or 80
    except (ValueError, OSError):  # not a terminal, or closed
        return 80


class _Formatter(argparse.HelpFormatter):
    """argparse's help formatter, measuring the terminal once: argparse makes one for every argument it adds."""

    # Not `_width`: HelpFormatter's own instance attribute of that name would shadow it.
    _terminal_width: ClassVar[int | None] = None

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width: int | None = None):
        if width is None:
            if _Formatter._terminal_width is None:
                _Formatter._terminal_width = _terminal_columns() - 2  # as HelpFormatter computes it
            width = _Formatter._terminal_width
        super().__init__(prog, indent_increment, max_help_position, width)


class _Parser(argparse.ArgumentParser):
    """argparse with docker's exit status for usage errors (and one terminal measurement for all its help).

    `populate` (a function adding the parser's arguments and subcommands) defers that work to when the parser is
    used: a command group (`container …`) costs nothing on the command lines that do not name it.
    """

    def __init__(self, *args: Any, populate: Callable[[argparse.ArgumentParser], None] | None = None, **kwargs: Any):
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)
        self._populate = populate

    def parse_known_args(self, *args: Any, **kwargs: Any) -> Any:
        if self._populate:
            populate, self._populate = self._populate, None
            populate(self)
        return super().parse_known_args(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\nSee '{self.prog} --help'.\n")


def _command_word(argv: list[str]) -> str | None:
    """The subcommand named on a command line (the first word that is not a global option or its value)."""
    words = iter(argv)
    for word in words:
        if word == "--root":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def _skip_untranslated_gettext() -> None:
    """argparse passes every help and usage string through gettext, which searches the locale directories anew for
    each (~350 searches, a third of building the parser); when there is no catalog to find, it never translates."""
    languages = next((v for v in map(os.environ.get, ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")) if v), "C")
    if not all(lang in ("C", "POSIX") or lang.startswith("C.") for lang in languages.split(":")):
        import gettext  # (only then: the C locale has no catalogs, and gettext.find would import locale)

        if gettext.find(gettext.textdomain()):
            return
    argparse._ = str  # type: ignore[attr-defined]  # the identity on strings: what gettext returns here


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with the subcommands of the modules `command` needs (COMMANDS), or of every area when it is
    None or unknown."""
    _skip_untranslated_gettext()
    parser = _Parser(prog="dockyard", description="Build, store, ship and run OCI images.")
    parser.add_argument("--root", help="store root (default: $DOCKYARD_ROOT or /var/lib/dockyard)")
    parser.add_argument("-v", "--version", action="store_true", help="print the version and exit")
    parser.add_argument("-D", "--debug", action="store_true", help="show the traceback of an unexpected error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS.get(command, AREAS) if command else AREAS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None, admit: Callable[[str | None, argparse.Namespace], None] | None = None) -> int:
    """Run one dockyard command; user errors print one line and exit non-zero, never a traceback. `admit` (the
    resident server's) sees the command word and the parsed command line before any work, and may end the
    process."""
    code = _dispatch(argv, admit)
    if argv is None and _command_word(sys.argv[1:]) in QUICK_EXIT:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except OSError:  # e.g. a closed pipe: nothing more can reach it anyway
                pass
        os._exit(code & 0xFF)
    return code


def _dispatch(argv: list[str] | None, admit: Callable[[str | None, argparse.Namespace], None] | None) -> int:
    """Parse the command line and run the command's func, turning user errors into one line and a status."""
    from dockyard.errors import DockyardError

    command = _command_word(sys.argv[1:] if argv is None else argv)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if admit:
        admit(command, args)
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
    except Exception as e:  # a bug, not a user error: still one line, the traceback on request
        if args.debug:
            raise
        print(f"Error: unexpected {type(e).__name__}: {e} (run again with --debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
