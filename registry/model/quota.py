"""Per-project storage quotas: usage counts each blob once per project (as Harbor), checked as content arrives."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from registry.model.policy import Actor, Refused
from registry.model.tables import Artifact, ArtifactBlob, Project, ProjectBlob, Repository

if TYPE_CHECKING:
    from registry.model.db import Database


def usage(s: Session, project_id: int) -> int:
    """Bytes the project's distinct blobs take."""
    return int(s.scalar(select(func.coalesce(func.sum(ProjectBlob.size), 0))
                        .where(ProjectBlob.project_id == project_id)) or 0)


def human(n: int) -> str:
    """A size as Harbor writes it in quota messages ("12.3 MiB")."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _uncounted(s: Session, project_id: int, blobs: dict[str, int]) -> dict[str, int]:
    if not blobs:
        return {}
    counted = set(s.scalars(select(ProjectBlob.digest).where(ProjectBlob.project_id == project_id,
                                                             ProjectBlob.digest.in_(list(blobs)))))
    return {d: size for d, size in blobs.items() if d not in counted}


def exceeded(s: Session, project: Project, blobs: dict[str, int]) -> str | None:
    """Harbor's message when counting `blobs` (digest -> size) would take the project over its limit, else None."""
    if project.quota_bytes < 0:
        return None
    adding = sum(_uncounted(s, project.id, blobs).values())
    if not adding:
        return None
    used = usage(s, project.id)
    if used + adding <= project.quota_bytes:
        return None
    return (f"adding {human(adding)} of storage resource, which when updated to current usage of {human(used)} "
            f"will exceed the configured upper limit of {human(project.quota_bytes)}.")


def count(s: Session, project_id: int, blobs: dict[str, int]) -> None:
    """Count `blobs` in the project's usage (those not counted yet)."""
    for digest, size in _uncounted(s, project_id, blobs).items():
        s.add(ProjectBlob(project_id=project_id, digest=digest, size=size))
    s.flush()


def refuse(db: Database, project: str, repository: str, message: str, actor: Actor) -> Refused:
    """The 403 refusal of a push over quota, after emitting QUOTA_EXCEED."""
    from registry.events import Event, emit
    emit(db, Event("QUOTA_EXCEED", project, repository, operator=actor.name, remote_addr=actor.remote_addr,
                   extra={"message": message}, time=time.time()))
    return Refused(403, "DENIED", f"quota exceeded when processing the request of {message}")


def charge_blob(db: Database, repository: str, digest: str, size: int, actor: Actor) -> None:
    """Count an uploaded or mounted blob in its project's usage; Refused (403) when that exceeds the quota."""
    from registry.model.artifacts import retried
    from registry.model.projects import project_of
    name = project_of(repository)

    def write() -> str | None:
        with db.session() as s:
            project = s.scalar(select(Project).where(Project.name == name))
            if project is None:
                raise Refused(404, "NAME_UNKNOWN", f"project {name} not found")
            message = exceeded(s, project, {digest: size})
            if message is None:
                count(s, project.id, {digest: size})
            return message

    message = retried(write)
    if message is not None:
        raise refuse(db, name, repository, message, actor)


def release(s: Session, project_id: int, digests: list[str]) -> None:
    """Stop counting those of `digests` no artifact of the project references any more."""
    if not digests:
        return
    referenced = set(s.scalars(
        select(ArtifactBlob.digest).join(Artifact, Artifact.id == ArtifactBlob.artifact_id)
        .join(Repository, Repository.id == Artifact.repository_id)
        .where(Repository.project_id == project_id, ArtifactBlob.digest.in_(digests))))
    gone = [d for d in digests if d not in referenced]
    if gone:
        s.execute(delete(ProjectBlob).where(ProjectBlob.project_id == project_id, ProjectBlob.digest.in_(gone)))

