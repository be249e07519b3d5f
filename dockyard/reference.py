"""Image references `[host[:port]/]name[:tag][@algo:hex]`, by the distribution reference grammar."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace

from dockyard.digest import Digest, InvalidDigest
from dockyard.errors import InvalidReference

DEFAULT_TAG = "latest"
NAME_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[_.]|__|[-]+)"
PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
REPOSITORY_RE = re.compile(rf"^{PATH_COMPONENT}(?:/{PATH_COMPONENT})*\Z")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
DOMAIN_RE = re.compile(rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})(?::[0-9]+)?\Z")
TAG_RE = re.compile(r"^[\w][\w.-]{0,127}\Z", re.ASCII)


@dataclass(frozen=True)
class Reference:
    """A parsed image reference; `registry` is empty for a local (unqualified) name."""

    registry: str
    repository: str
    tag: str | None = None
    digest: Digest | None = None

    @property
    def name(self) -> str:
        """Registry and repository, without tag or digest."""
        return f"{self.registry}/{self.repository}" if self.registry else self.repository

    @property
    def ref_name(self) -> str:
        """The tag form used in the store's index (`name:tag`), or the digest form when untagged."""
        if self.tag:
            return f"{self.name}:{self.tag}"
        return f"{self.name}@{self.digest}"

    def with_tag(self, tag: str) -> Reference:
        """The same repository with another tag and no digest."""
        return replace(self, tag=tag, digest=None)

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def _looks_like_domain(component: str) -> bool:
    """Docker's rule: the first component is a host if it has a dot or port, or is localhost."""
    return "." in component or ":" in component or component == "localhost" or component.lower() != component


def parse(text: str, default_tag: bool = True, default_registry: str | None = None) -> Reference:
    """Parse a reference; raise InvalidReference with the reason when it is malformed."""
    if not text or text != text.strip():
        raise InvalidReference(f"invalid reference format: {text!r}")
    remainder, digest = text, None
    if "@" in remainder:
        remainder, _, dtext = remainder.partition("@")
        try:
            digest = Digest.parse(dtext)
        except InvalidDigest as e:
            raise InvalidReference(f"invalid reference format: {text!r}: {e}") from None
    tag = None
    slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > slash:
        remainder, tag = remainder[:colon], remainder[colon + 1:]
        if not TAG_RE.match(tag):
            raise InvalidReference(f"invalid reference format: invalid tag {tag!r} in {text!r}")
    registry, repository = "", remainder
    first, sep, rest = remainder.partition("/")
    if sep and _looks_like_domain(first):
        registry, repository = first, rest
        if not DOMAIN_RE.match(registry):
            raise InvalidReference(f"invalid reference format: invalid registry host {registry!r} in {text!r}")
    if not REPOSITORY_RE.match(repository):
        if repository.lower() != repository and REPOSITORY_RE.match(repository.lower()):
            raise InvalidReference(
                f"invalid reference format: repository name must be lowercase: {text!r}")
        raise InvalidReference(f"invalid reference format: {text!r}")
    if len(remainder) > NAME_MAX:
        raise InvalidReference(f"invalid reference format: repository name longer than {NAME_MAX} characters")
    if not registry and default_registry:
        registry = default_registry
    if default_tag and tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(registry, repository, tag, digest)


def default_registry() -> str | None:
    """The registry an unqualified name is pushed to or pulled from, if one is configured."""
    return os.environ.get("DOCKYARD_DEFAULT_REGISTRY") or None
