"""Blobs: `HEAD|GET|DELETE /v2/<name>/blobs/<digest>`, with single byte ranges served zero-copy."""

from __future__ import annotations

import re
from collections.abc import Iterable

from flask import Blueprint, request

from dockyard.distribution import RegistryError
from registry.context import Response, header_number, headers_only, state
from registry.names import parse_digest
from registry.storage import BlobInfo

bp = Blueprint("blobs", __name__)

_RANGE_RE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
_SECTION = 1 << 20


@bp.route("/v2/<path:name>/blobs/<digest>", methods=["GET", "HEAD"])
def get_blob(name: str, digest: str) -> Response:
    """Serve a blob linked into the repository (a pull-through cache fetches a missing one)."""
    d = parse_digest(digest)
    reg = state()
    info = reg.storage.blob_linked(name, d)
    body = None
    if info is None and reg.proxy is not None:
        # Streamed as it is stored, unless a HEAD or a range needs it stored first.
        info, body = reg.proxy.blob(name, d, stream=request.method == "GET" and "Range" not in request.headers)
    if info is None:
        raise RegistryError("BLOB_UNKNOWN", {"digest": digest})
    return blob_response(info, body)


@bp.route("/v2/<path:name>/blobs/<digest>", methods=["DELETE"])
def delete_blob(name: str, digest: str) -> Response:
    """Unlink a blob from the repository (GC reclaims the bytes)."""
    d = parse_digest(digest)
    if not state().storage.unlink_blob(name, d):
        raise RegistryError("BLOB_UNKNOWN", {"digest": digest})
    return Response(status=202, headers={"Docker-Content-Digest": str(d), "Content-Length": "0"})


def blob_response(info: BlobInfo, body: Iterable[bytes] | None = None) -> Response:
    """200 or 206 with the blob (or a byte range of it); HEAD gets the headers only; a `body` given is sent whole
    instead of the stored bytes."""
    size = info.size
    start, end, status = 0, size - 1, 200
    headers = {"Docker-Content-Digest": str(info.digest), "Content-Type": "application/octet-stream",
               "Accept-Ranges": "bytes", "ETag": f'"{info.digest}"',
               "Cache-Control": "max-age=31536000"}
    range_header = request.headers.get("Range")
    if range_header:
        start, end = _parse_range(range_header, size)
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    length = end - start + 1
    headers["Content-Length"] = str(length)
    if request.method == "HEAD" or length == 0:
        return headers_only(status, headers)
    if body is not None:
        return Response(body, status=status, headers=headers, direct_passthrough=True)
    storage = state().storage
    url = storage.blob_redirect_url(info.digest)
    if url is not None:  # a driver that serves the bytes itself (a presigned URL)
        return Response(status=307, headers={"Location": url, "Content-Length": "0"})
    try:
        f = storage.open_blob(info.digest, start)
    except FileNotFoundError:  # collected between the lookup and now
        raise RegistryError("BLOB_UNKNOWN", {"digest": str(info.digest)}) from None
    wrapper = request.environ.get("wsgi.file_wrapper")
    if wrapper is not None and getattr(wrapper, "__module__", "").startswith("gunicorn"):
        # gunicorn sends a file wrapper with sendfile(2) from the file's offset for Content-Length bytes.
        body = wrapper(f, _SECTION)
    else:
        body = _section(f, length)
    return Response(body, status=status, headers=headers, direct_passthrough=True)


def _section(f, length: int):
    """Yield `length` bytes from the current position of `f`, then close it."""
    try:
        while length > 0:
            chunk = f.read(min(_SECTION, length))
            if not chunk:
                break
            length -= len(chunk)
            yield chunk
    finally:
        f.close()


def _parse_range(header: str, size: int) -> tuple[int, int]:
    """The (start, end) of a single `bytes=a-b` range; 416 RANGE_INVALID when unsatisfiable."""
    m = _RANGE_RE.fullmatch(header.strip())
    unsatisfiable = RegistryError("RANGE_INVALID", {"range": header[:100]},
                                  headers={"Content-Range": f"bytes */{size}"})
    if not m or (not m.group(1) and not m.group(2)):
        raise unsatisfiable
    if not m.group(1):  # suffix range: the last N bytes
        suffix = header_number(m.group(2))
        if suffix == 0 or size == 0:
            raise unsatisfiable
        return max(0, size - suffix), size - 1
    start = header_number(m.group(1))
    end = header_number(m.group(2)) if m.group(2) else size - 1
    if start >= size or end < start:
        raise unsatisfiable
    return start, min(end, size - 1)
