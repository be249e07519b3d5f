"""Validation of what a request names: repositories, tags, digests and upload ids."""

from __future__ import annotations

from dockyard.digest import Digest, InvalidDigest
from dockyard.distribution import RegistryError
from dockyard.reference import NAME_MAX, REPOSITORY_RE, TAG_RE


def check_repository(name: str) -> str:
    """Return `name` if it follows the distribution spec's grammar, else raise NAME_INVALID."""
    if not name or len(name) > NAME_MAX or not REPOSITORY_RE.match(name):
        raise RegistryError("NAME_INVALID", {"name": name[:NAME_MAX + 1]})
    return name


def parse_digest(text: str | None) -> Digest:
    """Parse a digest from a request, raising DIGEST_INVALID."""
    try:
        return Digest.parse(text or "")
    except InvalidDigest as e:
        raise RegistryError("DIGEST_INVALID", str(e), message="invalid digest") from None


def is_tag(text: str) -> bool:
    """Whether `text` is a valid tag."""
    return TAG_RE.match(text) is not None
