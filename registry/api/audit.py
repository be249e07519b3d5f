"""`/audit-logs` and `/projects/{p}/logs`: the audit log, queried with Harbor's `q` (operation, resource,
resource_type, username, op_time range) and paged, or exported whole as JSON lines with `format=jsonl`."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Response, request, stream_with_context
from sqlalchemy import select

from registry.api.common import ApiError, bp, needs, page_response, paging, parse_q
from registry.events import audit
from registry.guard import model, principal, project
from registry.model.roles import RIGHTS
from registry.model.tables import Member

_KEYS = ("operation", "resource", "resource_type", "username", "op_time")


def _time(text: str | None, key: str) -> float | None:
    """An op_time bound: epoch seconds, "YYYY-MM-DD HH:MM:SS" (UTC, as Harbor's UI sends) or RFC 3339."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC).timestamp()
        except ValueError:
            continue
    raise ApiError(400, f"q: {key} bound {text[:40]!r}: a time as 2026-01-02 15:04:05, RFC 3339 or epoch seconds")


def _query(project_ids: tuple[int, ...] | None) -> audit.AuditQuery:
    """This request's `q` (and Harbor's older separate parameters) as an AuditQuery."""
    fields: dict = {"project_ids": project_ids}
    for cond in parse_q(request.args.get("q")):
        if cond.key not in _KEYS:
            raise ApiError(400, f"q: unsupported key {cond.key[:50]!r}; use one of {', '.join(_KEYS)}")
        if cond.key == "op_time":
            if cond.op != "range":
                raise ApiError(400, "q: op_time is a range [from~to]")
            low, high = cond.value if isinstance(cond.value, tuple) else (None, None)
            fields["since"], fields["until"] = _time(low, "op_time"), _time(high, "op_time")
        elif cond.key == "operation":
            if cond.op == "=~":
                raise ApiError(400, "q: operation is exact (operation=push or operation={push pull})")
            values = cond.value if isinstance(cond.value, list) else [cond.value]
            fields["operation"] = tuple(str(v) for v in values)
        elif cond.op in ("=", "=~"):
            fields[cond.key] = str(cond.value)
            if cond.key in ("resource", "username"):
                fields[f"{cond.key}_fuzzy"] = cond.op == "=~"
        else:
            raise ApiError(400, f"q: {cond.key} is exact (=) or fuzzy (=~)")
    for key in ("username", "operation", "resource"):  # Harbor 1.x's parameters, still sent by old scripts
        if request.args.get(key) and key not in fields:
            value = request.args[key]
            fields[key] = (value,) if key == "operation" else value
    return audit.AuditQuery(**fields)


def _answer(q: audit.AuditQuery):
    """A page of entries, or with format=jsonl all of them streamed as JSON lines."""
    fmt = request.args.get("format", "json")
    if fmt == "jsonl":
        db = model()
        resp = Response(stream_with_context(audit.export_jsonl(db, q)), mimetype="application/jsonl")
        resp.headers["Content-Disposition"] = 'attachment; filename="audit-logs.jsonl"'
        return resp
    if fmt != "json":
        raise ApiError(400, "format: json or jsonl")
    page = paging()
    rows, total = audit.query(model(), q, page.offset, page.size)
    return page_response([audit.entry(r) for r in rows], total, page)


def _readable_projects() -> tuple[int, ...] | None:
    """The projects whose logs the caller may read (None: all, for system admins)."""
    caller = principal()
    if caller is None:
        raise ApiError(401, "authentication required")
    if caller.sysadmin:
        return None
    if caller.user_id is None:  # a robot account reads project logs through /projects/{p}/logs only
        return ()
    with model().session() as s:
        members = s.execute(select(Member.project_id, Member.role).where(Member.user_id == caller.user_id)).all()
    return tuple(pid for pid, role in members if "read" in RIGHTS.get(role, ()))


@bp.route("/audit-logs", methods=["GET"])
@needs("identity")
def list_audit_logs():
    """Entries of the projects the caller may read (all for admins); q, paging, format=jsonl."""
    return _answer(_query(_readable_projects()))


@bp.route("/projects/<project_name_or_id>/logs", methods=["GET"])
@needs("project:read")
def list_project_logs(project_name_or_id: str):
    """One project's entries; q, paging, format=jsonl."""
    return _answer(_query((project().id,)))

