"""`/projects/{p}/members`: a project's members and their roles, in Harbor's shape."""

from __future__ import annotations

from flask import Response, jsonify, request
from sqlalchemy import func, select

from registry.api.common import ApiError, bp, created, json_body, needs, page_response, paging
from registry.guard import model, project
from registry.model import projects, roles
from registry.model.tables import Member, User


def member_json(m: Member, username: str) -> dict:
    """A member as Harbor's ProjectMemberEntity (users only: entity_type "u")."""
    return {"id": m.id, "project_id": m.project_id, "entity_name": username, "role_name": roles.NAMES[m.role],
            "role_id": m.role, "entity_id": m.user_id, "entity_type": "u"}


@bp.route("/projects/<project_name_or_id>/members", methods=["GET"])
@needs("project:read")
def list_members(project_name_or_id: str):
    """The project's members; `entityname` filters by user name (fuzzy)."""
    page = paging()
    stmt = select(Member, User.username).join(User, User.id == Member.user_id).where(
        Member.project_id == project().id)
    if request.args.get("entityname"):
        stmt = stmt.where(User.username.contains(request.args["entityname"], autoescape=True))
    with model().session() as s:
        total = s.scalar(select(func.count()).select_from(stmt.subquery()))
        rows = s.execute(stmt.order_by(Member.id).offset(page.offset).limit(page.size)).all()
        items = [member_json(m, name) for m, name in rows]
    return page_response(items, total or 0, page)


@bp.route("/projects/<project_name_or_id>/members", methods=["POST"])
@needs("project:members")
def add_member(project_name_or_id: str):
    """Add a user (member_user: {user_id} or {username}) with role_id; 201 with its Location."""
    body = json_body()
    user = body.get("member_user")
    if not isinstance(user, dict) or not (isinstance(user.get("user_id"), int) or user.get("username")):
        raise ApiError(400, "member_user: {\"user_id\": N} or {\"username\": NAME} (groups are not supported)")
    p = project()
    member = projects.add_member(model(), p.id, body.get("role_id"),  # type: ignore[arg-type]
                                 user_id=user.get("user_id"), username=user.get("username"))
    return created(f"/api/v2.0/projects/{p.id}/members/{member.id}")


@bp.route("/projects/<project_name_or_id>/members/<int:mid>", methods=["GET"])
@needs("project:read")
def get_member(project_name_or_id: str, mid: int):
    """One member."""
    with model().session() as s:
        row = s.execute(select(Member, User.username).join(User, User.id == Member.user_id)
                        .where(Member.id == mid, Member.project_id == project().id)).first()
    if row is None:
        raise ApiError(404, f"member {mid} not found")
    return jsonify(member_json(*row))


@bp.route("/projects/<project_name_or_id>/members/<int:mid>", methods=["PUT"])
@needs("project:members")
def update_member(project_name_or_id: str, mid: int):
    """Change a member's role (RoleRequest)."""
    projects.update_member(model(), project().id, mid, json_body().get("role_id"))  # type: ignore[arg-type]
    return Response(status=200)


@bp.route("/projects/<project_name_or_id>/members/<int:mid>", methods=["DELETE"])
@needs("project:members")
def remove_member(project_name_or_id: str, mid: int):
    """Remove a member."""
    projects.remove_member(model(), project().id, mid)
    return Response(status=200)
