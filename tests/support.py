"""Helpers shared by the test modules (imported as `support`; conftest.py puts tests/ on sys.path)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Result:
    """A finished CLI run."""

    code: int
    out: str
    err: str


def run_cli(root: str, *args: str, input: bytes | None = None, check: bool = True, env: dict | None = None,
            timeout: float = 300) -> Result:
    """Run the real `dockyard` command against a store root."""
    full_env = {**os.environ, "DOCKYARD_ROOT": root, **(env or {})}
    p = subprocess.run([sys.executable, "-m", "dockyard", *args], input=input, capture_output=True,
                       env=full_env, timeout=timeout)
    res = Result(p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"))
    if check and res.code != 0:
        raise AssertionError(f"dockyard {' '.join(args)} exited {res.code}: {res.err}")
    return res


def tool(name: str) -> str:
    """Path of a peer tool; the test fails (not skips) when CI forgot to install it."""
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    assert path, f"{name} is not installed (scripts/install.sh installs it)"
    return path
