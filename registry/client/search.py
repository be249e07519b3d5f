"""Listing a registry: its catalog (for `search`) and a repository's tags, following Link pagination."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterator

from registry.client.remote import Remote
from registry.client.transport import Transport, check

PAGE = 1000
_NEXT_RE = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def _pages(t: Transport, path: str, key: str, scope: str, what: str) -> Iterator[str]:
    """Every item of a paginated list endpoint (`repositories` or `tags`)."""
    url, params = path, {"n": str(PAGE)}
    while url:
        r = check(t.request("GET", url, (scope,), params=params), what)
        try:
            items = (r.json() or {}).get(key) or []
        except ValueError:
            items = []
        yield from items
        m = _NEXT_RE.search(r.headers.get("Link", ""))
        url, params = (m.group(1), None) if m else (None, None)


def list_tags(t: Transport, remote: Remote) -> list[str]:
    """All tags of a repository."""
    return list(_pages(t, f"/v2/{remote.repository}/tags/list", "tags", remote.scope(),
                       f"{remote.host}/{remote.repository}"))


@dataclass
class SearchHit:
    """A repository whose name matched, with how many tags it has."""

    name: str
    tags: int


def search(t: Transport, term: str, limit: int) -> list[SearchHit]:
    """Repositories in the catalog whose name contains `term` (case-insensitive), at most `limit`."""
    term = term.lower()
    hits = []
    for repo in _pages(t, "/v2/_catalog", "repositories", "registry:catalog:*", f"catalog of {t.host}"):
        if term in repo.lower():
            hits.append(SearchHit(repo, len(list_tags(t, Remote(t.host, repo)))))
            if len(hits) >= limit:
                break
    return hits
