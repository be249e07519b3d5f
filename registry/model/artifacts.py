"""The artifact index: repositories, artifacts and tags as the v2 API pushes, pulls and deletes them, with the
quota, immutability and auto-delete policies applied on the way.

The v2 endpoints call `admit_push` before storing a manifest and `record_push` after; tag and artifact deletes
(v2 and REST) go through `delete_tag` and `delete_artifact`, which change storage and index together."""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol, TypeVar

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dockyard import mediatypes as mt
from dockyard.digest import Digest, InvalidDigest
from registry.events import Event, defer, emit, reference
from registry.model import immutable, quota, trust
from registry.model.db import Database
from registry.model.policy import Actor, Refused
from registry.model.projects import project_of
from registry.model.tables import Artifact, ArtifactBlob, Project, Repository, Tag, now

CONFIG_MAX = 8 << 20  # an image config larger than this is not read for the index (its fields stay empty)
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
T = TypeVar("T")


class Storage(Protocol):
    """The storage layout's operations the index uses (registry.storage.Layout)."""

    def open_blob(self, digest: Digest, offset: int = 0) -> BinaryIO: ...
    def get_manifest(self, repo: str, digest: Digest) -> tuple[bytes, str] | None: ...
    def delete_manifest(self, repo: str, digest: Digest) -> bool: ...
    def remove_referrer(self, repo: str, subject: Digest, digest: Digest) -> None: ...
    def set_tag(self, repo: str, tag: str, digest: Digest) -> None: ...
    def resolve_tag(self, repo: str, tag: str) -> Digest | None: ...
    def delete_tag(self, repo: str, tag: str) -> bool: ...
    def list_tags(self, repo: str) -> list[str] | None: ...
    def iter_manifests(self, repo: str) -> Iterator[Digest]: ...
    def repositories(self) -> list[str]: ...


@dataclass
class Manifest:
    """A stored manifest as the index reads it."""

    digest: str
    media_type: str
    data_size: int
    doc: dict
    blobs: dict[str, int] = field(default_factory=dict)  # config and layers: digest -> size
    children: list[dict] = field(default_factory=list)  # an index's manifests' descriptors

    @property
    def is_index(self) -> bool:
        return self.media_type in mt.INDEXES

    @property
    def counted(self) -> dict[str, int]:
        """What the project's quota counts for this manifest: its blobs and itself."""
        return {**self.blobs, self.digest: self.data_size}

    @property
    def subject(self) -> str | None:
        subject = self.doc.get("subject")
        return subject.get("digest") if isinstance(subject, dict) else None

    @property
    def config_media_type(self) -> str:
        config = self.doc.get("config")
        return str(config.get("mediaType", "")) if isinstance(config, dict) else ""

    @property
    def artifact_type(self) -> str:
        return str(self.doc.get("artifactType") or self.config_media_type)


def read_manifest(digest: str, data: bytes, media_type: str) -> Manifest:
    """The index's view of a manifest the v2 API accepted (or storage holds: malformed parts are skipped)."""
    try:
        doc = json.loads(data)
    except ValueError:
        doc = {}
    doc = doc if isinstance(doc, dict) else {}
    m = Manifest(digest, media_type, len(data), doc)
    for item in [doc.get("config"), *_list(doc.get("layers"))]:
        if isinstance(item, dict) and isinstance(item.get("digest"), str) and isinstance(item.get("size"), int):
            m.blobs[item["digest"]] = item["size"]
    children = doc.get("manifests")
    m.children = [c for c in children if isinstance(c, dict) and isinstance(c.get("digest"), str)] \
        if isinstance(children, list) else []
    return m


def harbor_type(media_type: str, config_media_type: str) -> str:
    """Harbor's artifact `type`: IMAGE, CHART or UNKNOWN."""
    if media_type in mt.INDEXES or config_media_type in (mt.OCI_CONFIG, mt.DOCKER_CONFIG):
        return "IMAGE"
    return "CHART" if config_media_type == HELM_CONFIG else "UNKNOWN"


def retried(write: Callable[[], T]) -> T:
    """Run a write transaction again once when a concurrent one inserted the same row first (two pushes sharing a
    repository, an artifact or a blob): the second run finds the row and updates it instead."""
    try:
        return write()
    except IntegrityError:
        return write()


def _project(s: Session, repository: str) -> Project:
    name = project_of(repository)
    project = s.scalar(select(Project).where(Project.name == name))
    if project is None:
        raise Refused(404, "NAME_UNKNOWN", f"project {name} not found")
    return project


def _artifact(s: Session, repository: str, digest: str) -> Artifact | None:
    return s.scalar(select(Artifact).join(Repository, Repository.id == Artifact.repository_id)
                    .where(Repository.name == repository, Artifact.digest == digest))


def _tag(s: Session, repository: str, tag: str) -> Tag | None:
    return s.scalar(select(Tag).join(Repository, Repository.id == Tag.repository_id)
                    .where(Repository.name == repository, Tag.name == tag))


def _cosign_subject(tag: str | None) -> str | None:
    """The subject a cosign tag (`sha256-<hex>.sig|.att|.sbom`) names."""
    m = re.fullmatch(r"sha256-([0-9a-f]{64})\.(?:sig|att|sbom)", tag or "")
    return f"sha256:{m.group(1)}" if m else None


# -- push ----------------------------------------------------------------------------------------------------------
def admit_push(db: Database, storage: Storage, repository: str, manifest: Manifest, tag: str | None,
               actor: Actor) -> None:
    """Refuse a manifest push the project's policies forbid: no such project (404), moving an immutable tag (412),
    exceeding the storage quota (403, QUOTA_EXCEED emitted)."""
    index_repository(db, storage, repository)
    with db.session() as s:
        project = _project(s, repository)
        if tag is not None:
            current = _tag(s, repository, tag)
            pointed = s.get(Artifact, current.artifact_id) if current is not None else None
            if pointed is not None and pointed.digest != manifest.digest \
                    and immutable.is_immutable(s, project, repository, tag):
                raise immutable.refuse(repository, tag)
        message = quota.exceeded(s, project, manifest.counted)
        name = project.name
    if message is not None:
        raise quota.refuse(db, name, repository, message, actor)


def record_push(db: Database, storage: Storage, repository: str, manifest: Manifest, tag: str | None,
                actor: Actor, host: str = "") -> None:
    """Index a stored manifest (and its tag), count it in the quota, emit PUSH_ARTIFACT, and auto-delete the
    artifact a moved tag left untagged when the project asks for that."""
    def write() -> tuple[str, str | None]:
        with db.session() as s:
            project = _project(s, repository)
            repo = _repository(s, project, repository)
            art = _upsert(s, storage, repo, manifest, tag)
            quota.count(s, project.id, manifest.counted)
            orphan = None
            if tag is not None:
                previous = _move_tag(s, repo, art, tag)
                if previous is not None and trust.auto_deletable(s, project, previous):
                    orphan = previous.digest
            repo.updated_at = now()
            return project.name, orphan

    project_name, orphan = retried(write)
    resource = {"digest": manifest.digest, "tag": tag or "",
                "resource_url": f"{host}/{repository}:{tag}" if tag else f"{host}/{repository}@{manifest.digest}"}
    emit(db, Event("PUSH_ARTIFACT", project_name, repository, operator=actor.name, remote_addr=actor.remote_addr,
                   resources=(resource,), time=time.time()))
    if orphan is not None:
        delete_artifact(db, storage, repository, orphan, actor, host)


def _repository(s: Session, project: Project, name: str) -> Repository:
    repo = s.scalar(select(Repository).where(Repository.name == name))
    if repo is None:
        repo = Repository(project_id=project.id, name=name)
        s.add(repo)
        s.flush()
    return repo


def _config(storage: Storage, manifest: Manifest) -> dict:
    """The image config a manifest names, parsed (empty when absent, too large or not JSON)."""
    config = manifest.doc.get("config")
    if manifest.is_index or not isinstance(config, dict) or not 0 < config.get("size", 0) <= CONFIG_MAX:
        return {}
    try:
        with storage.open_blob(Digest.parse(str(config.get("digest")))) as f:
            doc = json.loads(f.read(CONFIG_MAX + 1))
    except (FileNotFoundError, InvalidDigest, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _extra(storage: Storage, manifest: Manifest) -> dict:
    """What the API and UI show beyond the columns: platform, config fields, labels, layers, history, children."""
    cfg = _config(storage, manifest)
    inner = _dict(cfg.get("config"))
    return {
        "config_media_type": manifest.config_media_type,
        "config_digest": str(_dict(manifest.doc.get("config")).get("digest", "")),
        "os": str(cfg.get("os", "")), "architecture": str(cfg.get("architecture", "")),
        "variant": str(cfg.get("variant", "")), "created": str(cfg.get("created", "")),
        "author": str(cfg.get("author", "")), "config": inner, "labels": _dict(inner.get("Labels")),
        "annotations": _dict(manifest.doc.get("annotations")),
        "layers": [{"digest": item.get("digest"), "size": item.get("size"), "mediaType": item.get("mediaType")}
                   for item in _list(manifest.doc.get("layers")) if isinstance(item, dict)],
        "history": [{"created_by": str(h.get("created_by", "")), "created": str(h.get("created", "")),
                     "empty_layer": bool(h.get("empty_layer", False))}
                    for h in _list(cfg.get("history")) if isinstance(h, dict)],
        "children": [{"digest": c["digest"], "mediaType": c.get("mediaType", ""), "size": c.get("size", 0),
                      "platform": _dict(c.get("platform")) or None, "annotations": _dict(c.get("annotations")) or None}
                     for c in manifest.children],
    }


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


def _upsert(s: Session, storage: Storage, repo: Repository, manifest: Manifest, tag: str | None) -> Artifact:
    """The repository's artifact for `manifest`, created with its size, extra and references if new."""
    art = s.scalar(select(Artifact).where(Artifact.repository_id == repo.id, Artifact.digest == manifest.digest))
    subject = manifest.subject or _cosign_subject(tag)
    if art is not None:
        art.push_time = now()
        if art.subject is None and subject is not None:
            art.subject = subject
        return art
    size = manifest.data_size + sum(manifest.blobs.values())
    if manifest.is_index:
        known = dict(s.execute(select(Artifact.digest, Artifact.size).where(
            Artifact.repository_id == repo.id, Artifact.digest.in_([c["digest"] for c in manifest.children]))).all())
        size += sum(known.get(c["digest"], c.get("size", 0)) for c in manifest.children)
    art = Artifact(repository_id=repo.id, digest=manifest.digest, media_type=manifest.media_type,
                   artifact_type=manifest.artifact_type, size=size, subject=subject, extra=_extra(storage, manifest),
                   push_time=now())
    s.add(art)
    s.flush()
    referenced = {manifest.digest, *manifest.blobs, *(c["digest"] for c in manifest.children)}
    s.add_all(ArtifactBlob(artifact_id=art.id, digest=d) for d in referenced)
    return art


def _move_tag(s: Session, repo: Repository, art: Artifact, name: str) -> Artifact | None:
    """Point tag `name` at `art`; the artifact it pointed at before, if another."""
    tag = s.scalar(select(Tag).where(Tag.repository_id == repo.id, Tag.name == name))
    if tag is None:
        s.add(Tag(repository_id=repo.id, artifact_id=art.id, name=name, push_time=now()))
        s.flush()
        return None
    previous = tag.artifact_id
    tag.artifact_id, tag.push_time = art.id, now()
    s.flush()
    return s.get(Artifact, previous) if previous != art.id else None


# -- tags ----------------------------------------------------------------------------------------------------------
def add_tag(db: Database, storage: Storage, repository: str, digest: str, name: str, actor: Actor) -> None:
    """Tag an artifact (the REST API's create tag): LookupError when the artifact is unknown, FileExistsError when
    the repository has the tag already."""
    def write() -> None:
        with db.session() as s:
            art = _artifact(s, repository, digest)
            if art is None:
                raise LookupError(f"artifact {digest} not found")
            if _tag(s, repository, name) is not None:
                raise FileExistsError(f"tag {name} already exists")
            s.add(Tag(repository_id=art.repository_id, artifact_id=art.id, name=name, push_time=now()))
            s.flush()
            storage.set_tag(repository, name, Digest.parse(digest))

    retried(write)


def delete_tag(db: Database, storage: Storage, repository: str, name: str, actor: Actor, host: str = "") -> bool:
    """Remove a tag from storage and index (False when there was none); 412 when it is immutable; the artifact it
    leaves untagged is deleted when the project auto-deletes untagged artifacts."""
    with db.session() as s:
        project = _project(s, repository)
        if _tag(s, repository, name) is not None and immutable.is_immutable(s, project, repository, name):
            raise immutable.refuse(repository, name)
    digest = storage.resolve_tag(repository, name)
    removed = storage.delete_tag(repository, name)
    orphan = None
    with db.session() as s:
        tag = _tag(s, repository, name)
        if tag is not None:
            art = s.get(Artifact, tag.artifact_id)
            s.delete(tag)
            s.flush()
            if art is not None and trust.auto_deletable(s, project, art):
                orphan = art.digest
    if removed:
        resource = {"digest": str(digest or ""), "tag": name, "resource_url": f"{host}/{repository}:{name}"}
        emit(db, Event("DELETE_TAG", project.name, repository, operator=actor.name, remote_addr=actor.remote_addr,
                       resources=(resource,), time=time.time()))
    if orphan is not None:
        delete_artifact(db, storage, repository, orphan, actor, host)
    return removed


# -- artifacts -----------------------------------------------------------------------------------------------------
def delete_artifact(db: Database, storage: Storage, repository: str, digest: str, actor: Actor,
                    host: str = "") -> bool:
    """Remove a manifest (its tags, its referrer entry) from storage and index, release its quota and emit
    DELETE_ARTIFACT; False when the repository does not hold it; 412 when one of its tags is immutable."""
    d = Digest.parse(digest)
    with db.session() as s:
        project = _project(s, repository)
        art = _artifact(s, repository, digest)
        tags = list(s.scalars(select(Tag.name).where(Tag.artifact_id == art.id))) if art is not None else []
        for name in tags:
            if immutable.is_immutable(s, project, repository, name):
                raise immutable.refuse(repository, name)
    found = storage.get_manifest(repository, d)
    removed = found is not None and storage.delete_manifest(repository, d)
    if removed and found is not None:
        subject = read_manifest(digest, *found).subject
        with contextlib.suppress(InvalidDigest):
            if subject is not None:
                storage.remove_referrer(repository, Digest.parse(subject), d)
    with db.session() as s:
        art = _artifact(s, repository, digest)
        if art is not None:
            _forget(s, project, art)
    if removed:
        resources = tuple({"digest": digest, "tag": t, "resource_url": f"{host}/{repository}:{t}"} for t in tags) \
            or ({"digest": digest, "tag": "", "resource_url": f"{host}/{repository}@{digest}"},)
        emit(db, Event("DELETE_ARTIFACT", project.name, repository, operator=actor.name,
                       remote_addr=actor.remote_addr, resources=resources, time=time.time()))
    return removed


def _forget(s: Session, project: Project, art: Artifact) -> None:
    """Drop an artifact's rows and release the quota of blobs nothing else in the project references."""
    digests = list(s.scalars(select(ArtifactBlob.digest).where(ArtifactBlob.artifact_id == art.id)))
    s.execute(delete(Tag).where(Tag.artifact_id == art.id))
    s.execute(delete(ArtifactBlob).where(ArtifactBlob.artifact_id == art.id))
    s.delete(art)
    s.flush()
    quota.release(s, project.id, digests)


def delete_repository(db: Database, storage: Storage, repository: str, actor: Actor, host: str = "") -> bool:
    """Delete every artifact of a repository, then its row; False when the index does not know it."""
    with db.session() as s:
        repo = s.scalar(select(Repository).where(Repository.name == repository))
        if repo is None:
            return False
        digests = list(s.scalars(select(Artifact.digest).where(Artifact.repository_id == repo.id)))
        project = _project(s, repository)
        for name in s.scalars(select(Tag.name).where(Tag.repository_id == repo.id)):
            if immutable.is_immutable(s, project, repository, name):
                raise immutable.refuse(repository, name)
    for digest in digests:
        delete_artifact(db, storage, repository, digest, actor, host)
    with db.session() as s:
        s.execute(delete(Repository).where(Repository.name == repository))
    return True


def describe_repository(db: Database, repository: str, description: str) -> None:
    """Set a repository's description."""
    with db.session() as s:
        s.execute(update(Repository).where(Repository.name == repository)
                  .values(description=description, updated_at=now()))


# -- pull ----------------------------------------------------------------------------------------------------------
def record_pull(db: Database, repository: str, digest: str, tag: str | None, operator: str, remote_addr: str,
                host: str = "") -> None:
    """Record a pull: its PULL_ARTIFACT (pull_event), its audit entry, and the pull time and count it adds
    (count_pulls) are made and written with the other pulls of its batch by the process's flusher
    (registry.events.defer), not by the request."""
    defer(db, (repository, digest, tag, operator, remote_addr, host, time.time()))


def pull_event(repository: str, digest: str, tag: str | None, operator: str, remote_addr: str, host: str,
               when: float) -> Event:
    """The PULL_ARTIFACT event of a pull record_pull queued."""
    url = f"{host}/{reference(repository, digest, tag)}"
    return Event("PULL_ARTIFACT", project_of(repository), repository, operator, remote_addr,
                 ({"digest": digest, "tag": tag or "", "resource_url": url},), time=when)


# count_pulls' statements, built once: a statement built per execution costs SQLAlchemy its construction and cache
# key each time, several times what SQLite takes to run it. (SQLAlchemy reserves the columns' names for the SET
# clause: the binds are named b_*.)
_PULLED_REPOSITORY = select(Repository.id).where(Repository.name == bindparam("b_repository")).scalar_subquery()
_COUNT_PULLS = (update(Repository).where(Repository.name == bindparam("b_repository"))
                .values(pull_count=Repository.pull_count + bindparam("b_pulls")))
_ARTIFACT_PULLED = (update(Artifact).where(Artifact.repository_id == _PULLED_REPOSITORY,
                                           Artifact.digest == bindparam("b_digest"))
                    .values(pull_time=bindparam("b_when")))
_TAG_PULLED = (update(Tag).where(Tag.repository_id == _PULLED_REPOSITORY, Tag.name == bindparam("b_tag"))
               .values(pull_time=bindparam("b_when")))


def count_pulls(conn: Connection, pulls: dict[tuple, list[float]]) -> None:
    """A batch of pulls' effect on the index (`pulls`: record_pull's tuples but their time -> the times of those
    pulls): each repository's pull count rises by its pulls, and each pulled artifact and tag takes the time of its
    latest pull (one update each, not one per pull). On the session's connection: the ORM's updates would look for
    copies of the rows in the session, a cost per statement."""
    counts: dict[str, int] = {}
    latest: dict[tuple[str, str, str], float] = {}
    for (repository, digest, tag, *_), times in pulls.items():
        counts[repository] = counts.get(repository, 0) + len(times)
        if digest:
            key = (repository, digest, tag or "")
            latest[key] = max(latest.get(key, 0.0), max(times))
    for repository, n in counts.items():
        conn.execute(_COUNT_PULLS, {"b_repository": repository, "b_pulls": n})
    for (repository, digest, tag), t in latest.items():
        conn.execute(_ARTIFACT_PULLED, {"b_repository": repository, "b_digest": digest, "b_when": t})
        if tag:
            conn.execute(_TAG_PULLED, {"b_repository": repository, "b_tag": tag, "b_when": t})


# -- what storage already holds ------------------------------------------------------------------------------------
_indexed: dict[str, int] = {}  # database URL -> the newest project when this process last indexed storage


def ensure_indexed(db: Database, storage: Storage) -> None:
    """Index the repositories storage held before the registry ran with projects: once per process, and again
    when a project was created since (its repositories may be in storage already)."""
    with db.session() as s:
        newest = s.scalar(select(func.max(Project.id))) or 0
    if _indexed.get(db.url) == newest:
        return
    _indexed[db.url] = newest
    reindex(db, storage)


def reindex(db: Database, storage: Storage) -> int:
    """Index every stored repository the index lacks whose project exists; how many it indexed."""
    return sum(index_repository(db, storage, name) for name in storage.repositories())


def index_repository(db: Database, storage: Storage, repository: str) -> bool:
    """Index a stored repository the index does not know yet (its project must exist): its manifests, tags and
    their quota usage; whether it did."""
    with db.session() as s:
        if s.scalar(select(Repository.id).where(Repository.name == repository)) is not None:
            return False
        if s.scalar(select(Project.id).where(Project.name == project_of(repository))) is None:
            return False
    found = []
    for digest in storage.iter_manifests(repository):
        stored = storage.get_manifest(repository, digest)
        if stored is not None:
            found.append(read_manifest(str(digest), *stored))
    if not found:
        return False
    tags = {t: str(storage.resolve_tag(repository, t)) for t in storage.list_tags(repository) or []}
    found.sort(key=lambda m: m.is_index)  # an index's size adds its children's
    try:
        with db.session() as s:
            project = _project(s, repository)
            repo = _repository(s, project, repository)
            arts = {m.digest: _upsert(s, storage, repo, m, None) for m in found}
            for m in found:
                quota.count(s, project.id, m.counted)
            for tag, tagged in tags.items():
                art = arts.get(tagged)
                if art is not None:
                    if art.subject is None and _cosign_subject(tag):
                        art.subject = _cosign_subject(tag)
                    _move_tag(s, repo, art, tag)
    except IntegrityError:  # another worker indexed it meanwhile
        return False
    return True
