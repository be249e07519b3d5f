"""The registry product's metadata model (users, projects, artifacts, policies) over SQLAlchemy."""

from __future__ import annotations

import functools
import importlib
from types import ModuleType


@functools.cache
def lazy(name: str) -> ModuleType:
    """registry.model.`name`, imported at its first use (only --projects servers load SQLAlchemy); called on a
    request's path in place of an import statement, which costs more than this one cache lookup."""
    return importlib.import_module(f"{__name__}.{name}")
