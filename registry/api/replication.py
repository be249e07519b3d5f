"""`/replication/policies` and `/replication/executions` (Harbor's): policies copying to or from a remote registry,
their runs (started here, carried out by a worker), the runs' per-artifact tasks and their logs. System admins
only, as Harbor."""

from __future__ import annotations

from flask import Response, jsonify, request
from sqlalchemy import select

from registry.api.common import ApiError, bp, created, filter_q, json_body, needs, paging, parse_q
from registry.api.executions import log_response, page_of
from registry.guard import model, principal
from registry.model import replication
from registry.model.tables import ReplicationExecution, ReplicationPolicy, ReplicationRegistry, ReplicationTask


def _policies_json(rows: list[ReplicationPolicy]) -> list[dict]:
    ids = {i for p in rows for i in (p.src_registry_id, p.dest_registry_id) if i}
    with model().session() as s:
        registries = {r.id: replication.registry_json(r)
                      for r in s.scalars(select(ReplicationRegistry).where(ReplicationRegistry.id.in_(ids)))}
    return [replication.policy_json(p, registries) for p in rows]


def _executions_json(rows: list[ReplicationExecution]) -> list[dict]:
    counts = replication.counts(model(), [e.id for e in rows])
    return [replication.execution_json(e, counts[e.id]) for e in rows]


def _execution(execution_id: int) -> ReplicationExecution:
    with model().session() as s:
        found = s.get(ReplicationExecution, execution_id)
    if found is None:
        raise ApiError(404, f"execution {execution_id} not found")
    return found


def _int_arg(name: str) -> int | None:
    text = request.args.get(name)
    if text is None or text == "":
        return None
    if not text.isdigit() or len(text) > 9:
        raise ApiError(400, f"{name}: a number")
    return int(text)


@bp.route("/replication/policies", methods=["GET"])
@needs("sysadmin")
def list_replication_policies():
    """The policies (paging; `name`, `q=name=~x`), newest first."""
    stmt = select(ReplicationPolicy)
    if request.args.get("name"):
        stmt = stmt.where(ReplicationPolicy.name.contains(request.args["name"], autoescape=True))
    stmt = filter_q(stmt, parse_q(request.args.get("q")), {"name": ReplicationPolicy.name})
    return page_of(stmt, ReplicationPolicy.id, _policies_json)


@bp.route("/replication/policies", methods=["POST"])
@needs("sysadmin")
def create_replication_policy():
    """Create a policy; 201 with its Location."""
    caller = principal()
    policy_id = replication.create_policy(model(), json_body(), caller.name if caller else "")
    return created(f"{request.path}/{policy_id}")


@bp.route("/replication/policies/<int:policy_id>", methods=["GET"])
@needs("sysadmin")
def get_replication_policy(policy_id: int):
    with model().session() as s:
        found = s.get(ReplicationPolicy, policy_id)
    if found is None:
        raise ApiError(404, f"replication policy {policy_id} not found")
    return jsonify(_policies_json([found])[0])


@bp.route("/replication/policies/<int:policy_id>", methods=["PUT"])
@needs("sysadmin")
def update_replication_policy(policy_id: int):
    """Change the fields given."""
    replication.update_policy(model(), policy_id, json_body())
    return Response(status=200)


@bp.route("/replication/policies/<int:policy_id>", methods=["DELETE"])
@needs("sysadmin")
def delete_replication_policy(policy_id: int):
    replication.delete_policy(model(), policy_id)
    return Response(status=200)


@bp.route("/replication/executions", methods=["POST"])
@needs("sysadmin")
def start_replication():
    """Run a policy now (`{"policy_id": n}`): queued for a worker; 201 with the execution's Location."""
    from registry.replication import engine
    policy_id = json_body().get("policy_id")
    if not isinstance(policy_id, int) or isinstance(policy_id, bool):
        raise ApiError(400, "policy_id: a replication policy id")
    caller = principal()
    execution_id = replication.start_execution(model(), policy_id, "manual", caller.name if caller else "")
    engine.wake(model())
    return created(f"{request.path}/{execution_id}")


@bp.route("/replication/executions", methods=["GET"])
@needs("sysadmin")
def list_replication_executions():
    """The runs, newest first (`policy_id`, `status`, `trigger` filters; paging)."""
    stmt = select(ReplicationExecution)
    policy_id = _int_arg("policy_id")
    if policy_id is not None:
        stmt = stmt.where(ReplicationExecution.policy_id == policy_id)
    for key, column in (("status", ReplicationExecution.status), ("trigger", ReplicationExecution.trigger)):
        if request.args.get(key):
            stmt = stmt.where(column == request.args[key])
    return page_of(stmt, ReplicationExecution.id, _executions_json)


@bp.route("/replication/executions/<int:execution_id>", methods=["GET"])
@needs("sysadmin")
def get_replication_execution(execution_id: int):
    return jsonify(_executions_json([_execution(execution_id)])[0])


@bp.route("/replication/executions/<int:execution_id>", methods=["PUT"])
@needs("sysadmin")
def stop_replication_execution(execution_id: int):
    """Stop a run: it ends after the task at hand."""
    replication.stop_execution(model(), execution_id)
    return Response(status=200)


@bp.route("/replication/executions/<int:execution_id>/tasks", methods=["GET"])
@needs("sysadmin")
def list_replication_tasks(execution_id: int):
    """A run's tasks, one per artifact, newest first (`status`, `resource_type` filters; paging)."""
    paging()  # a bad page is refused before the execution is read
    _execution(execution_id)
    stmt = select(ReplicationTask).where(ReplicationTask.execution_id == execution_id)
    for key, column in (("status", ReplicationTask.status), ("resource_type", ReplicationTask.resource_type)):
        if request.args.get(key):
            stmt = stmt.where(column == request.args[key])
    return page_of(stmt, ReplicationTask.id, lambda rows: [replication.task_json(t) for t in rows])


@bp.route("/replication/executions/<int:execution_id>/tasks/<int:task_id>/log", methods=["GET"])
@needs("sysadmin")
def replication_task_log(execution_id: int, task_id: int):
    """A task's log as text: each attempt, what moved, why it failed."""
    with model().session() as s:
        task = s.scalar(select(ReplicationTask).where(ReplicationTask.id == task_id,
                                                      ReplicationTask.execution_id == execution_id))
    if task is None:
        raise ApiError(404, f"task {task_id} not found")
    return log_response(task.log)
