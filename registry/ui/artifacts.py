"""A repository's artifacts and one artifact's detail: tags, layers, build history, referrers; deleting them."""

from __future__ import annotations

import json

from flask import request
from sqlalchemy import func, select, union_all

from registry.api.common import ApiError, needs
from registry.model.tables import Artifact, Repository, Tag
from registry.ui.common import bp, db, done, model_errors, page_of, principal, registry, render
from registry.ui.projects import project_context

TAGS_SHOWN = 5  # tags listed beside each artifact of the repository page; the artifact's own page pages them all
CONFIG_MAX = 4 << 20  # an image config larger than this is not parsed for the page


def repository(s, proj, repo: str) -> Repository:
    found = s.scalar(select(Repository).where(Repository.project_id == proj.id,
                                              Repository.name == f"{proj.name}/{repo}"))
    if found is None:
        raise ApiError(404, f"repository {proj.name}/{repo[:200]} not found")
    return found


def artifact(s, repo: Repository, digest: str) -> Artifact:
    found = s.scalar(select(Artifact).where(Artifact.repository_id == repo.id, Artifact.digest == digest))
    if found is None:
        raise ApiError(404, f"artifact {digest[:100]} not found in {repo.name}")
    return found


def pull_command(repo: str, reference: str) -> str:
    """The docker command pulling `reference` (":tag" or "@digest") from this registry, as the browser reached it."""
    return f"docker pull {request.host}/{repo}{reference}"


@bp.get("/projects/<project_name_or_id>/repositories/<path:repo>")
@needs("project:pull")
def artifacts(project_name_or_id: str, repo: str):
    """A repository's artifacts, newest push first, each with its first tags (referrers show under their subject)."""
    with db().session() as s:
        ctx = project_context()
        rep = repository(s, ctx["project"], repo)
        where = [Artifact.repository_id == rep.id, Artifact.subject.is_(None)]
        page = page_of(s, select(Artifact).where(*where).order_by(Artifact.push_time.desc(), Artifact.id.desc()),
                       select(func.count(Artifact.id)).where(*where))
        ids = [a.id for (a,) in page.items]
        tags = _first_tags(s, ids)
        tag_counts = dict(s.execute(select(Tag.artifact_id, func.count(Tag.id)).where(Tag.artifact_id.in_(ids))
                                    .group_by(Tag.artifact_id)).all())
        digests = [a.digest for (a,) in page.items]
        referrers = dict(s.execute(select(Artifact.subject, func.count(Artifact.id))
                                   .where(Artifact.repository_id == rep.id, Artifact.subject.in_(digests))
                                   .group_by(Artifact.subject)).all())
    pulls = {a.id: pull_command(rep.name, f":{tags[a.id][0]}" if tags[a.id] else f"@{a.digest}")
             for (a,) in page.items}
    return render("artifacts.html", repo=rep, short=repo, page=page, tags=tags, tag_counts=tag_counts,
                  referrers=referrers, pulls=pulls, tab="repositories", **ctx)


def _first_tags(s, ids: list[int]) -> dict[int, list[str]]:
    """The TAGS_SHOWN newest tags of each artifact, in one statement: per artifact, the first rows of the tags'
    (artifact, push time) index, however many tags it has (a ranking over all of them sorts them all)."""
    tags: dict[int, list[str]] = {i: [] for i in ids}
    if not ids:
        return tags
    firsts = [select(Tag.artifact_id, Tag.push_time, Tag.name).where(Tag.artifact_id == i)
              .order_by(Tag.push_time.desc(), Tag.name).limit(TAGS_SHOWN).subquery() for i in ids]
    rows = s.execute(union_all(*(select(f.c.artifact_id, f.c.push_time, f.c.name) for f in firsts))).all()
    for aid, _, name in sorted(rows, key=lambda r: (-r[1], r[2])):
        tags[aid].append(name)
    return tags


def manifest_detail(repo: str, digest: str) -> dict:
    """Layers, index entries, build history, labels and platform from the stored manifest and its config."""
    from dockyard.digest import Digest, InvalidDigest
    storage = registry().storage
    try:
        found = storage.get_manifest(repo, Digest.parse(digest))
    except InvalidDigest:
        found = None
    if found is None:
        return {}
    try:
        doc = json.loads(found[0])
    except ValueError:
        return {}
    out: dict = {"layers": [], "manifests": [], "history": [], "labels": {}, "config": {}}
    if not isinstance(doc, dict):
        return out
    out["layers"] = [d for d in doc.get("layers", []) if isinstance(d, dict)]
    out["manifests"] = [d for d in doc.get("manifests", []) if isinstance(d, dict)]
    desc = doc.get("config")
    if isinstance(desc, dict) and isinstance(desc.get("size"), int) and desc["size"] <= CONFIG_MAX:
        try:
            with storage.open_blob(Digest.parse(str(desc.get("digest", "")))) as f:
                config = json.loads(f.read(CONFIG_MAX))
        except (OSError, ValueError, InvalidDigest):
            config = None
        if isinstance(config, dict):
            out["config"] = config
            out["history"] = [h for h in config.get("history", []) if isinstance(h, dict)]
            labels = (config.get("config") or {}).get("Labels") if isinstance(config.get("config"), dict) else None
            out["labels"] = labels if isinstance(labels, dict) else {}
    return out


@bp.get("/projects/<project_name_or_id>/repositories/<path:repo>/-/artifacts/<digest>")
@needs("project:pull")
def artifact_page(project_name_or_id: str, repo: str, digest: str):
    """One artifact: its tags (paged), pull command, layers with sizes, build history, labels and referrers."""
    with db().session() as s:
        ctx = project_context()
        rep = repository(s, ctx["project"], repo)
        art = artifact(s, rep, digest)
        where = Tag.artifact_id == art.id
        page = page_of(s, select(Tag).where(where).order_by(Tag.push_time.desc(), Tag.name),
                       select(func.count(Tag.id)).where(where))
        referrers = list(s.scalars(select(Artifact).where(Artifact.repository_id == rep.id,
                                                          Artifact.subject == art.digest)
                                   .order_by(Artifact.push_time.desc()).limit(100)))
        subject = (s.scalar(select(Artifact).where(Artifact.repository_id == rep.id,
                                                   Artifact.digest == art.subject)) if art.subject else None)
    first = page.items[0][0].name if page.items else None
    return render("artifact.html", repo=rep, short=repo, artifact=art, page=page, referrers=referrers,
                  subject=subject, detail=manifest_detail(rep.name, art.digest),
                  pull=pull_command(rep.name, f":{first}" if first else f"@{art.digest}"),
                  pull_digest=pull_command(rep.name, f"@{art.digest}"), tab="repositories", **ctx)


def _actor():
    from registry.model.policy import Actor
    who = principal()
    return Actor(who.name if who else "", request.remote_addr or "")


@bp.post("/projects/<project_name_or_id>/repositories/<path:repo>/-/tags/<tag>/delete")
@needs("project:delete")
def delete_tag(project_name_or_id: str, repo: str, tag: str):
    """Remove one tag (an immutable one is refused by the model), back to the repository."""
    from registry.model.artifacts import delete_tag as delete
    with db().session() as s:
        proj = project_context()["project"]
        rep = repository(s, proj, repo)
    with model_errors():
        found = delete(db(), registry().storage, rep.name, tag, _actor(), host=request.host)
    if not found:
        raise ApiError(404, f"tag {tag[:128]} not found in {rep.name}")
    return done("ui.artifacts", "tag-deleted", project_name_or_id=proj.id, repo=repo)


@bp.post("/projects/<project_name_or_id>/repositories/<path:repo>/-/artifacts/<digest>/delete")
@needs("project:delete")
def delete_artifact(project_name_or_id: str, repo: str, digest: str):
    """Remove an artifact with all its tags, back to the repository."""
    from registry.model.artifacts import delete_artifact as delete
    with db().session() as s:
        proj = project_context()["project"]
        rep = repository(s, proj, repo)
        artifact(s, rep, digest)
    with model_errors():
        delete(db(), registry().storage, rep.name, digest, _actor(), host=request.host)
    return done("ui.artifacts", "artifact-deleted", project_name_or_id=proj.id, repo=repo)
