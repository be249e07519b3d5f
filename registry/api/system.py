"""`/systeminfo`, `/health`, `/search` and `/statistics`, in Harbor's shape."""

from __future__ import annotations

import time

from flask import current_app, jsonify, request
from sqlalchemy import func, select, text

from registry.api.common import ApiError, bp, needs, rfc3339
from registry.api.projects import project_json, visible
from registry.guard import model, principal
from registry.model.tables import Artifact, Project, ProjectBlob, Repository

_SEARCH_MAX = 100  # results per kind: /search takes no paging in Harbor


@bp.route("/systeminfo", methods=["GET"])
@needs("public")
def systeminfo():
    """Harbor's GeneralInfo: what a client needs to know of this registry."""
    from dockyard import __version__

    config = current_app.extensions["registry"].config
    return jsonify({"current_time": rfc3339(time.time()), "registry_url": request.host,
                    "external_url": request.host_url.rstrip("/"), "auth_mode": "db_auth",
                    "primary_auth_mode": False, "project_creation_restriction": "everyone",
                    "self_registration": False, "has_ca_root": False, "harbor_version": f"dockyard-{__version__}",
                    "registry_storage_provider_name": config.storage_driver, "read_only": config.read_only,
                    "notification_enable": True})


@bp.route("/health", methods=["GET"])
@needs("public")
def health():
    """Harbor's OverallHealthStatus: the core (this process) and its database."""
    components = [{"name": "core", "status": "healthy"}]
    try:
        with model().engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        components.append({"name": "database", "status": "healthy"})
    except Exception as e:  # any driver error means the database is unhealthy; say which, never raise
        components.append({"name": "database", "status": "unhealthy", "error": type(e).__name__})
    healthy = all(c["status"] == "healthy" for c in components)
    resp = jsonify({"status": "healthy" if healthy else "unhealthy", "components": components})
    resp.status_code = 200 if healthy else 503
    return resp


@bp.route("/search", methods=["GET"])
@needs("public")
def search():
    """Projects and repositories the caller can see whose names contain `q`."""
    q = request.args.get("q", "")
    if not q:
        raise ApiError(400, "q is required")
    caller = principal()
    with model().session() as s:
        found = s.scalars(select(Project).where(visible(caller), Project.name.contains(q, autoescape=True))
                          .order_by(Project.name).limit(_SEARCH_MAX)).all()
        projects_out = [project_json(s, p, caller) for p in found]
        counts = select(Artifact.repository_id, func.count().label("n")).group_by(Artifact.repository_id).subquery()
        rows = s.execute(select(Repository, Project, counts.c.n).join(Project, Project.id == Repository.project_id)
                         .outerjoin(counts, counts.c.repository_id == Repository.id)
                         .where(visible(caller), Repository.name.contains(q, autoescape=True))
                         .order_by(Repository.name).limit(_SEARCH_MAX)).all()
        repos_out = [{"project_id": p.id, "project_name": p.name, "project_public": p.public,
                      "repository_name": r.name, "pull_count": r.pull_count, "artifact_count": n or 0}
                     for r, p, n in rows]
    return jsonify({"project": projects_out, "repository": repos_out})


@bp.route("/statistics", methods=["GET"])
@needs("identity")
def statistics():
    """Project and repository counts (private ones the caller can see) and, for sysadmins, storage used."""
    caller = principal()
    with model().session() as s:
        def count(stmt) -> int:
            return s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        seen = select(Project.id).where(visible(caller))
        repos = select(Repository.id).join(Project, Project.id == Repository.project_id).where(visible(caller))
        out = {"private_project_count": count(seen.where(Project.public.is_(False))),
               "public_project_count": count(seen.where(Project.public.is_(True))),
               "private_repo_count": count(repos.where(Project.public.is_(False))),
               "public_repo_count": count(repos.where(Project.public.is_(True)))}
        out["total_project_count"] = out["private_project_count"] + out["public_project_count"]
        out["total_repo_count"] = out["private_repo_count"] + out["public_repo_count"]
        if caller is not None and caller.sysadmin:
            blobs = select(func.max(ProjectBlob.size).label("size")).group_by(ProjectBlob.digest).subquery()
            out["total_storage_consumption"] = int(s.scalar(select(func.coalesce(func.sum(blobs.c.size), 0))) or 0)
    return jsonify(out)
