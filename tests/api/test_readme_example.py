"""README's "Python API" example, run as written: a script over a fresh store, in a directory with rootfs.tar."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from support import REPO, run_cli


def readme_example() -> str:
    """The python code block of README's "Python API" section."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    [code] = re.findall(r"^```python\n(.*?)^```$", section, re.S | re.M)
    return code


def test_readme_example_runs(busybox_tar, store_root, tmp_path, test_networks):
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(busybox_tar, work / "rootfs.tar")
    env = {**os.environ, "DOCKYARD_ROOT": store_root, "PYTHONPATH": str(REPO)}
    try:
        p = subprocess.run([sys.executable, "-c", readme_example()], cwd=work, env=env, capture_output=True,
                           text=True, timeout=300)
    finally:
        ids = run_cli(store_root, "ps", "-aq", "--no-trunc", check=False).out.split()
        if ids:
            run_cli(store_root, "rm", "-f", *ids, check=False)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[-1] == "[['busybox:latest']]"
    assert sorted(line.split(" ", 1)[1].rsplit(" ", 1)[0] for line in lines[:-1]) == ["['busybox:latest']",
                                                                                      "['hello:1']"]
