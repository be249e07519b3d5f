"""Harbor's REST API (`/api/v2.0/...`) over the product's model: one module per resource, one blueprint."""

from __future__ import annotations

import importlib

from flask import Blueprint

# The modules whose views register themselves on registry.api.common.bp when imported.
MODULES: tuple[str, ...] = ("projects", "members", "users", "robots", "system", "repositories", "artifacts", "quotas",
                            "immutable", "webhooks", "audit", "retentions", "registries", "replication")


def blueprint() -> Blueprint:
    """The API blueprint with every resource module's views on it."""
    from registry.api.common import bp
    for name in MODULES:
        importlib.import_module(f"registry.api.{name}")
    return bp
