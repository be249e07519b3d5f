"""Mark-and-sweep garbage collection of blobs, safe to run while the registry serves pushes.

Safety against a concurrent push (distribution#3045): every write that makes a blob live refreshes its mtime under
a shared lock, and a blob is deleted only under the exclusive lock after re-checking that its mtime is older than
the grace period.  Open upload sessions live outside the blob store, so they are never swept; sessions and
temp files go only when unchanged for the upload age limit.

Across replicas on several hosts, both halves are shared state: the lock is the storage driver's, a Redis lock
when the config has `[redis]` (registry.storage.locks), and "recently written" is a blob's mtime in the storage.
Ages are measured on the storage's own clock: GC writes a file and reads its mtime as "now" (Layout.clock), since
an S3 object's LastModified is the S3 server's time, not this host's; with this host's clock, one running ahead of
the server's by more than the grace period would see a blob written a moment ago as old enough to delete."""

from __future__ import annotations

from dataclasses import dataclass, field

from dockyard.digest import Digest, InvalidDigest
from dockyard.errors import DockyardError
from registry import manifests
from registry.config import Config
from registry.storage import Layout, open_storage

CLOCK_SLACK = 2.0
# A younger temp file may be a write in progress, whatever the age limit.
_TEMP_MIN_AGE = 60


@dataclass
class GcReport:
    """What a collection removed (or would remove, in a dry run)."""

    blobs: list[Digest] = field(default_factory=list)
    bytes: int = 0
    manifests: list[tuple[str, Digest]] = field(default_factory=list)
    uploads: int = 0
    temp_files: int = 0
    kept_recent: int = 0

    def summary(self, dry_run: bool) -> str:
        verb = "would remove" if dry_run else "removed"
        return (f"{verb} {len(self.blobs)} blobs ({self.bytes} bytes), {len(self.manifests)} manifests, "
                f"{self.uploads} stale upload sessions, {self.temp_files} stale temp files; "
                f"kept {self.kept_recent} recent unreferenced blobs")


def existing_storage(config: Config) -> Layout:
    """The storage `config` names; DockyardError unless a registry was stored there (GC creates none)."""
    storage = open_storage(*config.storage())
    if not storage.exists():
        where = storage.driver.local_path("") or f"the {config.storage_driver} storage"
        raise DockyardError(f"no registry storage at {where}")
    return storage


def collect(storage: Layout, dry_run: bool = False, delete_untagged: bool = False, grace: int = 3600,
            upload_max_age: int = 86400) -> GcReport:
    """Collect garbage in a registry's storage."""
    report = GcReport()
    now = storage.clock()
    # A margin on top of the grace period: mtimes read through different calls (an S3 listing, a HEAD) are
    # rounded differently, to the millisecond or down to the whole second.
    cutoff = now - grace - CLOCK_SLACK
    # Sessions and temp files nothing changed for upload_max_age: abandoned pushes (a 507 included) and the
    # leftovers of writers killed mid-write.  A session a request holds right now is never removed.
    stale = now - upload_max_age
    for upload in list(storage.iter_uploads()):
        if dry_run:
            report.uploads += storage.upload_last_used(upload.id) < stale
        else:
            report.uploads += storage.purge_upload(upload.id, stale)
    report.temp_files = storage.purge_temp_files(min(stale, now - _TEMP_MIN_AGE), dry_run)
    marked = mark(storage, report, cutoff, delete_untagged, dry_run)
    sweep(storage, marked, report, cutoff, dry_run)
    return report


def mark(storage: Layout, report: GcReport, cutoff: float, delete_untagged: bool = False,
         dry_run: bool = False) -> set[Digest]:
    """Phase one: every blob and manifest a kept manifest reaches (dropping unreached ones if asked)."""
    marked: set[Digest] = set()
    for repo in storage.repositories():
        _mark_repository(storage, repo, marked, report, cutoff, delete_untagged, dry_run)
    return marked


def sweep(storage: Layout, marked: set[Digest], report: GcReport, cutoff: float, dry_run: bool = False) -> None:
    """Phase two: delete unmarked blobs last used before `cutoff`, re-checked under the exclusive lock, since
    pushes go on between the phases."""
    for digest, mtime in list(storage.iter_blobs()):
        if digest in marked:
            continue
        if mtime >= cutoff:
            report.kept_recent += 1
            continue
        info = storage.blob_info(digest)
        if dry_run or storage.delete_blob_if_older(digest, cutoff):
            report.blobs.append(digest)
            report.bytes += info.size if info else 0
    if not dry_run:
        for repo in storage.repositories():
            for digest in list(storage.iter_blob_links(repo)):
                if storage.blob_info(digest) is None:
                    storage.unlink_blob_if_absent(repo, digest)


def _mark_repository(storage: Layout, repo: str, marked: set[Digest], report: GcReport, cutoff: float,
                     delete_untagged: bool, dry_run: bool) -> None:
    """Mark everything reachable in one repository; with delete_untagged, drop manifests nothing reaches."""
    revisions = set(storage.iter_manifests(repo))
    if delete_untagged:
        roots = {d for t in storage.list_tags(repo) or [] if (d := storage.resolve_tag(repo, t)) is not None}
        # A manifest pushed within the grace period may be the child of an index not pushed yet: keep it.
        roots |= {d for d in revisions if (info := storage.blob_info(d)) is not None and info.mtime >= cutoff}
    else:
        roots = set(revisions)
    reached: set[Digest] = set()
    pending = [d for d in roots if d in revisions]
    while pending:
        digest = pending.pop()
        if digest in reached:
            continue
        reached.add(digest)
        found = storage.get_manifest(repo, digest)
        if found is None:
            continue
        blobs, children, _ = manifests.references(found[0])
        marked.update(blobs)
        pending.extend(c for c in children if c in revisions)
        # Referrers live as long as their subject does.
        for desc in storage.list_referrers(repo, digest):
            try:
                pending.append(Digest.parse(desc.get("digest", "")))
            except InvalidDigest:
                continue
    marked.update(reached)
    for digest in revisions - reached:
        report.manifests.append((repo, digest))
        if not dry_run:
            found = storage.get_manifest(repo, digest)
            storage.delete_manifest(repo, digest)
            subject = manifests.references(found[0])[2] if found else None
            if subject is not None:
                storage.remove_referrer(repo, subject, digest)

