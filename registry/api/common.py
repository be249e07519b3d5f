"""What every Harbor API view shares: the blueprint, declared needs, errors, pagination and the `q` syntax."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from flask import Blueprint, jsonify, request

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


class ApiError(Exception):
    """A Harbor-shaped error: {"errors": [{"code": ..., "message": ...}]} with its HTTP status."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}

    def response(self):
        return jsonify({"errors": [{"code": _CODES.get(self.status, "UNKNOWN"), "message": self.message}]}), \
            self.status, self.headers


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
