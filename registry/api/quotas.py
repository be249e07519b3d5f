"""`/quotas`: each project's storage quota (hard limit and usage); its id is the project's."""

from __future__ import annotations

from flask import jsonify, request
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from registry.api.common import ApiError, bp, needs, page_response, paging
from registry.api.repositories import order, registry, when
from registry.model.tables import Project, User


def _quota_json(s: Session, project: Project) -> dict:
    from registry.model import quota
    owner = s.get(User, project.owner_id) if project.owner_id is not None else None
    return {"id": project.id, "ref": {"id": project.id, "name": project.name,
                                      "owner_name": owner.username if owner else ""},
            "hard": {"storage": project.quota_bytes}, "used": {"storage": quota.usage(s, project.id)},
            "creation_time": when(project.created_at), "update_time": when(project.updated_at)}


@bp.get("/quotas")
@needs("sysadmin")
def list_quotas():
    """A page of the projects' quotas; `reference=project` with `reference_id=<id>` picks one project."""
    page = paging()
    reference, reference_id = request.args.get("reference"), request.args.get("reference_id")
    if reference not in (None, "project"):
        raise ApiError(400, "reference must be project")
    with registry().model.session() as s:
        query = select(Project)
        if reference_id is not None:
            if not reference_id.isdigit():
                raise ApiError(400, "reference_id must be a project id")
            query = query.where(Project.id == int(reference_id[:18]))
        total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
        columns = {"creation_time": Project.created_at, "update_time": Project.updated_at, "id": Project.id,
                   "hard.storage": Project.quota_bytes}
        projects = s.scalars(query.order_by(*order(request.args.get("sort"), columns, "id"))
                             .offset(page.offset).limit(page.size))
        items = [_quota_json(s, p) for p in projects]
    return page_response(items, total, page)


def _project_or_404(s: Session, quota_id: int) -> Project:
    project = s.get(Project, quota_id)
    if project is None:
        raise ApiError(404, f"quota {quota_id} not found")
    return project


@bp.get("/quotas/<int:quota_id>")
@needs("sysadmin")
def get_quota(quota_id: int):
    """One project's quota."""
    with registry().model.session() as s:
        return jsonify(_quota_json(s, _project_or_404(s, quota_id)))


@bp.put("/quotas/<int:quota_id>")
@needs("sysadmin")
def update_quota(quota_id: int):
    """Set the hard storage limit: {"hard": {"storage": <bytes> or -1}}."""
    from registry.model import projects
    body = request.get_json(silent=True)
    hard = body.get("hard") if isinstance(body, dict) else None
    storage = hard.get("storage") if isinstance(hard, dict) else None
    if not isinstance(storage, int) or isinstance(storage, bool) or not -1 <= storage < 2 ** 63 or storage == 0:
        raise ApiError(400, "body must be {\"hard\": {\"storage\": <bytes, or -1 for unlimited>}}")
    with registry().model.session() as s:
        _project_or_404(s, quota_id)
    projects.update_project(registry().model, quota_id, storage_limit=storage)
    return "", 200
