"""`GET /v2/` (API version check), `/healthz` and `/metrics`."""

from __future__ import annotations

import os

from flask import Blueprint

from registry.context import Response, state

bp = Blueprint("base", __name__)


@bp.route("/v2/", methods=["GET", "HEAD"], strict_slashes=False)
def version() -> Response:
    """The API base: 200 tells the client this is a v2 registry and its credentials (if any) work."""
    return Response("{}", status=200, content_type="application/json")


@bp.route("/healthz", methods=["GET", "HEAD"])
def healthz() -> Response:
    """Liveness and storage check."""
    root = state().storage.driver.local_path("")
    if root is not None and not os.access(root, os.W_OK):
        return Response('{"status":"storage not writable"}\n', status=503, content_type="application/json")
    return Response('{"status":"ok"}\n', status=200, content_type="application/json")


@bp.route("/metrics", methods=["GET"])
def metrics() -> Response:
    """Prometheus text exposition of this registry's counters (all workers)."""
    reg = state()
    return Response(reg.metrics.render(reg.storage.upload_count()), status=200,
                    content_type="text/plain; version=0.0.4; charset=utf-8")
