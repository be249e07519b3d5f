"""Sizes and numbers as compose files write them: `512m` as docker's RAMInBytes reads it, `0.5` CPUs, octal modes."""

from __future__ import annotations

import re
from typing import Any

from compose.errors import ComposeError, quoted
from dockyard.sizes import ram_in_bytes

_PLAIN = re.compile(r"-?\d+")


def ram_bytes(value: Any, where: str) -> int:
    """`512m`, `1.5g`, `1024` or 1024 as bytes (binary multiples, as docker's RAMInBytes); a plain integer may be
    negative (`memswap_limit: -1`, unlimited)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _PLAIN.fullmatch(value.strip()):
        return int(value)
    try:
        if isinstance(value, str):
            return ram_in_bytes(value)
    except ValueError:
        pass
    raise ComposeError(f"{where}: invalid size {quoted(value)} (want e.g. 512m, 1g, 1024)")


def integer(value: Any, where: str) -> int:
    """An int written as a number or (after interpolation) a decimal string."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"[-+]?\d+", value.strip()):
        return int(value)
    raise ComposeError(f"{where}: must be an integer, got {quoted(value)}")


def number(value: Any, where: str) -> float:
    """A float written as a number or a numeric string (`cpus: "0.5"`)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise ComposeError(f"{where}: must be a number, got {quoted(value)}")


def boolean(value: Any, where: str) -> bool:
    """A bool written as YAML's true/false or, after interpolation, a string docker compose accepts as one."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "y", "on", "1", "false", "no", "n", "off", "0"):
        return value.lower() in ("true", "yes", "y", "on", "1")
    raise ComposeError(f"{where}: must be a boolean, got {quoted(value)}")


def file_mode(value: Any, where: str) -> int:
    """A file mode: an int (YAML 0o440 or 288) or an octal string ("0440")."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"0?[0-7]{1,4}", value.strip()):
        return int(value, 8)
    raise ComposeError(f"{where}: invalid file mode {quoted(value)}")
