"""The Compose Specification's merge rules, applied to canonical services and resources: mappings merge key by key,
sequences append (de-duplicated by what identifies an entry), command/entrypoint/healthcheck.test are replaced, and
`!reset` / `!override` drop what the earlier definition had."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import Any

from compose.yamlfile import Path

Key = Callable[[Any], Any]


def _before_equals(entry: Any) -> Any:
    return entry.split("=", 1)[0] if isinstance(entry, str) else entry


def _by_target(entry: Any) -> Any:
    return entry.get("target") if isinstance(entry, dict) else entry


def _port_key(entry: dict[str, Any]) -> Any:
    return (entry.get("host_ip", ""), entry.get("published", ""), entry["target"], entry.get("protocol", "tcp"))


def _device_key(entry: Any) -> Any:
    if isinstance(entry, dict):
        return entry.get("target")
    parts = str(entry).split(":")
    return parts[1] if len(parts) > 1 else parts[0]


# The sequences of a service whose entries are unique by a key: a later entry replaces the earlier one in its place.
_UNIQUE: dict[str, Key] = {
    **dict.fromkeys(("cap_add", "cap_drop", "dns", "dns_opt", "dns_search", "expose", "links", "profiles", "tmpfs"),
                    _before_equals),
    "ports": _port_key,
    "volumes": _by_target,
    "secrets": _by_target,
    "configs": _by_target,
    "devices": _device_key,
    "env_file": lambda e: e["path"],
}
_REPLACED = frozenset({"command", "entrypoint"})


def unique(entries: Iterable[Any], key: Key) -> list[Any]:
    """Entries with duplicates (by `key`) folded into the first one's place, the last one's value winning."""
    out: list[Any] = []
    seen: dict[Any, int] = {}
    for entry in entries:
        k = key(entry)
        if k in seen:
            out[seen[k]] = entry
        else:
            seen[k] = len(out)
            out.append(entry)
    return out


def merge_service(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` merged onto `base` (neither changed)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if key not in out or key in _REPLACED:
            out[key] = copy.deepcopy(value)
        elif key == "healthcheck":
            out[key] = {**out[key], **copy.deepcopy(value)}  # `test` replaced, the durations merged
        elif key == "extra_hosts":
            out[key] = out[key] + [h for h in value if h not in out[key]]
        elif key == "logging" and value.get("driver") not in (None, out[key].get("driver")) and out[key].get("driver"):
            out[key] = copy.deepcopy(value)  # another driver: its options do not apply to this one
        elif key == "ulimits":
            out[key] = {**out[key], **copy.deepcopy(value)}
        else:
            out[key] = merge_values(out[key], value)
        if key in _UNIQUE and isinstance(out[key], list):
            out[key] = unique(out[key], _UNIQUE[key])
    return out


def merge_values(base: Any, over: Any) -> Any:
    """Generic merge: mappings key by key, sequences appended, anything else replaced (but not by a null)."""
    if over is None:
        return base
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for key, value in over.items():
            out[key] = merge_values(out[key], value) if key in out else copy.deepcopy(value)
        return out
    if isinstance(base, list) and isinstance(over, list):
        return base + copy.deepcopy(over)
    return copy.deepcopy(over)


def drop(tree: dict[str, Any], path: Path) -> None:
    """Remove the value at `path` (a `!reset` or `!override` of a later file); nothing when it is not there."""
    node: Any = tree
    for part in path[:-1]:
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return
    if isinstance(node, dict):
        node.pop(path[-1], None)
