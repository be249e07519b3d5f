"""Authorization of the REST API's and the UI's views: each declares its need (registry.api.common.needs); a
view without one is refused, so the guard fails closed."""

from __future__ import annotations

from collections.abc import Callable

from registry.model.access import Principal


def authorize(view: Callable) -> Principal | None:
    """The caller of this request if it holds what `view` declares it needs; raises ApiError otherwise."""
    raise NotImplementedError  # h-identity
