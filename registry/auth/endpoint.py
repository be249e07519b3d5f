"""`GET /token`: the Docker token endpoint, issuing JWTs for the scopes a user holds."""

from __future__ import annotations

import json
import time

from flask import Blueprint, request

from dockyard.distribution import RegistryError
from registry.auth.token import Scope
from registry.context import Response, state

bp = Blueprint("token", __name__)


@bp.route("/token", methods=["GET"])
def token() -> Response:
    """Authenticate with Basic credentials (or none, for anonymous rights) and get a token for `?scope=`."""
    auth = state().auth
    if auth.tokens is None:
        raise RegistryError("UNSUPPORTED", "token auth is not enabled", status=404)
    service = request.args.get("service")
    if service and service != auth.tokens.service:
        raise RegistryError("DENIED", {"service": service[:100]}, message="unknown service")
    user = auth.basic_user(request)
    requested = []
    for value in request.args.getlist("scope"):
        for text in value.split(" "):
            scope = Scope.parse(text)
            if scope is not None:
                requested.append(scope)
    if user is None and request.args.get("account"):
        raise RegistryError("UNAUTHORIZED", "credentials required for account",
                            headers={"WWW-Authenticate": 'Basic realm="dockyard-registry"'})
    tok, expires_in, issued = auth.tokens.issue(user or "", auth.grant(user, requested))
    issued_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(issued))
    body = {"token": tok, "access_token": tok, "expires_in": expires_in, "issued_at": issued_at}
    return Response(json.dumps(body), status=200, content_type="application/json",
                    headers={"Cache-Control": "no-store"})
