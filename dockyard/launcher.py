"""The `dockyard` launcher: the console script, started with `python -S` so no site step runs before the CLI.

pip's console script runs the interpreter's whole site step first: every .pth file of site-packages (on some
machines one imports certifi and importlib.resources) and site itself: `python -c pass` 38 ms here, `python -S -c
pass` 9 ms. A command saves less than that difference (`run --rm` ~9 ms of ~77): it imports much of what those hooks
load (re, enum, typing) itself; what it does not need, it no longer pays for. The launcher starts with -S and puts
on sys.path, baked in when it is written, exactly what this install needs: the interpreter's site-packages (the
third-party dependencies) and the directory holding our packages (the checkout, for an editable install). What -S
skips, by decision: every .pth file (other packages' import hooks and path entries too), the user site-packages
directory, sitecustomize and usercustomize.
PYTHONPATH is still honoured (no -I or -E).
The script first offers the command to a resident, pre-imported server (dockyard.resident: no interpreter start
and imports per command); when that does not serve it, the script runs the CLI itself.
`scripts/install.sh` writes it after pip, for each interpreter:
    python -P -m dockyard.launcher [BIN_DIR]   (default: the interpreter's scripts directory)
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

from dockyard.fsutil import atomic_write

# Linux reads at most this many bytes of a `#!` line (BINPRM_BUF_SIZE before 5.1); a longer one is cut silently.
SHEBANG_MAX = 127


def package_root() -> str:
    """The directory holding this install's packages: site-packages, or the checkout of an editable install."""
    return str(Path(__file__).resolve().parents[1])


def script(python: str, paths: list[str]) -> bytes:
    """The launcher's text: `python -S`, sys.path without bin/ and with `paths` appended, then the CLI."""
    shebang = f"#!{python} -S"
    # The kernel splits the line at the first blank and ends it at a newline or its buffer's end: any of those in
    # the path would start some other program.
    if not os.path.isabs(python) or any(c.isspace() for c in python) or len(shebang) > SHEBANG_MAX:
        raise ValueError(f"cannot start {python!r} from a #! line")
    return (f"{shebang}\n"
            "# Written by dockyard.launcher: the CLI without the site step (no .pth files, no sitecustomize).\n"
            "import sys\n"
            "if not sys.flags.safe_path:  # (PYTHONSAFEPATH: not put there)\n"
            "    del sys.path[0]  # this script's directory, bin/: nothing to import there\n"
            f"sys.path += [p for p in {paths!r} if p not in sys.path]\n"
            "try:\n"
            "    from dockyard.resident.client import attempt\n"
            "except ImportError:  # a dockyard without it first on PYTHONPATH\n"
            "    pass\n"
            "else:\n"
            "    attempt()  # the command in the resident server; returns if it was not served there\n"
            "from dockyard.cli.main import main\n"
            "sys.exit(main())\n").encode()


def search_path(root: str | None = None) -> list[str]:
    """What the launcher adds to sys.path: the running interpreter's site-packages and `root` (package_root())."""
    site = sysconfig.get_paths()
    return list(dict.fromkeys([site["purelib"], site["platlib"], root or package_root()]))


def write(bin_dir: str, root: str | None = None) -> str:
    """Write `<bin_dir>/dockyard` for the running interpreter atomically (temp file, fsync, rename); its path."""
    path = os.path.join(bin_dir, "dockyard")
    atomic_write(path, script(sys.executable, search_path(root)), mode=0o755)
    return path


if __name__ == "__main__":
    print(write(sys.argv[1] if len(sys.argv) > 1 else sysconfig.get_paths()["scripts"]))
