"""The storage interface the registry handlers use; a driver (filesystem, later S3) implements it."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from dockyard.digest import Digest
from dockyard.errors import DockyardError


class UploadUnknown(DockyardError):
    """No upload session has this id (or it belongs to another repository)."""


class UploadOffsetMismatch(DockyardError):
    """A chunk did not start where the upload currently ends."""

    def __init__(self, size: int):
        super().__init__(f"chunk does not start at offset {size}")
        self.size = size


@dataclass(frozen=True)
class BlobInfo:
    """A stored blob: its size, last-use time, and a local path when the driver can serve it zero-copy."""

    digest: Digest
    size: int
    path: str | None = None
    mtime: float = 0.0


@dataclass(frozen=True)
class UploadInfo:
    """An open upload session."""

    id: str
    repository: str
    size: int
    started: float


class Storage(abc.ABC):
    """Content-addressed blobs, per-repository links, manifests, tags, referrers and upload sessions."""

    # -- blobs (shared by all repositories) ---------------------------------------------------------------
    @abc.abstractmethod
    def blob_info(self, digest: Digest) -> BlobInfo | None:
        """Size (and local path) of a stored blob, or None."""

    @abc.abstractmethod
    def open_blob(self, digest: Digest) -> BinaryIO:
        """Open a stored blob for reading; raises FileNotFoundError when absent."""

    @abc.abstractmethod
    def put_blob_bytes(self, data: bytes, digest: Digest) -> None:
        """Store small content (a manifest) under its digest."""

    @abc.abstractmethod
    def iter_blobs(self) -> Iterator[tuple[Digest, float]]:
        """Every stored blob with its last-use time (for GC)."""

    @abc.abstractmethod
    def delete_blob_if_older(self, digest: Digest, cutoff: float) -> bool:
        """Remove a blob unless it was used after `cutoff`; atomic against concurrent links."""

    # -- per-repository blob links ------------------------------------------------------------------------
    @abc.abstractmethod
    def blob_linked(self, repo: str, digest: Digest) -> BlobInfo | None:
        """The blob if it is stored and linked into `repo`."""

    @abc.abstractmethod
    def link_blob(self, repo: str, digest: Digest) -> bool:
        """Link an existing blob into `repo` and mark it as just used; False if the blob is absent."""

    @abc.abstractmethod
    def unlink_blob(self, repo: str, digest: Digest) -> bool:
        """Remove a repository's link to a blob; False if there was none."""

    @abc.abstractmethod
    def unlink_blob_if_absent(self, repo: str, digest: Digest) -> bool:
        """Remove a link whose blob is gone (GC); atomic against a concurrent re-upload."""

    @abc.abstractmethod
    def iter_blob_links(self, repo: str) -> Iterator[Digest]:
        """Every blob linked into `repo`."""

    # -- manifests ----------------------------------------------------------------------------------------
    @abc.abstractmethod
    def put_manifest(self, repo: str, digest: Digest, data: bytes, media_type: str) -> None:
        """Store a manifest's bytes and link it into `repo` with its media type."""

    @abc.abstractmethod
    def manifest_media_type(self, repo: str, digest: Digest) -> str | None:
        """The media type of a manifest linked into `repo`, or None."""

    @abc.abstractmethod
    def get_manifest(self, repo: str, digest: Digest) -> tuple[bytes, str] | None:
        """A manifest's exact bytes and media type, or None when it is not in `repo`."""

    @abc.abstractmethod
    def delete_manifest(self, repo: str, digest: Digest) -> bool:
        """Unlink a manifest revision (and tags pointing at it) from `repo`."""

    @abc.abstractmethod
    def iter_manifests(self, repo: str) -> Iterator[Digest]:
        """Every manifest revision linked into `repo`."""

    # -- tags ---------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def set_tag(self, repo: str, tag: str, digest: Digest) -> None:
        """Point a tag at a manifest digest."""

    @abc.abstractmethod
    def resolve_tag(self, repo: str, tag: str) -> Digest | None:
        """The digest a tag points at, or None."""

    @abc.abstractmethod
    def delete_tag(self, repo: str, tag: str) -> bool:
        """Remove a tag; False if it did not exist."""

    @abc.abstractmethod
    def list_tags(self, repo: str) -> list[str] | None:
        """All tags of `repo` in lexical order, or None when the repository does not exist."""

    # -- referrers ----------------------------------------------------------------------------------------
    @abc.abstractmethod
    def add_referrer(self, repo: str, subject: Digest, descriptor: dict) -> None:
        """Record that a manifest (described by `descriptor`) refers to `subject`."""

    @abc.abstractmethod
    def remove_referrer(self, repo: str, subject: Digest, digest: Digest) -> None:
        """Forget a referrer."""

    @abc.abstractmethod
    def list_referrers(self, repo: str, subject: Digest) -> list[dict]:
        """Descriptors of every manifest in `repo` whose subject is `subject`."""

    # -- repositories -------------------------------------------------------------------------------------
    @abc.abstractmethod
    def repository_exists(self, repo: str) -> bool:
        """Whether anything was ever pushed to `repo`."""

    @abc.abstractmethod
    def repositories(self) -> list[str]:
        """All repository names in lexical order."""

    # -- uploads ------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def create_upload(self, repo: str) -> UploadInfo:
        """Open a new upload session."""

    @abc.abstractmethod
    def upload_info(self, repo: str, upload_id: str) -> UploadInfo:
        """Current state of a session; raises UploadUnknown."""

    @abc.abstractmethod
    def append_upload(self, repo: str, upload_id: str, stream: BinaryIO, offset: int | None) -> UploadInfo:
        """Stream a chunk onto the session; `offset` (when given) must equal its current size."""

    @abc.abstractmethod
    def commit_upload(self, repo: str, upload_id: str, digest: Digest, stream: BinaryIO | None = None) -> BlobInfo:
        """Append a last chunk, verify against `digest` (DigestMismatch discards the session), store and link."""

    @abc.abstractmethod
    def cancel_upload(self, repo: str, upload_id: str) -> None:
        """Discard a session; raises UploadUnknown."""

    @abc.abstractmethod
    def iter_uploads(self) -> Iterator[UploadInfo]:
        """Every open session (for GC and metrics)."""

    @abc.abstractmethod
    def upload_count(self) -> int:
        """How many sessions are open (the uploads-in-progress gauge)."""

    @abc.abstractmethod
    def upload_last_used(self, upload_id: str) -> float:
        """When a session last changed (0.0 if it is gone)."""

    @abc.abstractmethod
    def purge_upload(self, upload_id: str, cutoff: float) -> bool:
        """Remove a session of any repository unchanged since `cutoff` and not in use by a request right now
        (stale-upload cleanup); whether it did."""

    @abc.abstractmethod
    def purge_temp_files(self, cutoff: float, dry_run: bool = False) -> int:
        """Remove temp files older than `cutoff` that writers killed mid-write left behind; how many."""
