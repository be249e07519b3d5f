"""Tag retention: Harbor's rules (OR-ed) over a project's artifacts, dry runs, real runs followed by GC, the cron
schedule claimed by one process, and the patterns and cron syntax the rules use."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from eventkit import model_db
from postgres import any_database_server, postgres  # noqa: F401 (fixtures: on SQLite and PostgreSQL)
from regkit import layer_tar, make_image

from dockyard.digest import Digest
from registry.model import artifacts, doublestar, retention
from registry.model.cron import Cron
from registry.model.retention import RetentionError
from registry.model.tables import Artifact, AuditLog, RetentionExecution, RetentionPolicy, Tag
from registry.storage import open_storage

ALL_REPOS = {"repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]}


def rule(template: str, value: int | None = None, pattern: str = "**", decoration: str = "matches",
         untagged: bool = False, repos: dict | None = None) -> dict:
    return {"action": "retain", "template": template, "params": {template: value} if value is not None else {},
            "tag_selectors": [{"kind": "doublestar", "decoration": decoration, "pattern": pattern,
                               "extras": '{"untagged":true}' if untagged else ""}],
            "scope_selectors": repos or ALL_REPOS}


def body(*rules: dict, cron: str = "") -> dict:
    return {"algorithm": "or", "rules": list(rules), "trigger": {"kind": "Schedule", "settings": {"cron": cron}},
            "scope": {"level": "project", "ref": 1}}


@pytest.fixture
def registry(tmp_path):
    """A model with project "test" and a filesystem storage; `push(repo, tag, age_days)` stores and indexes one
    single-layer image pushed that long ago."""
    db, project_id = model_db(tmp_path)
    storage = open_storage("filesystem", {"rootdirectory": str(tmp_path / "storage")})
    storage.create()
    pushed: dict[str, object] = {}

    def push(repo: str, tag: str | None, age_days: float = 0.0, pulled_days: float | None = None):
        from dockyard.digest import Digest
        image = make_image([layer_tar({"file": f"{repo} {tag} {len(pushed)}".encode()})])
        for blob in (image.config, *image.layers):
            d = Digest.parse(artifacts_sha(blob))
            storage.put_blob_bytes(blob, d)
            storage.link_blob(repo, d)
        digest = Digest.parse(image.digest)
        storage.put_manifest(repo, digest, image.manifest, image.media_type)
        if tag:
            storage.set_tag(repo, tag, digest)
        with db.session() as s:
            known = s.query(Artifact).filter_by(digest=image.digest).first()
        if known is None:
            from registry.model.artifacts import read_manifest
            from registry.model.policy import Actor
            artifacts.record_push(db, storage, repo, read_manifest(image.digest, image.manifest, image.media_type),
                                  tag, Actor("alice", "127.0.0.1"))
        with db.session() as s:
            art = s.query(Artifact).filter_by(digest=image.digest).one()
            art.push_time = time.time() - age_days * 86400
            for tag_row in s.query(Tag).filter_by(artifact_id=art.id):
                tag_row.push_time = art.push_time
            if pulled_days is not None:
                art.pull_time = time.time() - pulled_days * 86400
        pushed[f"{repo}:{tag}"] = image
        return image

    return db, project_id, storage, push, pushed


def artifacts_sha(blob: bytes) -> str:
    import hashlib
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def run(db, storage, policy_id: int, dry_run: bool) -> RetentionExecution:
    execution_id = retention.start_execution(db, policy_id, dry_run)
    retention.run_execution(db, storage, execution_id, "admin", gc_grace=0)
    with db.session() as s:
        return s.get(RetentionExecution, execution_id)


def age_blobs(root, seconds: float = 3600) -> None:
    """Make every stored blob look last used `seconds` ago (GC keeps blobs used within its grace and clock slack)."""
    import os
    for path in (root / "storage" / "blobs").rglob("data"):
        os.utime(path, (time.time() - seconds, time.time() - seconds))


def tags(storage, repo: str = "test/app") -> list[str]:
    return storage.list_tags(repo) or []


def test_keep_two_most_recent_of_five_dry_run_then_run_and_gc(registry, tmp_path):
    db, project_id, storage, push, pushed = registry
    for i in range(1, 6):
        push("test/app", str(i), age_days=10 - i)  # 5 is the newest
    layers = {t: pushed[f"test/app:{t}"].layers[0] for t in "12345"}
    policy_id = retention.create_policy(db, project_id, body(rule("latestPushedK", 2)))

    dry = run(db, storage, policy_id, dry_run=True)
    assert dry.status == "Succeed" and dry.dry_run
    assert sorted((r["tags"][0], r["retained"]) for r in dry.results) == [
        ("1", False), ("2", False), ("3", False), ("4", True), ("5", True)]
    assert tags(storage) == ["1", "2", "3", "4", "5"]  # a dry run deletes nothing
    assert all(storage.blob_info(Digest.parse(artifacts_sha(layer))) for layer in layers.values())

    age_blobs(tmp_path)
    real = run(db, storage, policy_id, dry_run=False)
    assert real.status == "Succeed" and not real.dry_run
    assert tags(storage) == ["4", "5"]
    with db.session() as s:
        assert sorted(a.digest for a in s.query(Artifact)) == sorted(pushed[f"test/app:{t}"].digest for t in "45")
        deleted = s.query(AuditLog).filter_by(operation="delete").all()
    assert sorted(d.resource for d in deleted) == ["test/app:1", "test/app:2", "test/app:3"]
    assert {d.username for d in deleted} == {"admin"}
    for t, layer in layers.items():  # GC freed the removed artifacts' blobs, and only those
        assert (storage.blob_info(Digest.parse(artifacts_sha(layer))) is not None) == (t in "45"), t
    (task,) = retention.tasks(real)
    assert task["repository"] == "test/app" and task["total"] == 5 and task["retained"] == 2


def test_rules_are_ored_with_tag_and_repository_selectors(registry):
    db, project_id, storage, push, _ = registry
    push("test/app", "v1.0", age_days=30)
    push("test/app", "v2.0", age_days=20)
    push("test/app", "dev-1", age_days=1)
    push("test/app", "dev-2", age_days=40)
    push("test/app", "old", age_days=50, pulled_days=1)
    push("test/app", None, age_days=60)  # untagged
    push("test/other", "x", age_days=90)  # no rule takes this repository: untouched
    policy_id = retention.create_policy(db, project_id, body(
        rule("always", pattern="v*", repos={"repository": [{"kind": "doublestar", "decoration": "repoMatches",
                                                             "pattern": "{app,web}"}]}),
        rule("nDaysSinceLastPush", 7, pattern="v*", decoration="excludes",
             repos={"repository": [{"kind": "doublestar", "decoration": "repoExcludes", "pattern": "other"}]}),
        rule("nDaysSinceLastPull", 3, repos={"repository": [{"kind": "doublestar", "decoration": "repoMatches",
                                                              "pattern": "app"}]})))
    run(db, storage, policy_id, dry_run=False)
    assert tags(storage) == ["dev-1", "old", "v1.0", "v2.0"]
    assert tags(storage, "test/other") == ["x"]
    with db.session() as s:
        assert s.query(Artifact).count() == 5  # the untagged one went too


def test_untagged_flag_keeps_untagged_artifacts(registry):
    db, project_id, storage, push, _ = registry
    push("test/app", "a", age_days=2)
    untagged = push("test/app", None, age_days=1)
    policy_id = retention.create_policy(db, project_id, body(rule("latestPushedK", 1, pattern="nothing*",
                                                                   untagged=True)))
    run(db, storage, policy_id, dry_run=False)
    assert tags(storage) == []
    with db.session() as s:
        assert [a.digest for a in s.query(Artifact)] == [untagged.digest]


def test_schedule_fires_once_across_schedulers(registry):
    db, project_id, storage, push, _ = registry
    for i in range(3):
        push("test/app", str(i), age_days=3 - i)
    policy_id = retention.create_policy(db, project_id, body(rule("latestPushedK", 1), cron="0 0 0 * * *"))
    with db.session() as s:
        due = Cron.parse("0 0 0 * * *").next_after(s.get(RetentionPolicy, policy_id).last_run)
    assert retention.run_due(db, storage, 0, now=due - 1) == []  # its first midnight has not come
    # A second scheduler on its own engine (another worker) races for the same due run: one of them runs it.
    from registry.model.db import Database
    other = Database(db.url)
    ran = retention.run_due(db, storage, 0, now=due) + retention.run_due(other, storage, 0, now=due)
    assert len(ran) == 1
    with db.session() as s:
        execution = s.get(RetentionExecution, ran[0])
        assert execution.trigger == "SCHEDULE" and execution.status == "Succeed"
    assert tags(storage) == ["2"]
    assert retention.run_due(db, storage, 0, now=due + 3600) == []  # the next fires a day later
    assert len(retention.run_due(db, storage, 0, now=due + 86400)) == 1


def test_referrers_and_index_children_go_with_their_subject(registry):
    db, project_id, storage, push, _ = registry
    from dockyard.digest import Digest
    from registry.model.artifacts import read_manifest
    from registry.model.policy import Actor
    child = push("test/app", None, age_days=5)
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": child.media_type, "digest": child.digest, "size": len(child.manifest),
                            "platform": {"architecture": "amd64", "os": "linux"}}]}
    import json
    data = json.dumps(index).encode()
    digest = artifacts_sha(data)
    storage.put_manifest("test/app", Digest.parse(digest), data, index["mediaType"])
    storage.set_tag("test/app", "multi", Digest.parse(digest))
    artifacts.record_push(db, storage, "test/app", read_manifest(digest, data, index["mediaType"]), "multi",
                          Actor("alice"))
    push("test/app", "old", age_days=9)
    policy_id = retention.create_policy(db, project_id, body(rule("latestPushedK", 1)))
    run(db, storage, policy_id, dry_run=False)
    assert tags(storage) == ["multi"]
    assert storage.get_manifest("test/app", Digest.parse(child.digest)) is not None  # the index still works


@pytest.mark.parametrize("bad, message", [
    (body(rule("keepSome", 1)), "rules[0].template: one of"),
    (body(rule("latestPushedK", -1)), "rules[0].params.latestPushedK: a number"),
    (body(rule("latestPushedK")), "rules[0].params.latestPushedK: a number"),
    (body(rule("always", decoration="sometimes")), "rules[0].tag_selectors[0].decoration"),
    (body(rule("always"), cron="61 * * * *"), "cron minute '61': out of 0-59"),
    (body(rule("always"), cron="* * *"), "cron '* * *': 5 or 6 fields"),
    (body(rule("always"), cron="0 0 30 2 *"), "cron '0 0 30 2 *': never fires"),
    ({**body(rule("always")), "algorithm": "and"}, "algorithm: only \"or\""),
    (body(rule("always", pattern="{v1,v2")), "rules[0].tag_selectors[0].pattern: unbalanced braces"),
    (body(rule("always", pattern="[0-9")), "rules[0].tag_selectors[0].pattern: unclosed ["),
])
def test_bad_policies_are_refused(registry, bad, message):
    db, project_id, *_ = registry
    with pytest.raises(RetentionError) as e:
        retention.create_policy(db, project_id, bad)
    assert str(e.value).startswith(message)


def test_one_policy_per_project(registry):
    db, project_id, *_ = registry
    retention.create_policy(db, project_id, body(rule("always")))
    with pytest.raises(RetentionError, match="the project has a retention policy"):
        retention.create_policy(db, project_id, body(rule("always")))


def utc(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize("expr, after, expected", [
    ("0 0 * * *", "2026-11-29 07:00:00", "2026-11-30 00:00:00"),
    ("0 0 0 * * *", "2026-11-29 07:00:00", "2026-11-30 00:00:00"),  # Harbor's 6 fields, seconds first
    ("*/15 * * * *", "2026-11-29 07:01:00", "2026-11-29 07:15:00"),
    ("30 2 1 * *", "2026-11-29 07:00:00", "2026-12-01 02:30:00"),
    ("0 9 * * 1-5", "2026-11-28 10:00:00", "2026-11-30 09:00:00"),  # Saturday -> Monday
    ("0 0 13 * 5", "2026-11-01 00:00:00", "2026-11-06 00:00:00"),  # day 13 OR Friday, as cron
    ("0 0 * * 7", "2026-11-29 00:00:00", "2026-12-06 00:00:00"),  # 7 is Sunday too
    ("@daily", "2026-12-31 23:59:59", "2027-01-01 00:00:00"),
    ("0 0 29 2 *", "2026-03-01 00:00:00", "2028-02-29 00:00:00"),
])
def test_cron_next_time(expr, after, expected):
    assert Cron.parse(expr).next_after(utc(after)) == utc(expected)


@pytest.mark.parametrize("pattern, name, hit", [
    ("**", "a/b/c", True), ("*", "a/b", False), ("*", "app", True), ("a/**", "a/b/c", True),
    ("**/c", "c", True), ("v?.*", "v1.0", True), ("v?.*", "v10.0", False), ("{dev,test}-*", "test-3", True),
    ("{dev,test}-*", "prod-3", False), ("[0-9]*", "7up", True), ("[!0-9]*", "7up", False),
    ("release-{1.*,2.0}", "release-1.5", True), ("a.b", "aXb", False), ("{a,{b,c}}x", "cx", True),
    ("\\*", "*", True), ("\\*", "a", False),
])
def test_doublestar(pattern, name, hit):
    assert doublestar.match(pattern, name) == hit


# -- through the registry ------------------------------------------------------------------------------------------
def test_retention_api_dry_run_run_gc_and_schedule(any_database_server, tmp_path):
    import requests
    from eventkit import ADMIN, Receiver, server_project, wait_for
    from regkit import layer_tar, make_image, push_image

    config = tmp_path / "registry.toml"
    config.write_text("[gc]\ngrace = 0\n")
    server = any_database_server("--config", str(config))
    project_id = server_project(server)
    receiver = Receiver().start()
    try:
        api = f"{server.url}/api/v2.0"
        assert requests.post(f"{api}/projects/test/webhook/policies", auth=ADMIN, json={
            "name": "retention", "event_types": ["TAG_RETENTION"],
            "targets": [{"address": receiver.url}]}).status_code == 201
        images = {}
        for i in range(1, 6):
            images[i] = make_image([layer_tar({"n": str(i).encode()})])
            assert push_image(server.url, "test/app", images[i], str(i), auth=ADMIN).status_code == 201
            time.sleep(0.02)
        policy = {"algorithm": "or", "rules": [rule("latestPushedK", 2)],
                  "trigger": {"kind": "Schedule", "settings": {"cron": ""}},
                  "scope": {"level": "project", "ref": project_id}}
        r = requests.post(f"{api}/retentions", auth=ADMIN, json=policy)
        assert r.status_code == 201, r.text
        policy_url = f"{server.url}{r.headers['Location']}"
        got = requests.get(policy_url, auth=ADMIN).json()
        assert got["rules"][0]["params"] == {"latestPushedK": 2} and got["scope"] == policy["scope"]

        def finished(location: str) -> dict:
            return wait_for(lambda: next((e for e in requests.get(f"{policy_url}/executions", auth=ADMIN).json()
                                          if f"/{e['id']}" == location[-len(f"/{e['id']}"):]
                                          and e["status"] != "Running"), None), what="the execution")

        def tag_list() -> list[str]:
            return requests.get(f"{server.url}/v2/test/app/tags/list", auth=ADMIN).json()["tags"]

        dry = requests.post(f"{policy_url}/executions", auth=ADMIN, json={"dry_run": True})
        assert dry.status_code == 201
        execution = finished(dry.headers["Location"])
        assert execution["status"] == "Succeed" and execution["dry_run"] is True
        assert tag_list() == ["1", "2", "3", "4", "5"]
        tasks = requests.get(f"{server.url}{dry.headers['Location']}/tasks", auth=ADMIN).json()
        assert [(t["repository"], t["total"], t["retained"]) for t in tasks] == [("test/app", 5, 2)]
        log = requests.get(f"{server.url}{dry.headers['Location']}/tasks/1", auth=ADMIN).text
        assert log.count("\nwould remove\t") == 3 and log.count("\nkept\t") == 2

        time.sleep(2.5)  # past GC's clock slack: the layers of removed tags are then garbage
        real = requests.post(f"{policy_url}/executions", auth=ADMIN, json={"dry_run": False})
        assert finished(real.headers["Location"])["status"] == "Succeed"
        assert tag_list() == ["4", "5"]
        for i, image in images.items():
            blob = requests.get(f"{server.url}/v2/test/app/blobs/{artifacts_sha(image.layers[0])}", auth=ADMIN)
            assert blob.status_code == (200 if i >= 4 else 404), i
        summary = [json.loads(g.body) for g in receiver.wait(2)]
        assert [s["event_data"]["retention"]["retained"] for s in summary] == [2, 2]
        assert len(summary[1]["event_data"]["retention"]["deleted_artifact"]) == 3

        # On a schedule: every 5 seconds, until switched off.
        policy["trigger"]["settings"]["cron"] = "*/5 * * * * *"
        assert requests.put(policy_url, auth=ADMIN, json=policy).status_code == 200
        scheduled = wait_for(lambda: [e for e in requests.get(f"{policy_url}/executions", auth=ADMIN).json()
                                      if e["trigger"] == "SCHEDULE" and e["status"] == "Succeed"], timeout=30,
                             what="a scheduled run")
        policy["trigger"]["settings"]["cron"] = ""
        assert requests.put(policy_url, auth=ADMIN, json=policy).status_code == 200
        starts = [e["start_time"] for e in requests.get(f"{policy_url}/executions", auth=ADMIN,
                                                         params={"page_size": 100}).json()
                  if e["trigger"] == "SCHEDULE"]
        assert scheduled and len(starts) == len(set(starts))  # both workers schedule; each fire ran once

        assert requests.post(f"{api}/retentions", auth=ADMIN, json=policy).status_code == 409
        assert requests.post(f"{api}/retentions", auth=("nobody", "x"), json=policy).status_code == 401
    finally:
        receiver.stop()
