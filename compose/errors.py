"""Compose's one error: a bad file, a bad variable or a failed step, said in one line."""

from __future__ import annotations

from dockyard.errors import DockyardError


class ComposeError(DockyardError):
    """A compose file, its variables or a step of a command failed; the message names the key path or service."""


def quoted(value: object) -> str:
    """A value as Go's %q shows it in docker compose's messages: strings in double quotes."""
    import json

    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(value)
