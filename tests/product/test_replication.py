"""Replication (Harbor's rules): two product registries and a distribution 2.8 on loopback, copies pushed (A to
distribution, by hand), pulled (distribution to B, on a schedule) and on push events (A to B), filtered by name and
tag, only the blobs the destination lacks, digests equal; a dead endpoint retried then Failed; secrets never shown;
the 0002 migration over a 0001 database holding data."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
import requests
from artifactkit import database, make_project
from eventkit import wait_for
from postgres import any_database_server, postgres  # noqa: F401 (fixtures: on SQLite and PostgreSQL)
from productkit import ADMIN
from registries import start_distribution
from regkit import free_port, layer_tar, make_image, push_image, sha256
from uikit import Browserless

from registry.model import replication
from registry.model.errors import ModelError

SECRET = "Repl1cator-s3cret-" + os.urandom(6).hex()  # B's replication user's password: must never show up


@pytest.fixture
def distribution(tmp_path):
    """Debian's docker-registry (CNCF distribution 2.8) logging every request (its log counts blob PUTs)."""
    server = start_distribution(tmp_path / "distribution", log_level="info", access_log=False)
    yield f"http://{server.host}", server.log
    server.stop()


def api(server, method: str, path: str, auth=ADMIN, **kw) -> requests.Response:
    return requests.request(method, f"{server.url}/api/v2.0{path}", auth=auth, timeout=30, **kw)


def created_id(r: requests.Response) -> int:
    assert r.status_code == 201, r.text
    return int(r.headers["Location"].rsplit("/", 1)[1])


def digest_of(url: str, repo: str, tag: str, auth=None) -> str | None:
    r = requests.head(f"{url}/v2/{repo}/manifests/{tag}", auth=auth, timeout=10, headers={
        "Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"})
    return r.headers.get("Docker-Content-Digest") if r.status_code == 200 else None


def run(server, policy_id: int) -> dict:
    """Start a run of the policy and wait for its end; the execution."""
    execution_id = created_id(api(server, "POST", "/replication/executions", json={"policy_id": policy_id}))
    return wait_for(lambda: _done(server, execution_id), 30, f"execution {execution_id}")


def _done(server, execution_id: int) -> dict | None:
    e = api(server, "GET", f"/replication/executions/{execution_id}").json()
    return e if e["status"] in ("Succeed", "Failed", "Stopped") else None


def tasks(server, execution_id: int) -> list[dict]:
    r = api(server, "GET", f"/replication/executions/{execution_id}/tasks", params={"page_size": 100})
    assert r.status_code == 200, r.text
    return r.json()


def task_log(server, execution_id: int, task_id: int) -> str:
    r = api(server, "GET", f"/replication/executions/{execution_id}/tasks/{task_id}/log")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    return r.text


def blob_puts(log: Path, digest: str) -> int:
    """How many uploads of `digest` the distribution completed (its request log)."""
    hex_part = digest.split(":", 1)[1]  # the query's colon is percent-encoded, or not
    return len(re.findall(rf'http\.request\.method=PUT [^\n]*digest=sha256(?::|%3A){hex_part}', log.read_text()))


def test_replication_push_pull_and_events(any_database_server, product_server, distribution, tmp_path):
    a = any_database_server()
    b = product_server()
    dist_url, dist_log = distribution
    for server, names in ((a, ("proj", "other")), (b, ("proj", "mirror"))):
        for name in names:
            make_project(server, name)
    from registry.model.users import create_user
    db_b = database(b)
    create_user(db_b, "replicator", SECRET, sysadmin=True)
    db_b.engine.dispose()

    big = layer_tar({"big": os.urandom(256 << 10)})  # shared by v1 and v2: sent once
    v1 = make_image([big, layer_tar({"v": b"1"})])
    v2 = make_image([big, layer_tar({"v": b"2"})])
    dev = make_image([layer_tar({"v": b"dev"})])
    for repo, image, tag in (("proj/app", v1, "v1"), ("proj/app", v2, "v2"), ("proj/app", dev, "dev"),
                             ("other/app", v1, "v1")):
        assert push_image(a.url, repo, image, tag, auth=ADMIN).status_code == 201

    # -- endpoints: secrets sealed, never shown; sysadmins only ------------------------------------------------
    dist_id = created_id(api(a, "POST", "/registries", json={"name": "dist", "type": "docker-registry",
                                                              "url": dist_url}))
    b_id = created_id(api(a, "POST", "/registries", json={
        "name": "b", "type": "dockyard", "url": b.url, "description": "registry B",
        "credential": {"type": "basic", "access_key": "replicator", "access_secret": SECRET}}))
    shown = api(a, "GET", f"/registries/{b_id}").json()
    assert shown["credential"] == {"type": "basic", "access_key": "replicator", "access_secret": "*****"}
    assert shown["url"] == b.url and shown["type"] == "dockyard"
    key = a.root / "replication.key"
    assert key.stat().st_mode & 0o777 == 0o600
    # A read-modify-write sends "*****" back: the stored secret stays.
    assert api(a, "PUT", f"/registries/{b_id}", json={**shown, "description": "B"}).status_code == 200
    assert api(a, "POST", "/registries/ping", json={"id": b_id}).status_code == 200
    wrong = api(a, "POST", "/registries/ping", json={"id": b_id, "credential": {"access_key": "replicator",
                                                                                "access_secret": "nope"}})
    assert wrong.status_code == 400 and "failed to ping" in wrong.json()["errors"][0]["message"]
    bad = api(a, "POST", "/registries", json={"name": "x", "url": "ftp://x"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["message"] == 'url: not an http(s) registry URL "ftp://x"'
    assert api(a, "GET", "/registries", auth=None).status_code == 401
    from registry.model.users import create_user as make_user
    db_a = database(a)
    make_user(db_a, "bob", "Bob-passw0rd")
    db_a.engine.dispose()
    for method, path in (("GET", "/registries"), ("GET", "/replication/policies"),
                         ("POST", "/replication/executions"), ("GET", "/replication/executions")):
        assert api(a, method, path, auth=("bob", "Bob-passw0rd"), json={}).status_code == 403, path

    # -- push-based, manual: A -> distribution, filtered by name and tag, only missing blobs -------------------
    only_v1 = created_id(api(a, "POST", "/replication/policies", json={
        "name": "to-dist", "dest_registry": {"id": dist_id}, "trigger": {"type": "manual"},
        "filters": [{"type": "name", "value": "proj/**"}, {"type": "tag", "value": "v1"}]}))
    e = run(a, only_v1)
    assert (e["status"], e["total"], e["succeed"], e["trigger"]) == ("Succeed", 1, 1, "manual"), e
    assert digest_of(dist_url, "proj/app", "v1") == v1.digest
    assert blob_puts(dist_log, sha256(big)) == 1
    assert api(a, "PUT", f"/replication/policies/{only_v1}", json={
        "filters": [{"type": "name", "value": "proj/**"}, {"type": "tag", "value": "v*"}]}).status_code == 200
    e = run(a, only_v1)
    assert (e["status"], e["total"], e["succeed"]) == ("Succeed", 2, 2), e
    assert digest_of(dist_url, "proj/app", "v2") == v2.digest
    assert digest_of(dist_url, "proj/app", "dev") is None  # the tag filter left it
    assert requests.get(f"{dist_url}/v2/other/app/tags/list", timeout=5).status_code == 404  # the name filter
    assert blob_puts(dist_log, sha256(big)) == 1  # v2's copy found the shared layer there: not sent again
    logs = {t["src_resource"]: task_log(a, e["id"], t["id"]) for t in tasks(a, e["id"])}
    assert "already" in logs["local:proj/app:v1"] and "put as proj/app:v2" in logs["local:proj/app:v2"]

    # -- pull-based, scheduled: distribution -> B, into another namespace --------------------------------------
    dist_on_b = created_id(api(b, "POST", "/registries", json={"name": "dist", "url": dist_url}))
    pulled = created_id(api(b, "POST", "/replication/policies", json={
        "name": "from-dist", "src_registry": {"id": dist_on_b}, "dest_namespace": "mirror",
        "dest_namespace_replace_count": 1, "filters": [{"type": "name", "value": "proj/app"}],
        "trigger": {"type": "scheduled", "trigger_settings": {"cron": "* * * * * *"}}}))
    scheduled = wait_for(lambda: [x for x in api(b, "GET", "/replication/executions",
                                                 params={"policy_id": pulled}).json()
                                  if x["status"] == "Succeed"], 30, "a scheduled run")
    assert scheduled[0]["trigger"] == "scheduled" and scheduled[0]["total"] == 2
    assert api(b, "PUT", f"/replication/policies/{pulled}", json={"enabled": False}).status_code == 200
    assert digest_of(b.url, "mirror/app", "v1", ADMIN) == v1.digest
    assert digest_of(b.url, "mirror/app", "v2", ADMIN) == v2.digest
    audit = api(b, "GET", "/audit-logs", params={"q": "operation=push", "page_size": 100}).json()
    assert {x["resource"] for x in audit if x["username"] == "replication:from-dist"} >= {
        "mirror/app:v1", "mirror/app:v2"}  # written as a push, by the policy

    # -- event-based: a push to A appears in B; its deletion follows --------------------------------------------
    evt = created_id(api(a, "POST", "/replication/policies", json={
        "name": "to-b", "dest_registry": {"id": b_id}, "deletion": True, "trigger": {"type": "event_based"},
        "filters": [{"type": "name", "value": "proj/evt*"}]}))
    assert push_image(a.url, "proj/evt", v2, "1", auth=ADMIN).status_code == 201
    assert push_image(a.url, "proj/app", v2, "v3", auth=ADMIN).status_code == 201  # not matched: no run
    wait_for(lambda: digest_of(b.url, "proj/evt", "1", ADMIN) == v2.digest, 30, "the event-based copy")
    runs = api(a, "GET", "/replication/executions", params={"policy_id": evt}).json()
    assert [x["trigger"] for x in runs] == ["event_based"]
    assert requests.delete(f"{a.url}/v2/proj/evt/manifests/{v2.digest}", auth=ADMIN, timeout=10).status_code == 202
    wait_for(lambda: digest_of(b.url, "proj/evt", "1", ADMIN) is None, 30, "the deletion replicated")

    # -- a dead endpoint: retried, then Failed with the reason in the task's log --------------------------------
    dead = created_id(api(a, "POST", "/registries", json={"name": "dead", "url": f"http://127.0.0.1:{free_port()}"}))
    assert api(a, "POST", "/registries/ping", json={"id": dead}).status_code == 400
    to_dead = created_id(api(a, "POST", "/replication/policies", json={
        "name": "to-dead", "dest_registry": {"id": dead}, "filters": [{"type": "tag", "value": "v1"}]}))
    e = run(a, to_dead)
    assert (e["status"], e["failed"]) == ("Failed", 2), e
    text = task_log(a, e["id"], tasks(a, e["id"])[0]["id"])
    assert "attempt 3 of 3 failed" in text and "127.0.0.1" in text and "task failed" in text
    assert api(a, "PUT", f"/replication/executions/{e['id']}").status_code == 200  # stopping an ended run: no-op
    assert api(a, "GET", f"/replication/executions/{e['id']}").json()["status"] == "Failed"
    assert api(a, "PUT", f"/replication/policies/{to_dead}", json={"enabled": False}).status_code == 200
    refused = api(a, "POST", "/replication/executions", json={"policy_id": to_dead})
    assert refused.status_code == 412 and "disabled" in refused.json()["errors"][0]["message"]

    # -- the UI page: endpoints, policies, runs, a "Replicate" button; escaped; admins only -----------------------
    assert api(a, "PUT", f"/registries/{dist_id}", json={"description": "<script>alert(1)</script>"}).status_code == 200
    admin = Browserless(a.url, *ADMIN)
    page = admin.get("/replication").text
    assert "to-dist" in page and "push to dist" in page and "Replicate" in page and "Failed" in page
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
    assert admin.post(f"/replication/policies/{only_v1}/run").status_code == 303
    assert admin.post(f"/replication/policies/{only_v1}/run", csrf=False).status_code == 403
    wait_for(lambda: [x for x in api(a, "GET", "/replication/executions", params={"policy_id": only_v1}).json()
                      if x["status"] == "Succeed"][2:], 30, "the run the UI started")
    assert Browserless(a.url, "bob", "Bob-passw0rd").get("/replication").status_code == 403

    # -- the secret: in no answer, page, log or database file -----------------------------------------------------
    answers = [api(a, "GET", p).text for p in ("/registries", f"/registries/{b_id}", "/replication/policies",
                                                "/replication/executions")]
    answers.append(admin.get("/replication").text)
    answers += [task_log(a, x["id"], t["id"]) for x in api(a, "GET", "/replication/executions").json()
                for t in tasks(a, x["id"])]
    assert not [t for t in answers if SECRET in t]
    assert SECRET not in a.log.read_text()
    for path in a.root.rglob("registry.db*"):
        assert SECRET.encode() not in path.read_bytes()

    # A policy's endpoint cannot go while the policy uses it; the policy can.
    assert api(a, "DELETE", f"/registries/{b_id}").status_code == 409
    assert api(a, "DELETE", f"/replication/policies/{evt}").status_code == 200
    assert api(a, "DELETE", f"/registries/{b_id}").status_code == 200


def test_policy_and_endpoint_refusals(tmp_path):
    from eventkit import model_db
    db, _ = model_db(tmp_path)
    secrets = replication.Secrets(str(tmp_path))
    remote = replication.create_registry(db, secrets, {"name": "r", "url": "https://r.example:5000/"})
    for body, message in (
            ({"name": "x", "url": "http://u:p@h/"}, "url: not an http(s) registry URL"),
            ({"name": "x", "url": "http://h/v2/x"}, "url: not an http(s) registry URL"),
            ({"name": "x", "url": "http://h", "type": "s3"}, "type: one of"),
            ({"name": "r", "url": "http://h"}, "name: a registry named 'r' exists")):
        with pytest.raises(ModelError, match=re.escape(message)):
            replication.create_registry(db, secrets, body)
    for body, message in (
            ({"name": "p"}, "exactly one of them is a remote registry"),
            ({"name": "p", "src_registry": {"id": remote}, "dest_registry": {"id": remote}}, "exactly one"),
            ({"name": "p", "dest_registry": {"id": 99}}, "dest_registry: registry 99 not found"),
            ({"name": "p", "src_registry": {"id": remote}, "trigger": {"type": "event_based"}},
             "event_based needs this registry as the source"),
            ({"name": "p", "dest_registry": {"id": remote}, "trigger": {"type": "scheduled"}}, "a cron expression"),
            ({"name": "p", "dest_registry": {"id": remote},
              "trigger": {"type": "scheduled", "trigger_settings": {"cron": "61 * * * *"}}}, "out of 0-59"),
            ({"name": "p", "dest_registry": {"id": remote}, "filters": [{"type": "name", "value": "a/{b"}]},
             "filters[0].value: unbalanced braces"),
            ({"name": "p", "dest_registry": {"id": remote}, "dest_namespace": "../x"}, "dest_namespace: not a")):
        with pytest.raises(ModelError, match=re.escape(message)):
            replication.create_policy(db, body, "admin")
    assert replication.destination("proj/sub/app", "mirror", -1) == "mirror/app"
    assert replication.destination("proj/sub/app", "mirror", 0) == "mirror/proj/sub/app"
    assert replication.destination("proj/sub/app", "mirror", 1) == "mirror/sub/app"
    assert replication.destination("proj/app", "", -1) == "proj/app"
    filters = [{"type": "name", "value": "proj/**"}, {"type": "tag", "value": "v*", "decoration": "excludes"}]
    assert replication.matches(filters, "proj/a/b", "latest") and not replication.matches(filters, "proj/a", "v1")
    assert not replication.matches(filters, "other/a", "latest")
    # Sealed at rest; a key file that changed opens nothing rather than failing.
    # The secret has characters a sealed (url-safe base64) text never holds, so only a plain copy could contain it.
    secret = "my pw!"
    sealed = secrets.seal(secret)
    assert sealed and secret not in sealed and secrets.open(sealed) == secret
    assert replication.Secrets(str(tmp_path)).open(sealed) == secret
    (tmp_path / "replication.key").unlink()
    assert replication.Secrets(str(tmp_path)).open(sealed) == ""


def test_claimed_once(tmp_path):
    """Two workers racing for the same Pending execution: one claims it."""
    from eventkit import model_db
    db, _ = model_db(tmp_path)
    secrets = replication.Secrets(str(tmp_path))
    remote = replication.create_registry(db, secrets, {"name": "r", "url": "http://127.0.0.1:9"})
    policy_id = replication.create_policy(db, {"name": "p", "dest_registry": {"id": remote}}, "admin")
    execution_id = replication.start_execution(db, policy_id, "manual", "admin")
    assert replication.claim(db) == execution_id
    assert replication.claim(db) is None
    assert replication.claim(db, now=time.time() + replication.LEASE + 1) == execution_id  # a dead worker's lease
    replication.stop_execution(db, execution_id)
    assert not replication.heartbeat(db, execution_id)
    assert replication.finish(db, execution_id) == "Stopped"


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_migration_0002_over_0001_with_data(kind, tmp_path, request):
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, inspect, text

    from registry.model.db import _MIGRATIONS, Database
    url = request.getfixturevalue("postgres")() if kind == "postgresql" else f"sqlite:///{tmp_path}/old.db"
    engine = create_engine(url)
    config = Config()
    config.set_main_option("script_location", _MIGRATIONS)
    with engine.connect() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.execute(text("INSERT INTO projects (name, public, quota_bytes, content_trust, auto_delete_untagged, "
                          "created_at, updated_at) VALUES ('old', true, -1, false, false, 1, 1)"))
        conn.commit()
    engine.dispose()
    db = Database(url)
    db.migrate()
    tables = set(inspect(db.engine).get_table_names())
    assert {"replication_registries", "replication_policies", "replication_executions",
            "replication_tasks"} <= tables
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT name FROM projects")).scalars().all() == ["old"]
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0003"  # the head
    remote = replication.create_registry(db, replication.Secrets(str(tmp_path)), {"name": "r", "url": "http://h"})
    assert replication.create_policy(db, {"name": "p", "dest_registry": {"id": remote}}, "admin") >= 1
    db.engine.dispose()
