"""What every Harbor API view shares: the blueprint, declared needs, errors, pagination and the `q` syntax."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from flask import Blueprint, Response, jsonify, request

from registry.model.errors import ModelError

bp = Blueprint("api", __name__, url_prefix="/api/v2.0")

# What a view needs, checked before it runs (registry.app's gate refuses an API view that declares none):
# "public"; "identity" (any signed-in caller); "sysadmin"; or "project:<right>" with the project taken from the
# URL's `project_name_or_id` (Harbor's X-Is-Resource-Name header says which).
NEED_ATTR = "api_need"


def needs(need: str) -> Callable:
    """Declare what the decorated view needs."""
    def mark(view: Callable) -> Callable:
        setattr(view, NEED_ATTR, need)
        return view
    return mark


_CODES = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED",
          409: "CONFLICT", 412: "PRECONDITION", 413: "PAYLOAD_TOO_LARGE", 429: "TOO_MANY_REQUESTS", 500: "UNKNOWN"}


class ApiError(ModelError):
    """A Harbor-shaped error: {"errors": [{"code": ..., "message": ...}]} with its HTTP status."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(status, message)
        self.headers = headers or {}

    def response(self):
        return jsonify({"errors": [{"code": _CODES.get(self.status, "UNKNOWN"), "message": self.message}]}), \
            self.status, self.headers


def created(location: str) -> Response:
    """201 Created naming the new resource, as Harbor answers a POST."""
    resp = Response(status=201)
    resp.headers["Location"] = location
    return resp


def rfc3339(t: float) -> str:
    """An epoch time as Harbor writes times: "2026-11-29T07:00:00.000Z" (UTC, milliseconds)."""
    ms = round(t * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


@dataclass(frozen=True)
class Paging:
    """Harbor's `page` (from 1) and `page_size` (default 10, at most 100)."""

    page: int
    size: int

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.size


_INT = re.compile(r"[0-9]{1,9}")


def paging() -> Paging:
    """This request's page and page size; 400 when they are not positive integers."""
    values = []
    for name, default in (("page", 1), ("page_size", 10)):
        text = request.args.get(name)
        if text is None:
            values.append(default)
        elif not _INT.fullmatch(text) or int(text) < 1:
            raise ApiError(400, f"invalid {name} {text[:20]!r}: a positive integer")
        else:
            values.append(int(text))
    return Paging(values[0], min(values[1], 100))


def page_response(items: list, total: int, page: Paging):
    """A JSON list with Harbor's X-Total-Count and Link (prev/next) headers."""
    resp = jsonify(items)
    resp.headers["X-Total-Count"] = str(total)
    links = []
    args = {k: v for k, v in request.args.items() if k not in ("page", "page_size")}
    if page.page > 1:
        links.append(f'<{request.path}?{urlencode({**args, "page": page.page - 1, "page_size": page.size})}>; '
                     'rel="prev"')
    if page.offset + page.size < total:
        links.append(f'<{request.path}?{urlencode({**args, "page": page.page + 1, "page_size": page.size})}>; '
                     'rel="next"')
    if links:
        resp.headers["Link"] = " , ".join(links)
    return resp


@dataclass(frozen=True)
class Condition:
    """One `q` term: op "=" (exact), "=~" (fuzzy: contains), "range" (value (low, high)), "or" / "and" (lists)."""

    key: str
    op: str
    value: object


_TERM = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*)=(~?)(.*)", re.S)


def parse_q(text: str | None) -> list[Condition]:
    """Harbor's query syntax: `k=v,k=~v,k=[a~b],k={a b c},k=(a b c)`; 400 on a malformed term."""
    if not text:
        return []
    if len(text) > 2048:
        raise ApiError(400, "query too long")
    out = []
    for term in _split_terms(text):
        m = _TERM.fullmatch(term)
        if not m:
            raise ApiError(400, f"invalid query term {term[:100]!r}: use key=value, key=~value, key=[a~b]")
        key, fuzzy, value = m.groups()
        if fuzzy:
            out.append(Condition(key, "=~", value))
        elif value.startswith("[") and value.endswith("]") and "~" in value:
            low, _, high = value[1:-1].partition("~")
            out.append(Condition(key, "range", (low.strip() or None, high.strip() or None)))
        elif value.startswith("{") and value.endswith("}"):
            out.append(Condition(key, "or", value[1:-1].split()))
        elif value.startswith("(") and value.endswith(")"):
            out.append(Condition(key, "and", value[1:-1].split()))
        else:
            out.append(Condition(key, "=", value))
    return out


def _split_terms(text: str) -> list[str]:
    """Split on commas outside brackets, braces and parentheses."""
    terms, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return [t.strip() for t in terms if t.strip()]


def filter_q(stmt, conditions: list[Condition], columns: dict):
    """`stmt` narrowed by parsed `q` terms on the given columns (query key -> column); 400 on another key."""
    from sqlalchemy import Boolean, Integer, and_

    for cond in conditions:
        column = columns.get(cond.key)
        if column is None:
            raise ApiError(400, f"q: unsupported key {cond.key[:50]!r}; use one of {', '.join(columns)}")

        def value(text: object, column=column, key=cond.key):
            if isinstance(column.type, Boolean):
                if str(text).lower() not in ("true", "false", "1", "0"):
                    raise ApiError(400, f"q: {key} is true or false")
                return str(text).lower() in ("true", "1")
            if isinstance(column.type, Integer):
                if not _INT.fullmatch(str(text)):
                    raise ApiError(400, f"q: {key} is a number")
                return int(str(text))
            return text

        if cond.op == "=~":
            escaped = str(cond.value).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            stmt = stmt.where(column.ilike(f"%{escaped}%", escape="\\"))
        elif cond.op == "range":
            low, high = cond.value if isinstance(cond.value, tuple) else (None, None)
            stmt = stmt.where(and_(*([column >= value(low)] if low is not None else []),
                                   *([column <= value(high)] if high is not None else [])))
        elif cond.op == "or":
            stmt = stmt.where(column.in_([value(v) for v in cond.value]))  # type: ignore[attr-defined]
        elif cond.op == "and":
            stmt = stmt.where(and_(*(column == value(v) for v in cond.value)))  # type: ignore[attr-defined]
        else:
            stmt = stmt.where(column == value(cond.value))
    return stmt


def json_body() -> dict:
    """The request's JSON object; 400 when the body is not one."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body
