"""Manifests: `PUT|GET|HEAD|DELETE /v2/<name>/manifests/<tag-or-digest>`."""

from __future__ import annotations

from flask import Blueprint, request

from dockyard import mediatypes as mt
from dockyard.digest import Digest, InvalidDigest
from dockyard.distribution import RegistryError
from registry import manifests
from registry.context import Response, headers_only, read_limited, state
from registry.endpoints import product
from registry.names import is_tag, parse_digest

bp = Blueprint("manifests", __name__)


def _resolve(name: str, reference: str) -> Digest:
    """The digest a tag or digest reference names in `name`; MANIFEST_UNKNOWN / NAME_UNKNOWN otherwise."""
    storage = state().storage
    if ":" in reference:
        return parse_digest(reference)
    digest = storage.resolve_tag(name, reference) if is_tag(reference) else None
    if digest is None:
        raise _unknown(name, reference)
    return digest


def _unknown(name: str, reference: str) -> RegistryError:
    if not state().storage.repository_exists(name):
        return RegistryError("NAME_UNKNOWN", {"name": name})
    return RegistryError("MANIFEST_UNKNOWN", {"reference": reference[:200]})


@bp.route("/v2/<path:name>/manifests/<reference>", methods=["GET", "HEAD"])
def get_manifest(name: str, reference: str) -> Response:
    """The stored bytes, exactly, with their media type (or a platform child for a client that needs one)."""
    reg = state()
    if reg.proxy is not None:
        reg.proxy.refresh_manifest(name, reference)
    digest = _resolve(name, reference)
    found = reg.storage.get_manifest(name, digest)
    if found is None:
        raise _unknown(name, reference)
    data, media_type = found
    req = request._get_current_object()  # type: ignore[attr-defined]  # read once: the proxy costs each time
    product.check_pull(reg, req, name, digest)
    if media_type in mt.INDEXES and ":" not in reference:
        child = _platform_child(name, data, media_type)
        if child is not None:
            digest, data, media_type = child
    shown = str(digest)  # once: the headers and the pull's record want it
    headers = {"Docker-Content-Digest": shown, "Content-Type": media_type,
               "Content-Length": str(len(data)), "ETag": f'"{shown}"'}
    if req.method == "HEAD":
        return headers_only(200, headers)
    product.record_pull(reg, req, name, shown, None if ":" in reference else reference)
    return Response(data, status=200, headers=headers)


def _accepted() -> set[str]:
    values = request.headers.getlist("Accept")
    return {part.split(";", 1)[0].strip() for value in values for part in value.split(",")}


def _platform_child(name: str, data: bytes, media_type: str) -> tuple[Digest, bytes, str] | None:
    """For a client that accepts image manifests but not this index type, the linux/amd64 child (as distribution)."""
    accepted = _accepted()
    if not accepted or media_type in accepted or "*/*" in accepted:
        return None
    if not any(t in accepted for t in mt.IMAGE_MANIFESTS):
        return None
    try:
        doc = manifests.load_json(data)
    except RegistryError:
        return None
    children = doc.get("manifests") if isinstance(doc, dict) else None
    # Indexes stored before PUT checked the schema may hold anything: pick only well-formed children.
    for child in children if isinstance(children, list) else ():
        platform = child.get("platform") if isinstance(child, dict) else None
        if not isinstance(platform, dict) or (platform.get("os"), platform.get("architecture")) != ("linux", "amd64") \
                or not isinstance(child.get("mediaType"), str) or child["mediaType"] not in accepted:
            continue
        try:
            digest = Digest.parse(str(child.get("digest")))
        except InvalidDigest:
            return None
        found = state().storage.get_manifest(name, digest)
        return (digest, *found) if found else None
    return None


@bp.route("/v2/<path:name>/manifests/<reference>", methods=["PUT"])
def put_manifest(name: str, reference: str) -> Response:
    """Validate and store a manifest, tag it if pushed by tag, index it as a referrer if it has a subject."""
    reg = state()
    data = read_limited(reg.config.manifest_max)
    stored = manifests.store(reg.storage, name, reference, data, request.mimetype or None,
                             lambda digest, media_type, tag: product.admit_push(name, digest, data, media_type, tag),
                             lambda indexed, tag: product.record_push(name, indexed, tag))
    headers = {"Location": f"/v2/{name}/manifests/{stored.digest}", "Docker-Content-Digest": str(stored.digest),
               "Content-Length": "0"}
    if stored.subject is not None:
        headers["OCI-Subject"] = str(stored.subject)
    return Response(status=201, headers=headers)


@bp.route("/v2/<path:name>/manifests/<reference>", methods=["DELETE"])
def delete_manifest(name: str, reference: str) -> Response:
    """By digest: unlink the manifest and its tags.  By tag: remove just the tag."""
    storage = state().storage
    if ":" not in reference:
        if not is_tag(reference):
            raise _unknown(name, reference)
        deleted = product.delete_tag(name, reference)
        if not (storage.delete_tag(name, reference) if deleted is None else deleted):
            raise _unknown(name, reference)
        return Response(status=202, headers={"Content-Length": "0"})
    digest = parse_digest(reference)
    deleted = product.delete_artifact(name, digest)
    if deleted is not None:
        if not deleted:
            raise _unknown(name, reference)
        return Response(status=202, headers={"Content-Length": "0"})
    found = storage.get_manifest(name, digest)
    if found is None or not storage.delete_manifest(name, digest):
        raise _unknown(name, reference)
    subject = manifests.references(found[0])[2]
    if subject is not None:
        storage.remove_referrer(name, subject, digest)
    return Response(status=202, headers={"Content-Length": "0"})
