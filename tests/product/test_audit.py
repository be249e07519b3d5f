"""The audit log: pushes, pulls and deletes recorded with who and from where, queried, exported as JSON lines."""

from __future__ import annotations

import json
import time

import pytest
from eventkit import model_db, wait_for
from postgres import any_database_server, postgres  # noqa: F401 (fixtures: on SQLite and PostgreSQL)

from registry.events import Event, audit, emit, flush

DIGEST = "sha256:" + "cd" * 32


@pytest.fixture
def logged(tmp_path):
    """A model with projects "test" and "other" and five events at known times."""
    db, test_id = model_db(tmp_path)
    from registry.model.tables import Project
    with db.session() as s:
        other = Project(name="other")
        s.add(other)
        s.flush()
        other_id = other.id
    t0 = 1_800_000_000.0
    for i, (kind, project, repo, user, addr, res) in enumerate([
        ("PUSH_ARTIFACT", "test", "test/app", "alice", "10.1.1.1", {"digest": DIGEST, "tag": "1"}),
        ("PULL_ARTIFACT", "test", "test/app", "bob", "10.1.1.2", {"digest": DIGEST, "tag": ""}),
        ("PUSH_ARTIFACT", "other", "other/web", "carol", "10.1.1.3", {"digest": DIGEST, "tag": "2"}),
        ("DELETE_ARTIFACT", "test", "test/app", "alice", "10.1.1.1", {"digest": DIGEST, "tag": "1"}),
        ("PUSH_ARTIFACT", "test", "test/application", "bob", "10.1.1.2", {"digest": DIGEST, "tag": "x"}),
    ]):
        emit(db, Event(kind, project, repo, operator=user, remote_addr=addr, resources=(res,), time=t0 + i * 60))
    flush()  # pulls are written in batches
    return db, test_id, other_id, t0


def resources(db, **kw) -> list[str]:
    rows, _ = audit.query(db, audit.AuditQuery(**kw), 0, 100)
    return [r.resource for r in rows]


def test_events_are_recorded_with_user_address_and_project(logged):
    db, test_id, _, t0 = logged
    rows, total = audit.query(db, audit.AuditQuery(), 0, 10)
    assert total == 5
    first = rows[-1]  # newest first
    assert (first.operation, first.resource, first.username, first.remote_addr, first.project_id,
            first.resource_type, first.op_time) == ("push", "test/app:1", "alice", "10.1.1.1", test_id, "artifact",
                                                    t0)
    assert rows[3].resource == f"test/app@{DIGEST}" and rows[3].operation == "pull"
    assert audit.entry(first)["op_time"] == "2027-01-15T08:00:00.000Z"


def test_query_by_each_field(logged):
    db, test_id, other_id, t0 = logged
    assert resources(db, operation=("push",)) == ["test/application:x", "other/web:2", "test/app:1"]
    assert resources(db, operation=("pull", "delete")) == ["test/app:1", f"test/app@{DIGEST}"]
    assert resources(db, resource="test/app:1") == ["test/app:1", "test/app:1"]
    assert resources(db, resource="app", resource_fuzzy=True) == [
        "test/application:x", "test/app:1", f"test/app@{DIGEST}", "test/app:1"]
    assert resources(db, resource="%", resource_fuzzy=True) == []  # LIKE's wildcards are literal here
    assert resources(db, username="bob") == ["test/application:x", f"test/app@{DIGEST}"]
    assert resources(db, since=t0 + 60, until=t0 + 180) == ["test/app:1", "other/web:2", f"test/app@{DIGEST}"]
    assert resources(db, project_ids=(other_id,)) == ["other/web:2"]
    assert resources(db, project_ids=()) == []
    rows, total = audit.query(db, audit.AuditQuery(project_ids=(test_id,)), 1, 2)
    assert total == 4 and [r.resource for r in rows] == ["test/app:1", f"test/app@{DIGEST}"]


def test_export_json_lines_in_batches(logged, monkeypatch):
    db, test_id, *_ = logged
    monkeypatch.setattr(audit, "EXPORT_BATCH", 2)
    lines = list(audit.export_jsonl(db, audit.AuditQuery(project_ids=(test_id,))))
    assert all(line.endswith("\n") and "\n" not in line[:-1] for line in lines)
    entries = [json.loads(line) for line in lines]
    assert [e["resource"] for e in entries] == ["test/app:1", f"test/app@{DIGEST}", "test/app:1",
                                                "test/application:x"]  # oldest first
    assert entries[0] == {"id": 1, "username": "alice", "resource": "test/app:1", "resource_type": "artifact",
                          "operation": "push", "op_time": "2027-01-15T08:00:00.000Z", "remote_addr": "10.1.1.1",
                          "project_id": test_id}


def test_unknown_project_still_audited_without_project(tmp_path):
    db, _ = model_db(tmp_path)
    emit(db, Event("PULL_ARTIFACT", "nope", "nope/x", operator="eve", remote_addr="10.9.9.9",
                   resources=({"digest": DIGEST},), time=time.time()))
    flush()
    rows, total = audit.query(db, audit.AuditQuery(username="eve"), 0, 10)
    assert total == 1 and rows[0].project_id is None and rows[0].resource == f"nope/x@{DIGEST}"



def test_a_pull_deferred_while_a_write_waits_is_written_by_the_next_flush(tmp_path):
    """Requests queue pulls without a lock while the flusher writes what it took: a pull queued during that write
    (held here by another connection's write lock on the database) stays queued, and the next flush writes it;
    none is written twice."""
    import sqlite3
    import threading

    from registry.events import _batches, defer
    db, _ = model_db(tmp_path)
    defer(db, ("test/app", DIGEST, "first", "bob", "10.1.1.2", "", time.time()))
    blocker = sqlite3.connect(f"{tmp_path}/registry.db", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the flusher's INSERT waits (busy timeout) until this commits
    writer = threading.Thread(target=flush)
    writer.start()
    queued = _batches.pending[db.url][1]
    wait_for(lambda: not queued, 10, "the flusher taking the pull")  # (the writer then waits on the lock)
    defer(db, ("test/app", DIGEST, "second", "bob", "10.1.1.2", "", time.time()))
    blocker.execute("COMMIT")
    writer.join()
    flush()  # (or the background flusher did already)
    rows, total = audit.query(db, audit.AuditQuery(username="bob"), 0, 10)
    assert sorted(r.resource for r in rows) == ["test/app:first", "test/app:second"] and total == 2


@pytest.fixture(params=["sqlite", "postgresql"])
def any_model(request, tmp_path):
    """A migrated model with one project "test", on SQLite or a fresh PostgreSQL database; (db, project id)."""
    if request.param == "sqlite":
        return model_db(tmp_path)
    from registry.model.db import open_database
    from registry.model.tables import Project
    db = open_database(request.getfixturevalue("postgres")())
    with db.session() as s:
        project = Project(name="test")
        s.add(project)
        s.flush()
        return db, project.id


def test_a_batch_of_pulls_alike_is_written_one_entry_per_pull(any_model):
    """A batch's pulls of one artifact by one client share their entry's columns but the time (written in groups,
    over several statements when many): each pull is an entry of its own, with its own time, next to an event's and
    an odd pull's. A client's name and address are data, not SQL."""
    from registry.events import record
    db, test_id = any_model
    odd = "bob'); DROP TABLE audit_logs; --"
    alike = [("test/app", DIGEST, "1", "alice", "10.1.1.1", "reg", 1_800_000_000.0 + i) for i in range(600)]
    pulls = [*alike[:300], ("test/app", DIGEST, None, odd, "10.1.1.2", "reg", 1_700_000_000.0), *alike[300:]]
    push = Event("PUSH_ARTIFACT", "test", "test/app", operator="carol", remote_addr="10.1.1.3",
                 resources=({"digest": DIGEST, "tag": "1"},), time=1_600_000_000.0)
    record(db, [push], pulls)
    rows, total = audit.query(db, audit.AuditQuery(username="alice"), 0, 1000)
    assert total == 600 and sorted(r.op_time for r in rows) == [p[6] for p in alike]
    assert {(r.operation, r.resource_type, r.resource, r.remote_addr, r.project_id) for r in rows} == {
        ("pull", "artifact", "test/app:1", "10.1.1.1", test_id)}
    rows, total = audit.query(db, audit.AuditQuery(username=odd), 0, 10)
    assert total == 1 and (rows[0].resource, rows[0].op_time) == (f"test/app@{DIGEST}", 1_700_000_000.0)
    rows, total = audit.query(db, audit.AuditQuery(operation=("push",)), 0, 10)
    assert total == 1 and (rows[0].username, rows[0].op_time) == ("carol", 1_600_000_000.0)
    assert audit.query(db, audit.AuditQuery(), 0, 1)[1] == 602


# -- through the registry ------------------------------------------------------------------------------------------
def test_push_pull_delete_through_the_registry_are_audited(any_database_server):
    import requests
    from eventkit import ADMIN, server_project, server_user, wait_for
    from regkit import layer_tar, make_image, push_image

    server = any_database_server()
    server_project(server)
    server_user(server, "dave", "Passw0rd!x")
    image = make_image([layer_tar({"a": b"audit"})])
    assert push_image(server.url, "test/app", image, "1", auth=ADMIN).status_code == 201
    assert requests.get(f"{server.url}/v2/test/app/manifests/1", auth=ADMIN,
                        headers={"Accept": image.media_type}).status_code == 200
    assert requests.delete(f"{server.url}/v2/test/app/manifests/{image.digest}", auth=ADMIN).status_code == 202
    api = f"{server.url}/api/v2.0"

    def entries(**params):
        r = requests.get(f"{api}/audit-logs", auth=ADMIN, params=params)
        assert r.status_code == 200, r.text
        return r.json()

    wait_for(lambda: len(entries()) >= 3, what="three audit entries")
    ops = {e["operation"]: e for e in entries()}
    assert ops["push"]["resource"] == "test/app:1" and ops["pull"]["resource"] == "test/app:1"
    assert ops["delete"]["resource"] == "test/app:1"
    assert {e["username"] for e in ops.values()} == {"admin"}
    assert {e["remote_addr"] for e in ops.values()} == {"127.0.0.1"}
    assert [e["operation"] for e in entries(q="operation=push")] == ["push"]
    assert len(entries(q="resource=~app,operation={pull delete}")) == 2
    assert entries(q="username=nobody") == []
    assert len(entries(q="op_time=[2000-01-01 00:00:00~2100-01-01 00:00:00]")) == 3
    assert entries(q="op_time=[2100-01-01 00:00:00~]") == []
    paged = requests.get(f"{api}/audit-logs", auth=ADMIN, params={"page": 1, "page_size": 2})
    assert paged.headers["X-Total-Count"] == "3" and 'rel="next"' in paged.headers["Link"]
    bad = requests.get(f"{api}/audit-logs", auth=ADMIN, params={"q": "password=x"})
    assert bad.status_code == 400 and "unsupported key" in bad.json()["errors"][0]["message"]

    export = requests.get(f"{api}/audit-logs", auth=ADMIN, params={"format": "jsonl"})
    assert export.headers["Content-Type"].startswith("application/jsonl")
    lines = [json.loads(line) for line in export.text.splitlines()]
    assert [e["operation"] for e in lines] == ["push", "pull", "delete"]  # oldest first
    project_logs = requests.get(f"{api}/projects/test/logs", auth=ADMIN, params={"q": "operation=pull"})
    assert [e["operation"] for e in project_logs.json()] == ["pull"]

    # A user in no project sees no entries and no project's log.
    dave = ("dave", "Passw0rd!x")
    assert requests.get(f"{api}/audit-logs", auth=dave).json() == []
    assert requests.get(f"{api}/projects/test/logs", auth=dave).status_code == 404


def test_first_pulls_of_a_worker_arriving_together_are_answered_and_audited(product_server):
    """The pulls that start a worker's event flusher, all sent before it answers one: starting the flusher switches
    greenlets, and no other pull may then find the worker blocked on the flusher's lock. Each pull is audited."""
    import base64
    import socket

    import requests
    from eventkit import ADMIN, server_project, wait_for
    from regkit import layer_tar, make_image, push_image

    server = product_server("--workers", "1")
    server_project(server)
    image = make_image([layer_tar({"a": b"together"})])
    assert push_image(server.url, "test/app", image, "1", auth=ADMIN).status_code == 201
    basic = base64.b64encode(":".join(ADMIN).encode()).decode()
    request = (f"GET /v2/test/app/manifests/1 HTTP/1.1\r\nHost: {server.host}\r\nAuthorization: Basic {basic}\r\n"
               f"Accept: {image.media_type}\r\n\r\n").encode()
    conns = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(8)]
    try:
        for conn in conns:
            conn.sendall(request)
        for conn in conns:
            assert conn.recv(65536).startswith(b"HTTP/1.1 200 ")
    finally:
        for conn in conns:
            conn.close()

    def eight_pulls() -> bool:
        r = requests.get(f"{server.url}/api/v2.0/audit-logs", auth=ADMIN, params={"q": "operation=pull"})
        assert r.status_code == 200, r.text
        return len(r.json()) == 8

    wait_for(eight_pulls, what="eight pull entries")
