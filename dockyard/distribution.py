"""The distribution spec's errors: its error codes, and the one error a registry answers with and a client raises."""

from __future__ import annotations

import json

from dockyard.errors import DockyardError

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
    "UNKNOWN": (500, "unknown error"),
}


class RegistryError(DockyardError):
    """A registry's error: a spec code, a one-line message and its detail.

    The registry answers it with `status` and the spec's JSON body; the client raises it (message only, or the
    code a registry answered with) when a registry failed or could not be talked to."""

    def __init__(self, code: str = "UNKNOWN", detail: object = None, status: int | None = None,
                 message: str | None = None, headers: dict[str, str] | None = None):
        default_status, default_message = CODES[code]
        super().__init__(message or default_message)
        self.code = code
        self.status = status or default_status
        self.message = message or default_message
        self.detail = detail
        self.headers = headers or {}

    def response(self) -> tuple[bytes, int, dict[str, str]]:
        """The HTTP answer (body, status, headers): {"errors": [{code, message, detail}]} as JSON."""
        entry: dict[str, object] = {"code": self.code, "message": self.message}
        if self.detail is not None:
            entry["detail"] = self.detail
        return (json.dumps({"errors": [entry]}).encode(), self.status,
                {"Content-Type": "application/json", **self.headers})
