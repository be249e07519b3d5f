"""`dockyard` as a user runs it, for the benches: this checkout's launcher (`python -S`, no site step), cold
(DOCKYARD_RESIDENT=0: interpreter, imports, the command) or through a resident server of the bench's own."""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's launcher, whatever is installed
from dockyard.launcher import write  # noqa: E402


@dataclass
class Installed:
    """The launcher's command and the environments of its cold and resident series."""

    command: list[str]
    cold: dict[str, str]
    warm: dict[str, str]
    log: str

    def server(self) -> int:
        """The pid of the resident server a first warm command started, once it listens (it logs "serving")."""
        for _ in range(3000):
            pids = [int(line.split()[0]) for line in self.lines() if " serving " in line]
            if pids:
                return pids[-1]
            time.sleep(0.01)
        raise SystemExit("the resident server never started (see " + self.log + ")")

    def served(self) -> int:
        """How many commands the resident server has served."""
        return sum(" served " in line for line in self.lines())

    def lines(self) -> list[str]:
        return Path(self.log).read_text().splitlines() if os.path.exists(self.log) else []

    def stop(self) -> None:
        """Stop the resident server, if one started."""
        for pid in {int(line.split()[0]) for line in self.lines() if " serving " in line}:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass


def installed(work: str, env: dict[str, str]) -> Installed:
    """A launcher in `work`/bin (not a pyenv shim in front of one: that adds a bash run to every call), and a
    socket directory and log of the bench's own for its resident server."""
    os.mkdir(os.path.join(work, "bin"))
    resident_dir = os.path.join(work, "resident")
    os.mkdir(resident_dir, 0o700)
    log = os.path.join(work, "resident.log")
    return Installed([write(os.path.join(work, "bin"), str(REPO))], {**env, "DOCKYARD_RESIDENT": "0"},
                     {**env, "DOCKYARD_RESIDENT": "1", "DOCKYARD_RESIDENT_DIR": resident_dir,
                      "DOCKYARD_RESIDENT_LOG": log}, log)
