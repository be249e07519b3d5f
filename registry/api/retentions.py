"""`/retentions`: a project's tag retention policy (Harbor's shape), its runs (dry or real) and their per-repository
tasks and logs. The project is the policy's `scope.ref`, so rights are checked here rather than from the URL."""

from __future__ import annotations

from flask import Response, current_app, jsonify, request
from sqlalchemy import select

from registry.api.common import ApiError, bp, created, json_body, needs, paging
from registry.api.executions import log_response, page_of, page_of_list
from registry.guard import model, principal
from registry.model import access, retention
from registry.model.tables import Project, RetentionExecution, RetentionPolicy

_TEMPLATES = [
    {"rule_template": "latestPushedK", "display_text": "the most recently pushed # artifacts", "action": "retain",
     "params": [{"type": "int", "unit": "COUNT", "required": True}]},
    {"rule_template": "latestPulledN", "display_text": "the most recently pulled # artifacts", "action": "retain",
     "params": [{"type": "int", "unit": "COUNT", "required": True}]},
    {"rule_template": "nDaysSinceLastPush", "display_text": "pushed within the last # days", "action": "retain",
     "params": [{"type": "int", "unit": "DAYS", "required": True}]},
    {"rule_template": "nDaysSinceLastPull", "display_text": "pulled within the last # days", "action": "retain",
     "params": [{"type": "int", "unit": "DAYS", "required": True}]},
    {"rule_template": "always", "display_text": "always", "action": "retain", "params": []},
]


def _project(project_id: object, right: str) -> Project:
    """The project `project_id` names if the caller holds `right` there (404 if they may not see it, else 403)."""
    db = model()
    with db.session() as s:
        found = s.get(Project, project_id) if isinstance(project_id, int) and not isinstance(project_id, bool) \
            else None
    rights = access.project_rights(db, principal(), found) if found is not None else frozenset()
    if found is None or not rights:
        raise ApiError(404, f"project {str(project_id)[:64]} not found")
    if right not in rights:
        raise ApiError(403, f"{right} is not allowed in project {found.name}")
    return found


def _policy(policy_id: int, right: str) -> RetentionPolicy:
    with model().session() as s:
        found = s.get(RetentionPolicy, policy_id)
    if found is None:
        raise ApiError(404, f"retention policy {policy_id} not found")
    _project(found.project_id, right)
    return found


def _execution(policy_id: int, execution_id: int) -> RetentionExecution:
    _policy(policy_id, "read")
    with model().session() as s:
        found = s.scalar(select(RetentionExecution).where(RetentionExecution.id == execution_id,
                                                          RetentionExecution.policy_id == policy_id))
    if found is None:
        raise ApiError(404, f"retention execution {execution_id} not found")
    return found


def _write(call, *args):
    try:
        return call(*args)
    except retention.RetentionError as e:
        raise ApiError(409 if "has a retention policy" in str(e) else 400, str(e)) from None


@bp.route("/retentions/metadatas", methods=["GET"])
@needs("identity")
def retention_metadatas():
    """The rule templates and selectors a policy may use."""
    return jsonify({"templates": _TEMPLATES,
                    "scope_selectors": [{"display_text": "Repositories", "kind": "doublestar",
                                         "decorations": ["repoMatches", "repoExcludes"]}],
                    "tag_selectors": [{"display_text": "Tags", "kind": "doublestar",
                                       "decorations": ["matches", "excludes"]}]})


@bp.route("/retentions", methods=["POST"])
@needs("identity")
def create_retention():
    """Create the policy of the project `scope.ref` names (one per project); 201 with its Location."""
    body = json_body()
    scope = body.get("scope")
    if not isinstance(scope, dict) or scope.get("level", "project") != "project":
        raise ApiError(400, "scope: {\"level\": \"project\", \"ref\": <project id>}")
    project = _project(scope.get("ref"), "policies")
    policy_id = _write(retention.create_policy, model(), project.id, body)
    return created(f"{request.path}/{policy_id}")


@bp.route("/retentions/<int:policy_id>", methods=["GET"])
@needs("identity")
def get_retention(policy_id: int):
    return jsonify(retention.policy_json(_policy(policy_id, "read")))


@bp.route("/retentions/<int:policy_id>", methods=["PUT"])
@needs("identity")
def update_retention(policy_id: int):
    """Replace the policy's rules and trigger (its scope stays)."""
    _policy(policy_id, "policies")
    _write(retention.update_policy, model(), policy_id, json_body())
    return Response(status=200)


@bp.route("/retentions/<int:policy_id>", methods=["DELETE"])
@needs("identity")
def delete_retention(policy_id: int):
    _policy(policy_id, "policies")
    retention.delete_policy(model(), policy_id)
    return Response(status=200)


@bp.route("/retentions/<int:policy_id>/executions", methods=["POST"])
@needs("identity")
def trigger_retention(policy_id: int):
    """Start a run (`dry_run`: report only) in the background; 201 with the execution's Location."""
    _policy(policy_id, "policies")
    body = request.get_json(silent=True) or {}
    dry_run = body.get("dry_run", False) if isinstance(body, dict) else None
    if not isinstance(dry_run, bool):
        raise ApiError(400, "dry_run: true or false")
    execution_id = retention.start_execution(model(), policy_id, dry_run)
    if execution_id is None:
        raise ApiError(404, f"retention policy {policy_id} not found")
    reg = current_app.extensions["registry"]
    caller = principal()
    retention.run_in_background(model(), reg.storage, execution_id, caller.name if caller else "",
                                reg.config.gc_grace, request.host)
    return created(f"{request.path}/{execution_id}")


@bp.route("/retentions/<int:policy_id>/executions", methods=["GET"])
@needs("identity")
def list_retention_executions(policy_id: int):
    """The policy's runs, newest first; paging."""
    _policy(policy_id, "read")
    return page_of(select(RetentionExecution).where(RetentionExecution.policy_id == policy_id),
                   RetentionExecution.id, lambda rows: [retention.execution_json(e) for e in rows])


@bp.route("/retentions/<int:policy_id>/executions/<int:execution_id>/tasks", methods=["GET"])
@needs("identity")
def list_retention_tasks(policy_id: int, execution_id: int):
    """A run's tasks, one per repository it considered; paging."""
    paging()  # a bad page is refused before the execution is read
    return page_of_list([{k: v for k, v in t.items() if k != "results"}
                         for t in retention.tasks(_execution(policy_id, execution_id))])


@bp.route("/retentions/<int:policy_id>/executions/<int:execution_id>/tasks/<int:task_id>", methods=["GET"])
@needs("identity")
def retention_task_log(policy_id: int, execution_id: int, task_id: int):
    """A task's log as text: each artifact of the repository, kept or removed (or, in a dry run, to be)."""
    execution = _execution(policy_id, execution_id)
    task = next((t for t in retention.tasks(execution) if t["id"] == task_id), None)
    if task is None:
        raise ApiError(404, f"task {task_id} not found")
    verb = "would remove" if execution.dry_run else "removed"
    lines = [f"{'kept' if r['retained'] else verb}\t{r['digest']}\t{','.join(r['tags']) or '<untagged>'}"
             + (f"\t{r['note']}" if r.get("note") else "") for r in task["results"]]
    return log_response("\n".join([f"repository {task['repository']}: {task['retained']} of {task['total']} kept",
                                   *lines]) + "\n")
