"""`/projects/{p}/repositories/{r}/artifacts`: artifacts with tags, sizes, references and accessories; tags of an
artifact; its build history."""

from __future__ import annotations

from flask import jsonify, request
from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from registry.api import repositories as repos
from registry.api.common import ApiError, Condition, bp, filter_q, needs, page_response, paging, parse_q
from registry.api.repositories import REPOSITORY, actor, order, registry, when
from registry.model.tables import Artifact, Project, Repository, Tag

ARTIFACTS = REPOSITORY + "/artifacts"
ARTIFACT = ARTIFACTS + "/<reference>"
ACCESSORY_TYPES = {"application/vnd.dev.cosign.artifact.sig.v1+json": "signature.cosign",
                   "application/vnd.cncf.notary.signature": "signature.notation"}


def _flag(name: str, default: bool) -> bool:
    value = request.args.get(name)
    if value is None:
        return default
    if value.lower() not in ("true", "false"):
        raise ApiError(400, f"{name} must be true or false")
    return value.lower() == "true"


def _located(s: Session, project_name_or_id: str, repository_name: str) -> tuple[Project, Repository]:
    project = repos.project_or_404(s, project_name_or_id)
    return project, repos.repository_or_404(s, project, repository_name)


def _artifact_or_404(s: Session, repo: Repository, reference: str) -> Artifact:
    """The artifact a tag or digest names in the repository."""
    if ":" in reference:
        art = s.scalar(select(Artifact).where(Artifact.repository_id == repo.id, Artifact.digest == reference))
    else:
        art = s.scalar(select(Artifact).join(Tag, Tag.artifact_id == Artifact.id)
                       .where(Tag.repository_id == repo.id, Tag.name == reference))
    if art is None:
        raise ApiError(404, f"artifact {repo.name}:{reference[:150]} not found")
    return art


class _View:
    """Renders artifacts of one repository in Harbor's shape, with what the request's flags ask for."""

    def __init__(self, s: Session, project: Project, repo: Repository):
        from registry.model import immutable
        self.s, self.project, self.repo = s, project, repo
        self.rules = immutable.rules(s, project.id)
        self.with_tag = _flag("with_tag", True)
        self.with_signature = _flag("with_signature", False)
        self.with_accessory = _flag("with_accessory", False)

    def tag(self, tag: Tag) -> dict:
        from registry.model import immutable, trust
        out = {"id": tag.id, "repository_id": tag.repository_id, "artifact_id": tag.artifact_id, "name": tag.name,
               "push_time": when(tag.push_time), "pull_time": when(tag.pull_time),
               "immutable": any(immutable.rule_covers(r, self.repo.name.partition("/")[2], tag.name)
                                for r in self.rules)}
        if self.with_signature:
            art = self.s.get(Artifact, tag.artifact_id)
            out["signed"] = art is not None and trust.is_signed(self.s, self.repo.id, art.digest)
        return out

    def accessory(self, acc: Artifact, subject: Artifact) -> dict:
        return {"id": acc.id, "artifact_id": acc.id, "subject_artifact_id": subject.id,
                "subject_artifact_repo": self.repo.name, "subject_artifact_digest": subject.digest,
                "size": acc.size, "digest": acc.digest, "icon": "", "creation_time": when(acc.push_time),
                "type": ACCESSORY_TYPES.get(acc.artifact_type, "subject.accessory")}

    def artifact(self, art: Artifact) -> dict:
        from registry.model.artifacts import harbor_type
        extra = art.extra or {}
        config_type = extra.get("config_media_type", "")
        is_image = bool(config_type) and harbor_type(art.media_type, config_type) == "IMAGE"
        out: dict = {
            "id": art.id, "type": harbor_type(art.media_type, config_type),
            "media_type": config_type or art.media_type, "manifest_media_type": art.media_type,
            "artifact_type": art.artifact_type, "project_id": self.project.id, "repository_id": self.repo.id,
            "repository_name": self.repo.name, "digest": art.digest, "size": art.size, "icon": "",
            "push_time": when(art.push_time), "pull_time": when(art.pull_time),
            "extra_attrs": {k: extra.get(k) for k in ("architecture", "os", "created", "config", "author")}
            if is_image else {},
            "annotations": extra.get("annotations") or {},
            "references": self.references(art), "labels": [],
            "addition_links": {"build_history": {
                "href": f"{request.path.split('/artifacts')[0]}/artifacts/{art.digest}/additions/build_history",
                "absolute": False}} if is_image else {},
        }
        if self.with_tag:
            tags = self.s.scalars(select(Tag).where(Tag.artifact_id == art.id).order_by(Tag.push_time.desc()))
            out["tags"] = [self.tag(t) for t in tags]
        if self.with_accessory:
            accessories = self.s.scalars(select(Artifact).where(Artifact.repository_id == self.repo.id,
                                                                Artifact.subject == art.digest))
            out["accessories"] = [self.accessory(a, art) for a in accessories]
        return out

    def references(self, art: Artifact) -> list[dict]:
        """An index's children as Harbor's references (child ids where the repository holds them)."""
        children = (art.extra or {}).get("children") or []
        if not children:
            return []
        digests = [c["digest"] for c in children]
        ids = dict(self.s.execute(select(Artifact.digest, Artifact.id).where(
            Artifact.repository_id == self.repo.id, Artifact.digest.in_(digests))).tuples().all())
        return [{"parent_id": art.id, "child_id": ids.get(c["digest"]), "child_digest": c["digest"],
                 "platform": c.get("platform"), "annotations": c.get("annotations"), "urls": []}
                for c in children]


def _filtered(query, conditions: list[Condition]):
    """Artifacts narrowed by q: tags (=name, =~part, nil: untagged, *: tagged) and the columns' terms."""
    for c in conditions:
        if c.key != "tags":
            continue
        if c.op == "=" and c.value in ("nil", "*"):
            tagged = exists().where(Tag.artifact_id == Artifact.id)
            query = query.where(~tagged if c.value == "nil" else tagged)
        elif c.op in ("=", "=~"):
            match = filter_q(select(Tag.id).where(Tag.artifact_id == Artifact.id), [c], {"tags": Tag.name})
            query = query.where(match.exists())
        else:
            raise ApiError(400, "q: tags supports =name, =~part, =nil and =*")
    columns = {"digest": Artifact.digest, "media_type": Artifact.media_type,
               "manifest_media_type": Artifact.media_type, "artifact_type": Artifact.artifact_type}
    return filter_q(query, [c for c in conditions if c.key != "tags"], columns)


@bp.get(ARTIFACTS)
@needs("project:pull")
def list_artifacts(project_name_or_id: str, repository_name: str):
    """A page of the repository's artifacts (accessories appear under their subject); q: digest, tags (=, =~,
    nil, *), media_type, artifact_type; sort: push_time (default -push_time), pull_time, size, digest."""
    page = paging()
    conditions = parse_q(request.args.get("q"))
    with registry().model.session() as s:
        project, repo = _located(s, project_name_or_id, repository_name)
        view = _View(s, project, repo)
        query = _filtered(select(Artifact).where(Artifact.repository_id == repo.id, Artifact.subject.is_(None)),
                          conditions)
        total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
        columns = {"push_time": Artifact.push_time, "pull_time": Artifact.pull_time, "size": Artifact.size,
                   "digest": Artifact.digest, "id": Artifact.id}
        arts = s.scalars(query.order_by(*order(request.args.get("sort"), columns, "-push_time"), Artifact.id.desc())
                         .offset(page.offset).limit(page.size))
        items = [view.artifact(a) for a in arts]
    return page_response(items, total, page)


@bp.get(ARTIFACT)
@needs("project:pull")
def get_artifact(project_name_or_id: str, repository_name: str, reference: str):
    """One artifact by tag or digest."""
    with registry().model.session() as s:
        project, repo = _located(s, project_name_or_id, repository_name)
        return jsonify(_View(s, project, repo).artifact(_artifact_or_404(s, repo, reference)))


@bp.delete(ARTIFACT)
@needs("project:delete")
def delete_artifact(project_name_or_id: str, repository_name: str, reference: str):
    """Delete an artifact and its tags (412 when one of them is immutable)."""
    from registry.model import artifacts
    from registry.model.policy import Refused
    reg = registry()
    with reg.model.session() as s:
        _, repo = _located(s, project_name_or_id, repository_name)
        name, digest = repo.name, _artifact_or_404(s, repo, reference).digest
    try:
        artifacts.delete_artifact(reg.model, reg.storage, name, digest, actor(), request.host)
    except Refused as e:
        raise ApiError(e.status, e.message) from None
    return "", 200


@bp.get(ARTIFACT + "/tags")
@needs("project:pull")
def list_tags(project_name_or_id: str, repository_name: str, reference: str):
    """A page of the artifact's tags; q: name=x, name=~x."""
    page = paging()
    conditions = parse_q(request.args.get("q"))
    with registry().model.session() as s:
        project, repo = _located(s, project_name_or_id, repository_name)
        art = _artifact_or_404(s, repo, reference)
        view = _View(s, project, repo)
        query = filter_q(select(Tag).where(Tag.artifact_id == art.id), conditions, {"name": Tag.name})
        total = s.scalar(select(func.count()).select_from(query.subquery())) or 0
        columns = {"name": Tag.name, "push_time": Tag.push_time, "pull_time": Tag.pull_time, "id": Tag.id}
        tags = s.scalars(query.order_by(*order(request.args.get("sort"), columns, "-push_time"), Tag.id.desc())
                         .offset(page.offset).limit(page.size))
        items = [view.tag(t) for t in tags]
    return page_response(items, total, page)


@bp.post(ARTIFACT + "/tags")
@needs("project:push")
def create_tag(project_name_or_id: str, repository_name: str, reference: str):
    """Add a tag ({"name": "..."}) to the artifact; 409 when the repository has it already."""
    from dockyard.reference import TAG_RE
    from registry.model import artifacts
    body = request.get_json(silent=True)
    name = body.get("name") if isinstance(body, dict) else None
    if not isinstance(name, str) or not TAG_RE.fullmatch(name):
        raise ApiError(400, "body must be {\"name\": \"<tag>\"} with a valid tag ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})")
    reg = registry()
    with reg.model.session() as s:
        _, repo = _located(s, project_name_or_id, repository_name)
        repo_name, digest = repo.name, _artifact_or_404(s, repo, reference).digest
    try:
        artifacts.add_tag(reg.model, reg.storage, repo_name, digest, name, actor())
    except FileExistsError:
        raise ApiError(409, f"tag {name} already exists in {repo_name}") from None
    except LookupError as e:
        raise ApiError(404, str(e)) from None
    resp = jsonify({})
    resp.status_code = 201
    resp.headers["Location"] = f"{request.path}/{name}"
    return resp


@bp.delete(ARTIFACT + "/tags/<tag_name>")
@needs("project:delete")
def delete_tag(project_name_or_id: str, repository_name: str, reference: str, tag_name: str):
    """Remove one of the artifact's tags (412 when immutable)."""
    from registry.model import artifacts
    from registry.model.policy import Refused
    reg = registry()
    with reg.model.session() as s:
        _, repo = _located(s, project_name_or_id, repository_name)
        art = _artifact_or_404(s, repo, reference)
        if s.scalar(select(Tag.id).where(Tag.artifact_id == art.id, Tag.name == tag_name)) is None:
            raise ApiError(404, f"tag {tag_name[:150]} not found on {art.digest}")
        repo_name = repo.name
    try:
        artifacts.delete_tag(reg.model, reg.storage, repo_name, tag_name, actor(), request.host)
    except Refused as e:
        raise ApiError(e.status, e.message) from None
    return "", 200


@bp.get(ARTIFACT + "/additions/build_history")
@needs("project:pull")
def build_history(project_name_or_id: str, repository_name: str, reference: str):
    """The image config's history: [{created, created_by, empty_layer}]."""
    with registry().model.session() as s:
        _, repo = _located(s, project_name_or_id, repository_name)
        art = _artifact_or_404(s, repo, reference)
        return jsonify((art.extra or {}).get("history") or [])
