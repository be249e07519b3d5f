"""`/registries`: the remote registries replication copies to or from (Harbor's registry endpoints), with a ping.
System admins only; secrets are stored encrypted and shown as "*****"."""

from __future__ import annotations

from flask import Response, current_app, jsonify, request
from sqlalchemy import select

from registry.api.common import ApiError, bp, created, filter_q, json_body, needs, parse_q
from registry.api.executions import page_of
from registry.guard import model
from registry.model import replication
from registry.model.tables import ReplicationRegistry

_secrets: dict[str, replication.Secrets] = {}  # registry root -> its key (read once per process)


def secrets() -> replication.Secrets:
    """The registry root's secrets key."""
    root = current_app.extensions["registry"].config.root
    if root not in _secrets:
        _secrets[root] = replication.Secrets(root)
    return _secrets[root]


def _get(registry_id: int) -> ReplicationRegistry:
    with model().session() as s:
        found = s.get(ReplicationRegistry, registry_id)
    if found is None:
        raise ApiError(404, f"registry {registry_id} not found")
    return found


@bp.route("/registries", methods=["GET"])
@needs("sysadmin")
def list_registries():
    """The endpoints, newest first (paging; `q=name=~x`, `name`)."""
    stmt = select(ReplicationRegistry)
    if request.args.get("name"):
        stmt = stmt.where(ReplicationRegistry.name.contains(request.args["name"], autoescape=True))
    stmt = filter_q(stmt, parse_q(request.args.get("q")),
                    {"name": ReplicationRegistry.name, "type": ReplicationRegistry.type,
                     "url": ReplicationRegistry.url})
    return page_of(stmt, ReplicationRegistry.id, lambda rows: [replication.registry_json(r) for r in rows])


@bp.route("/registries", methods=["POST"])
@needs("sysadmin")
def create_registry():
    """Create an endpoint; 201 with its Location."""
    registry_id = replication.create_registry(model(), secrets(), json_body())
    return created(f"{request.path}/{registry_id}")


@bp.route("/registries/ping", methods=["POST"])
@needs("sysadmin")
def ping_registry():
    """Check an endpoint (stored: `id`; or described: url, credential, insecure) answers with its credentials."""
    from registry.replication.sides import ping
    why = ping(replication.endpoint_from_body(model(), secrets(), json_body()))
    if why:
        raise ApiError(400, f"failed to ping the registry: {why}")
    return Response(status=200)


@bp.route("/registries/<int:registry_id>", methods=["GET"])
@needs("sysadmin")
def get_registry(registry_id: int):
    return jsonify(replication.registry_json(_get(registry_id)))


@bp.route("/registries/<int:registry_id>", methods=["PUT"])
@needs("sysadmin")
def update_registry(registry_id: int):
    """Change the fields given (a credential whose secret is "*****" keeps the stored secret)."""
    replication.update_registry(model(), secrets(), registry_id, json_body())
    return Response(status=200)


@bp.route("/registries/<int:registry_id>", methods=["DELETE"])
@needs("sysadmin")
def delete_registry(registry_id: int):
    replication.delete_registry(model(), registry_id)
    return Response(status=200)


@bp.route("/replication/adapters", methods=["GET"])
@needs("sysadmin")
def replication_adapters():
    """The registry types an endpoint may have."""
    return jsonify(list(replication.REGISTRY_TYPES))
