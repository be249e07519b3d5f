"""Signed-in browser sessions: Secure, HttpOnly, SameSite cookies and CSRF tokens (sign-in throttled by access)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import g, request

if TYPE_CHECKING:
    from werkzeug.wrappers import Response

    from registry.model.access import Principal
    from registry.model.db import Database

COOKIE = "sid"  # Harbor's cookie name
CSRF_HEADER = "X-Harbor-CSRF-Token"  # what Harbor's UI sends on its API calls
CSRF_FIELD = "csrf_token"  # the hidden field of every form
IDLE_TIMEOUT = 3600  # seconds without a request before a session ends (Harbor's default session timeout)
ABSOLUTE_TIMEOUT = 12 * 3600  # a session's longest life, however active
TOUCH_EVERY = 60  # refresh last_seen at most this often: not one database write per request
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_CACHE = "dockyard_web_login"  # flask.g attribute: the request's session, looked up once


@dataclass(frozen=True)
class WebLogin:
    """The signed-in user of this request and the session's CSRF token."""

    principal: Principal
    csrf_token: str
    token_hash: str


class CsrfError(Exception):
    """A state-changing request made with a session cookie but without its CSRF token."""


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def current(db: Database) -> WebLogin | None:
    """This request's valid session (looked up once per request); an expired one is deleted."""
    if _CACHE in g:
        return g.get(_CACHE)
    g.setdefault(_CACHE, None)
    token = request.cookies.get(COOKIE, "")
    if not token or len(token) > 128:
        return None
    from registry.model.access import Principal
    from registry.model.tables import User, WebSession
    now = time.time()
    with db.session() as s:
        row = s.get(WebSession, _hash(token))
        if row is None:
            return None
        user = s.get(User, row.user_id)
        if user is None or now >= row.expires_at or now - row.last_seen >= IDLE_TIMEOUT:
            s.delete(row)
            return None
        if now - row.last_seen >= TOUCH_EVERY:
            row.last_seen = now
        login = WebLogin(Principal(user.username, user_id=user.id, sysadmin=user.sysadmin), row.csrf_token,
                         row.token_hash)
    setattr(g, _CACHE, login)
    return login


def check_csrf(expected: str) -> None:
    """Refuse a state-changing request whose CSRF header or form field does not match `expected`."""
    given = request.headers.get(CSRF_HEADER) or (request.form.get(CSRF_FIELD, "") if request.mimetype in
                                                 ("application/x-www-form-urlencoded", "multipart/form-data")
                                                 else "")
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise CsrfError("CSRF token missing or invalid")


def cookie_principal(db: Database) -> Principal | None:
    """The principal of this request's session cookie; None without a valid one (CSRF checked on writes)."""
    login = current(db)
    if login is None:
        return None
    if request.method in UNSAFE_METHODS:
        try:
            check_csrf(login.csrf_token)
        except CsrfError as e:
            from registry.api.common import ApiError
            raise ApiError(403, str(e)) from None
    return login.principal


def sign_in(db: Database, username: str, password: str, remote_addr: str) -> str | None:
    """A new session's token for a user's right password; None when wrong. Failures are throttled per user and
    address by the same function as Basic auth's (access.login raises LoginThrottled).

    Robot accounts cannot sign in to the UI (as in Harbor): their secrets are for the registry's clients."""
    from registry.model.access import login
    from registry.model.tables import WebSession
    principal = login(db, username, password, remote_addr) if username and password else None
    if principal is None or principal.user_id is None:
        return None
    token = secrets.token_urlsafe(32)
    now = time.time()
    with db.session() as s:
        s.add(WebSession(token_hash=_hash(token), user_id=principal.user_id, csrf_token=secrets.token_urlsafe(32),
                         remote_addr=remote_addr[:64], created_at=now, last_seen=now,
                         expires_at=now + ABSOLUTE_TIMEOUT))
    return token


def sign_out(db: Database) -> None:
    """End this request's session: its row is deleted, so the cookie is worthless even if kept."""
    from registry.model.tables import WebSession
    token = request.cookies.get(COOKIE, "")
    if token:
        with db.session() as s:
            row = s.get(WebSession, _hash(token))
            if row is not None:
                s.delete(row)
    setattr(g, _CACHE, None)


def set_cookie(response: Response, token: str) -> None:
    """Attach the session cookie: Secure, HttpOnly, SameSite=Strict, for the whole site, gone with the browser."""
    response.set_cookie(COOKIE, token, secure=True, httponly=True, samesite="Strict", path="/")


def clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, secure=True, httponly=True, samesite="Strict", path="/")
