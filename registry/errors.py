"""Distribution-spec error codes and their JSON responses."""

from __future__ import annotations

import json

from werkzeug.wrappers import Response

# code -> (HTTP status, message) per the OCI distribution spec (and distribution's extras).
CODES: dict[str, tuple[int, str]] = {
    "BLOB_UNKNOWN": (404, "blob unknown to registry"),
    "BLOB_UPLOAD_INVALID": (400, "blob upload invalid"),
    "BLOB_UPLOAD_UNKNOWN": (404, "blob upload unknown to registry"),
    "DIGEST_INVALID": (400, "provided digest did not match uploaded content"),
    "MANIFEST_BLOB_UNKNOWN": (400, "manifest references a manifest or blob unknown to registry"),
    "MANIFEST_INVALID": (400, "manifest invalid"),
    "MANIFEST_UNKNOWN": (404, "manifest unknown to registry"),
    "NAME_INVALID": (400, "invalid repository name"),
    "NAME_UNKNOWN": (404, "repository name not known to registry"),
    "SIZE_INVALID": (400, "provided length did not match content length"),
    "UNAUTHORIZED": (401, "authentication required"),
    "DENIED": (403, "requested access to the resource is denied"),
    "UNSUPPORTED": (405, "the operation is unsupported"),
    "TOOMANYREQUESTS": (429, "too many requests"),
    "RANGE_INVALID": (416, "invalid content range"),
    "PAGINATION_NUMBER_INVALID": (400, "invalid number of results requested"),
}


class RegistryError(Exception):
    """An error answered with the spec's JSON body: {"errors": [{code, message, detail}]}."""

    def __init__(self, code: str, detail: object = None, status: int | None = None,
                 message: str | None = None, headers: dict[str, str] | None = None):
        default_status, default_message = CODES[code]
        super().__init__(message or default_message)
        self.code = code
        self.status = status or default_status
        self.message = message or default_message
        self.detail = detail
        self.headers = headers or {}

    def response(self) -> Response:
        """The JSON error response."""
        return error_response(self.code, self.message, self.detail, self.status, self.headers)


def error_response(code: str, message: str, detail: object, status: int,
                   headers: dict[str, str] | None = None) -> Response:
    """A spec-shaped error body with the given status."""
    entry: dict[str, object] = {"code": code, "message": message}
    if detail is not None:
        entry["detail"] = detail
    resp = Response(json.dumps({"errors": [entry]}), status=status, content_type="application/json")
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp
