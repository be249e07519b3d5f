"""Listing a registry: its catalog (for `search`) and a repository's tags, following Link pagination."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from dockyard.distribution import RegistryError
from dockyard.reference import REPOSITORY_RE, TAG_RE
from registry.client.remote import Remote
from registry.client.transport import LIST_BODY_LIMIT, Transport, check, one_line

PAGE = 1000
# However a registry pages its lists, no more than this many names (or pages) are taken from one.
MAX_ITEMS = 100_000
MAX_PAGES = 1000
# A Link header is one short URL; a long one is not searched (a regex over it could take very long).
MAX_LINK = 8 << 10
_NEXT_RE = re.compile(r'<([^<>]*)>\s*;\s*rel="?next"?')


def _pages(t: Transport, path: str, key: str, scope: str, what: str, valid: re.Pattern) -> Iterator[str]:
    """Every item of a paginated list endpoint (`repositories` or `tags`), each a valid name."""
    url: str | None = path
    params: dict[str, str] | None = {"n": str(PAGE)}
    count = pages = 0
    while url:
        pages += 1
        if pages > MAX_PAGES:
            raise RegistryError(message=f"{what}: the registry's list goes on for more than {MAX_PAGES} pages")
        r = check(t.request("GET", url, (scope,), params=params, limit=LIST_BODY_LIMIT), what)
        try:
            items = r.json().get(key) or []
        except (ValueError, AttributeError):
            raise RegistryError(message=f"{what}: the registry's list is not a JSON object") from None
        if not isinstance(items, list):
            raise RegistryError(message=f"{what}: the registry's {key} are not a list")
        for item in items:
            if not isinstance(item, str) or not valid.match(item):
                raise RegistryError(message=f"{what}: the registry lists an invalid name {one_line(repr(item), 100)}")
            count += 1
            if count > MAX_ITEMS:
                raise RegistryError(message=f"{what}: the registry lists more than {MAX_ITEMS} {key}")
            yield item
        # An empty page ends the list, whatever its Link says.
        url, params = _next(r.headers.get("Link", ""), r.url, what) if items else None, None


def _next(link: str, current: str, what: str) -> str | None:
    """The next page's URL from a Link header; only on the registry itself (it gets our credentials)."""
    m = _NEXT_RE.search(link) if len(link) <= MAX_LINK else None
    if not m:
        return None
    url = urljoin(current, m.group(1))
    if urlsplit(url)[:2] != urlsplit(current)[:2]:
        raise RegistryError(message=f"{what}: the registry's next page is on another host")
    return url


def list_tags(t: Transport, remote: Remote) -> list[str]:
    """All tags of a repository."""
    return list(_pages(t, f"/v2/{remote.repository}/tags/list", "tags", remote.scope(),
                       f"{remote.host}/{remote.repository}", TAG_RE))


@dataclass
class SearchHit:
    """A repository whose name matched, with how many tags it has."""

    name: str
    tags: int


def search(t: Transport, term: str, limit: int) -> list[SearchHit]:
    """Repositories in the catalog whose name contains `term` (case-insensitive), at most `limit`."""
    term = term.lower()
    hits = []
    for repo in _pages(t, "/v2/_catalog", "repositories", "registry:catalog:*", f"catalog of {t.host}",
                       REPOSITORY_RE):
        if term in repo.lower():
            hits.append(SearchHit(repo, len(list_tags(t, Remote(t.host, repo)))))
            if len(hits) >= limit:
                break
    return hits


def catalog(t: Transport) -> Iterator[str]:
    """Every repository of the registry's catalog (paginated and bounded)."""
    return _pages(t, "/v2/_catalog", "repositories", "registry:catalog:*", f"catalog of {t.host}", REPOSITORY_RE)
