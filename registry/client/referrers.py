"""A remote image's referrers (SBOMs, provenance, signatures): listed through the distribution spec's referrers API,
or, where a registry lacks it (404), through the spec's tag schema (an index of referrers under the tag
`<alg>-<hex>` of the subject), which push then maintains; pulled into the store with their image."""

from __future__ import annotations

import json
import threading
from typing import Any

from dockyard import mediatypes as mt
from dockyard import reference
from dockyard.digest import Digest
from dockyard.distribution import RegistryError
from dockyard.errors import DockyardError, NotFound
from dockyard.image import Descriptor, canonical_json
from dockyard.referrers import Referrer, referrer_of
from dockyard.store import Store
from registry.client.auth import AuthError
from registry.client.progress import Progress
from registry.client.pull import MANIFEST_LIMIT, BlobReader, fetch_manifest
from registry.client.remote import Remote, Transports, qualify, remote_for
from registry.client.transport import LIST_BODY_LIMIT, Transport, Unreachable, check, one_line

MAX_REFERRERS = 10_000  # more than this from one registry for one subject is not a list anyone reads
PULLED_REFERRERS = 100  # a pull keeps at most this many referrers of an image (a registry may list thousands)
REFERRER_BLOB_LIMIT = 64 << 20  # an SBOM or provenance document larger than this is not one a pull keeps


def fallback_tag(subject: Digest) -> str:
    """The tag schema's tag for a subject's referrers index: `<alg>-<hex>` (a tag is at most 128 characters)."""
    return f"{subject.algorithm}-{subject.hex}"[:128]


def _checked(found: object, what: str) -> list[dict[str, Any]]:
    """An index's `manifests` as referrer descriptors, each with a digest and a size a manifest may have."""
    if not isinstance(found, list) or len(found) > MAX_REFERRERS:
        raise RegistryError(message=f"{what}: the manifests are not a list of at most {MAX_REFERRERS}")
    for d in found:
        try:
            Digest.parse(d["digest"])
            size = int(d["size"])
        except (DockyardError, KeyError, TypeError, ValueError):
            raise RegistryError(message=f"{what}: an invalid descriptor {one_line(repr(d), 100)}") from None
        if not 0 < size <= MANIFEST_LIMIT:
            raise RegistryError(message=f"{what}: referrer {d['digest']} is {size} bytes, not a manifest of at most "
                                        f"{MANIFEST_LIMIT}")
    return found


def _index_manifests(data: bytes, what: str) -> object:
    try:
        return json.loads(data).get("manifests")
    except (ValueError, AttributeError, RecursionError):
        raise RegistryError(message=f"{what}: the answer is not a JSON object") from None


def _api(t: Transport, remote: Remote, subject: Digest, what: str) -> list[dict[str, Any]] | None:
    """The referrers API's list; None when the registry has no referrers API (it answers 404)."""
    r = t.request("GET", f"/v2/{remote.repository}/referrers/{subject}", (remote.scope(),),
                  headers={"Accept": mt.OCI_INDEX}, limit=LIST_BODY_LIMIT)
    if r.status_code == 404:
        r.close()
        return None
    check(r, what)
    return _checked(_index_manifests(r.read(), what), what)


def _tag_schema(t: Transport, remote: Remote, subject: Digest, what: str) -> list[dict[str, Any]]:
    """The referrers the fallback tag's index lists (none when the tag does not exist)."""
    tag = fallback_tag(subject)
    try:
        data, _, _ = fetch_manifest(t, remote, tag, f"{what} (tag {tag})")
    except NotFound:
        return []
    return _checked(_index_manifests(data, f"{what} (tag {tag})"), f"{what} (tag {tag})")


def remote_referrers(t: Transport, remote: Remote, subject: Digest) -> list[dict[str, Any]]:
    """A subject's referrers' descriptors: from the referrers API, else from the tag schema."""
    what = f"referrers of {remote.host}/{remote.repository}@{subject}"
    found = _api(t, remote, subject, what)
    return found if found is not None else _tag_schema(t, remote, subject, what)


def list_referrers(name: str) -> tuple[Digest, list[dict[str, Any]]]:
    """(the manifest digest NAME resolves to, its referrers' descriptors) from NAME's registry."""
    ref = qualify(reference.parse(name))
    remote = remote_for(ref)
    transports = Transports()
    try:
        t = transports.get(remote.host)
        selector = ref.digest or ref.tag
        assert selector is not None, "a parsed reference has a tag or a digest"
        digest = ref.digest or fetch_manifest(t, remote, selector, f"{remote.host}/{remote.repository}:{selector}")[2]
        return digest, remote_referrers(t, remote, digest)
    finally:
        transports.close()


def update_tag_schema(t: Transport, remote: Remote, subject: Digest, referrers: list[Referrer]) -> None:
    """After pushing a subject's referrers: where the registry has no referrers API, add them to the index under
    the subject's fallback tag (kept with what other clients put there)."""
    what = f"referrers of {remote.host}/{remote.repository}@{subject}"
    if not referrers or _api(t, remote, subject, what) is not None:
        return
    listed = _tag_schema(t, remote, subject, what)
    have = {d["digest"] for d in listed}
    new = [r.to_json() for r in referrers if str(r.digest) not in have]
    if not new:
        return
    data = canonical_json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [*listed, *new]})
    from registry.client.push import put_manifest  # the push module stays off a pull's imports

    put_manifest(t, remote, fallback_tag(subject), data, mt.OCI_INDEX, Digest.of_bytes(data))


class Listing:
    """A pulled image's referrers as the first of `transports` that will list them lists them (with that transport):
    called with the subject (pull_image's `alongside`, on another thread), then `result` gives them or raises what
    listing raised."""

    def __init__(self, transports: list[Transport], remote: Remote):
        self.transports, self.remote = transports, remote
        self._subject: Digest | None = None
        self._found: tuple[Transport, list[dict[str, Any]]] | None = None
        self._error: Exception | None = None

    def __call__(self, subject: Digest) -> None:
        self._subject = subject
        try:
            self._found = self._list(subject)
        except Exception as e:  # raised by `result`, in the pulling thread
            self._error = e

    def _list(self, subject: Digest) -> tuple[Transport, list[dict[str, Any]]] | None:
        for t in self.transports:
            try:
                return t, remote_referrers(t, self.remote, subject)
            except (Unreachable, AuthError):
                continue
            except RegistryError as e:
                if e.status in (400, 405, 501):  # a registry that does not serve the listing at all
                    continue
                raise
        return None

    def result(self, subject: Digest) -> tuple[Transport, list[dict[str, Any]]] | None:
        """The transport that listed `subject`'s referrers and their descriptors; None when none would list them."""
        if self._subject != subject:  # not listed alongside the pull (or for another manifest): list them now
            self(subject)
        if self._error is not None:
            raise self._error
        return self._found


def pull_referrers(store: Store, remote: Remote, subject: Digest, listing: Listing,
                   progress: Progress) -> list[Referrer]:
    """Keep a pulled image's referrers (the first PULLED_REFERRERS) as store referrers, each whole or not at all.

    A registry that will not list them (no referrers API nor fallback tag, a refusal) leaves the image without;
    what it lists is hostile input: every manifest and blob is bounded and verified, and must refer to `subject`.
    """
    listed = listing.result(subject)
    if not listed or not listed[1]:
        return []
    t, found = listed
    if len(found) > PULLED_REFERRERS:
        progress.message(f"{len(found)} referrers of {subject}: only the first {PULLED_REFERRERS} are kept")
    have = {r.digest for r in store.referrers(subject)}
    kept = []
    for d in found[:PULLED_REFERRERS]:
        digest = Digest.parse(d["digest"])
        if digest not in have:
            kept.append(_pull_one(store, t, remote, subject, digest))
    return kept


def _pull_one(store: Store, t: Transport, remote: Remote, subject: Digest, digest: Digest) -> Referrer:
    """One referrer manifest and its blobs into the store."""
    what = f"referrer {remote.host}/{remote.repository}@{digest}"
    data, _, _ = fetch_manifest(t, remote, digest, what)
    try:
        refers_to, _ = referrer_of(digest, data)
        obj = json.loads(data)
        blobs = [Descriptor.from_json(b) for b in [obj["config"], *(obj.get("layers") or [])]]
    except (KeyError, TypeError, ValueError, AttributeError, DockyardError) as e:
        raise RegistryError(message=f"{what}: not an artifact manifest ({one_line(str(e))})") from None
    if refers_to != subject:
        raise RegistryError(message=f"{what}: its subject is {refers_to}, not {subject}")
    for blob in blobs:
        if not 0 <= blob.size <= REFERRER_BLOB_LIMIT:
            raise RegistryError(message=f"{what}: blob {blob.digest} is {blob.size} bytes, more than the "
                                        f"{REFERRER_BLOB_LIMIT} a referrer's blob may have")
    cancel = threading.Event()
    with store.transaction() as added:
        for blob in blobs:
            if not store.has_blob(blob.digest):
                reader = BlobReader(t, remote, blob, blob.digest.short, Progress(), cancel)
                try:
                    store.write_blob(reader, blob.digest, blob.size, f"blob {blob.digest} of {what}", added)
                finally:
                    reader.close()
        return store.add_referrer(data, added)
