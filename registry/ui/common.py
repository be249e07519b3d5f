"""What every page of the web UI shares: the blueprint, the signed-in user, rendering, paging and lookups."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlencode

from flask import Blueprint, current_app, render_template, request, send_from_directory, url_for
from sqlalchemy import or_, select

from registry import guard
from registry.api.common import ApiError, Paging, needs, paging
from registry.model import projects
from registry.model.access import Principal, project_rights
from registry.model.tables import Member, Project
from registry.session import current

HERE = os.path.dirname(os.path.abspath(__file__))
bp = Blueprint("ui", __name__, template_folder="templates")

# Sent with every page: scripts and styles only from our own files (no inline script can run, so an injected
# <script> is inert even if escaping failed), no framing, no MIME sniffing, no referrer leaking paths.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

# Outcome messages a redirect may name (?done=<key>): fixed texts, so a link cannot put words on our pages.
DONE = {
    "project-created": "Project created.", "project-updated": "Project settings saved.",
    "tag-deleted": "Tag deleted.", "artifact-deleted": "Artifact deleted.",
    "member-added": "Member added.", "member-updated": "Member's role changed.", "member-removed": "Member removed.",
    "robot-deleted": "Robot account deleted.", "quota-set": "Quota saved.", "rule-added": "Immutability rule added.",
    "rule-deleted": "Immutability rule deleted.", "retention-saved": "Retention policy saved.",
    "retention-run": "Retention run finished.", "webhook-created": "Webhook created.",
    "webhook-deleted": "Webhook deleted.", "user-created": "User created.", "user-updated": "User updated.",
    "user-deleted": "User deleted.", "gc-run": "Garbage collection finished.",
    "replication-started": "Replication started.",
}


@bp.after_request
def _secure(response):
    response.headers.update(SECURITY_HEADERS)
    if response.mimetype == "text/html":
        response.headers["Cache-Control"] = "no-store"  # pages hold CSRF tokens and, once, robot secrets
    return response


@bp.get("/static/<path:filename>")
@needs("public")
def static(filename: str):
    """Our stylesheet and script (no CDN): served by the app itself."""
    return send_from_directory(os.path.join(HERE, "static"), filename, max_age=3600)


db = guard.model  # the app's metadata database
principal = guard.principal  # who the guard let in (the session's user; None: anonymous)


def registry():
    """The app's registry state (config, storage), as guard.model reaches the database."""
    return current_app.extensions["registry"]


def render(template: str, status: int = 200, **context):
    """A page: the template with the signed-in user, its CSRF token and the outcome message of a redirect."""
    login = current(db())
    done = DONE.get(request.args.get("done", ""))
    return render_template(template, me=login.principal if login else None,
                           csrf_token=login.csrf_token if login else "", done=done, **context), status


def done(endpoint: str, key: str, **values):
    """Redirect after a successful write (POST, then GET), naming the outcome."""
    from flask import redirect
    assert key in DONE
    return redirect(url_for(endpoint, **values, done=key), code=303)


@dataclass(frozen=True)
class Page:
    """One page of a list: its rows, the total and links to its neighbours."""

    items: list
    total: int
    paging: Paging

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.paging.size))

    def link(self, page: int) -> str:
        args = {k: v for k, v in request.args.items() if k not in ("page", "done")}
        return f"{request.path}?{urlencode({**args, 'page': page, 'page_size': self.paging.size})}"

    @property
    def prev(self) -> str | None:
        return self.link(self.paging.page - 1) if self.paging.page > 1 else None

    @property
    def next(self) -> str | None:
        return self.link(self.paging.page + 1) if self.paging.offset + self.paging.size < self.total else None


def page_of(session, query, count_query) -> Page:
    """The request's page (Harbor's page/page_size) of `query`; `count_query` counts all its rows."""
    p = paging()
    items = list(session.execute(query.limit(p.size).offset(p.offset)).all())
    return Page(items, session.scalar(count_query) or 0, p)


def project(session, name_or_id: str) -> Project:
    """The project a URL names by id (digits) or name; 404 when there is none."""
    return projects.get(session, name_or_id)


def rights(proj: Project) -> frozenset[str]:
    """What the signed-in user may do in `proj` (the same decision as the v2 API's)."""
    return project_rights(db(), principal(), proj)


def visible_projects(who: Principal | None):
    """A filter on Project for the projects `who` may see: all for sysadmins, else public ones and their own."""
    if who is not None and who.sysadmin:
        return True
    if who is None or who.user_id is None:
        return Project.public.is_(True)
    mine = select(Member.project_id).where(Member.user_id == who.user_id)
    return or_(Project.public.is_(True), Project.id.in_(mine))


def form(name: str, limit: int = 1024) -> str:
    """A form field, stripped; 400 when it is longer than `limit`."""
    value = request.form.get(name, "").strip()
    if len(value) > limit:
        raise ApiError(400, f"{name}: at most {limit} characters")
    return value


def when(t: float | None) -> str:
    """A timestamp as the pages show it: UTC, to the second; "never" for none."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t)) if t else "never"


def size(n: int | None) -> str:
    """Bytes as KiB/MiB/GiB with one decimal."""
    value = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return ""


@bp.app_template_filter("when")
def _when(t: float | None) -> str:
    return when(t)


@bp.app_template_filter("size")
def _size(n: int | None) -> str:
    return size(n)


@contextmanager
def model_errors() -> Iterator[None]:
    """The model's refusals (ValueError: bad input, LookupError: not found) as the UI's error pages."""
    from registry.model.policy import Refused
    try:
        yield
    except Refused as e:  # a policy said no (an immutable tag): its status and message
        raise ApiError(e.status, e.message) from None
    except LookupError as e:
        raise ApiError(404, str(e)) from None
    except ValueError as e:
        raise ApiError(400, str(e)) from None


def gib(text: str, field: str) -> int:
    """A size typed in GiB (decimals allowed; -1: no limit) as bytes."""
    try:
        value = float(text)
    except ValueError:
        raise ApiError(400, f"{field}: a number of GiB, or -1 for no limit") from None
    if value < 0:
        return -1
    if value > 1 << 30:
        raise ApiError(400, f"{field}: too large")
    return int(value * (1 << 30))
