"""`/projects`: list, create, read, update, delete and check projects, in Harbor's shape."""

from __future__ import annotations

from flask import Response, jsonify, request
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from registry.api.common import (
    ApiError,
    bp,
    created,
    filter_q,
    json_body,
    needs,
    page_response,
    paging,
    parse_q,
    rfc3339,
)
from registry.guard import model, principal, project
from registry.model import projects, roles
from registry.model.access import Principal
from registry.model.tables import Member, Project, ProjectBlob, Repository, User

_SORTS = {"name": Project.name, "creation_time": Project.created_at, "update_time": Project.updated_at,
          "project_id": Project.id}


def visible(caller: Principal | None):
    """A condition on Project: the projects `caller` may see (all for sysadmins; else public ones, their
    memberships, or a robot's namespaces)."""
    if caller is not None and caller.sysadmin:
        return Project.id.isnot(None)
    terms = [Project.public.is_(True)]
    if caller is not None and caller.user_id is not None:
        terms.append(Project.id.in_(select(Member.project_id).where(Member.user_id == caller.user_id)))
    if caller is not None and caller.robot_id is not None:
        names = [ns for ns, _ in caller.permissions]
        terms.append(Project.id.isnot(None) if "*" in names else Project.name.in_(names))
    return or_(*terms)


def project_json(s: Session, p: Project, caller: Principal | None, repo_count: int | None = None) -> dict:
    """A project as Harbor's `Project`."""
    role = None
    if caller is not None and caller.user_id is not None:
        role = s.scalars(select(Member.role).where(Member.project_id == p.id,
                                                   Member.user_id == caller.user_id)).first()
    owner = s.get(User, p.owner_id) if p.owner_id is not None else None
    if repo_count is None:
        repo_count = s.scalar(select(func.count()).select_from(Repository).where(Repository.project_id == p.id))
    return {"project_id": p.id, "owner_id": p.owner_id or 0, "owner_name": owner.username if owner else "",
            "name": p.name, "registry_id": 0, "creation_time": rfc3339(p.created_at),
            "update_time": rfc3339(p.updated_at), "deleted": False, "togglable": True,
            "current_user_role_id": role or 0, "current_user_role_ids": [role] if role else [],
            "repo_count": repo_count or 0, "metadata": projects.metadata(p)}


@bp.route("/projects", methods=["GET"])
@needs("public")
def list_projects():
    """The projects the caller may see; filters name (fuzzy), public, owner and q; sort; paging. HEAD (Flask
    routes it here) is Harbor's headProject: 200 when a project named `project_name` exists, else 404."""
    caller = principal()
    if request.method == "HEAD":
        return _head_project(caller)
    page = paging()
    stmt = select(Project).where(visible(caller))
    if request.args.get("name"):
        stmt = filter_q(stmt, parse_q("name=~" + request.args["name"]), {"name": Project.name})
    if request.args.get("public"):
        stmt = filter_q(stmt, parse_q("public=" + request.args["public"]), {"public": Project.public})
    if request.args.get("owner"):
        stmt = stmt.where(Project.owner_id.in_(select(User.id).where(User.username == request.args["owner"])))
    stmt = filter_q(stmt, parse_q(request.args.get("q")), {"name": Project.name, "public": Project.public,
                                                          "project_id": Project.id})
    sort = request.args.get("sort", "name")
    column = _SORTS.get(sort.lstrip("-"))
    if column is None:
        raise ApiError(400, f"sort: one of {', '.join(_SORTS)} (prefix - for descending)")
    with model().session() as s:
        total = s.scalar(select(func.count()).select_from(stmt.subquery()))
        rows = s.scalars(stmt.order_by(column.desc() if sort.startswith("-") else column, Project.id)
                         .offset(page.offset).limit(page.size)).all()
        items = [project_json(s, p, caller) for p in rows]
    return page_response(items, total or 0, page)


def _head_project(caller: Principal | None) -> Response:
    if caller is None:
        raise ApiError(401, "authentication required")
    name = request.args.get("project_name", "")
    with model().session() as s:
        found = projects.find(s, name, True) if name else None
    return Response(status=200 if found is not None else 404)


@bp.route("/projects", methods=["POST"])
@needs("identity")
def create_project():
    """Create a project (ProjectReq); its creator becomes its project admin. 201 with its Location."""
    caller = principal()
    if caller is None or caller.user_id is None:
        raise ApiError(403, "only users create projects")
    body = json_body()
    values = dict(body.get("metadata") or {})
    if body.get("public") is not None:
        values["public"] = body["public"]
    limit = body.get("storage_limit")
    new = projects.create_project(model(), caller, str(body.get("project_name") or ""), values,
                                  -1 if limit is None else limit)
    in_name = request.headers.get("X-Resource-Name-In-Location", "").lower() == "true"
    return created(f"/api/v2.0/projects/{new.name if in_name else new.id}")


@bp.route("/projects/<project_name_or_id>", methods=["GET"])
@needs("project:pull")
def get_project(project_name_or_id: str):
    """One project."""
    with model().session() as s:
        return jsonify(project_json(s, project(), principal()))


@bp.route("/projects/<project_name_or_id>", methods=["PUT"])
@needs("project:members")
def update_project(project_name_or_id: str):
    """Change a project's metadata (and, for sysadmins, its storage_limit)."""
    body = json_body()
    values = dict(body.get("metadata") or {})
    if body.get("public") is not None:
        values["public"] = body["public"]
    limit = body.get("storage_limit")
    caller = principal()
    if limit is not None and not (caller and caller.sysadmin):
        raise ApiError(403, "only system admins change quotas")
    projects.update_project(model(), project().id, values, limit)
    return Response(status=200)


@bp.route("/projects/<project_name_or_id>", methods=["DELETE"])
@needs("project:members")
def delete_project(project_name_or_id: str):
    """Delete an empty project (412 while it has repositories)."""
    projects.delete_project(model(), project().id)
    return Response(status=200)


@bp.route("/projects/<project_name_or_id>/summary", methods=["GET"])
@needs("project:read")
def project_summary(project_name_or_id: str):
    """Harbor's ProjectSummary: repository count, members per role and the quota."""
    p = project()
    with model().session() as s:
        repos = s.scalar(select(func.count()).select_from(Repository).where(Repository.project_id == p.id))
        counts = dict(s.execute(select(Member.role, func.count()).where(Member.project_id == p.id)
                                .group_by(Member.role)).all())
        used = s.scalar(select(func.coalesce(func.sum(ProjectBlob.size), 0)).where(ProjectBlob.project_id == p.id))
    keys = {roles.PROJECT_ADMIN: "project_admin_count", roles.MAINTAINER: "maintainer_count",
            roles.DEVELOPER: "developer_count", roles.GUEST: "guest_count", roles.LIMITED_GUEST: "limited_guest_count"}
    return jsonify({"repo_count": repos or 0, **{key: counts.get(role, 0) for role, key in keys.items()},
                    "quota": {"hard": {"storage": p.quota_bytes}, "used": {"storage": int(used or 0)}}})
