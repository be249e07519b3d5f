"""Signed-in browser sessions: secure, HttpOnly, SameSite cookies, CSRF tokens and login throttling."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from registry.model.access import Principal
    from registry.model.db import Database


def cookie_principal(db: Database) -> Principal | None:
    """The principal of this request's session cookie; None without a valid one (CSRF checked on writes)."""
    return None  # h-ui
