"""`GET /v2/_catalog`."""

from __future__ import annotations

import json

from flask import Blueprint, request

from registry.context import Response, state
from registry.endpoints.pagination import paginate

bp = Blueprint("catalog", __name__)


@bp.route("/v2/_catalog", methods=["GET"])
def catalog() -> Response:
    """The repositories the caller may pull, in lexical order, paginated."""
    reg = state()
    user = request.environ.get("registry.user")
    visible = [repo for repo in reg.storage.repositories() if reg.auth.may(user, repo, "pull")]
    page, headers = paginate(visible, "/v2/_catalog")
    return Response(json.dumps({"repositories": page}), status=200, headers=headers,
                    content_type="application/json")
