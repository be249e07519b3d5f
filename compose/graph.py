"""The dependency order of services: depends_on as a graph, started dependencies first, cycles refused."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from compose.errors import ComposeError


def start_order(services: dict[str, dict[str, Any]], wanted: Iterable[str], with_deps: bool = True) -> list[str]:
    """`wanted` (and, with_deps, everything they depend on) ordered so a service comes after its dependencies."""
    order: list[str] = []
    state: dict[str, str] = {}  # name -> "visiting" | "done"

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = [*path[path.index(name):], name]
            raise ComposeError(f"dependency cycle detected: {' -> '.join(cycle)}")
        if name not in services:
            raise ComposeError(f"service {path[-1]!r} depends on undefined service {name!r}" if path
                               else f"no such service: {name}")
        state[name] = "visiting"
        for dep, spec in sorted((services[name].get("depends_on") or {}).items()):
            optional_and_absent = dep not in services and (spec or {}).get("required") is False
            if (with_deps or dep in chosen) and not optional_and_absent:
                visit(dep, [*path, name])
        state[name] = "done"
        order.append(name)

    chosen = set(wanted)
    for name in [s for s in services if s in chosen] + sorted(chosen - set(services)):
        visit(name, [])
    return order


def stop_order(services: dict[str, dict[str, Any]], wanted: Iterable[str]) -> list[str]:
    """`wanted` ordered so a service stops before the services it depends on."""
    return list(reversed(start_order(services, wanted, with_deps=False)))
