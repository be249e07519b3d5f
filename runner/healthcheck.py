"""`python -m runner.healthcheck <root> <container id> <command as JSON>`: one health check, run by health.loop.

The check's output goes to our stdout, a failure to start it as its message; our exit code is the check's.
"""

from __future__ import annotations

import json
import os
import sys

from dockyard.errors import DockyardError
from runner import exec as exec_
from runner.containers import Containers


def main(argv: list[str]) -> int:
    """Exec the command in the running container with stdout+stderr to ours; its exit code."""
    root, cid, cmd = argv[0], argv[1], json.loads(argv[2])
    try:
        return exec_.exec_in(root, Containers(root).load(cid), cmd, output=1)
    except DockyardError as e:
        os.write(1, str(e).encode())
        return getattr(e, "exit_code", 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
