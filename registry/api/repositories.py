"""`/projects/{p}/repositories`: a project's repositories (list with q/sort/paging, get, describe, delete)."""

from __future__ import annotations

from urllib.parse import unquote

from flask import current_app, jsonify, request
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from registry.api.common import ApiError, bp, filter_q, needs, page_response, paging, parse_q, rfc3339
from registry.model.tables import Artifact, Project, Repository

PROJECT = "/projects/<project_name_or_id>"
REPOSITORY = PROJECT + "/repositories/<repository_name>"
NEVER = "0001-01-01T00:00:00.000Z"  # Harbor's time for "not yet" (an artifact never pulled)


def registry():
    """This app's registry state (model and storage); the API modules never import the v2 server's modules."""
    return current_app.extensions["registry"]


def actor():
    """The caller, for the model's events."""
    from registry.model.policy import Actor
    return Actor(request.environ.get("registry.user") or "", request.remote_addr or "")


def when(t: float) -> str:
    """A time column as Harbor's API shows it."""
    return rfc3339(t) if t else NEVER


def project_or_404(s: Session, name_or_id: str) -> Project:
    """The project the URL names (by name or id, as Harbor's X-Is-Resource-Name header says); 404 without it."""
    from registry.model import artifacts, projects
    artifacts.ensure_indexed(registry().model, registry().storage)
    is_name = request.headers.get("X-Is-Resource-Name", "").lower() == "true" or None
    return projects.get(s, name_or_id, is_name)


def repository_or_404(s: Session, project: Project, repository_name: str) -> Repository:
    """The repository the URL names within the project (Harbor double-encodes its slashes: `a%252Fb`)."""
    name = f"{project.name}/{unquote(repository_name)}"
    repo = s.scalar(select(Repository).where(Repository.name == name, Repository.project_id == project.id))
    if repo is None:
        raise ApiError(404, f"repository {name[:200]} not found")
    return repo


def order(sort: str | None, columns: dict, default: str):
    """Harbor's `sort` (`name`, `-creation_time`, comma-separated) as ORDER BY terms; 400 on an unknown key."""
    terms = []
    for key in (sort or default).split(","):
        key = key.strip()
        desc = key.startswith("-")
        column = columns.get(key.lstrip("-"))
        if column is None:
            raise ApiError(400, f"cannot sort by {key[:50]!r}: one of {', '.join(sorted(columns))}")
        terms.append(column.desc() if desc else column.asc())
    return terms


def repository_json(repo: Repository, artifact_count: int) -> dict:
    return {"id": repo.id, "project_id": repo.project_id, "name": repo.name, "description": repo.description,
            "artifact_count": artifact_count, "pull_count": repo.pull_count,
            "creation_time": when(repo.created_at), "update_time": when(repo.updated_at)}


def _artifact_counts(s: Session, repo_ids: list[int]) -> dict[int, int]:
    rows = s.execute(select(Artifact.repository_id, func.count(Artifact.id))
                     .where(Artifact.repository_id.in_(repo_ids), Artifact.subject.is_(None))
                     .group_by(Artifact.repository_id))
    return dict(rows.tuples().all())


@bp.get(PROJECT + "/repositories")
@needs("project:pull")
def list_repositories(project_name_or_id: str):
    """A page of the project's repositories; q: name=x, name=~x; sort: name, creation_time, update_time,
    pull_count (with - for descending)."""
    page = paging()
    conditions = parse_q(request.args.get("q"))
    with registry().model.session() as s:
        project = project_or_404(s, project_name_or_id)
        # Harbor's names in q are full ("project/repo"); with =~ a part of one matches.
        query = filter_q(select(Repository).where(Repository.project_id == project.id), conditions,
                         {"name": Repository.name})
        total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
        columns = {"name": Repository.name, "creation_time": Repository.created_at,
                   "update_time": Repository.updated_at, "pull_count": Repository.pull_count, "id": Repository.id}
        repos = list(s.scalars(query.order_by(*order(request.args.get("sort"), columns, "-creation_time"),
                                              Repository.id.desc())
                               .offset(page.offset).limit(page.size)))
        counts = _artifact_counts(s, [r.id for r in repos])
        items = [repository_json(r, counts.get(r.id, 0)) for r in repos]
    return page_response(items, total, page)


@bp.get(REPOSITORY)
@needs("project:pull")
def get_repository(project_name_or_id: str, repository_name: str):
    """One repository."""
    with registry().model.session() as s:
        repo = repository_or_404(s, project_or_404(s, project_name_or_id), repository_name)
        return jsonify(repository_json(repo, _artifact_counts(s, [repo.id]).get(repo.id, 0)))


@bp.put(REPOSITORY)
@needs("project:push")
def update_repository(project_name_or_id: str, repository_name: str):
    """Set a repository's description ({"description": "..."})."""
    from registry.model import artifacts
    body = request.get_json(silent=True)
    description = body.get("description") if isinstance(body, dict) else None
    if not isinstance(description, str) or len(description) > 65536:
        raise ApiError(400, "body must be {\"description\": \"...\"} (at most 64 KiB)")
    with registry().model.session() as s:
        name = repository_or_404(s, project_or_404(s, project_name_or_id), repository_name).name
    artifacts.describe_repository(registry().model, name, description)
    return "", 200


@bp.delete(REPOSITORY)
@needs("project:delete")
def delete_repository(project_name_or_id: str, repository_name: str):
    """Delete a repository with every artifact in it (412 when one of its tags is immutable)."""
    from registry.model import artifacts
    from registry.model.policy import Refused
    reg = registry()
    with reg.model.session() as s:
        name = repository_or_404(s, project_or_404(s, project_name_or_id), repository_name).name
    try:
        artifacts.delete_repository(reg.model, reg.storage, name, actor(), request.host)
    except Refused as e:
        raise ApiError(e.status, e.message) from None
    return "", 200
