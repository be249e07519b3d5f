"""Replication (Harbor's): remote registry endpoints with encrypted credentials, policies copying artifacts to or
from one of them, and their executions, claimed through the database so one process runs each (as retention)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlalchemy import func, select, update

from registry.model import doublestar
from registry.model.cron import Cron, CronError
from registry.model.errors import ModelError
from registry.model.schedules import claim_due

if TYPE_CHECKING:
    from cryptography.fernet import Fernet
    from sqlalchemy.orm import Session

    from registry.events import Event
    from registry.model.db import Database
    from registry.model.tables import ReplicationExecution, ReplicationPolicy, ReplicationRegistry, ReplicationTask

REGISTRY_TYPES = ("docker-registry", "harbor", "dockyard")  # all spoken to through the distribution API
TRIGGERS = ("manual", "scheduled", "event_based")
FILTER_TYPES = ("name", "tag", "resource")
HIDDEN = "*****"  # what the API shows instead of a secret, as Harbor
KEY_FILE = "replication.key"
LEASE = 600.0  # seconds an execution stays claimed without a sign of life before another worker may take it
DONE = ("Succeed", "Failed", "Stopped")


# -- secrets ------------------------------------------------------------------------------------------------------
class Secrets:
    """Endpoint secrets encrypted at rest (Fernet) under a key file in the registry root, created 0600 on first use.
    Replicas sharing a database must share this file, as they share the token key."""

    def __init__(self, root: str):
        self.path = os.path.join(os.path.abspath(root), KEY_FILE)
        self._fernet: Fernet | None = None

    def _key(self) -> Fernet:
        if self._fernet is None:
            from cryptography.fernet import Fernet
            try:
                with open(self.path, "rb") as f:
                    key = f.read().strip()
            except FileNotFoundError:
                key = Fernet.generate_key()
                # Written whole under a temporary name, then linked: a racing worker never reads half a key, and
                # the first link wins (the loser reads the winner's key).
                tmp = f"{self.path}.{os.getpid()}.tmp"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    os.write(fd, key)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                try:
                    os.link(tmp, self.path)
                except FileExistsError:
                    with open(self.path, "rb") as f:
                        key = f.read().strip()
                finally:
                    os.unlink(tmp)
            self._fernet = Fernet(key)
        return self._fernet

    def seal(self, text: str) -> str:
        return self._key().encrypt(text.encode()).decode() if text else ""

    def open(self, token: str) -> str:
        """The secret a sealed token holds ("" when none, or when the key file changed since it was sealed)."""
        from cryptography.fernet import InvalidToken
        if not token:
            return ""
        try:
            return self._key().decrypt(token.encode()).decode()
        except InvalidToken:
            return ""


# -- endpoints ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Endpoint:
    """A remote registry as the engine dials it: secret opened."""

    id: int
    name: str
    url: str
    insecure: bool
    username: str
    password: str

    def __repr__(self) -> str:  # never let a password reach a log or traceback
        return f"Endpoint({self.name!r}, {self.url!r})"


def _text(body: dict, key: str, limit: int, required: bool = False) -> str:
    value = body.get(key, "")
    if not isinstance(value, str) or len(value) > limit or (required and not value.strip()) \
            or any(c in value for c in "\r\n\0"):
        raise ModelError(400, f"{key}: {'a non-empty' if required else 'a'} single-line string of at most {limit} "
                              "characters")
    return value.strip() if required else value


def check_url(url: object, where: str = "url") -> str:
    """An http(s) URL naming a registry (no path, query or credentials)."""
    text = url if isinstance(url, str) else ""
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        parts = None
    if not text or len(text) > 2048 or parts is None or parts.scheme not in ("http", "https") or not parts.hostname \
            or parts.username or parts.password or parts.path not in ("", "/") or parts.query or parts.fragment \
            or any(c.isspace() for c in text):
        raise ModelError(400, f"{where}: not an http(s) registry URL {json.dumps(str(url)[:100])}")
    return f"{parts.scheme}://{parts.netloc}"


def validate_registry(body: dict, partial: bool = False) -> dict:
    """Harbor's Registry body checked: the columns to write (the secret still plain)."""
    out: dict = {}
    if "name" in body or not partial:
        out["name"] = _text(body, "name", 255, required=True)
    if "type" in body or not partial:
        kind = body.get("type", "docker-registry")
        if kind not in REGISTRY_TYPES:
            raise ModelError(400, f"type: one of {', '.join(REGISTRY_TYPES)}")
        out["type"] = kind
    if "url" in body or not partial:
        out["url"] = check_url(body.get("url"))
    if "insecure" in body:
        if not isinstance(body["insecure"], bool):
            raise ModelError(400, "insecure: true or false")
        out["insecure"] = body["insecure"]
    if "description" in body:
        out["description"] = _text(body, "description", 1024)
    if "credential" in body:
        cred = body["credential"] or {}
        if not isinstance(cred, dict) or cred.get("type", "basic") != "basic":
            raise ModelError(400, "credential: {\"type\": \"basic\", \"access_key\": ..., \"access_secret\": ...}")
        out["access_key"] = _text(cred, "access_key", 255)
        secret = cred.get("access_secret", "")
        if secret != HIDDEN:  # a read-modify-write sends back what it was shown: keep the stored secret
            out["access_secret"] = _text(cred, "access_secret", 4096)
    return out


def _refuse_taken_name(s: Session, table: Any, what: str, name: str, own_id: int | None = None) -> None:
    """409 when another row of `table` (an endpoint or a policy; not `own_id`) is already named `name`."""
    query = select(table.id).where(table.name == name)
    if own_id is not None:
        query = query.where(table.id != own_id)
    if s.scalar(query) is not None:
        raise ModelError(409, f"name: {what} named {name!r} exists")


def create_registry(db: Database, secrets: Secrets, body: dict) -> int:
    """Store an endpoint; its id (409 when the name is taken)."""
    from registry.model.tables import ReplicationRegistry
    fields = validate_registry(body)
    fields["access_secret"] = secrets.seal(fields.get("access_secret", ""))
    with db.session() as s:
        _refuse_taken_name(s, ReplicationRegistry, "a registry", fields["name"])
        row = ReplicationRegistry(**fields)
        s.add(row)
        s.flush()
        return row.id


def update_registry(db: Database, secrets: Secrets, registry_id: int, body: dict) -> None:
    """Change the fields `body` gives (404, 409 on a taken name)."""
    from registry.model.tables import ReplicationRegistry
    fields = validate_registry(body, partial=True)
    if "access_secret" in fields:
        fields["access_secret"] = secrets.seal(fields["access_secret"])
    with db.session() as s:
        row = s.get(ReplicationRegistry, registry_id)
        if row is None:
            raise ModelError(404, f"registry {registry_id} not found")
        if "name" in fields:
            _refuse_taken_name(s, ReplicationRegistry, "a registry", fields["name"], registry_id)
        for key, value in fields.items():
            setattr(row, key, value)


def delete_registry(db: Database, registry_id: int) -> None:
    """Remove an endpoint no policy uses (404; 409 naming a policy that uses it)."""
    from registry.model.tables import ReplicationPolicy, ReplicationRegistry
    with db.session() as s:
        row = s.get(ReplicationRegistry, registry_id)
        if row is None:
            raise ModelError(404, f"registry {registry_id} not found")
        user = s.scalar(select(ReplicationPolicy.name).where(
            (ReplicationPolicy.src_registry_id == registry_id) | (ReplicationPolicy.dest_registry_id == registry_id)))
        if user is not None:
            raise ModelError(409, f"registry {row.name} is used by replication policy {user}")
        s.delete(row)


def registry_json(r: ReplicationRegistry) -> dict:
    """An endpoint in Harbor's Registry shape; the secret is never shown."""
    from registry.api.common import rfc3339
    return {"id": r.id, "name": r.name, "type": r.type, "url": r.url, "insecure": r.insecure,
            "description": r.description, "status": "healthy",
            "credential": {"type": "basic", "access_key": r.access_key,
                           "access_secret": HIDDEN if r.access_secret else ""},
            "creation_time": rfc3339(r.created_at), "update_time": rfc3339(r.updated_at)}


def endpoint(db: Database, secrets: Secrets, registry_id: int) -> Endpoint:
    """An endpoint with its secret opened (404 when there is none)."""
    from registry.model.tables import ReplicationRegistry
    with db.session() as s:
        r = s.get(ReplicationRegistry, registry_id)
        if r is None:
            raise ModelError(404, f"registry {registry_id} not found")
        return Endpoint(r.id, r.name, r.url, r.insecure, r.access_key, secrets.open(r.access_secret))


def endpoint_from_body(db: Database, secrets: Secrets, body: dict) -> Endpoint:
    """The endpoint a ping names: a stored one (`id`), or one described in full (a secret of "*****" or none with
    an `id` keeps the stored secret)."""
    registry_id = body.get("id")
    stored = None
    if registry_id is not None:
        if not isinstance(registry_id, int) or isinstance(registry_id, bool):
            raise ModelError(400, "id: a registry id")
        stored = endpoint(db, secrets, registry_id)
    fields = validate_registry({k: v for k, v in body.items() if k in ("url", "insecure", "credential")},
                               partial=True)
    if stored is None and "url" not in fields:
        raise ModelError(400, "url: an http(s) registry URL (or id: a stored registry)")
    return Endpoint(stored.id if stored else 0, stored.name if stored else "",
                    fields.get("url", stored.url if stored else ""),
                    fields.get("insecure", stored.insecure if stored else False),
                    fields.get("access_key", stored.username if stored else ""),
                    fields.get("access_secret", stored.password if stored else ""))


# -- policies -----------------------------------------------------------------------------------------------------
def _registry_ref(db: Database, body: dict, key: str) -> int | None:
    """The remote registry id `{key: {"id": n}}` names; None for this registry (absent, null or id 0)."""
    from registry.model.tables import ReplicationRegistry
    ref = body.get(key)
    if ref is None:
        return None
    registry_id = ref.get("id") if isinstance(ref, dict) else None
    if not isinstance(registry_id, int) or isinstance(registry_id, bool):
        raise ModelError(400, f"{key}: {{\"id\": <registry id>}}")
    if registry_id == 0:
        return None
    with db.session() as s:
        if s.get(ReplicationRegistry, registry_id) is None:
            raise ModelError(400, f"{key}: registry {registry_id} not found")
    return registry_id


def _filters(items: object) -> list[dict]:
    if not isinstance(items, list) or len(items) > 10:
        raise ModelError(400, "filters: a list of at most 10 {type, value} filters")
    out = []
    for i, f in enumerate(items):
        if not isinstance(f, dict) or f.get("type") not in FILTER_TYPES:
            raise ModelError(400, f"filters[{i}].type: one of {', '.join(FILTER_TYPES)}")
        value = f.get("value")
        if f["type"] == "resource":
            if value not in ("image", "artifact"):
                raise ModelError(400, f"filters[{i}].value: a resource filter is \"image\" or \"artifact\"")
            continue  # every artifact is an image or an artifact: nothing to narrow
        if not isinstance(value, str):
            raise ModelError(400, f"filters[{i}].value: a doublestar pattern")
        try:
            doublestar.check(value)
        except ValueError as e:
            raise ModelError(400, f"filters[{i}].value: {e}") from None
        decoration = f.get("decoration") or "matches"
        if decoration not in ("matches", "excludes"):
            raise ModelError(400, f"filters[{i}].decoration: matches or excludes")
        out.append({"type": f["type"], "value": value, "decoration": decoration})
    return out


def _trigger(trigger: object) -> dict:
    if not isinstance(trigger, dict) or trigger.get("type", "manual") not in TRIGGERS:
        raise ModelError(400, f"trigger.type: one of {', '.join(TRIGGERS)}")
    kind = trigger.get("type", "manual")
    if kind != "scheduled":
        return {"type": kind, "trigger_settings": {}}
    settings = trigger.get("trigger_settings")
    cron = settings.get("cron") if isinstance(settings, dict) else None
    if not isinstance(cron, str) or not cron.strip():
        raise ModelError(400, "trigger.trigger_settings.cron: a cron expression for a scheduled trigger")
    try:
        Cron.parse(cron)
    except CronError as e:
        raise ModelError(400, f"trigger.trigger_settings.{e}") from None
    return {"type": kind, "trigger_settings": {"cron": cron.strip()}}


def validate_policy(db: Database, body: dict, partial: bool = False, current: ReplicationPolicy | None = None) -> dict:
    """Harbor's ReplicationPolicy body checked: the columns to write."""
    out: dict = {}
    if "name" in body or not partial:
        out["name"] = _text(body, "name", 255, required=True)
    if "description" in body:
        out["description"] = _text(body, "description", 1024)
    if "src_registry" in body or not partial:
        out["src_registry_id"] = _registry_ref(db, body, "src_registry")
    if "dest_registry" in body or not partial:
        out["dest_registry_id"] = _registry_ref(db, body, "dest_registry")
    src = out.get("src_registry_id", current.src_registry_id if current else None)
    dest = out.get("dest_registry_id", current.dest_registry_id if current else None)
    if (src is None) == (dest is None):
        raise ModelError(400, "src_registry, dest_registry: exactly one of them is a remote registry")
    if "dest_namespace" in body:
        ns = _text(body, "dest_namespace", 255).strip("/")
        if ns:
            from dockyard.reference import REPOSITORY_RE
            if not REPOSITORY_RE.fullmatch(ns):
                raise ModelError(400, f"dest_namespace: not a repository path {ns[:100]!r}")
        out["dest_namespace"] = ns
    if "dest_namespace_replace_count" in body:
        count = body["dest_namespace_replace_count"]
        if not isinstance(count, int) or isinstance(count, bool) or not -1 <= count <= 100:
            raise ModelError(400, "dest_namespace_replace_count: -1 (the whole namespace) or 0 to 100")
        out["dest_namespace_replace_count"] = count
    if "filters" in body:
        out["filters"] = _filters(body["filters"] or [])
    if "trigger" in body or not partial:
        out["trigger"] = _trigger(body.get("trigger") or {"type": "manual"})
    for key in ("deletion", "override", "enabled"):
        if key in body:
            if not isinstance(body[key], bool):
                raise ModelError(400, f"{key}: true or false")
            out[key] = body[key]
    trigger = out.get("trigger", current.trigger if current is not None else {})
    if trigger.get("type") == "event_based" and src is not None:
        raise ModelError(400, "trigger.type: event_based needs this registry as the source (a push-based policy)")
    return out


def create_policy(db: Database, body: dict, creator: str) -> int:
    """Store a policy; its id (409 on a taken name)."""
    from registry.model.tables import ReplicationPolicy
    fields = validate_policy(db, body)
    with db.session() as s:
        _refuse_taken_name(s, ReplicationPolicy, "a replication policy", fields["name"])
        row = ReplicationPolicy(creator=creator, last_run=time.time(), **fields)
        s.add(row)
        s.flush()
        return row.id


def update_policy(db: Database, policy_id: int, body: dict) -> None:
    """Change the fields `body` gives (404; 409 on a taken name); a changed schedule starts from now."""
    from registry.model.tables import ReplicationPolicy
    with db.session() as s:
        row = s.get(ReplicationPolicy, policy_id)
        if row is None:
            raise ModelError(404, f"replication policy {policy_id} not found")
        fields = validate_policy(db, body, partial=True, current=row)
        if "name" in fields:
            _refuse_taken_name(s, ReplicationPolicy, "a replication policy", fields["name"], policy_id)
        if "trigger" in fields and fields["trigger"] != row.trigger:
            row.last_run = time.time()
        for key, value in fields.items():
            setattr(row, key, value)


def delete_policy(db: Database, policy_id: int) -> None:
    """Remove a policy and its executions (404; 412 while one runs, as Harbor)."""
    from registry.model.tables import ReplicationExecution, ReplicationPolicy
    with db.session() as s:
        row = s.get(ReplicationPolicy, policy_id)
        if row is None:
            raise ModelError(404, f"replication policy {policy_id} not found")
        if s.scalar(select(ReplicationExecution.id).where(ReplicationExecution.policy_id == policy_id,
                                                          ReplicationExecution.status.in_(("Pending", "InProgress")))):
            raise ModelError(412, f"replication policy {row.name} has a running execution: stop it first")
        s.delete(row)


def policy_json(p: ReplicationPolicy, registries: dict[int, dict]) -> dict:
    """A policy in Harbor's ReplicationPolicy shape (`registries`: id -> registry_json, for src/dest)."""
    from registry.api.common import rfc3339
    local = {"id": 0, "name": "Local", "type": "dockyard", "url": "", "insecure": False, "description": ""}
    return {"id": p.id, "name": p.name, "description": p.description, "creator": p.creator,
            "src_registry": registries.get(p.src_registry_id, local) if p.src_registry_id else local,
            "dest_registry": registries.get(p.dest_registry_id, local) if p.dest_registry_id else local,
            "dest_namespace": p.dest_namespace, "dest_namespace_replace_count": p.dest_namespace_replace_count,
            "filters": p.filters, "trigger": p.trigger, "deletion": p.deletion, "override": p.override,
            "enabled": p.enabled, "speed": -1, "copy_by_chunk": False,
            "creation_time": rfc3339(p.created_at), "update_time": rfc3339(p.updated_at)}


def matches(filters: list[dict], repository: str, tag: str | None) -> bool:
    """Whether an artifact passes the policy's name and tag filters (an untagged one passes no tag filter)."""
    for f in filters:
        if f["type"] == "name":
            hit = doublestar.match(f["value"], repository)
        elif f["type"] == "tag":
            if tag is None:
                return False
            hit = doublestar.match(f["value"], tag)
        else:
            continue
        if hit != (f.get("decoration", "matches") == "matches"):
            return False
    return True


def destination(repository: str, namespace: str, replace_count: int) -> str:
    """The destination repository: `namespace` replaces the first `replace_count` path components (-1: all but the
    last one, 0: none, prefixing it), as Harbor's dest_namespace_replace_count."""
    if not namespace:
        return repository
    parts = repository.split("/")
    kept = parts[-1:] if replace_count < 0 else parts[min(replace_count, len(parts) - 1):]
    return "/".join([namespace, *kept])


# -- executions ---------------------------------------------------------------------------------------------------
def start_execution(db: Database, policy_id: int, trigger: str, operator: str, scope: dict | None = None) -> int:
    """Record a Pending execution for a worker to claim; its id (404 no policy, 412 when it is disabled)."""
    from registry.model.tables import ReplicationExecution, ReplicationPolicy
    with db.session() as s:
        policy = s.get(ReplicationPolicy, policy_id)
        if policy is None:
            raise ModelError(404, f"replication policy {policy_id} not found")
        if not policy.enabled:
            raise ModelError(412, f"replication policy {policy.name} is disabled")
        row = ReplicationExecution(policy_id=policy_id, trigger=trigger, operator=operator, scope=scope or {},
                                   status="Pending")
        s.add(row)
        s.flush()
        return row.id


def claim(db: Database, now: float | None = None) -> int | None:
    """Claim the oldest Pending execution (or one whose worker's lease ran out) for this process; its id."""
    from registry.model.tables import ReplicationExecution
    now = time.time() if now is None else now
    with db.session() as s:
        candidates = s.scalars(select(ReplicationExecution.id).where(
            (ReplicationExecution.status == "Pending")
            | ((ReplicationExecution.status == "InProgress") & (ReplicationExecution.lease < now)))
            .order_by(ReplicationExecution.id).limit(5)).all()
    for execution_id in candidates:
        with db.session() as s:
            # The claim: of several workers only one moves the row from the state it read.
            claimed = s.execute(update(ReplicationExecution).where(
                ReplicationExecution.id == execution_id,
                (ReplicationExecution.status == "Pending")
                | ((ReplicationExecution.status == "InProgress") & (ReplicationExecution.lease < now)))
                .values(status="InProgress", lease=now + LEASE)).rowcount  # type: ignore[attr-defined]
        if claimed == 1:
            return execution_id
    return None


def heartbeat(db: Database, execution_id: int) -> bool:
    """Extend a running execution's lease; False when it was stopped (the worker then ends it)."""
    from registry.model.tables import ReplicationExecution
    with db.session() as s:
        return s.execute(update(ReplicationExecution).where(
            ReplicationExecution.id == execution_id, ReplicationExecution.status == "InProgress")
            .values(lease=time.time() + LEASE)).rowcount == 1  # type: ignore[attr-defined]


def stop_execution(db: Database, execution_id: int) -> None:
    """Ask a Pending or InProgress execution to stop (its worker stops after the task at hand)."""
    from registry.model.tables import ReplicationExecution, ReplicationTask
    with db.session() as s:
        row = s.get(ReplicationExecution, execution_id)
        if row is None:
            raise ModelError(404, f"execution {execution_id} not found")
        if row.status in DONE:
            return
        row.status, row.end_time = "Stopped", time.time()
        s.execute(update(ReplicationTask).where(ReplicationTask.execution_id == execution_id,
                                                ReplicationTask.status == "Pending").values(status="Stopped"))


def finish(db: Database, execution_id: int, failure: str = "") -> str:
    """End a run: Failed when `failure` or a task failed, else Succeed (a stopped run stays Stopped); the status."""
    from registry.model.tables import ReplicationExecution, ReplicationTask
    with db.session() as s:
        row = s.get_one(ReplicationExecution, execution_id)
        if row.status == "Stopped":  # tasks made after the stop was asked for never ran either
            s.execute(update(ReplicationTask).where(ReplicationTask.execution_id == execution_id,
                                                    ReplicationTask.status == "Pending").values(status="Stopped"))
            return row.status
        failed = s.scalar(select(func.count()).where(ReplicationTask.execution_id == execution_id,
                                                     ReplicationTask.status == "Failed")) or 0
        row.status = "Failed" if failure or failed else "Succeed"
        row.status_text = (failure or (f"{failed} task(s) failed" if failed else ""))[:1024]
        row.end_time = time.time()
        return row.status


def counts(db: Database, execution_ids: list[int]) -> dict[int, dict[str, int]]:
    """Per execution, its tasks by status."""
    from registry.model.tables import ReplicationTask
    out: dict[int, dict[str, int]] = {i: {} for i in execution_ids}
    with db.session() as s:
        for execution_id, status, n in s.execute(
                select(ReplicationTask.execution_id, ReplicationTask.status, func.count())
                .where(ReplicationTask.execution_id.in_(execution_ids))
                .group_by(ReplicationTask.execution_id, ReplicationTask.status)):
            out[execution_id][status] = n
    return out


def execution_json(e: ReplicationExecution, by_status: dict[str, int]) -> dict:
    """A run in Harbor's ReplicationExecution shape, with its task counts."""
    from registry.api.common import rfc3339
    return {"id": e.id, "policy_id": e.policy_id, "status": e.status, "status_text": e.status_text,
            "trigger": e.trigger, "start_time": rfc3339(e.start_time),
            "end_time": rfc3339(e.end_time) if e.end_time else "", "total": sum(by_status.values()),
            "failed": by_status.get("Failed", 0), "succeed": by_status.get("Succeed", 0),
            "in_progress": by_status.get("InProgress", 0) + by_status.get("Pending", 0),
            "stopped": by_status.get("Stopped", 0)}


def task_json(t: ReplicationTask) -> dict:
    """A task in Harbor's ReplicationTask shape."""
    from registry.api.common import rfc3339
    return {"id": t.id, "execution_id": t.execution_id, "resource_type": t.resource_type,
            "src_resource": t.src_resource, "dst_resource": t.dst_resource, "operation": t.operation,
            "status": t.status, "job_id": str(t.id), "attempts": t.attempts, "start_time": rfc3339(t.start_time),
            "end_time": rfc3339(t.end_time) if t.end_time else ""}


# -- triggers -----------------------------------------------------------------------------------------------------
def start_due(db: Database, now: float | None = None) -> list[int]:
    """Start (Pending) a run of every scheduled policy whose time has come, each claimed by one process."""
    from registry.model.tables import ReplicationPolicy
    now = time.time() if now is None else now
    with db.session() as s:
        scheduled = [(p.id, p.trigger.get("trigger_settings", {}).get("cron", ""), p.last_run)
                     for p in s.scalars(select(ReplicationPolicy).where(ReplicationPolicy.enabled.is_(True)))
                     if (p.trigger or {}).get("type") == "scheduled"]
    return [start_execution(db, policy_id, "scheduled", "scheduler")
            for policy_id in claim_due(db, ReplicationPolicy, scheduled, now)]


def on_event(db: Database, event: Event) -> bool:
    """An event-based policy's run for a push or delete in this registry that its filters take; whether one
    started. Copies made by replication itself trigger nothing (two policies must not feed each other forever)."""
    from registry.model.tables import ReplicationPolicy
    if event.type not in ("PUSH_ARTIFACT", "DELETE_ARTIFACT") or event.operator.startswith("replication:") \
            or not event.repository:
        return False
    with db.session() as s:
        policies = [p for p in s.scalars(select(ReplicationPolicy).where(
            ReplicationPolicy.enabled.is_(True), ReplicationPolicy.src_registry_id.is_(None)))
            if (p.trigger or {}).get("type") == "event_based"]
        wanted = [p.id for p in policies if event.type == "PUSH_ARTIFACT" or p.deletion]
        filters = {p.id: p.filters for p in policies}
    # A delete's resources are its tags (one digest): one run per digest, taken when a filter takes any of them.
    by_digest: dict[str, list[str | None]] = {}
    for resource in event.resources:
        by_digest.setdefault(resource.get("digest") or "", []).append(resource.get("tag") or None)
    started = False
    for digest, tags in by_digest.items():
        for policy_id in wanted:
            taken = [t for t in tags if matches(filters[policy_id], event.repository, t)]
            if not taken:
                continue
            deletion = event.type == "DELETE_ARTIFACT"
            scope = {"repository": event.repository, "tag": None if deletion else taken[0], "digest": digest,
                     "deletion": deletion}
            start_execution(db, policy_id, "event_based", event.operator, scope)
            started = True
    return started
