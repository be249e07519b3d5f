"""The dependency order: dependencies first, cycles and undefined services refused by name."""

from __future__ import annotations

import pytest

from compose.errors import ComposeError
from compose.graph import start_order, stop_order


def svc(*deps: str, optional: tuple[str, ...] = ()) -> dict:
    return {"depends_on": {**{d: {"condition": "service_started"} for d in deps},
                           **{d: {"condition": "service_started", "required": False} for d in optional}}}


def test_dependencies_come_first_and_stop_reverses():
    services = {"web": svc("api"), "api": svc("db", "cache"), "db": svc(), "cache": svc()}
    order = start_order(services, ["web"])
    assert order.index("db") < order.index("api") < order.index("web")
    assert order.index("cache") < order.index("api")
    assert stop_order(services, list(services))[0] == "web"


def test_without_deps_only_the_named_services():
    services = {"web": svc("api"), "api": svc("db"), "db": svc()}
    assert start_order(services, ["web"], with_deps=False) == ["web"]


def test_a_cycle_is_named():
    services = {"a": svc("b"), "b": svc("c"), "c": svc("a")}
    with pytest.raises(ComposeError, match=r"dependency cycle detected: a -> b -> c -> a"):
        start_order(services, ["a"])


def test_undefined_dependency_is_named_unless_optional():
    with pytest.raises(ComposeError, match="service 'web' depends on undefined service 'ghost'"):
        start_order({"web": svc("ghost")}, ["web"])
    assert start_order({"web": svc(optional=("ghost",))}, ["web"]) == ["web"]
