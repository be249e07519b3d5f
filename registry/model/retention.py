"""Tag retention (Harbor's): a project's rules, OR-ed, say which artifacts to keep; the rest of the repositories the
rules reach is deleted (or only reported, in a dry run), then GC frees the blobs nothing references any more.
Runs on demand or on a cron schedule, claimed through the database so one process runs each scheduled run."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from registry import background
from registry.model import doublestar
from registry.model.cron import Cron, CronError
from registry.model.schedules import claim_due

if TYPE_CHECKING:
    from registry.model.artifacts import Storage
    from registry.model.db import Database
    from registry.model.tables import Project, RetentionExecution, RetentionPolicy

log = logging.getLogger("registry.retention")

# Harbor's rule templates: the parameter each takes is named as the template (none for "always").
TEMPLATES = {"latestPushedK": int, "latestPulledN": int, "nDaysSinceLastPush": int, "nDaysSinceLastPull": int,
             "always": None}
DAY = 86400.0
MAX_RULES = 15  # as Harbor's UI
SCHEDULER_POLL = 5.0  # seconds between looks for due scheduled runs


class RetentionError(ValueError):
    """A retention policy that cannot be stored: the message names the field."""


# -- policies -----------------------------------------------------------------------------------------------------
def _selectors(where: str, items: object, decorations: tuple[str, str], tags: bool) -> list[dict]:
    if not isinstance(items, list):
        raise RetentionError(f"{where}: a list of selectors")
    out = []
    for i, sel in enumerate(items):
        if not isinstance(sel, dict) or sel.get("kind", "doublestar") != "doublestar":
            raise RetentionError(f"{where}[{i}]: a selector of kind \"doublestar\"")
        if sel.get("decoration") not in decorations:
            raise RetentionError(f"{where}[{i}].decoration: {decorations[0]} or {decorations[1]}")
        pattern = sel.get("pattern")
        if not isinstance(pattern, str):
            raise RetentionError(f"{where}[{i}].pattern: a doublestar pattern")
        try:
            doublestar.check(pattern)
        except ValueError as e:
            raise RetentionError(f"{where}[{i}].pattern: {e}") from None
        extras = sel.get("extras") or ""
        if tags and extras:
            try:
                parsed = json.loads(extras) if isinstance(extras, str) else extras
            except ValueError:
                raise RetentionError(f"{where}[{i}].extras: JSON such as {{\"untagged\":true}}") from None
            if not isinstance(parsed, dict):
                raise RetentionError(f"{where}[{i}].extras: JSON such as {{\"untagged\":true}}")
            extras = json.dumps({"untagged": bool(parsed.get("untagged"))})
        out.append({"kind": "doublestar", "decoration": sel["decoration"], "pattern": pattern,
                    "extras": extras if tags else ""})
    return out


def validate(body: dict) -> tuple[list[dict], str]:
    """Harbor's RetentionPolicy body checked: its normalized rules and cron ("" for on demand only)."""
    if body.get("algorithm", "or") != "or":
        raise RetentionError("algorithm: only \"or\"")
    rules = body.get("rules")
    if not isinstance(rules, list) or len(rules) > MAX_RULES:
        raise RetentionError(f"rules: a list of at most {MAX_RULES} rules")
    out = []
    for i, rule in enumerate(rules):
        where = f"rules[{i}]"
        if not isinstance(rule, dict):
            raise RetentionError(f"{where}: an object")
        if rule.get("action", "retain") != "retain":
            raise RetentionError(f"{where}.action: only \"retain\"")
        template = rule.get("template")
        if template not in TEMPLATES:
            raise RetentionError(f"{where}.template: one of {', '.join(TEMPLATES)}")
        params = rule.get("params") or {}
        if not isinstance(params, dict):
            raise RetentionError(f"{where}.params: an object")
        clean = {}
        if TEMPLATES[template] is not None:
            value = params.get(template)
            if isinstance(value, str) and value.isdigit():
                value = int(value)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100000:
                raise RetentionError(f"{where}.params.{template}: a number from 0 to 100000")
            clean[template] = value
        scope = rule.get("scope_selectors") or {"repository": [{"kind": "doublestar", "decoration": "repoMatches",
                                                                "pattern": "**"}]}
        if not isinstance(scope, dict) or set(scope) - {"repository"}:
            raise RetentionError(f"{where}.scope_selectors: only \"repository\"")
        out.append({"id": i + 1, "priority": int(rule.get("priority") or 0), "disabled": bool(rule.get("disabled")),
                    "action": "retain", "template": template, "params": clean,
                    "tag_selectors": _selectors(f"{where}.tag_selectors", rule.get("tag_selectors") or [
                        {"kind": "doublestar", "decoration": "matches", "pattern": "**"}],
                        ("matches", "excludes"), True),
                    "scope_selectors": {"repository": _selectors(f"{where}.scope_selectors.repository",
                                                                 scope.get("repository", []),
                                                                 ("repoMatches", "repoExcludes"), False)}})
    trigger = body.get("trigger") or {}
    if not isinstance(trigger, dict) or trigger.get("kind", "Schedule") != "Schedule":
        raise RetentionError("trigger.kind: only \"Schedule\"")
    settings = trigger.get("settings") or {}
    cron = settings.get("cron", "") if isinstance(settings, dict) else None
    if not isinstance(cron, str):
        raise RetentionError("trigger.settings.cron: a cron expression or \"\"")
    if cron.strip():
        try:
            Cron.parse(cron)
        except CronError as e:
            raise RetentionError(str(e)) from None
    return out, cron.strip()


def create_policy(db: Database, project_id: int, body: dict) -> int:
    """Store the project's policy (one per project, as Harbor); its id."""
    from registry.model.tables import RetentionPolicy
    rules, cron = validate(body)
    with db.session() as s:
        if s.query(RetentionPolicy).filter_by(project_id=project_id).first() is not None:
            raise RetentionError("scope.ref: the project has a retention policy: update it")
        # last_run is the schedule's starting point: a new schedule first fires at its next time from now.
        policy = RetentionPolicy(project_id=project_id, rules=rules, schedule=cron, last_run=time.time())
        s.add(policy)
        s.flush()
        return policy.id


def update_policy(db: Database, policy_id: int, body: dict) -> bool:
    """Replace a policy's rules and schedule; False when there is no such policy."""
    from registry.model.tables import RetentionPolicy
    rules, cron = validate(body)
    with db.session() as s:
        policy = s.get(RetentionPolicy, policy_id)
        if policy is None:
            return False
        if cron != policy.schedule:
            policy.last_run = time.time()
        policy.rules, policy.schedule = rules, cron
        return True


def delete_policy(db: Database, policy_id: int) -> bool:
    """Remove a policy and its runs; False when there is no such policy."""
    from registry.model.tables import RetentionExecution, RetentionPolicy
    with db.session() as s:
        policy = s.get(RetentionPolicy, policy_id)
        if policy is None:
            return False
        s.query(RetentionExecution).filter_by(policy_id=policy_id).delete()
        s.delete(policy)
        return True


def policy_json(policy: RetentionPolicy) -> dict:
    """A policy in Harbor's RetentionPolicy shape."""
    return {"id": policy.id, "algorithm": "or", "rules": policy.rules,
            "trigger": {"kind": "Schedule", "settings": {"cron": policy.schedule}, "references": {}},
            "scope": {"level": "project", "ref": policy.project_id}}


# -- running ------------------------------------------------------------------------------------------------------
@dataclass
class Candidate:
    """An artifact a run considers: its tags and times (a re-tag counts as a push)."""

    id: int
    repository: str
    digest: str
    tags: list[str]
    push_time: float
    pull_time: float
    children: set[str] = field(default_factory=set)  # digests an index references (kept with it)


def _tag_selected(sel: dict, tags: list[str]) -> bool:
    untagged = json.loads(sel["extras"]).get("untagged", False) if sel.get("extras") else False
    if not tags:
        return untagged
    matched = [doublestar.match(sel["pattern"], t) for t in tags]
    return any(matched) if sel["decoration"] == "matches" else not all(matched)


def _repo_selected(rule: dict, repo: str) -> bool:
    """Whether the rule's repository selectors (matched against the name without its project) take `repo`."""
    name = repo.partition("/")[2]
    for sel in rule["scope_selectors"].get("repository", []):
        hit = doublestar.match(sel["pattern"], name)
        if hit != (sel["decoration"] == "repoMatches"):
            return False
    return True


def _retained(rule: dict, candidates: list[Candidate], now: float) -> list[Candidate]:
    """What one rule keeps of the candidates its selectors pass."""
    chosen = [c for c in candidates if all(_tag_selected(sel, c.tags) for sel in rule["tag_selectors"])]
    template, n = rule["template"], rule["params"].get(rule["template"], 0)
    if template == "latestPushedK":
        return sorted(chosen, key=lambda c: (c.push_time, c.id), reverse=True)[:n]
    if template == "latestPulledN":
        return sorted(chosen, key=lambda c: (c.pull_time, c.id), reverse=True)[:n]
    if template == "nDaysSinceLastPush":
        return [c for c in chosen if c.push_time >= now - n * DAY]
    if template == "nDaysSinceLastPull":
        return [c for c in chosen if c.pull_time and c.pull_time >= now - n * DAY]
    return chosen  # always


def decide(rules: list[dict], candidates: list[Candidate], now: float) -> tuple[list[Candidate], set[int]]:
    """The candidates in the rules' repositories and the ids of those some rule keeps (indexes keep children)."""
    active = [r for r in rules if not r.get("disabled")]
    by_repo: dict[str, list[Candidate]] = {}
    for c in candidates:
        by_repo.setdefault(c.repository, []).append(c)
    considered, kept = [], set[int]()
    for repo, cands in sorted(by_repo.items()):
        rules_here = [r for r in active if _repo_selected(r, repo)]
        if not rules_here:
            continue
        considered.extend(cands)
        for rule in rules_here:
            kept.update(c.id for c in _retained(rule, cands, now))
        children = {d for c in cands if c.id in kept for d in c.children}
        kept.update(c.id for c in cands if c.digest in children)
    return considered, kept


def start_execution(db: Database, policy_id: int, dry_run: bool, trigger: str = "MANUAL") -> int | None:
    """Record a new run (status Running); its id, or None when there is no such policy."""
    from registry.model.tables import RetentionExecution, RetentionPolicy
    with db.session() as s:
        if s.get(RetentionPolicy, policy_id) is None:
            return None
        execution = RetentionExecution(policy_id=policy_id, dry_run=dry_run, trigger=trigger, status="Running")
        s.add(execution)
        s.flush()
        return execution.id


def run_execution(db: Database, storage: Storage, execution_id: int, operator: str, gc_grace: int,
                  host: str = "") -> None:
    """Carry out a recorded run: decide, delete (unless dry run), collect garbage, record, emit TAG_RETENTION."""
    from registry.events import Event, emit
    from registry.model import artifacts
    from registry.model.policy import Actor, Refused
    from registry.model.tables import Project, RetentionExecution, RetentionPolicy
    with db.session() as s:
        execution = s.get_one(RetentionExecution, execution_id)
        policy = s.get_one(RetentionPolicy, execution.policy_id)
        project = s.get_one(Project, policy.project_id)
        rules, dry_run, project_name, policy_id = policy.rules, execution.dry_run, project.name, policy.id
    status = "Succeed"
    notes: dict[int, str] = {}
    results: list[dict[str, Any]] = []
    try:
        candidates = _candidates(db, storage, project)
        considered, kept = decide(rules, candidates, time.time())
        doomed = [c for c in considered if c.id not in kept]
        if not dry_run:
            for c in doomed:
                try:
                    artifacts.delete_artifact(db, storage, c.repository, c.digest, Actor(operator), host)
                except Refused as e:  # an immutable tag: Harbor's retention keeps it too
                    kept.add(c.id)
                    notes[c.id] = e.message
            if len(kept) < len(considered):
                from registry.gc import collect
                collect(storage, grace=gc_grace)  # type: ignore[arg-type]  # the app's Layout
        results = [{"repository": c.repository, "digest": c.digest, "tags": c.tags, "retained": c.id in kept,
                    "push_time": c.push_time, "pull_time": c.pull_time, **({"note": notes[c.id]} if c.id in notes
                                                                          else {})} for c in considered]
    except Exception as e:  # the run's record says it failed; the worker goes on
        log.exception("retention execution %d", execution_id)
        status = "Failed"
        results.append({"error": str(e)[:500]})
    with db.session() as s:
        execution = s.get_one(RetentionExecution, execution_id)
        execution.status, execution.results, execution.end_time = status, results, time.time()
    retention = {"total": len([r for r in results if "digest" in r]),
                 "retained": len([r for r in results if r.get("retained")]), "harbor_hostname": host,
                 "project_name": project_name, "retention_policy_id": policy_id,
                 "result": "SUCCESS" if status == "Succeed" else "FAILURE",
                 "deleted_artifact": [{"type": "image", "status": "SUCCESS" if not dry_run else "DRY_RUN",
                                       "name_tag": f"{r['repository']}:{','.join(r['tags']) or r['digest']}",
                                       "references": r["tags"]} for r in results
                                      if "digest" in r and not r["retained"]]}
    # Each deletion emitted its own DELETE_ARTIFACT (the audit log's rows); this is the run's summary.
    emit(db, Event("TAG_RETENTION", project_name, operator=operator, extra={"retention": retention}))


def _candidates(db: Database, storage: Storage, project: Project) -> list[Candidate]:
    """The project's artifacts, referrers left out (they go with their subject)."""
    from dockyard.digest import Digest
    from registry.model.artifacts import read_manifest
    from registry.model.tables import Artifact, Repository, Tag
    out = []
    with db.session() as s:
        rows = s.query(Artifact, Repository.name).join(Repository, Artifact.repository_id == Repository.id) \
            .filter(Repository.project_id == project.id, Artifact.subject.is_(None)).all()
        tags: dict[int, list[Tag]] = {}
        for tag in s.query(Tag).join(Repository, Tag.repository_id == Repository.id) \
                .filter(Repository.project_id == project.id):
            tags.setdefault(tag.artifact_id, []).append(tag)
        for artifact, repo in rows:
            mine = tags.get(artifact.id, [])
            pushed = max([artifact.push_time, *(t.push_time for t in mine)])
            pulled = max([artifact.pull_time, *(t.pull_time for t in mine)])
            out.append(Candidate(artifact.id, repo, artifact.digest, sorted(t.name for t in mine), pushed, pulled))
    for c in out:
        found = storage.get_manifest(c.repository, Digest.parse(c.digest))
        if found is not None:
            c.children = {str(d.get("digest")) for d in read_manifest(c.digest, *found).children}
    return out


def run_due(db: Database, storage: Storage, gc_grace: int, now: float | None = None, host: str = "") -> list[int]:
    """Run every scheduled policy whose next time has come, each claimed by one process; the executions' ids."""
    from registry.model.tables import RetentionPolicy
    now = time.time() if now is None else now
    with db.session() as s:
        scheduled = [(p.id, p.schedule, p.last_run) for p in s.query(RetentionPolicy).filter(
            RetentionPolicy.schedule != "")]
    ran = []
    for policy_id in claim_due(db, RetentionPolicy, scheduled, now):
        execution_id = start_execution(db, policy_id, dry_run=False, trigger="SCHEDULE")
        if execution_id is not None:
            run_execution(db, storage, execution_id, "scheduler", gc_grace, host)
            ran.append(execution_id)
    return ran


def run_in_background(db: Database, storage: Storage, execution_id: int, operator: str, gc_grace: int,
                      host: str = "") -> None:
    """Carry out a recorded run without holding the request that asked for it."""
    threading.Thread(target=run_execution, args=(db, storage, execution_id, operator, gc_grace, host),
                     name=f"retention-{execution_id}", daemon=True).start()


def ensure_scheduler(db: Database, storage: Storage, gc_grace: int) -> None:
    """Start this process's scheduler loop for `db` unless it runs (a forked worker starts its own)."""
    background.ensure(("retention-scheduler", id(db)), "retention-scheduler",
                      lambda: run_due(db, storage, gc_grace), SCHEDULER_POLL)


def execution_json(e: RetentionExecution) -> dict:
    """A run in Harbor's RetentionExecution shape."""
    from registry.api.common import rfc3339
    return {"id": e.id, "policy_id": e.policy_id, "start_time": rfc3339(e.start_time),
            "end_time": rfc3339(e.end_time) if e.end_time else "", "status": e.status, "trigger": e.trigger,
            "dry_run": e.dry_run}


def tasks(e: RetentionExecution) -> list[dict]:
    """A run's per-repository tasks in Harbor's RetentionExecutionTask shape, with their results."""
    from registry.api.common import rfc3339
    by_repo: dict[str, list[dict]] = {}
    for r in e.results or []:
        if "repository" in r:
            by_repo.setdefault(r["repository"], []).append(r)
    status = {"Running": "Running", "Succeed": "Succeed"}.get(e.status, "Error")
    return [{"id": i, "execution_id": e.id, "repository": repo, "job_id": "", "status": status,
             "status_code": 3 if status == "Succeed" else 2, "status_revision": 0,
             "start_time": rfc3339(e.start_time), "end_time": rfc3339(e.end_time) if e.end_time else "",
             "total": len(rows), "retained": len([r for r in rows if r["retained"]]), "results": rows}
            for i, (repo, rows) in enumerate(sorted(by_repo.items()), start=1)]
