"""`GET /v2/<name>/tags/list`."""

from __future__ import annotations

import json

from flask import Blueprint

from dockyard.distribution import RegistryError
from registry.context import Response, state
from registry.endpoints.pagination import paginate

bp = Blueprint("tags", __name__)


@bp.route("/v2/<path:name>/tags/list", methods=["GET"])
def list_tags(name: str) -> Response:
    """The repository's tags in lexical order, paginated."""
    tags = state().storage.list_tags(name)
    if tags is None:
        raise RegistryError("NAME_UNKNOWN", {"name": name})
    page, headers = paginate(tags, f"/v2/{name}/tags/list")
    return Response(json.dumps({"name": name, "tags": page}), status=200, headers=headers,
                    content_type="application/json")
