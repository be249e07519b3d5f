"""A remote image's referrers (SBOMs, provenance, signatures) through the distribution spec's referrers API."""

from __future__ import annotations

from typing import Any

from dockyard import mediatypes as mt
from dockyard import reference
from dockyard.digest import Digest
from dockyard.distribution import RegistryError
from dockyard.errors import DockyardError
from registry.client.pull import fetch_manifest
from registry.client.remote import Transports, qualify, remote_for
from registry.client.transport import LIST_BODY_LIMIT, check, one_line

MAX_REFERRERS = 10_000  # more than this from one registry for one subject is not a list anyone reads


def list_referrers(name: str) -> tuple[Digest, list[dict[str, Any]]]:
    """(the manifest digest NAME resolves to, its referrers' descriptors) from NAME's registry."""
    ref = qualify(reference.parse(name))
    remote = remote_for(ref)
    transports = Transports()
    try:
        t = transports.get(remote.host)
        what = f"{remote.host}/{remote.repository}"
        selector = ref.digest or ref.tag
        assert selector is not None, "a parsed reference has a tag or a digest"
        digest = ref.digest or fetch_manifest(t, remote, selector, f"{what}:{selector}")[2]
        r = check(t.request("GET", f"/v2/{remote.repository}/referrers/{digest}", (remote.scope(),),
                            headers={"Accept": mt.OCI_INDEX}, limit=LIST_BODY_LIMIT),
                  f"referrers of {what}@{digest}")
        try:
            found = r.json().get("manifests")
        except (ValueError, AttributeError, RecursionError):
            raise RegistryError(message=f"referrers of {what}@{digest}: the answer is not a JSON object") from None
        if not isinstance(found, list) or len(found) > MAX_REFERRERS:
            raise RegistryError(message=f"referrers of {what}@{digest}: the answer's manifests are not a list "
                                        f"of at most {MAX_REFERRERS}")
        for d in found:
            try:
                Digest.parse(d["digest"])
                int(d["size"])
            except (DockyardError, KeyError, TypeError, ValueError):
                raise RegistryError(message=f"referrers of {what}@{digest}: an invalid descriptor "
                                            f"{one_line(repr(d), 100)}") from None
        return digest, found
    finally:
        transports.close()
