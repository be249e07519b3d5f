"""What happened in the registry (push, pull, delete, quota exceeded, ...): one Event, fanned out to the audit log
and to the projects' webhooks."""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import groupby
from operator import itemgetter
from typing import TYPE_CHECKING

from registry import background

if TYPE_CHECKING:
    from sqlalchemy import Select
    from sqlalchemy.orm import Session

    from registry.background import Loop
    from registry.model.db import Database
    from registry.model.tables import Project, Repository, WebhookPolicy

# Harbor's event types a webhook policy may name; the SCANNING_* ones are accepted but never emitted (no scanner).
EVENT_TYPES: tuple[str, ...] = ("PUSH_ARTIFACT", "PULL_ARTIFACT", "DELETE_ARTIFACT", "QUOTA_EXCEED",
                                "QUOTA_WARNING", "TAG_RETENTION", "SCANNING_COMPLETED", "SCANNING_FAILED",
                                "SCANNING_STOPPED")
# The audit log's operation for each event type that acts on artifacts.
OPERATIONS = {"PUSH_ARTIFACT": "push", "PULL_ARTIFACT": "pull", "DELETE_ARTIFACT": "delete",
              "DELETE_TAG": "delete", "QUOTA_EXCEED": "quota_exceed", "QUOTA_WARNING": "quota_warning"}
# Harbor's CloudEvents `type` for each event type.
CLOUDEVENT_TYPES = {"PUSH_ARTIFACT": "harbor.artifact.pushed", "PULL_ARTIFACT": "harbor.artifact.pulled",
                    "DELETE_ARTIFACT": "harbor.artifact.deleted", "QUOTA_EXCEED": "harbor.quota.exceeded",
                    "QUOTA_WARNING": "harbor.quota.warned", "TAG_RETENTION": "harbor.tag_retention.finished",
                    "SCANNING_COMPLETED": "harbor.scan.completed", "SCANNING_FAILED": "harbor.scan.failed",
                    "SCANNING_STOPPED": "harbor.scan.stopped"}
PAYLOAD_FORMATS = ("Default", "CloudEvents")
log = logging.getLogger("registry")


@dataclass(slots=True)  # not frozen: its __init__ would cost a pull as much as the rest of recording it
class Event:
    """One thing that happened: `type` is Harbor's event type (PUSH_ARTIFACT, PULL_ARTIFACT, DELETE_ARTIFACT,
    QUOTA_EXCEED, TAG_RETENTION, ...); `resources` are Harbor's event_data.resources entries."""

    type: str
    project: str
    repository: str = ""
    operator: str = ""
    remote_addr: str = ""
    resources: tuple[dict, ...] = ()
    extra: dict = field(default_factory=dict)  # e.g. {"message": ...} for QUOTA_EXCEED, retention results
    time: float = 0.0


# Pulls are most of a registry's requests: their events are written in batches (one transaction per FLUSH_EVERY
# seconds or FLUSH_MAX events) by a flusher in each process, so a pull costs no database write of its own. A killed
# process loses at most the last FLUSH_EVERY seconds of pull records; every other event is written in its request.
DEFERRED = frozenset({"PULL_ARTIFACT"})
FLUSH_EVERY = 0.5
FLUSH_MAX = 1024


# Called with each event written in its request (not the deferred pulls) once it is recorded: replication's
# event-based trigger listens here (registry.replication.engine.start adds it).
listeners: list[Callable[[Database, Event], None]] = []


def emit(db: Database, event: Event) -> None:
    """Record `event` in the audit log and queue it for the project's webhooks (no network here: a background
    sender delivers)."""
    if event.type in DEFERRED:
        defer(db, _as_pull(event))
    else:
        if record(db, [event]):
            from registry.events import webhooks
            webhooks.wake(db)
        for listener in listeners:
            listener(db, event)


def record(db: Database, events: list[Event], pulls: Sequence[tuple] = ()) -> bool:
    """Write events' and pulls' (defer's tuples) audit entries and webhook deliveries, and pulls' times and counts,
    in one transaction: each project and its policies are read once per batch and the entries inserted in bulk, so a
    batch of pulls costs about one write; what pulls share is worked out once per batch (see _by_shared). Whether it
    queued deliveries (the caller wakes the sender)."""
    from sqlalchemy import select

    from registry.events import audit
    from registry.model.artifacts import count_pulls, pull_event
    from registry.model.projects import project_of
    from registry.model.tables import Project, WebhookPolicy
    queued = False
    with db.session() as s:
        # project name -> (the project, its id, its enabled policies): read once per batch, as the id (an ORM
        # attribute costs a descriptor call, and a batch of pulls asks for it per pull)
        projects: dict[str, tuple[Project | None, int | None, list[WebhookPolicy]]] = {}

        def known(name: str) -> tuple[Project | None, int | None, list[WebhookPolicy]]:
            """The project of this name, its id and its enabled policies (read at its first event of the batch; the
            project's row only when it has such a policy: most have none, and the ORM's load costs more than the
            rest of a batch of pulls)."""
            found = projects.get(name)
            if found is None:
                row = s.connection().execute(_project_statement(), {"b_name": name}).first()
                project, policies = None, []
                if row is not None and row[1]:
                    project = s.get(Project, row[0])
                    policies = list(s.scalars(select(WebhookPolicy).where(WebhookPolicy.project_id == row[0],
                                                                          WebhookPolicy.enabled.is_(True))))
                found = projects[name] = (project, row[0] if row is not None else None, policies)
            return found

        entries, alike = [], []  # audit.write's rows and groups of pulls alike
        for event in events:
            project, project_id, policies = known(event.project)
            occurred = event.time or time.time()
            if event.type in OPERATIONS:
                operation, kind = OPERATIONS[event.type], "artifact" if event.repository else "project"
                for resource in _audit_resources(event):
                    entries.append(audit.row(operation, kind, resource, event.operator, event.remote_addr,
                                             project_id, occurred))
            if project is not None and policies:
                queued = _deliver(s, event, project, policies, occurred) or queued
        shared_pulls = _by_shared(pulls)
        for shared, times in shared_pulls.items():
            repository, digest, tag, operator, remote_addr, host = shared
            project, project_id, policies = known(project_of(repository))
            # One entry per pull, alike but for their times: the columns they share cut once, and written once per
            # statement.
            alike.append((audit.row(OPERATIONS["PULL_ARTIFACT"], "artifact", reference(repository, digest, tag),
                                    operator, remote_addr, project_id, 0.0)[1:], times))
            if project is not None and policies:
                for when in times:
                    event = pull_event(repository, digest, tag, operator, remote_addr, host, when)
                    queued = _deliver(s, event, project, policies, when) or queued
        if entries or alike:
            audit.write(s.connection(), entries, alike)
        if shared_pulls:
            count_pulls(s.connection(), shared_pulls)
    return queued


_SHARED, _TIME = itemgetter(slice(0, 6)), itemgetter(6)  # a pull's shared part and its time (see _by_shared)


def _by_shared(pulls: Sequence[tuple]) -> dict[tuple, list[float]]:
    """Pulls (defer's tuples) by all they share but their time (repository, digest, tag, operator, address, host) ->
    their times, in order: a batch holds many pulls of few artifacts by few clients, so the Python work is done per
    run of consecutive pulls alike (groupby, its key and the times taken in C), the rest per distinct pull."""
    shared: dict[tuple, list[float]] = {}
    for key, run in groupby(pulls, _SHARED):
        times = shared.get(key)
        if times is None:
            times = shared[key] = []
        times.extend(map(_TIME, run))
    return shared


@functools.cache
def _project_statement() -> Select:
    """record()'s look-up of a project by name (bind b_name): its id and whether it has an enabled webhook policy.
    Built once, on first use (this module loads no SQLAlchemy): building it per batch costs more than running it."""
    from sqlalchemy import bindparam, exists, select

    from registry.model.tables import Project, WebhookPolicy
    hooked = exists().where(WebhookPolicy.project_id == Project.id, WebhookPolicy.enabled.is_(True))
    return select(Project.id, hooked).where(Project.name == bindparam("b_name"))


def _deliver(s: Session, event: Event, project: Project, policies: list[WebhookPolicy], occurred: float) -> bool:
    """Queue `event`'s deliveries to the targets of its project's policies that want its type; whether it did."""
    from registry.events import webhooks
    from registry.model.tables import Repository
    wanted = [p for p in policies if event.type in (p.event_types or [])]
    if not wanted:
        return False
    queued = False
    repo = s.query(Repository).filter_by(name=event.repository).one_or_none() if event.repository else None
    for policy in wanted:
        for target in policy.targets or []:
            if target.get("enabled", True) is False:
                continue
            body = payload(event, project, repo, policy, target.get("payload_format") or "Default", occurred)
            webhooks.queue(s, policy.id, event.type, target["address"], body)
            queued = True
    return queued


def _as_pull(event: Event) -> tuple:
    """An emitted PULL_ARTIFACT event as defer's tuple (its time: now when it has none): the flusher keeps one shape
    of pull, and makes the event again for a webhook."""
    r = event.resources[0] if event.resources else {}
    return (event.repository, r.get("digest") or "", r.get("tag"), event.operator, event.remote_addr, "",
            event.time or time.time())


class _Batches:
    """Deferred pulls per database, written by this process's flusher loop (started on first use, after fork)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # database URL -> (the database, its pulls (defer's tuples)). A request appends without the lock (one list
        # append, atomic under the GIL); the writer takes the first n entries and deletes just those, so a pull
        # appended meanwhile stays for the next write. The lock guards the dict's new entries and its reset.
        self.pending: dict[str, tuple[Database, list[tuple]]] = {}
        # Held through a write: a flush that finds nothing pending while another thread writes what it took waits
        # for that write, so what was added before a flush is in the database when it returns. One writer at a
        # time, too, which the take-and-delete above needs.
        self.writing = threading.Lock()
        self.pid = 0
        self.loop: Loop | None = None

    def add(self, db: Database, pull: tuple) -> None:
        """Queue a pull (registry.model.artifacts.record_pull's tuple) for the flusher, which writes it as its
        PULL_ARTIFACT event, making the Event only for a webhook that wants it: the collector stops tracking a tuple
        of strings and numbers, while a batch of Events, alive through several collections, would be promoted to the
        oldest generation and have a busy worker trace its whole heap again and again."""
        loop = self.loop
        if loop is None or loop.stopped:  # none yet, stopped, or its parent's before a fork
            loop = self._start()
        found = self.pending.get(db.url)
        if found is None:
            with self.lock:
                found = self.pending.setdefault(db.url, (db, []))
        pulls = found[1]
        pulls.append(pull)
        if len(pulls) >= FLUSH_MAX:
            loop.wake()

    def _start(self) -> Loop:
        """This process's flusher, which writes what is pending once more when stopped. Started outside the lock:
        in a gevent worker, starting it switches to other greenlets, and one recording a pull meanwhile would block
        the whole worker on the (OS) lock held."""
        with self.lock:
            if self.pid != os.getpid():  # a forked worker: its parent's batches are not its own
                self.pid, self.pending = os.getpid(), {}
        self.loop = background.ensure("event-flusher", "event-flusher", self.flush, FLUSH_EVERY, final=self.flush)
        return self.loop

    def flush(self) -> None:
        """Write every deferred event now (a failure is logged: the next events still get their turn). In a gevent
        worker the writes go to a thread (see background.off_event_loop), the senders are woken from here: a loop
        started on that thread would never run."""
        from registry.events import webhooks
        for db in background.off_event_loop(self._write):
            webhooks.wake(db)

    def _write(self) -> list[Database]:
        """Write every deferred pull; the databases where that queued webhook deliveries."""
        with self.writing:
            queued = []
            for db, pending in list(self.pending.values()):
                n = len(pending)
                if not n:
                    continue
                pulls = pending[:n]
                del pending[:n]
                try:
                    if record(db, [], pulls):
                        queued.append(db)
                except Exception:
                    log.exception("writing %d deferred pulls failed", len(pulls))
            return queued


_batches = _Batches()
flush = _batches.flush
# defer(db, pull): _Batches.add. The method itself, not a function calling it: one Python call less on every pull.
defer = _batches.add


def reference(repository: str, digest: str, tag: str | None) -> str:
    """What an event names in a repository: `repository:tag`, or `repository@digest` without a tag."""
    return f"{repository}:{tag}" if tag else f"{repository}@{digest}"


def _audit_resources(event: Event) -> list[str]:
    """A reference per resource that has a tag or a digest; else the repository or project itself."""
    out = [reference(event.repository, r.get("digest") or "", r.get("tag")) for r in event.resources
           if r.get("tag") or r.get("digest")]
    return out or [event.repository or event.project]


def event_data(event: Event, project: Project, repo: Repository | None) -> dict:
    """Harbor's `event_data`: resources and repository, retention results, custom attributes."""
    data: dict = {}
    if event.resources and "retention" not in event.extra:
        host = event.extra.get("host", "")
        resources = []
        for r in event.resources:
            ref = f":{r['tag']}" if r.get("tag") else f"@{r.get('digest', '')}"
            url = r.get("resource_url") or f"{host + '/' if host else ''}{event.repository}{ref}"
            resources.append({"digest": r.get("digest", ""), "tag": r.get("tag", ""), "resource_url": url})
        data["resources"] = resources
    if event.repository:
        namespace, _, name = event.repository.partition("/")
        data["repository"] = {"date_created": int(repo.created_at) if repo is not None else 0, "name": name,
                              "namespace": namespace, "repo_full_name": event.repository,
                              "repo_type": "public" if project.public else "private"}
    if "retention" in event.extra:
        data["retention"] = event.extra["retention"]
    if "message" in event.extra:
        data["custom_attributes"] = {"Details": str(event.extra["message"])}
    return data


def payload(event: Event, project: Project, repo: Repository | None, policy: WebhookPolicy, payload_format: str,
            occurred: float) -> str:
    """The exact body one target gets: Harbor's Default shape or CloudEvents 1.0 (structured JSON)."""
    data = event_data(event, project, repo)
    if payload_format == "CloudEvents":
        body: dict[str, object] = {"specversion": "1.0", "id": str(uuid.uuid4()), "requestid": str(uuid.uuid4()),
                "source": f"/projects/{project.id}/webhook/policies/{policy.id}",
                "type": CLOUDEVENT_TYPES.get(event.type, event.type), "datacontenttype": "application/json",
                "time": datetime.fromtimestamp(int(occurred), UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "data": data, "operator": event.operator}
    else:
        body = {"type": event.type, "occur_at": int(occurred), "operator": event.operator, "event_data": data}
    return json.dumps(body, separators=(",", ":"))


def sample_bodies(policy: WebhookPolicy, project: Project) -> list[tuple[dict, str]]:
    """Each target of `policy` with the sample PUSH_ARTIFACT body a "test" of the policy sends."""
    sample = Event("PUSH_ARTIFACT", project.name, f"{project.name}/test", operator="test",
                   resources=({"digest": "sha256:" + "0" * 64, "tag": "test"},))
    return [(t, payload(sample, project, None, policy, t.get("payload_format") or "Default", time.time()))
            for t in policy.targets or []]
