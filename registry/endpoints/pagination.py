"""`n`/`last` pagination with a `Link` header, shared by the tags list and the catalog."""

from __future__ import annotations

import re
from urllib.parse import urlencode

from flask import request

from dockyard.distribution import RegistryError

_N_RE = re.compile(r"[0-9]{1,9}")  # ASCII only: str.isdigit() takes "²", which int() refuses


def paginate(items: list[str], path: str) -> tuple[list[str], dict[str, str]]:
    """The page of lexically sorted `items` after `?last=`, at most `?n=` long, and the Link to the next page."""
    last = request.args.get("last")
    n_text = request.args.get("n")
    if last:
        items = [i for i in items if i > last]
    headers: dict[str, str] = {}
    if n_text is not None:
        if not _N_RE.fullmatch(n_text):
            raise RegistryError("PAGINATION_NUMBER_INVALID", {"n": n_text[:20]})
        n = int(n_text)
        if len(items) > n:
            items = items[:n]
            if items:
                headers["Link"] = f'<{path}?{urlencode({"n": n, "last": items[-1]})}>; rel="next"'
    return items, headers
