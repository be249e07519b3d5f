"""Running replication executions: plan the artifacts a policy takes, copy each (manifests with their children,
only the blobs the destination lacks, mounted when it holds them elsewhere), retry a failing task with backoff,
and record every task's log. A worker per process claims Pending executions through the database."""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dockyard import mediatypes as mt
from dockyard.digest import Digest
from dockyard.image import Descriptor
from registry import background
from registry.replication.sides import LocalSide, RemoteSide, Side, children

if TYPE_CHECKING:
    from registry.events import Event
    from registry.model.db import Database
    from registry.storage.layout import Layout

log = logging.getLogger("registry.replication")

ATTEMPTS = 3  # per task; then it fails and so does its execution
BACKOFF = 0.5  # seconds before the second attempt, doubled after
MAX_ARTIFACTS = 10_000  # a run copies at most this many tags (the remote's lists are bounded by the client too)
POLL = 2.0  # seconds between looks for runs other processes queued, and for due schedules
LOG_MAX = 64 << 10  # characters of a task's log kept
MAX_DEPTH = 4  # indexes nested deeper than this (real ones nest once) are a hostile source's, refused


@dataclass
class Item:
    """One task's work: copy (or delete) src_repo's `ref` to dst_repo."""

    src_repo: str
    ref: str  # a tag, or a digest
    dst_repo: str
    operation: str = "copy"


@dataclass
class TaskLog:
    """A task's log lines, timestamped."""

    lines: list[str] = field(default_factory=list)

    def __call__(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.lines.append(f"{stamp} {text}")

    def text(self) -> str:
        return "\n".join(self.lines)[-LOG_MAX:] + "\n"


def plan(src: Side, policy_filters: list[dict], namespace: str, replace_count: int, scope: dict) -> list[Item]:
    """The items of a run: the event's artifact (event-based), else every tag of every source repository the
    filters take."""
    from registry.model.replication import destination, matches
    if scope:
        repo = scope["repository"]
        return [Item(repo, scope.get("tag") or scope["digest"], destination(repo, namespace, replace_count),
                     "deletion" if scope.get("deletion") else "copy")]
    names = [f for f in policy_filters if f["type"] == "name"]
    items: list[Item] = []
    for repo in src.repositories():
        if not matches(names, repo, None):
            continue
        for tag in src.tags(repo):
            if matches(policy_filters, repo, tag):
                items.append(Item(repo, tag, destination(repo, namespace, replace_count)))
                if len(items) > MAX_ARTIFACTS:
                    raise ValueError(f"the policy takes more than {MAX_ARTIFACTS} artifacts")
    return items


class Copier:
    """Copies artifacts from one side to the other, remembering which destination repository got each blob so a
    later one can mount it instead of sending it again."""

    def __init__(self, src: Side, dst: Side, spool_dir: str, override: bool):
        self.src, self.dst, self.spool_dir, self.override = src, dst, spool_dir, override
        self.placed: dict[Digest, str] = {}

    def copy(self, item: Item, say: TaskLog) -> None:
        data, media_type, digest = self.src.manifest(item.src_repo, item.ref)
        tag = None if ":" in item.ref else item.ref
        if tag is not None:
            current = self.dst.resolve(item.dst_repo, tag)
            if current == digest:
                say(f"{item.dst_repo}:{tag} is {digest} already: nothing to copy")
                return
            if current is not None and not self.override:
                say(f"{item.dst_repo}:{tag} exists ({current}) and override is off: skipped")
                return
        self._tree(item, data, media_type)
        self.dst.put_manifest(item.dst_repo, tag or str(digest), data, media_type)
        say(f"manifest {digest} ({media_type}) put as {item.dst_repo}:{tag or digest}")

    def _tree(self, item: Item, data: bytes, media_type: str, depth: int = 0) -> None:
        """What a manifest references, into the destination: blobs, or an index's child manifests (recursively)."""
        if depth > MAX_DEPTH:
            raise ValueError(f"indexes nested more than {MAX_DEPTH} deep in {item.src_repo}:{item.ref}")
        blobs, manifests = children(data, media_type)
        for desc in blobs:
            self._blob(item, desc)
        for desc in manifests:
            if self.dst.resolve(item.dst_repo, str(desc.digest)) is not None:
                continue
            child, child_type, _ = self.src.manifest(item.src_repo, str(desc.digest))
            if child_type not in mt.MANIFESTS:
                child_type = desc.media_type
            self._tree(item, child, child_type, depth + 1)
            self.dst.put_manifest(item.dst_repo, str(desc.digest), child, child_type)

    def _blob(self, item: Item, desc: Descriptor) -> None:
        if self.dst.has_blob(item.dst_repo, desc.digest):
            return
        source = self.placed.get(desc.digest)
        if source is not None and source != item.dst_repo and self.dst.mount(item.dst_repo, desc.digest, source):
            return
        fd, path = tempfile.mkstemp(prefix="replication-", dir=self.spool_dir)
        os.close(fd)
        try:
            self.src.fetch_blob(item.src_repo, desc, path)
            self.dst.put_blob(item.dst_repo, desc, path)
        finally:
            os.unlink(path)
        self.placed[desc.digest] = item.dst_repo

    def delete(self, item: Item, say: TaskLog) -> None:
        digest = Digest.parse(item.ref)
        if self.dst.delete(item.dst_repo, digest):
            say(f"deleted {item.dst_repo}@{digest}")
        else:
            say(f"{item.dst_repo}@{digest} was not there: nothing to delete")


def run_execution(db: Database, storage: Layout, root: str, execution_id: int) -> str:
    """Carry out a claimed execution; its final status."""
    from registry.model import replication as model
    from registry.model.errors import ModelError
    from registry.model.policy import Actor, Refused
    from registry.model.tables import ReplicationExecution, ReplicationPolicy, ReplicationTask
    with db.session() as s:
        execution = s.get_one(ReplicationExecution, execution_id)
        policy = s.get(ReplicationPolicy, execution.policy_id)
        if policy is None:
            return model.finish(db, execution_id, "the policy is gone")
        scope, filters = execution.scope or {}, list(policy.filters or [])
        remote_id = policy.dest_registry_id or policy.src_registry_id
        namespace, count, override = policy.dest_namespace, policy.dest_namespace_replace_count, policy.override
        push_based, actor = policy.dest_registry_id is not None, Actor(f"replication:{policy.name}")
    try:
        assert remote_id is not None, "a policy has exactly one remote end"
        remote = RemoteSide(model.endpoint(db, model.Secrets(root), remote_id))
    except ModelError as e:
        return model.finish(db, execution_id, e.message)
    local = LocalSide(db, storage, actor)
    src, dst = (local, remote) if push_based else (remote, local)
    try:
        try:
            items = plan(src, filters, namespace, count, scope)
        except Exception as e:  # the source cannot be listed: the run fails, saying why
            return model.finish(db, execution_id, f"listing {src.name}: {_why(e)}")
        with db.session() as s:
            tasks = [ReplicationTask(execution_id=execution_id, operation=i.operation,
                                     src_resource=f"{src.name}:{i.src_repo}:{i.ref}",
                                     dst_resource=f"{dst.name}:{i.dst_repo}" + ("" if ":" in i.ref else f":{i.ref}"))
                     for i in items]
            s.add_all(tasks)
            s.flush()
            task_ids = [t.id for t in tasks]
        spool = os.path.join(os.path.abspath(root), "replication-spool")
        os.makedirs(spool, exist_ok=True)
        copier = Copier(src, dst, spool, override)
        for task_id, item in zip(task_ids, items, strict=True):
            if not model.heartbeat(db, execution_id):
                break  # stopped
            _run_task(db, copier, task_id, item, Refused)
        return model.finish(db, execution_id)
    finally:
        remote.close()


def _why(e: BaseException) -> str:
    return " ".join((str(e) or type(e).__name__).split())[:500]


def _run_task(db: Database, copier: Copier, task_id: int, item: Item, permanent: type[Exception]) -> None:
    """One task, retried with backoff; its status and log written as it goes."""
    from registry.model.tables import ReplicationTask
    say = TaskLog()
    say(f"{item.operation} {item.src_repo}:{item.ref} -> {item.dst_repo}")
    status = "Failed"
    for attempt in range(1, ATTEMPTS + 1):
        with db.session() as s:
            task = s.get_one(ReplicationTask, task_id)
            task.status, task.attempts, task.start_time = "InProgress", attempt, task.start_time or time.time()
        try:
            if item.operation == "deletion":
                copier.delete(item, say)
            else:
                copier.copy(item, say)
            status = "Succeed"
            break
        except permanent as e:  # a policy of this registry refused it: trying again changes nothing
            say(f"attempt {attempt} refused: {_why(e)}")
            break
        except Exception as e:  # network, remote errors, digests: retried, then the task fails
            say(f"attempt {attempt} of {ATTEMPTS} failed: {_why(e)}")
            if attempt < ATTEMPTS:
                time.sleep(BACKOFF * 2 ** (attempt - 1))
    say(f"task {status.lower()}" if status == "Succeed" else "task failed")
    with db.session() as s:
        task = s.get_one(ReplicationTask, task_id)
        task.status, task.log, task.end_time = status, say.text(), time.time()


# -- the worker ---------------------------------------------------------------------------------------------------
_lock = threading.Lock()


def work(db: Database, storage: Layout, root: str) -> list[int]:
    """Start the due scheduled runs, then carry out every claimable execution; the ids run."""
    from registry.model import replication as model
    model.start_due(db)
    ran = []
    while (execution_id := model.claim(db)) is not None:
        try:
            run_execution(db, storage, root, execution_id)
        except Exception as e:  # a bug or a database hiccup: the run says so, the worker goes on
            log.exception("replication execution %d", execution_id)
            model.finish(db, execution_id, f"internal error: {_why(e)}")
        ran.append(execution_id)
    return ran


def on_event(db: Database, event: Event) -> None:
    """The events' listener: start event-based runs and wake this process's worker."""
    from registry.model import replication as model
    if model.on_event(db, event):
        wake(db)


def wake(db: Database) -> None:
    """Have this process's worker for `db` look for Pending executions now."""
    background.wake(("replication-worker", id(db)))


def start(db: Database, storage: Layout, root: str) -> None:
    """Start this process's worker for `db` unless it runs (a forked worker starts its own), and listen to events."""
    from registry import events
    with _lock:
        if on_event not in events.listeners:
            events.listeners.append(on_event)
    background.ensure(("replication-worker", id(db)), "replication-worker", lambda: work(db, storage, root), POLL)
