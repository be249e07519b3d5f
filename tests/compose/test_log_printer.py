"""The log printer: whole lines behind a padded prefix, a colour per container only when asked (a TTY)."""

from __future__ import annotations

import io
from dataclasses import dataclass

from compose.logs import Printer, lines


@dataclass
class Named:
    """Stands in for a container: the printer reads only its name."""

    name: str


def test_lines_are_whole_across_chunks():
    assert list(lines([b"on", b"e\ntw", b"o\n", b"three"])) == ["one", "two", "three"]


def test_prefix_is_padded_and_coloured_only_on_request():
    web, worker = Named("proj-web-1"), Named("proj-worker-10")
    plain = io.StringIO()
    printer = Printer(plain, "proj")
    printer.register([web, worker])
    printer.line(web, "hello\n")
    printer.line(worker, "busy")
    assert plain.getvalue() == "web-1      | hello\nworker-10  | busy\n"
    coloured = io.StringIO()
    printer = Printer(coloured, "proj", color=True)
    printer.register([web, worker])
    printer.line(web, "a")
    printer.line(worker, "b")
    first, second = coloured.getvalue().splitlines()
    assert first.startswith("\033[36mweb-1") and second.startswith("\033[33mworker-10") and "\033[0m" in first
    bare = io.StringIO()
    Printer(bare, "proj", prefix=False).line(web, "raw")
    assert bare.getvalue() == "raw\n"
