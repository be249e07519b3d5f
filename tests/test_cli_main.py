"""main.py's command table: every command word builds a parser that knows it, importing only what it names."""

from __future__ import annotations

import argparse
import subprocess
import sys

from dockyard.cli import main
from support import REPO


def _choices(parser: argparse.ArgumentParser) -> set[str]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(sub.choices)


def test_every_command_word_is_in_the_table():
    words = _choices(main.build_parser())
    assert words == set(main.COMMANDS)
    for word in words:
        assert word in _choices(main.build_parser(word)), word


def test_a_command_imports_only_its_modules():
    code = ("import sys; from dockyard.cli.main import build_parser; build_parser('run'); "
            "print(sorted(m for m in sys.modules if m.startswith('dockyard.cli.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout
    assert out.strip() == "['dockyard.cli.main', 'dockyard.cli.run']"


def test_info_and_inspect_get_the_container_parts(tmp_path, monkeypatch):
    from dockyard.cli import images, system

    monkeypatch.setattr(images, "INSPECTORS", [])
    monkeypatch.setattr(system, "INFO_SECTIONS", [])
    main.build_parser("inspect")
    assert [kind for kind, _ in images.INSPECTORS] == ["container"]
    main.build_parser("info")
    assert len(system.INFO_SECTIONS) >= 2  # containers' counts and the registries'
