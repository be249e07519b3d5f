"""The per-app state the endpoints share, and small request helpers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

import flask
from flask import current_app, request

from dockyard.distribution import RegistryError

if TYPE_CHECKING:
    from registry.auth import Authorizer
    from registry.config import Config
    from registry.metrics import Metrics
    from registry.model.db import Database
    from registry.proxy import Proxy
    from registry.storage import Layout


NUMBER_CAP = 2 ** 63  # larger than any size or offset the registry holds


def header_number(digits: str) -> int:
    """The value of an ASCII digit string, capped at NUMBER_CAP so a thousand-digit number costs nothing."""
    significant = digits.lstrip("0")
    return int(significant or "0") if len(significant) < 19 else NUMBER_CAP


class Response(flask.Response):
    """A response with no Content-Type unless one is given (empty API answers carry none, like distribution)."""

    default_mimetype = None


def headers_only(status: int, headers: dict[str, str]) -> Response:
    """A body-less response (HEAD) whose Content-Length is the one given, not 0."""
    resp = Response(status=status)
    resp.headers.update(headers)
    return resp


@dataclass
class Registry:
    """Configuration, storage, authorizer and metrics of one registry app."""

    config: Config
    storage: Layout
    auth: Authorizer
    metrics: Metrics
    model: Database | None = None  # the product's metadata, when `projects` is on
    proxy: Proxy | None = None  # the upstream, when this registry is a pull-through cache
    # registry.background's epoch when the model's loops were started (registry.api.webhooks.start_background).
    background_epoch: int = 0


def state() -> Registry:
    """The Registry of the app handling this request."""
    return current_app.extensions["registry"]


class ResponseAborted(OSError):
    """A streamed answer cannot be finished (its source failed): the worker drops the connection, so the client
    sees a body shorter than its Content-Length rather than a whole wrong one."""


class BodyError(Exception):
    """The client's request body broke off or was malformed in transfer."""


class RequestBody:
    """The request body as a stream whose transfer errors become BLOB_UPLOAD_INVALID, counting bytes read."""

    def __init__(self, stream: IO[bytes]):
        self._stream = stream
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        try:
            data = self._stream.read(n)
        except Exception as e:  # gunicorn raises several unrelated types for a broken chunked body
            raise BodyError(str(e) or type(e).__name__) from None
        self.size += len(data)
        request.environ["registry.bytes_in"] = request.environ.get("registry.bytes_in", 0) + len(data)
        return data


def body() -> RequestBody:
    """This request's body stream."""
    return RequestBody(request.stream)


def read_limited(limit: int) -> bytes:
    """Read the whole body, answering 413 if it is larger than `limit` bytes."""
    length = request.content_length
    if length is not None and length > limit:
        raise RegistryError("SIZE_INVALID", {"limit": limit}, status=413, message="payload too large")
    stream, parts, total = body(), [], 0
    while chunk := stream.read(min(1 << 20, limit + 1 - total)):
        parts.append(chunk)
        total += len(chunk)
        if total > limit:
            raise RegistryError("SIZE_INVALID", {"limit": limit}, status=413, message="payload too large")
    return b"".join(parts)
