"""`GET /v2/<name>/referrers/<digest>`: manifests whose subject is the digest, as an OCI index."""

from __future__ import annotations

import json

from flask import Blueprint, request

from dockyard import mediatypes as mt
from registry.context import Response, state
from registry.names import parse_digest

bp = Blueprint("referrers", __name__)


@bp.route("/v2/<path:name>/referrers/<digest>", methods=["GET"])
def referrers(name: str, digest: str) -> Response:
    """An OCI index of the referrers (empty when none), filtered by `?artifactType=`."""
    subject = parse_digest(digest)
    found = state().storage.list_referrers(name, subject)
    headers = {}
    artifact_type = request.args.get("artifactType")
    if artifact_type:
        found = [d for d in found if d.get("artifactType") == artifact_type]
        headers["OCI-Filters-Applied"] = "artifactType"
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": found}
    return Response(json.dumps(index), status=200, headers=headers, content_type=mt.OCI_INDEX)
