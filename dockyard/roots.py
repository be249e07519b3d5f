"""Where the store lives (a module of its own: commands that only read records under the root need no store)."""

from __future__ import annotations

import os


def default_root() -> str:
    """The store root: $DOCKYARD_ROOT, else the system or per-user default."""
    if os.environ.get("DOCKYARD_ROOT"):
        return os.environ["DOCKYARD_ROOT"]
    if os.geteuid() == 0:
        return "/var/lib/dockyard"
    return os.path.join(os.path.expanduser("~"), ".local", "share", "dockyard")
