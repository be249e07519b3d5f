"""Compose's durations: Go's syntax (`1m30s`, `300ms`, `2h`), as compose files write and `config` prints them."""

from __future__ import annotations

import re

from compose.errors import ComposeError

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def seconds(value: str | int | float, where: str = "duration") -> float:
    """A duration as seconds; a bare number counts as seconds. ComposeError naming `where` when it is not one."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):  # YAML may hand us anything: a bool, a list, a mapping
        raise ComposeError(f"{where}: invalid duration {value!r}")
    text = value.strip()
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    if re.fullmatch(r"\d+(\.\d*)?", body):
        return sign * float(body)
    parts = _PART.findall(body)
    if not body or "".join(n + u for n, u in parts) != body:
        raise ComposeError(f"{where}: invalid duration {value!r} (want e.g. 30s, 1m30s, 500ms)")
    return sign * sum(float(n) * _UNITS[u] for n, u in parts)


def format_go(secs: float) -> str:
    """Seconds as Go prints a time.Duration (`1m30s`, `500ms`, `0s`), the form `config` shows."""
    if secs == 0:
        return "0s"
    sign, secs = ("-", -secs) if secs < 0 else ("", secs)
    if secs < 1:
        for unit, scale in (("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
            if secs >= scale:
                return f"{sign}{_trim(secs / scale)}{unit}"
    hours, rest = divmod(secs, 3600)
    minutes, rest = divmod(rest, 60)
    out = f"{int(hours)}h" if hours else ""
    out += f"{int(minutes)}m" if hours or minutes else ""
    return f"{sign}{out}{_trim(rest)}s"


def _trim(number: float) -> str:
    text = f"{number:.9f}".rstrip("0").rstrip(".")
    return text or "0"
