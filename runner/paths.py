"""Paths for the runner: secure_join (the core in-root walk, dockyard.inroot) and reading small files."""

from __future__ import annotations

# The in-root walk lives in the core (the builder uses it too); runner modules import secure_join from here.
from dockyard.inroot import secure_join  # noqa: F401


def read_text(path: str) -> str:
    """A small text file's content; "" when it is missing or unreadable (e.g. no /etc/passwd in an image)."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""
