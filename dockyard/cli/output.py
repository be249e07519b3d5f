"""Output the way docker prints it: aligned tables, human sizes and ages, and `--format` templates."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

_TEMPLATE = re.compile(r"{{\s*(json\s+|upper\s+|lower\s+)?(\.[\w.]*)\s*}}")


def human_size(n: float) -> str:
    """Decimal units with 3-4 significant digits, as docker's units.HumanSize."""
    units = ["B", "kB", "MB", "GB", "TB", "PB"]
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n /= 1000.0
        i += 1
    return f"{n:.4g}{units[i]}"


def human_duration(seconds: float) -> str:
    """docker's units.HumanDuration."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    if h < 24 * 30 * 2:
        return f"{h // 24 // 7} weeks"
    if h < 24 * 365 * 2:
        return f"{h // 24 // 30} months"
    return f"{h // 24 // 365} years"


def ago(when: datetime | None) -> str:
    """'2 minutes ago' for a timestamp, 'N/A' when unknown."""
    if when is None:
        return "N/A"
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return human_duration((datetime.now(UTC) - when).total_seconds()) + " ago"


def status_text(state: dict[str, Any]) -> str:
    """docker ps's STATUS from docker's State object: `Up 2 minutes (healthy)`, `Exited (0) 3 seconds ago`."""
    from dockyard.times import parse_time

    status, code = state.get("Status"), state.get("ExitCode")
    if status == "created":
        return "Created"
    if status == "restarting":
        return f"Restarting ({code}) {ago(parse_time(state.get('FinishedAt') or ''))}"
    if status in ("running", "paused"):
        started = parse_time(state.get("StartedAt") or "")
        up = human_duration((datetime.now(UTC) - started).total_seconds()) if started else ""
        health = (state.get("Health") or {}).get("Status")
        return f"Up {up}" + (" (Paused)" if status == "paused" else f" ({health})" if health else "")
    return f"Exited ({code}) {ago(parse_time(state.get('FinishedAt') or ''))}"


def table(headers: list[str], rows: Iterable[Sequence[object]], out: TextIO | None = None) -> None:
    """Columns padded like docker's tabwriter (3 spaces between columns); cells printed as str() prints them."""
    out = out or sys.stdout
    cells = [list(map(str, r)) for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    out.write("".join("   ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() + "\n"
                      for r in [headers, *cells]))  # one write: a listing has hundreds of lines


def _go_str(value: Any) -> str:
    """Render a value as Go's fmt %v would, which docker templates use."""
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + " ".join(_go_str(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go_str(v)}" for k, v in sorted(value.items())) + "]"
    return str(value)


def _lookup(obj: Any, path: str) -> Any:
    for part in [p for p in path.split(".") if p]:
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def render(template: str, obj: dict[str, Any]) -> str:
    """A small subset of Go templates: {{.Path}}, {{json .Path}}, {{upper .X}}, {{lower .X}}, \\t and \\n."""
    def sub(m: re.Match) -> str:
        fn, value = (m.group(1) or "").strip(), _lookup(obj, m.group(2))
        if fn == "json":
            return json.dumps(value, separators=(",", ":"))
        text = _go_str(value)
        return text.upper() if fn == "upper" else text.lower() if fn == "lower" else text
    return _TEMPLATE.sub(sub, template.replace("\\t", "\t").replace("\\n", "\n"))


def print_formatted(fmt: str, objs: list[dict[str, Any]], headers: list[str] | None = None) -> None:
    """Print objects by `--format`: 'json' (one per line), 'table TEMPLATE', or a TEMPLATE per object."""
    if fmt == "json":
        for o in objs:
            print(json.dumps(o, separators=(",", ":")))
        return
    if fmt.startswith("table"):
        tmpl = fmt[5:].strip()
        cols = tmpl.replace("\\t", "\t").split("\t")
        names = [re.sub(r"[{}.\s]|json", "", c).upper() for c in cols]
        table(names, [render(tmpl, o).split("\t") for o in objs])
        return
    for o in objs:
        print(render(fmt, o))


def print_inspected(fmt: str | None, objs: list[dict[str, Any]]) -> None:
    """inspect's output: each object by the --format template, else one JSON array as docker prints it."""
    if fmt:
        for o in objs:
            print(render(fmt, o))
    else:
        print(json.dumps(objs, indent=4))


def print_listing(rows: list[dict[str, Any]], headers: list[str], keys: list[str], quiet_key: str | None = None,
                  fmt: str | None = None) -> None:
    """An `ls` command's output: one `quiet_key` value per line (-q), `--format`, or a table of `keys`."""
    if quiet_key:
        for r in rows:
            print(r[quiet_key])
    elif fmt:
        print_formatted(fmt, rows)
    else:
        table(headers, [[r[k] for k in keys] for r in rows])
