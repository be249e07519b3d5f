"""`/robots` (Harbor v2's robot accounts, system and project level) and `/projects/{p}/robots`."""

from __future__ import annotations

from flask import Response, jsonify, request
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from registry.api.common import ApiError, bp, filter_q, json_body, needs, page_response, paging, parse_q, rfc3339
from registry.guard import model, principal, project
from registry.model import access, projects, robots
from registry.model.access import Principal
from registry.model.tables import Project, Robot


def robot_json(r: Robot) -> dict:
    """A robot as Harbor's Robot (never its secret)."""
    never = r.expires_at == -1
    return {"id": r.id, "name": r.name, "description": r.description, "level": "project" if r.project_id else "system",
            "duration": -1 if never else max(1, round((r.expires_at - r.created_at) / 86400)), "editable": True,
            "disable": r.disabled, "expires_at": -1 if never else int(r.expires_at), "permissions": r.permissions,
            "creator_type": "local", "creator_ref": 0, "creator": r.creator,
            "creation_time": rfc3339(r.created_at), "update_time": rfc3339(r.updated_at)}


def _caller() -> Principal:
    caller = principal()
    assert caller is not None  # the views' needs refuse anonymous callers
    return caller


def _manages(s: Session, caller: Principal, project_id: int | None) -> bool:
    """Whether `caller` may manage robots of this project (None: system robots, sysadmins only)."""
    if caller.sysadmin:
        return True
    p = s.get(Project, project_id) if project_id is not None else None
    return p is not None and "members" in access.project_rights(model(), caller, p)


def _robot(robot_id: int) -> Robot:
    with model().session() as s:
        robot = robots.get_robot(s, robot_id)
        if not _manages(s, _caller(), robot.project_id):
            raise ApiError(403, f"robot {robot_id}: not allowed")
        return robot


def _list(stmt):
    page = paging()
    with model().session() as s:
        total = s.scalar(select(func.count()).select_from(stmt.subquery()))
        rows = s.scalars(stmt.order_by(Robot.id).offset(page.offset).limit(page.size)).all()
        items = [robot_json(r) for r in rows]
    return page_response(items, total or 0, page)


@bp.route("/robots", methods=["GET"])
@needs("identity")
def list_robots():
    """Robots; q on name, Level (system/project) and ProjectID. Non-sysadmins list their projects' only."""
    conditions = parse_q(request.args.get("q"))
    stmt = select(Robot)
    rest = []
    for cond in conditions:
        if cond.key == "Level" and cond.op == "=" and cond.value in ("system", "project"):
            stmt = stmt.where(Robot.project_id.is_(None) if cond.value == "system" else Robot.project_id.isnot(None))
        else:
            rest.append(cond)
    stmt = filter_q(stmt, rest, {"name": Robot.name, "ProjectID": Robot.project_id})
    ids = [c.value for c in rest if c.key == "ProjectID" and c.op == "="]
    if not _caller().sysadmin:
        with model().session() as s:
            if not ids or not str(ids[0]).isdigit() or not _manages(s, _caller(), int(str(ids[0]))):
                raise ApiError(403, "list robots with q=Level=project,ProjectID=<a project you administer>")
    return _list(stmt)


@bp.route("/robots", methods=["POST"])
@needs("identity")
def create_robot():
    """Create a robot (RobotCreate); 201 with RobotCreated, whose secret is shown this once."""
    body = json_body()
    level = body.get("level")
    perms = body.get("permissions")
    with model().session() as s:
        project_id = None
        if level == "project" and isinstance(perms, list) and perms and isinstance(perms[0], dict):
            found = projects.find(s, str(perms[0].get("namespace") or ""), True)
            project_id = found.id if found else None
        if not _manages(s, _caller(), project_id):
            raise ApiError(403, "only system admins (or a project's admins, for its robots) create robots")
    return _created(body, level)


@bp.route("/projects/<project_name_or_id>/robots", methods=["GET"])
@needs("project:members")
def list_project_robots(project_name_or_id: str):
    """The project's robots."""
    return _list(select(Robot).where(Robot.project_id == project().id))


@bp.route("/projects/<project_name_or_id>/robots", methods=["POST"])
@needs("project:members")
def create_project_robot(project_name_or_id: str):
    """Create a robot of this project (RobotCreate; its permissions' namespace is the project)."""
    body = json_body()
    perms = body.get("permissions")
    if isinstance(perms, list):
        for perm in perms:
            if isinstance(perm, dict):
                perm.setdefault("kind", "project")
                perm["namespace"] = project().name
    return _created(body, "project")


def _created(body: dict, level: object):
    if body.get("secret"):
        raise ApiError(400, "secret: a robot's secret is generated (refresh it with PATCH /robots/{id})")
    duration = body.get("duration", -1)
    robot, secret = robots.create_robot(model(), body.get("name"), str(level), body.get("permissions"),  # type: ignore[arg-type]
                                        -1 if duration is None else duration, str(body.get("description") or ""),
                                        _caller().name, bool(body.get("disable", False)))
    resp = jsonify({"id": robot.id, "name": robot.name, "secret": secret, "creation_time": rfc3339(robot.created_at),
                    "expires_at": -1 if robot.expires_at == -1 else int(robot.expires_at)})
    resp.status_code = 201
    resp.headers["Location"] = f"/api/v2.0/robots/{robot.id}"
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.route("/robots/<int:robot_id>", methods=["GET"])
@needs("identity")
def get_robot(robot_id: int):
    """One robot."""
    return jsonify(robot_json(_robot(robot_id)))


@bp.route("/robots/<int:robot_id>", methods=["PUT"])
@needs("identity")
def update_robot(robot_id: int):
    """Change a robot's description, disable flag, duration (days from now) or permissions."""
    _robot(robot_id)
    body = json_body()
    robots.update_robot(model(), robot_id, description=body.get("description"), disable=body.get("disable"),
                        duration=body.get("duration"), permissions=body.get("permissions"))
    return Response(status=200)


@bp.route("/robots/<int:robot_id>", methods=["PATCH"])
@needs("identity")
def refresh_secret(robot_id: int):
    """A new secret (RobotSec: the one given, or generated), shown this once."""
    _robot(robot_id)
    body = request.get_json(silent=True) or {}
    given = body.get("secret") if isinstance(body, dict) else None
    resp = jsonify({"secret": robots.refresh_secret(model(), robot_id, given if isinstance(given, str) else None)})
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.route("/robots/<int:robot_id>", methods=["DELETE"])
@needs("identity")
def delete_robot(robot_id: int):
    """Delete a robot."""
    _robot(robot_id)
    robots.delete_robot(model(), robot_id)
    return Response(status=200)
