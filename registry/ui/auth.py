"""Signing in and out of the web UI."""

from __future__ import annotations

import hmac
import secrets

from flask import make_response, redirect, request, url_for

from registry.api.common import needs
from registry.model.access import LoginThrottled
from registry.session import CSRF_FIELD, clear_cookie, set_cookie, sign_in, sign_out
from registry.ui.common import bp, db, principal, render

# The sign-in form's own CSRF token (there is no session yet): a random value in a cookie that the form repeats,
# so another site cannot sign a browser in under the attacker's account.
LOGIN_COOKIE = "login_csrf"


def _safe_next(target: str) -> str:
    """Where to go after signing in: a path on this site only (never `//host` or a scheme)."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("ui.projects")


@bp.get("/")
@needs("public")
def home():
    return redirect(url_for("ui.projects" if principal() else "ui.login"))


@bp.route("/login", methods=["GET", "POST"])
@needs("public")
def login():
    """The sign-in form; a right password starts a session and goes on to `next`."""
    error, status = "", 200
    username = ""
    if request.method == "POST":
        expected = request.cookies.get(LOGIN_COOKIE, "")
        given = request.form.get(CSRF_FIELD, "")
        username = request.form.get("username", "")[:255]
        if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            error, status = "Your sign-in form expired; please try again.", 403
        else:
            try:
                token = sign_in(db(), username, request.form.get("password", "")[:1024], request.remote_addr or "")
            except LoginThrottled as e:
                error, status = f"Too many failed sign-ins: try again in {e.retry_after} seconds.", 429
            else:
                if token is None:
                    error, status = "Wrong username or password.", 401
                else:
                    resp = redirect(_safe_next(request.args.get("next", "")), code=303)
                    set_cookie(resp, token)
                    resp.delete_cookie(LOGIN_COOKIE, path="/login")
                    return resp
    form_token = secrets.token_urlsafe(24)
    body, code = render("login.html", status, error=error, username=username, login_csrf=form_token,
                        next=request.args.get("next", ""))
    resp = make_response(body, code)
    resp.set_cookie(LOGIN_COOKIE, form_token, secure=True, httponly=True, samesite="Strict", path="/login")
    return resp


@bp.post("/logout")
@needs("identity")
def logout():
    """End the session (its row is deleted) and forget the cookie."""
    sign_out(db())
    resp = redirect(url_for("ui.login"), code=303)
    clear_cookie(resp)
    return resp
