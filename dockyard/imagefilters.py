"""Which images a listing or a prune selects: docker's `--filter KEY=VALUE` terms, from the CLI or a dict."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from dockyard.errors import DockyardError

if TYPE_CHECKING:  # listings import this module: not the image records
    from dockyard.image import Image

# Terms in the order given; every one must hold (as `images -f a -f b` always did).
Filters = Sequence[tuple[str, str]]


def from_cli(values: list[str]) -> list[tuple[str, str]]:
    """`-f KEY=VALUE` options as terms."""
    return [(key, value) for key, _, value in (v.partition("=") for v in values)]


def from_mapping(filters: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """docker-py's filters dict ({"dangling": True, "label": ["a=b", "c"]}) as terms."""
    terms: list[tuple[str, str]] = []
    for key, value in (filters or {}).items():
        for v in value if isinstance(value, (list, tuple)) else [value]:
            terms.append((key, str(v).lower() if isinstance(v, bool) else str(v)))
    return terms


def _true(key: str, value: str) -> bool:
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise DockyardError(f"invalid filter '{key}={value}': expected true or false")


def repo_tag(name: str | None) -> tuple[str, str]:
    """The REPOSITORY and TAG columns for one of an image's names (None: an untagged image): the store's index holds
    names as `Reference.ref_name` wrote them, so they are split as `reference.parse` would, without its checks (a
    listing splits hundreds)."""
    if not name:
        return "<none>", "<none>"
    remainder, digest, _ = name.partition("@")
    slash, colon = remainder.rfind("/"), remainder.rfind(":")
    if colon > slash:
        return remainder[:colon], remainder[colon + 1:]
    return remainder, "<none>" if digest else "latest"  # reference.parse's default tag


def listed(name: str | None, repository: str | None, filters: Filters) -> bool:
    """Whether an image under `name` belongs in a listing of REPOSITORY[:TAG] with these filters."""
    repo, tag = repo_tag(name)
    if repository:
        want, _, want_tag = (repository.partition(":") if "/" not in repository.rpartition(":")[2]
                             else (repository, "", ""))
        if repo != want or (want_tag and tag != want_tag):
            return False
    for key, value in filters:
        if key == "dangling":
            if (repo == "<none>") != (value.lower() == "true"):
                return False
        elif key == "reference":
            if not fnmatchcase(f"{repo}:{tag}", value) and not fnmatchcase(repo, value):
                return False
        else:
            raise DockyardError(f"invalid filter {key!r} (supported: dangling, reference)")
    return True


def _labelled(image: Image, term: str) -> bool:
    """docker's `label=KEY` / `label=KEY=VALUE` test against an image's config labels."""
    labels = (image.config.get("config") or {}).get("Labels") or {}
    key, eq, value = term.partition("=")
    return key in labels and (not eq or labels[key] == value)


def prunable(image: Image, names: list[str], filters: Filters) -> bool:
    """Whether a prune with these filters takes an image (by default only untagged ones: `dangling=true`)."""
    dangling_only = True
    for key, value in filters:
        if key == "dangling":
            dangling_only = _true(key, value)
        elif key == "label":
            if not _labelled(image, value):
                return False
        elif key == "label!":
            if _labelled(image, value):
                return False
        else:
            raise DockyardError(f"invalid filter {key!r} (supported: dangling, label, label!)")
    return not (names and dangling_only)
