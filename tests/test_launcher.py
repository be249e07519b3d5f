"""The `dockyard` launcher: written for this interpreter, it runs the CLI with -S (no site step) from any cwd."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from dockyard import launcher
from support import REPO

PACKAGES = ("dockyard", "builder", "registry", "runner", "compose")


def _env(store_root: str, **extra: str) -> dict[str, str]:
    """The test's environment without PYTHONPATH: what the launcher finds, it must find by itself."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return {**env, "DOCKYARD_ROOT": store_root, **extra}


def _run(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"{cmd} exited {p.returncode}: {p.stderr}"
    return p


@pytest.fixture
def entry(tmp_path) -> str:
    """A launcher for this checkout, in a bin directory of the test's own."""
    (tmp_path / "bin").mkdir()
    return launcher.write(str(tmp_path / "bin"), str(REPO))


def test_the_launcher_runs_commands_without_the_site_step(entry, tmp_path, store_root, busybox_image):
    env = _env(store_root)
    assert _run([entry, "version"], env, tmp_path).stdout
    assert "busybox" in _run([entry, "images"], env, tmp_path).stdout
    assert _run([entry, "run", "--rm", "--network", "none", busybox_image, "echo", "hi"], env, tmp_path).stdout \
        == "hi\n"
    # A command that imports third-party packages (cryptography) from site-packages.
    cert, key = tmp_path / "r.crt", tmp_path / "r.key"
    _run([entry, "registry", "cert", "localhost", "--cert", str(cert), "--key", str(key)], env, tmp_path)
    assert cert.read_text().startswith("-----BEGIN CERTIFICATE-----")
    with open(entry) as f:
        assert f.readline() == f"#!{sys.executable} -S\n"
    assert os.stat(entry).st_mode & 0o777 == 0o755


@pytest.mark.parametrize("safe_path", ["", "1"])  # PYTHONSAFEPATH: the script's directory is not on sys.path
def test_pythonpath_is_honoured_and_no_site_step_ran(entry, tmp_path, store_root, safe_path):
    # A `dockyard.cli.main` first on PYTHONPATH shadows ours and reports the interpreter it was started in.
    fake = tmp_path / "fake" / "dockyard" / "cli"
    fake.mkdir(parents=True)
    (fake.parent / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "main.py").write_text("import json, sys\n"
                                  "def main():\n"
                                  "    print(json.dumps([sys.flags.no_site, 'site' in sys.modules, sys.path]))\n")
    env = _env(store_root, PYTHONPATH=str(tmp_path / "fake"))
    if safe_path:
        env["PYTHONSAFEPATH"] = safe_path
    no_site, site_loaded, path = json.loads(_run([entry], env, tmp_path).stdout)
    assert no_site == 1 and not site_loaded
    assert path[0] == str(tmp_path / "fake")
    assert path.index(str(tmp_path / "fake")) < path.index(str(REPO))
    assert sysconfig.get_paths()["purelib"] in path
    assert os.path.dirname(entry) not in path  # bin/ holds nothing to import


def test_a_non_editable_install(tmp_path, store_root):
    # Our packages copied into a site-packages directory of their own: the launcher written by that copy (found
    # from the installed package, not the cwd: -P) reaches them there and nowhere else.
    site = tmp_path / "prefix" / "site-packages"
    for name in PACKAGES:
        shutil.copytree(REPO / name, site / name, ignore=shutil.ignore_patterns("__pycache__"))
    bin_dir = tmp_path / "prefix" / "bin"
    bin_dir.mkdir()
    env = _env(store_root)
    written = _run([sys.executable, "-P", "-m", "dockyard.launcher", str(bin_dir)], {**env, "PYTHONPATH": str(site)},
                   tmp_path).stdout.strip()
    assert written == str(bin_dir / "dockyard")
    assert repr(str(site)) in (bin_dir / "dockyard").read_text()
    assert str(REPO) not in (bin_dir / "dockyard").read_text()
    assert _run([written, "version"], env, tmp_path).stdout
    cert, key = tmp_path / "r.crt", tmp_path / "r.key"
    _run([written, "registry", "cert", "localhost", "--cert", str(cert), "--key", str(key)], env, tmp_path)


def test_a_second_write_replaces_the_first_atomically(entry, tmp_path):
    bin_dir = os.path.dirname(entry)
    with open(entry) as first:  # a reader of the old one (a start under way) keeps reading it whole
        before = os.fstat(first.fileno()).st_ino
        launcher.write(bin_dir, str(tmp_path / "elsewhere"))
        assert repr(str(REPO)) in first.read()
    assert os.stat(entry).st_ino != before  # renamed over, never rewritten in place
    assert repr(str(tmp_path / "elsewhere")) in Path(entry).read_text()
    assert os.stat(entry).st_mode & 0o777 == 0o755
    assert os.listdir(bin_dir) == ["dockyard"]  # no temp file left


@pytest.mark.parametrize("python", ["python3", "/opt/my python/bin/python3", "/usr/bin/python3\n-c", "/" + "p" * 130])
def test_an_interpreter_no_shebang_line_can_start_is_refused(python):
    with pytest.raises(ValueError):
        launcher.script(python, [str(REPO)])
