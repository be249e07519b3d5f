"""The registry product's web UI at `/`: server-rendered pages (Jinja), one stylesheet, one small script."""

from __future__ import annotations

import importlib

from flask import Blueprint

# The modules whose views register themselves on registry.ui.common.bp when imported.
MODULES: tuple[str, ...] = ("auth", "projects", "artifacts", "policies", "admin", "replication")


def blueprint() -> Blueprint:
    """The UI blueprint with every page module's views on it."""
    from registry.ui.common import bp
    for name in MODULES:
        importlib.import_module(f"registry.ui.{name}")
    return bp
