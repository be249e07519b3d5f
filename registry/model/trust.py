"""A project's switches on its artifacts: content trust (pull only what a signature refers to) and auto-delete of
artifacts left untagged."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.model.access import content_trust
from registry.model.policy import Refused
from registry.model.projects import project_of
from registry.model.tables import Artifact, ArtifactBlob, Project, Repository, Tag

if TYPE_CHECKING:
    from dockyard.digest import Digest
    from registry.model.db import Database

COSIGN_SIGNATURE = "application/vnd.dev.cosign.artifact.sig.v1+json"
NOTATION_SIGNATURE = "application/vnd.cncf.notary.signature"
SIGNATURE_TYPES = (COSIGN_SIGNATURE, NOTATION_SIGNATURE)


def is_signed(s: Session, repo_id: int, digest: str) -> bool:
    """Whether a signature refers to `digest`: a referrer of a signature type or cosign's `sha256-<hex>.sig` tag."""
    if s.scalar(select(Artifact.id).where(Artifact.repository_id == repo_id, Artifact.subject == digest,
                                          Artifact.artifact_type.in_(SIGNATURE_TYPES)).limit(1)) is not None:
        return True
    cosign_tag = digest.replace(":", "-", 1) + ".sig"
    return s.scalar(select(Tag.id).where(Tag.repository_id == repo_id, Tag.name == cosign_tag)) is not None


def check_pull(db: Database, repository: str, digest: str | Digest, gen: str | None = None) -> None:
    """With the project's content trust on, refuse (412) a pull of an artifact no signature refers to. Signatures and
    other referrers themselves may be pulled, and an index's child is as trusted as a signed index holding it.
    `gen`: the request's auth generation, when it has read it (the switch is cached per generation). `digest` made
    text only when the switch is on: most projects' is off, and every manifest GET asks."""
    project_name = project_of(repository)
    if not content_trust(db, project_name, gen):
        return
    digest = str(digest)
    with db.session() as s:
        repo_id = s.scalar(select(Repository.id).where(Repository.name == repository))
        art = s.scalar(select(Artifact).where(Artifact.repository_id == repo_id, Artifact.digest == digest))
        if art is not None and art.subject is not None:
            return
        if repo_id is not None and is_signed(s, repo_id, digest):
            return
        parents = s.scalars(select(Artifact.digest).join(ArtifactBlob, ArtifactBlob.artifact_id == Artifact.id)
                            .where(Artifact.repository_id == repo_id, ArtifactBlob.digest == digest,
                                   Artifact.digest != digest))
        if repo_id is not None and any(is_signed(s, repo_id, parent) for parent in parents):
            return
    raise Refused(412, "DENIED", f"The image {repository}@{digest} is not signed: project {project_name} only "
                                 "allows pulling signed images (content trust).")


def auto_deletable(s: Session, project: Project, art: Artifact) -> bool:
    """Whether the project deletes `art` now that it lost a tag: auto-delete on, no tag left, not a referrer of a
    live artifact, not the child of an index."""
    if not project.auto_delete_untagged:
        return False
    if s.scalar(select(Tag.id).where(Tag.artifact_id == art.id).limit(1)) is not None:
        return False
    if art.subject is not None and s.scalar(select(Artifact.id).where(
            Artifact.repository_id == art.repository_id, Artifact.digest == art.subject)) is not None:
        return False
    return s.scalar(select(ArtifactBlob.artifact_id).join(Artifact, Artifact.id == ArtifactBlob.artifact_id).where(
        Artifact.repository_id == art.repository_id, ArtifactBlob.digest == art.digest,
        ArtifactBlob.artifact_id != art.id).limit(1)) is None
