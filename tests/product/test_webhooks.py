"""Webhooks: events queued in the model and delivered to a real receiver on loopback, in Harbor's and CloudEvents'
shapes, signed, retried with backoff, never stalled by a hostile target."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time

import pytest
from eventkit import Receiver, model_db
from postgres import any_database_server, postgres  # noqa: F401 (fixtures: on SQLite and PostgreSQL)

from registry.events import Event, emit, webhooks
from registry.model.db import Database
from registry.model.tables import WebhookDelivery

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(**kw) -> Receiver:
        made.append(Receiver(**kw).start())
        return made[-1]

    yield make
    for r in made:
        r.stop()


@pytest.fixture
def model(tmp_path):
    return model_db(tmp_path)  # the sender it starts is stopped by conftest's background_loops


def policy(db, project_id, *targets, events=("PUSH_ARTIFACT",), name="hook") -> int:
    return webhooks.create_policy(db, project_id, {"name": name, "event_types": list(events),
                                                   "targets": list(targets)}, "admin")


def push(db, tag="1", repo="test/app") -> None:
    emit(db, Event("PUSH_ARTIFACT", "test", repo, operator="alice", remote_addr="127.0.0.9",
                   resources=({"digest": DIGEST, "tag": tag},), extra={"host": "registry.local:5000"}))


def deliveries(db) -> list[WebhookDelivery]:
    with db.session() as s:
        return s.query(WebhookDelivery).order_by(WebhookDelivery.id).all()


def wait_status(db, status: str, timeout: float = 20) -> list[WebhookDelivery]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = deliveries(db)
        if rows and all(r.status == status for r in rows):
            return rows
        time.sleep(0.05)
    raise AssertionError([(r.status, r.attempts, r.last_error) for r in deliveries(db)])


def test_push_delivered_in_harbor_and_cloudevents_shapes_signed(model, receivers):
    db, project_id = model
    harbor, cloud = receivers(), receivers()
    policy(db, project_id, {"type": "http", "address": harbor.url, "auth_header": "Bearer s3cret",
                            "secret": "hmac-key"},
           {"type": "http", "address": cloud.url, "payload_format": "CloudEvents"})
    before = time.time()
    push(db)
    (got,) = harbor.wait(1)
    body = json.loads(got.body)
    assert body["type"] == "PUSH_ARTIFACT" and body["operator"] == "alice"
    assert isinstance(body["occur_at"], int) and before - 1 <= body["occur_at"] <= time.time()
    assert body["event_data"]["resources"] == [{"digest": DIGEST, "tag": "1",
                                                "resource_url": "registry.local:5000/test/app:1"}]
    repo = body["event_data"]["repository"]
    assert repo["name"] == "app" and repo["namespace"] == "test" and repo["repo_full_name"] == "test/app"
    assert repo["repo_type"] == "private"
    assert got.headers["content-type"] == "application/json"
    assert got.headers["authorization"] == "Bearer s3cret"
    expected = hmac.new(b"hmac-key", got.body, hashlib.sha256).hexdigest()
    assert got.headers["x-dockyard-signature"] == f"sha256={expected}"

    (ce,) = cloud.wait(1)
    event = json.loads(ce.body)
    assert event["specversion"] == "1.0" and event["type"] == "harbor.artifact.pushed"
    assert event["source"] == f"/projects/{project_id}/webhook/policies/1"
    assert event["datacontenttype"] == "application/json" and event["id"] and event["time"].endswith("Z")
    assert event["data"]["resources"][0]["tag"] == "1" and event["operator"] == "alice"
    assert ce.headers["content-type"] == "application/cloudevents+json"
    assert "x-dockyard-signature" not in ce.headers and "authorization" not in ce.headers
    assert [r.status for r in wait_status(db, "Success")] == ["Success", "Success"]


def test_only_subscribed_event_types_and_enabled_policies_are_queued(model, receivers):
    db, project_id = model
    r = receivers()
    policy(db, project_id, {"address": r.url}, events=("DELETE_ARTIFACT",), name="deletes")
    off = policy(db, project_id, {"address": r.url}, events=("PUSH_ARTIFACT",), name="off")
    webhooks.update_policy(db, project_id, off, {"enabled": False})
    push(db)
    emit(db, Event("PUSH_ARTIFACT", "elsewhere", "elsewhere/app", resources=({"digest": DIGEST},)))
    assert deliveries(db) == []
    emit(db, Event("DELETE_ARTIFACT", "test", "test/app", operator="bob", resources=({"digest": DIGEST},)))
    (got,) = r.wait(1)
    body = json.loads(got.body)
    assert body["type"] == "DELETE_ARTIFACT"
    assert body["event_data"]["resources"][0]["resource_url"] == f"test/app@{DIGEST}"


def test_failing_receiver_retried_with_backoff_then_logged(model, receivers):
    db, project_id = model
    r = receivers(answers=[500, 500])
    policy(db, project_id, {"address": r.url})
    push(db)
    (row,) = wait_status(db, "Success")
    got = r.wait(3)
    assert len(got) == 3 and row.attempts == 3
    # Exponential backoff: about 1 s, then about 2 s.
    assert got[1].at - got[0].at >= 0.9 and got[2].at - got[1].at >= 1.9
    assert all(g.body == got[0].body for g in got)  # the same body each time, so the same signature


def test_receiver_that_always_fails_ends_in_error(model, receivers, monkeypatch):
    db, project_id = model
    monkeypatch.setattr(webhooks, "MAX_ATTEMPTS", 2)
    r = receivers(answers=[503, 503, 503])
    policy(db, project_id, {"address": r.url})
    push(db)
    (row,) = wait_status(db, "Error")
    assert row.attempts == 2 and row.last_error.startswith("HTTP 503")
    time.sleep(1.5)
    assert len(r.got) == 2  # given up: no third attempt


def test_hanging_receiver_stalls_neither_events_nor_other_targets(model, receivers, monkeypatch):
    db, project_id = model
    monkeypatch.setattr(webhooks, "TIMEOUT", (3.0, 3.0))
    monkeypatch.setattr(webhooks, "MAX_ATTEMPTS", 1)
    hanging, good = receivers(hang=True), receivers()
    policy(db, project_id, {"address": hanging.url}, name="a")
    policy(db, project_id, {"address": good.url}, name="b")
    started = time.monotonic()
    for tag in ("1", "2", "3"):
        push(db, tag)
    assert time.monotonic() - started < 6  # emit queues: waiting on the target would take 9 s or more
    good.wait(3, timeout=10)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(d.status in ("Pending", "Running") for d in deliveries(db)):
        time.sleep(0.1)
    by_address = {}
    for d in deliveries(db):
        by_address.setdefault(d.address, []).append(d)
    assert all(d.status == "Success" for d in by_address[good.url])
    assert all(d.status == "Error" and "Timeout" in d.last_error for d in by_address[hanging.url])


def test_endless_answer_is_not_read(model, receivers):
    db, project_id = model
    r = receivers(answers=[500], endless=True)
    policy(db, project_id, {"address": r.url})
    push(db)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and deliveries(db)[0].attempts == 0:
        time.sleep(0.05)
    row = deliveries(db)[0]
    assert row.attempts == 1 and row.last_error.startswith("HTTP 500") and len(row.last_error) < 300


def test_each_delivery_is_claimed_by_one_sender(tmp_path, receivers):
    db, project_id = model_db(tmp_path)
    r = receivers()
    policy(db, project_id, {"address": r.url})
    w = webhooks
    with db.session() as s:  # queued without waking this process's sender: the competing senders below send it
        for _ in range(5):
            w.queue(s, 1, "PUSH_ARTIFACT", r.url, '{"type":"PUSH_ARTIFACT"}')
    # Four senders, each with its own engine as separate worker processes have, race for the same rows.
    others = [Database(db.url) for _ in range(4)]
    threads = [threading.Thread(target=w.deliver_due, args=(o,)) for o in others]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(0.3)
    assert len(r.got) == 5
    assert [d.attempts for d in deliveries(db)] == [1] * 5


@pytest.mark.parametrize("target, message", [
    ({"address": "ftp://example.org/x"}, "targets[0].address: an http(s) URL"),
    ({"address": "http://"}, "targets[0].address: an http(s) URL"),
    ({"address": "file:///etc/passwd"}, "targets[0].address: an http(s) URL"),
    ({"address": "http://a.example/\r\nX-Injected: 1"}, "targets[0].address"),
    ({"address": "http://a.example:99999/"}, "targets[0].address: invalid URL"),
    ({"address": "http://a.example/", "auth_header": "x\r\nHost: evil"}, "targets[0].auth_header"),
    ({"address": "http://a.example/", "payload_format": "XML"}, "targets[0].payload_format"),
    ({"address": "http://a.example/", "type": "slack"}, "targets[0].type"),
])
def test_bad_targets_are_refused_at_creation(model, target, message):
    db, project_id = model
    with pytest.raises(webhooks.WebhookError) as e:
        policy(db, project_id, target)
    assert str(e.value).startswith(message)


def test_bad_event_types_and_duplicate_names_are_refused(model):
    db, project_id = model
    with pytest.raises(webhooks.WebhookError, match=r"event_types\[1\]: unknown event type 'PUSH'"):
        policy(db, project_id, {"address": "http://a.example/"}, events=("PULL_ARTIFACT", "PUSH"))
    policy(db, project_id, {"address": "http://a.example/"}, events=("SCANNING_COMPLETED",))
    with pytest.raises(webhooks.WebhookError, match="name: a policy named 'hook' exists"):
        policy(db, project_id, {"address": "http://a.example/"})


def test_test_sends_a_sample_now(model, receivers):
    db, project_id = model
    good, bad = receivers(), receivers(answers=[404])
    from registry.model.tables import Project
    with db.session() as s:
        project = s.get(Project, project_id)
    assert webhooks.test_policy({"targets": [{"address": good.url, "secret": "k"}]}, project) == []
    (got,) = good.wait(1)
    assert json.loads(got.body)["type"] == "PUSH_ARTIFACT"
    assert got.headers["x-dockyard-signature"] == "sha256=" + webhooks.signature("k", got.body)
    errors = webhooks.test_policy({"targets": [{"address": bad.url}]}, project)
    assert errors == [f"{bad.url}: HTTP 404: ok"]


# -- through the registry: a push over the v2 API, policies over the REST API ------------------------------------
def test_pushes_and_pulls_through_the_registry_reach_signed_receivers(any_database_server, receivers):
    import requests
    from eventkit import ADMIN, server_project, wait_for
    from regkit import layer_tar, make_image, push_image

    server = any_database_server()
    project_id = server_project(server)
    api = f"{server.url}/api/v2.0/projects/test/webhook"
    harbor, cloud, hanging = receivers(), receivers(), receivers(hang=True)
    r = requests.post(f"{api}/policies", auth=ADMIN, json={
        "name": "ci", "event_types": ["PUSH_ARTIFACT", "PULL_ARTIFACT", "DELETE_ARTIFACT"],
        "targets": [{"type": "http", "address": harbor.url, "auth_header": "Basic Y2k6Y2k=", "secret": "k3y"},
                    {"type": "http", "address": cloud.url, "payload_format": "CloudEvents"}]})
    assert r.status_code == 201, r.text
    policy_url = f"{server.url}{r.headers['Location']}"
    assert requests.post(f"{api}/policies", auth=ADMIN, json={
        "name": "slow", "event_types": ["PUSH_ARTIFACT"],
        "targets": [{"address": hanging.url}]}).status_code == 201

    started = time.monotonic()
    image = make_image([layer_tar({"a": b"webhook"})])
    assert push_image(server.url, "test/app", image, "1", auth=ADMIN).status_code == 201
    assert time.monotonic() - started < 5  # the hanging receiver holds no push
    (got,) = harbor.wait(1)
    body = json.loads(got.body)
    assert body["type"] == "PUSH_ARTIFACT" and body["operator"] == "admin"
    assert body["event_data"]["resources"] == [{"digest": image.digest, "tag": "1",
                                                "resource_url": f"{server.host}/test/app:1"}]
    assert body["event_data"]["repository"]["repo_full_name"] == "test/app"
    assert got.headers["authorization"] == "Basic Y2k6Y2k="
    assert got.headers["x-dockyard-signature"] == "sha256=" + hmac.new(b"k3y", got.body, hashlib.sha256).hexdigest()
    event = json.loads(cloud.wait(1)[0].body)
    assert event["type"] == "harbor.artifact.pushed"
    assert event["source"] == f"/projects/{project_id}/webhook/policies/1"

    # The delivery log, in Harbor 2.x's executions and its older jobs.
    executions = wait_for(lambda: [e for e in requests.get(f"{policy_url}/executions", auth=ADMIN).json()
                                   if e["status"] == "Success"], what="a successful execution")
    assert len(executions) == 2 and executions[0]["extra_attrs"]["event_type"] == "PUSH_ARTIFACT"
    jobs = requests.get(f"{api}/jobs", params={"policy_id": 1}, auth=ADMIN)
    assert jobs.headers["X-Total-Count"] == "2" and json.loads(jobs.json()[-1]["job_detail"]) == body
    log = requests.get(f"{policy_url}/executions/{executions[0]['id']}/tasks/{executions[0]['id']}/log",
                       auth=ADMIN)
    assert "status: Success" in log.text and "attempts: 1" in log.text

    # A pull, queued by its request and made an event by the pulls' flusher, reaches the policies that want it.
    assert requests.get(f"{server.url}/v2/test/app/manifests/1", auth=ADMIN).status_code == 200
    pulled = json.loads(harbor.wait(2)[1].body)
    assert pulled["type"] == "PULL_ARTIFACT" and pulled["operator"] == "admin"
    assert pulled["event_data"]["resources"] == [{"digest": image.digest, "tag": "1",
                                                  "resource_url": f"{server.host}/test/app:1"}]
    assert json.loads(cloud.wait(2)[1].body)["type"] == "harbor.artifact.pulled"

    # Secrets are never shown; a read-modify-write keeps them.
    policy = requests.get(policy_url, auth=ADMIN).json()
    assert "secret" not in policy["targets"][0] and policy["targets"][0]["has_secret"] is True
    policy["event_types"] = ["PUSH_ARTIFACT"]
    assert requests.put(policy_url, auth=ADMIN, json=policy).status_code == 200
    assert push_image(server.url, "test/app", image, "2", auth=ADMIN).status_code == 201
    second = harbor.wait(3)[2]
    assert second.headers["x-dockyard-signature"] == \
        "sha256=" + hmac.new(b"k3y", second.body, hashlib.sha256).hexdigest()

    events = requests.get(f"{api}/events", auth=ADMIN).json()
    assert "TAG_RETENTION" in events["event_type"] and events["payload_formats"][0]["formats"] == [
        "Default", "CloudEvents"]
    test = requests.post(f"{api}/policies/test", auth=ADMIN, json={"targets": [{"address": harbor.url}]})
    assert test.status_code == 200 and len(harbor.wait(4)) == 4
    bad = requests.post(f"{api}/policies", auth=ADMIN, json={"name": "x", "event_types": ["PUSH_ARTIFACT"],
                                                              "targets": [{"address": "gopher://x"}]})
    assert bad.status_code == 400 and bad.json()["errors"][0]["message"].startswith("targets[0].address")
    assert requests.get(f"{api}/policies", auth=("nobody", "x")).status_code == 401
