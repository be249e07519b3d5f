"""`GET /v2/_catalog`."""

from __future__ import annotations

import json

from flask import Blueprint

from registry.context import Response, state
from registry.endpoints.pagination import paginate

bp = Blueprint("catalog", __name__)


@bp.route("/v2/_catalog", methods=["GET"])
def catalog() -> Response:
    """Every repository in lexical order, paginated."""
    page, headers = paginate(state().storage.repositories(), "/v2/_catalog")
    return Response(json.dumps({"repositories": page}), status=200, headers=headers,
                    content_type="application/json")
