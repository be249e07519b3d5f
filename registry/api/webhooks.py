"""`/projects/{p}/webhook/...`: webhook policies, their delivery log (executions, tasks, jobs), the event types,
a test send; and each worker's background sender, retention scheduler and replication worker."""

from __future__ import annotations

from flask import Response, jsonify, request
from sqlalchemy import func, select

from registry.api.common import ApiError, bp, created, json_body, needs, page_response, paging, rfc3339
from registry.api.executions import log_response, page_of
from registry.context import Registry
from registry.events import EVENT_TYPES, PAYLOAD_FORMATS, webhooks
from registry.guard import model, principal, project
from registry.model.tables import WebhookDelivery, WebhookPolicy

_POLICY = "/projects/<project_name_or_id>/webhook/policies/<int:webhook_policy_id>"


def start_background(reg: Registry) -> None:
    """This worker's webhook sender, retention scheduler and replication worker, for the app of `reg`: started by
    the gate on a worker's first request (after fork: never in gunicorn's master), and again after they stopped."""
    assert reg.model is not None, "background loops without --projects"
    from registry import background
    from registry.model import retention
    from registry.replication import engine
    webhooks.start(reg.model)
    retention.ensure_scheduler(reg.model, reg.storage, reg.config.gc_grace)
    engine.start(reg.model, reg.storage, reg.config.root)
    reg.background_epoch = background.epoch


def policy_json(p: WebhookPolicy) -> dict:
    """A policy as Harbor's WebhookPolicy; targets' secrets are never shown (`has_secret` says one is set)."""
    targets = [{k: v for k, v in t.items() if k != "secret"} | {"has_secret": bool(t.get("secret"))}
               for t in p.targets or []]
    return {"id": p.id, "name": p.name, "description": p.description, "project_id": p.project_id,
            "targets": targets, "event_types": p.event_types, "creator": p.creator, "enabled": p.enabled,
            "creation_time": rfc3339(p.created_at), "update_time": rfc3339(p.updated_at)}


def _policy(policy_id: int) -> WebhookPolicy:
    with model().session() as s:
        found = s.scalar(select(WebhookPolicy).where(WebhookPolicy.id == policy_id,
                                                     WebhookPolicy.project_id == project().id))
    if found is None:
        raise ApiError(404, f"webhook policy {policy_id} not found")
    return found


def _write(call, *args):
    try:
        return call(*args)
    except webhooks.WebhookError as e:
        raise ApiError(409 if "exists" in str(e) else 400, str(e)) from None


@bp.route("/projects/<project_name_or_id>/webhook/policies", methods=["GET"])
@needs("project:policies")
def list_webhook_policies(project_name_or_id: str):
    """The project's policies (paging; sort by name or creation_time)."""
    page = paging()
    stmt = select(WebhookPolicy).where(WebhookPolicy.project_id == project().id)
    if request.args.get("name"):
        stmt = stmt.where(WebhookPolicy.name.contains(request.args["name"], autoescape=True))
    with model().session() as s:
        total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        rows = s.scalars(stmt.order_by(WebhookPolicy.id).offset(page.offset).limit(page.size)).all()
    return page_response([policy_json(p) for p in rows], total, page)


@bp.route("/projects/<project_name_or_id>/webhook/policies", methods=["POST"])
@needs("project:policies")
def create_webhook_policy(project_name_or_id: str):
    """Create a policy; 201 with its Location."""
    caller = principal()
    policy_id = _write(webhooks.create_policy, model(), project().id, json_body(), caller.name if caller else "")
    return created(f"{request.path}/{policy_id}")


@bp.route("/projects/<project_name_or_id>/webhook/policies/test", methods=["POST"])
@needs("project:policies")
def test_webhook_policy(project_name_or_id: str):
    """Send a sample PUSH_ARTIFACT to the body's targets now: 200, or 400 naming each failed target."""
    try:
        errors = webhooks.test_policy(json_body(), project())
    except webhooks.WebhookError as e:
        raise ApiError(400, str(e)) from None
    if errors:
        raise ApiError(400, "; ".join(errors))
    return Response(status=200)


@bp.route(_POLICY, methods=["GET"])
@needs("project:policies")
def get_webhook_policy(project_name_or_id: str, webhook_policy_id: int):
    return jsonify(policy_json(_policy(webhook_policy_id)))


@bp.route(_POLICY, methods=["PUT"])
@needs("project:policies")
def update_webhook_policy(project_name_or_id: str, webhook_policy_id: int):
    """Change a policy (the fields given; a target without `secret` keeps its secret)."""
    if not _write(webhooks.update_policy, model(), project().id, webhook_policy_id, json_body()):
        raise ApiError(404, f"webhook policy {webhook_policy_id} not found")
    return Response(status=200)


@bp.route(_POLICY, methods=["DELETE"])
@needs("project:policies")
def delete_webhook_policy(project_name_or_id: str, webhook_policy_id: int):
    if not webhooks.delete_policy(model(), project().id, webhook_policy_id):
        raise ApiError(404, f"webhook policy {webhook_policy_id} not found")
    return Response(status=200)


def _deliveries(policy_ids: list[int]):
    stmt = select(WebhookDelivery).where(WebhookDelivery.policy_id.in_(policy_ids))
    statuses = request.args.getlist("status")
    if statuses:
        stmt = stmt.where(WebhookDelivery.status.in_([s for v in statuses for s in v.split(",")]))
    return stmt


def execution_json(d: WebhookDelivery) -> dict:
    """A delivery as Harbor 2.x's Execution (one per event and target)."""
    done = d.status in ("Success", "Error")
    return {"id": d.id, "vendor_type": "WEBHOOK", "vendor_id": d.policy_id, "status": d.status,
            "status_message": d.last_error, "trigger": "EVENT",
            "metrics": {"task_count": 1, "success_task_count": int(d.status == "Success"),
                        "error_task_count": int(d.status == "Error"),
                        "pending_task_count": int(d.status == "Pending"),
                        "running_task_count": int(d.status == "Running"), "scheduled_task_count": 0,
                        "stopped_task_count": 0},
            "extra_attrs": {"event_type": d.event_type, "address": d.address},
            "start_time": rfc3339(d.created_at), "end_time": rfc3339(d.updated_at) if done else ""}


def task_json(d: WebhookDelivery) -> dict:
    """A delivery as Harbor 2.x's Task: its attempts are `run_count`."""
    return {"id": d.id, "execution_id": d.id, "status": d.status, "status_message": d.last_error,
            "run_count": d.attempts, "extra_attrs": {"event_type": d.event_type, "address": d.address},
            "creation_time": rfc3339(d.created_at), "update_time": rfc3339(d.updated_at),
            "start_time": rfc3339(d.created_at),
            "end_time": rfc3339(d.updated_at) if d.status in ("Success", "Error") else ""}


def job_json(d: WebhookDelivery) -> dict:
    """A delivery as Harbor's (deprecated) WebhookJob, its payload as job_detail."""
    return {"id": d.id, "policy_id": d.policy_id, "event_type": d.event_type, "notify_type": "http",
            "status": d.status, "job_detail": d.payload, "creation_time": rfc3339(d.created_at),
            "update_time": rfc3339(d.updated_at)}


def _delivery(policy_id: int, delivery_id: int) -> WebhookDelivery:
    _policy(policy_id)
    with model().session() as s:
        found = s.scalar(select(WebhookDelivery).where(WebhookDelivery.id == delivery_id,
                                                       WebhookDelivery.policy_id == policy_id))
    if found is None:
        raise ApiError(404, f"execution {delivery_id} not found")
    return found


@bp.route(f"{_POLICY}/executions", methods=["GET"])
@needs("project:policies")
def list_webhook_executions(project_name_or_id: str, webhook_policy_id: int):
    """The policy's deliveries, newest first (status filter; paging)."""
    _policy(webhook_policy_id)
    return page_of(_deliveries([webhook_policy_id]), WebhookDelivery.id,
                   lambda rows: [execution_json(d) for d in rows])


@bp.route(f"{_POLICY}/executions/<int:execution_id>/tasks", methods=["GET"])
@needs("project:policies")
def list_webhook_tasks(project_name_or_id: str, webhook_policy_id: int, execution_id: int):
    d = _delivery(webhook_policy_id, execution_id)
    resp = jsonify([task_json(d)])
    resp.headers["X-Total-Count"] = "1"
    return resp


@bp.route(f"{_POLICY}/executions/<int:execution_id>/tasks/<int:task_id>/log", methods=["GET"])
@needs("project:policies")
def webhook_task_log(project_name_or_id: str, webhook_policy_id: int, execution_id: int, task_id: int):
    """A delivery's log as text: its target, attempts, outcome and the exact body sent."""
    d = _delivery(webhook_policy_id, execution_id)
    if task_id != d.id:
        raise ApiError(404, f"task {task_id} not found")
    text = (f"event: {d.event_type}\naddress: {d.address}\nstatus: {d.status}\nattempts: {d.attempts}\n"
            f"last error: {d.last_error or '-'}\npayload: {d.payload}\n")
    return log_response(text)


@bp.route("/projects/<project_name_or_id>/webhook/jobs", methods=["GET"])
@needs("project:policies")
def list_webhook_jobs(project_name_or_id: str):
    """Harbor's deprecated job list: `policy_id` (required), `status` filter, paging."""
    text = request.args.get("policy_id", "")
    if not text.isdigit():
        raise ApiError(400, "policy_id: a webhook policy id is required")
    _policy(int(text))
    return page_of(_deliveries([int(text)]), WebhookDelivery.id, lambda rows: [job_json(d) for d in rows])


@bp.route("/projects/<project_name_or_id>/webhook/events", methods=["GET"])
@needs("project:read")
def webhook_event_types(project_name_or_id: str):
    """The event types, notify types and payload formats policies may use."""
    return jsonify({"event_type": list(EVENT_TYPES), "notify_type": ["http"],
                    "payload_formats": [{"notify_type": "http", "formats": list(PAYLOAD_FORMATS)}]})


@bp.route("/projects/<project_name_or_id>/webhook/lasttrigger", methods=["GET"])
@needs("project:policies")
def webhook_last_trigger(project_name_or_id: str):
    """Per policy and event type, when it last queued a delivery."""
    with model().session() as s:
        policies = s.scalars(select(WebhookPolicy).where(WebhookPolicy.project_id == project().id)).all()
        last = {(p, e): t for p, e, t in s.execute(
            select(WebhookDelivery.policy_id, WebhookDelivery.event_type, func.max(WebhookDelivery.created_at))
            .where(WebhookDelivery.policy_id.in_([p.id for p in policies]))
            .group_by(WebhookDelivery.policy_id, WebhookDelivery.event_type))}
    return jsonify([{"policy_name": p.name, "event_type": e, "enabled": p.enabled,
                     "creation_time": rfc3339(p.created_at),
                     "last_trigger_time": rfc3339(last[(p.id, e)]) if (p.id, e) in last else ""}
                    for p in policies for e in p.event_types or []])
