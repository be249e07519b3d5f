"""Blob uploads: monolithic POST, chunked sessions (POST/PATCH/GET/PUT/DELETE) and cross-repository mounts."""

from __future__ import annotations

import contextlib
import re

from flask import Blueprint, request

from dockyard.distribution import RegistryError
from registry.context import Response, body, header_number, state
from registry.endpoints.product import charge_blob
from registry.names import check_repository, parse_digest
from registry.storage import UploadInfo, UploadOffsetMismatch, UploadUnknown

bp = Blueprint("uploads", __name__)

_CONTENT_RANGE_RE = re.compile(r"(?:bytes[ =])?([0-9]+)-([0-9]+)(?:/(?:[0-9]+|\*))?")


def _session_headers(name: str, info: UploadInfo) -> dict[str, str]:
    # distribution reports "0-0" for an empty session; clients expect that form.
    return {"Location": f"/v2/{name}/blobs/uploads/{info.id}", "Docker-Upload-UUID": info.id,
            "Range": f"0-{max(info.size - 1, 0)}", "Content-Length": "0"}


def _created(name: str, digest: str) -> Response:
    return Response(status=201, headers={"Location": f"/v2/{name}/blobs/{digest}",
                                         "Docker-Content-Digest": digest, "Content-Length": "0"})


def _unknown(upload_id: str) -> RegistryError:
    return RegistryError("BLOB_UPLOAD_UNKNOWN", {"uuid": upload_id[:64]})


@bp.route("/v2/<path:name>/blobs/uploads/", methods=["POST"], strict_slashes=False)
def start_upload(name: str) -> Response:
    """Mount, monolithic upload (`?digest=`), or open a session (202)."""
    reg = state()
    mount, source = request.args.get("mount"), request.args.get("from")
    if mount is not None:
        d = parse_digest(mount)
        mounted = reg.storage.blob_linked(source, d) if source and _may_mount(source) else None
        if mounted is not None and reg.storage.link_blob(name, d):
            charge_blob(name, d, mounted.size)
            return _created(name, str(d))
    limit = reg.config.max_uploads
    if limit and reg.storage.upload_count() >= limit:
        raise RegistryError("TOOMANYREQUESTS", {"open_uploads_limit": limit}, headers={"Retry-After": "1"})
    digest = request.args.get("digest")
    if digest is not None and mount is None:
        d = parse_digest(digest)
        info = reg.storage.create_upload(name)
        try:
            blob = reg.storage.commit_upload(name, info.id, d, body())
        except Exception:
            # The client never learnt this session's id: do not leave it behind.
            with contextlib.suppress(UploadUnknown):
                reg.storage.cancel_upload(name, info.id)
            raise
        charge_blob(name, d, blob.size)
        return _created(name, str(d))
    info = reg.storage.create_upload(name)
    headers = _session_headers(name, info)
    headers["OCI-Chunk-Min-Length"] = "0"
    return Response(status=202, headers=headers)


def _may_mount(source: str) -> bool:
    """A mount source must be a valid name the caller may pull from."""
    try:
        check_repository(source)
    except RegistryError:
        return False
    return state().auth.allowed(request, source, "pull")


@bp.route("/v2/<path:name>/blobs/uploads/<upload_id>", methods=["GET"])
def upload_status(name: str, upload_id: str) -> Response:
    """204 with the session's current Range."""
    try:
        info = state().storage.upload_info(name, upload_id)
    except UploadUnknown:
        raise _unknown(upload_id) from None
    return Response(status=204, headers=_session_headers(name, info))


def _content_range_start() -> int | None:
    """Where the client says this chunk starts (None without Content-Range), checked against Content-Length."""
    header = request.headers.get("Content-Range")
    if header is None:
        return None
    m = _CONTENT_RANGE_RE.fullmatch(header.strip())
    start, end = (header_number(m.group(1)), header_number(m.group(2))) if m else (0, -1)
    if end < start:
        raise RegistryError("RANGE_INVALID", {"Content-Range": header[:100]})
    length = request.content_length
    if length is not None and length != end - start + 1:
        raise RegistryError("SIZE_INVALID", {"Content-Range": header[:100], "Content-Length": length})
    return start


def _out_of_order(name: str, upload_id: str, size: int) -> RegistryError:
    headers = {"Location": f"/v2/{name}/blobs/uploads/{upload_id}", "Range": f"0-{max(size - 1, 0)}",
               "Docker-Upload-UUID": upload_id}
    return RegistryError("RANGE_INVALID", {"size": size}, headers=headers)


@bp.route("/v2/<path:name>/blobs/uploads/<upload_id>", methods=["PATCH"])
def upload_chunk(name: str, upload_id: str) -> Response:
    """Append a chunk; it must start where the session ends."""
    start = _content_range_start()
    try:
        info = state().storage.append_upload(name, upload_id, body(), start)
    except UploadUnknown:
        raise _unknown(upload_id) from None
    except UploadOffsetMismatch as e:
        raise _out_of_order(name, upload_id, e.size) from None
    return Response(status=202, headers=_session_headers(name, info))


@bp.route("/v2/<path:name>/blobs/uploads/<upload_id>", methods=["PUT"])
def finish_upload(name: str, upload_id: str) -> Response:
    """Append an optional last chunk, verify `?digest=`, and store the blob."""
    d = parse_digest(request.args.get("digest"))
    start = _content_range_start()
    storage = state().storage
    try:
        if start is not None:
            info = storage.upload_info(name, upload_id)
            if info.size != start:
                raise _out_of_order(name, upload_id, info.size)
        blob = storage.commit_upload(name, upload_id, d, body())
    except UploadUnknown:
        raise _unknown(upload_id) from None
    charge_blob(name, d, blob.size)
    return _created(name, str(d))


@bp.route("/v2/<path:name>/blobs/uploads/<upload_id>", methods=["DELETE"])
def cancel_upload(name: str, upload_id: str) -> Response:
    """Discard a session."""
    try:
        state().storage.cancel_upload(name, upload_id)
    except UploadUnknown:
        raise _unknown(upload_id) from None
    return Response(status=204, headers={"Content-Length": "0"})
