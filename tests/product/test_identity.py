"""Identity in the registry product: the initial admin, htpasswd users and `auth.access` mapped onto the model,
the Harbor flow with `dockyard login`/`push`/`pull` (developer, guest, anonymous, robots), and login throttling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import requests
from productkit import ADMIN, ADMIN_PASSWORD
from regkit import Server, free_port
from sqlalchemy import update
from support import REPO, tool

NAME = {"X-Is-Resource-Name": "true"}
PUSH = [{"resource": "repository", "action": "pull"}, {"resource": "repository", "action": "push"}]


@pytest.fixture(autouse=True)
def client_env(tmp_path, monkeypatch):
    """The client's daemon.json, credentials and certs.d in the test's tmp dir (never the host's)."""
    (tmp_path / "certs.d").mkdir()
    monkeypatch.setenv("DOCKYARD_CONFIG", str(tmp_path / "daemon.json"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("DOCKYARD_CERTS_D", str(tmp_path / "certs.d"))
    monkeypatch.delenv("DOCKYARD_DEFAULT_REGISTRY", raising=False)


@pytest.fixture
def other_store(tmp_path, dockyard):
    """The CLI on a second, empty store with its own credentials: another person's machine."""
    def run(*args: str, **kw):
        env = {"DOCKYARD_ROOT": str(tmp_path / "store2"), "DOCKER_CONFIG": str(tmp_path / "docker2"),
               **kw.pop("env", {})}
        return dockyard(*args, env=env, **kw)
    return run


def _ok(resp: requests.Response, status: int = 200) -> requests.Response:
    assert resp.status_code == status, (resp.status_code, resp.text)
    return resp


def _printed(server) -> list[str]:
    return [line for line in server.log.read_text().splitlines() if "initial admin password" in line]


def test_admin_password_from_env_config_or_generated_once(product_server, tmp_path):
    from_env = product_server()
    _ok(requests.get(f"{from_env.url}/v2/", auth=ADMIN))
    assert _printed(from_env) == [] and ADMIN_PASSWORD not in from_env.log.read_text()

    config = tmp_path / "registry.toml"
    config.write_text('[admin]\npassword = "Config12345"\n')
    from_config = product_server("--config", str(config), env={"DOCKYARD_REGISTRY_ADMIN_PASSWORD": ""})
    _ok(requests.get(f"{from_config.url}/v2/", auth=("admin", "Config12345")))
    assert _printed(from_config) == []

    generated = product_server(env={"DOCKYARD_REGISTRY_ADMIN_PASSWORD": ""})
    (line,) = _printed(generated)
    password = line.rsplit(" ", 1)[1]
    assert len(password) >= 16
    _ok(requests.get(f"{generated.url}/v2/", auth=("admin", password)))
    me = _ok(requests.get(f"{generated.url}/api/v2.0/users/current", auth=("admin", password))).json()
    assert me["sysadmin_flag"] is True
    generated.stop()
    generated.start()  # a second start keeps the admin: nothing printed again, the same password works
    assert len(_printed(generated)) == 1
    _ok(requests.get(f"{generated.url}/v2/", auth=("admin", password)))
    # The password is stored only as a hash.
    db = (generated.root / "registry.db").read_bytes()
    assert password.encode() not in db and b"sha256$$2b$" in db


def test_htpasswd_users_and_access_rules_map_onto_the_model(product_server, tmp_path):
    htpasswd = tmp_path / "htpasswd"
    lines = [subprocess.run([tool("htpasswd"), "-Bbn", user, pw], check=True, capture_output=True, text=True)
             .stdout.strip() for user, pw in (("alice", "s3cret"), ("bob", "b0bpass"))]
    htpasswd.write_text("\n".join(lines) + "\n")
    config = tmp_path / "registry.toml"
    config.write_text('[auth.access.alice]\n"team/*" = ["pull", "push"]\n"ops/tools" = ["pull", "push", "delete"]\n'
                      '"*/x" = ["pull"]\n[auth.access.bob]\n"team/*" = ["pull"]\n')
    server = product_server("--htpasswd", str(htpasswd), "--config", str(config))
    api = f"{server.url}/api/v2.0"
    _ok(requests.get(f"{server.url}/v2/", auth=("alice", "s3cret")))  # the same password as in the file
    assert requests.get(f"{server.url}/v2/", auth=("alice", "wrong")).status_code == 401
    me = _ok(requests.get(f"{api}/users/current", auth=("bob", "b0bpass"))).json()
    assert me["username"] == "bob" and me["sysadmin_flag"] is False
    users = _ok(requests.get(f"{api}/users", auth=ADMIN)).json()
    assert {u["username"] for u in users} == {"admin", "alice", "bob"}
    team = _ok(requests.get(f"{api}/projects/team/members", auth=ADMIN, headers=NAME)).json()
    assert {(m["entity_name"], m["role_name"]) for m in team} == {("alice", "developer"), ("bob", "guest")}
    ops = _ok(requests.get(f"{api}/projects/ops/members", auth=ADMIN, headers=NAME)).json()
    assert {(m["entity_name"], m["role_name"]) for m in ops} == {("alice", "maintainer")}
    assert "not mapped" in server.log.read_text()  # "*/x" names no single project
    # The mapped rights hold on the v2 API: alice may start an upload in team, bob (guest) may not.
    _ok(requests.post(f"{server.url}/v2/team/app/blobs/uploads/", auth=("alice", "s3cret")), 202)
    assert requests.post(f"{server.url}/v2/team/app/blobs/uploads/", auth=("bob", "b0bpass")).status_code == 403


def _setup_project(api: str) -> None:
    """Harbor's flow: the admin creates project `test`, a developer `dev` and a guest `viewer`."""
    _ok(requests.post(f"{api}/projects", auth=ADMIN, json={"project_name": "test"}), 201)
    for user, role in (("dev", 2), ("viewer", 3)):
        _ok(requests.post(f"{api}/users", auth=ADMIN, json={"username": user, "password": "Pass12345word"}), 201)
        _ok(requests.post(f"{api}/projects/test/members", auth=ADMIN, headers=NAME,
                          json={"role_id": role, "member_user": {"username": user}}), 201)


def _reader_robot(api: str) -> dict:
    """`_setup_project`, then a project robot `reader` that may pull from `test` (its secret shown once)."""
    _setup_project(api)
    return _ok(requests.post(f"{api}/robots", auth=ADMIN, json={
        "name": "reader", "level": "project", "duration": -1,
        "permissions": [{"kind": "project", "namespace": "test", "access": PUSH[:1]}]}), 201).json()


def _login(dockyard, host: str, user: str, password: str, check: bool = True):
    return dockyard("login", host, "-u", user, "--password-stdin", input=password.encode(), check=check)


@pytest.mark.parametrize("mode", ["basic", "token"])
def test_harbor_flow(product_server, dockyard, busybox_image, other_store, mode):
    server = product_server(*(["--token"] if mode == "token" else []))
    host, api = server.host, f"{server.url}/api/v2.0"
    _setup_project(api)
    dockyard("tag", "busybox", f"{host}/test/app:1")
    assert "unauthorized" in dockyard("push", f"{host}/test/app:1", check=False).err
    assert _login(dockyard, host, "dev", "wrong", check=False).code == 1
    _login(dockyard, host, "dev", "Pass12345word")
    out = dockyard("push", f"{host}/test/app:1")
    assert "Pushed" in out.out and "Pass12345word" not in out.out + out.err
    assert "Pass12345word" not in server.log.read_text()
    # A push to a project that does not exist is refused, naming it.
    dockyard("tag", "busybox", f"{host}/nope/app:1")
    missing = dockyard("push", f"{host}/nope/app:1", check=False)
    assert missing.code == 1 and "project nope not found" in missing.err, missing.err

    # The guest pulls but can neither push nor delete.
    _login(other_store, host, "viewer", "Pass12345word")
    other_store("pull", f"{host}/test/app:1")
    other_store("tag", f"{host}/test/app:1", f"{host}/test/app:guest")
    refused = other_store("push", f"{host}/test/app:guest", check=False)
    assert refused.code == 1 and ("denied" in refused.err or "unauthorized" in refused.err), refused.err
    if mode == "basic":  # the catalog lists what the caller may pull
        catalog = f"{server.url}/v2/_catalog"
        assert _ok(requests.get(catalog, auth=("viewer", "Pass12345word"))).json()["repositories"] == ["test/app"]
        _ok(requests.post(f"{api}/users", auth=ADMIN, json={"username": "stranger", "password": "Pass12345word"}),
            201)
        assert _ok(requests.get(catalog, auth=("stranger", "Pass12345word"))).json()["repositories"] == []
        digest = requests.head(f"{server.url}/v2/test/app/manifests/1", auth=("viewer", "Pass12345word"),
                               headers={"Accept": "application/vnd.oci.image.manifest.v1+json, "
                                                  "application/vnd.docker.distribution.manifest.v2+json"})
        gone = requests.delete(f"{server.url}/v2/test/app/manifests/{digest.headers['Docker-Content-Digest']}",
                               auth=("viewer", "Pass12345word"))
        assert gone.status_code == 403

    # Anonymous: a private project refuses the pull, a public one allows it (and still no push).
    other_store("logout", host)
    assert other_store("pull", f"{host}/test/app:1", check=False).code == 1
    _ok(requests.put(f"{api}/projects/test", auth=ADMIN, headers=NAME, json={"metadata": {"public": "true"}}))
    other_store("rmi", f"{host}/test/app:1")
    other_store("pull", f"{host}/test/app:1")
    assert other_store("push", f"{host}/test/app:guest", check=False).code == 1


def test_robot_accounts_push_and_are_refused_when_expired_or_disabled(product_server, dockyard, busybox_image):
    server = product_server()
    host, api = server.host, f"{server.url}/api/v2.0"
    _setup_project(api)
    robot = _ok(requests.post(f"{api}/robots", auth=ADMIN, json={
        "name": "ci", "level": "project", "duration": 30,
        "permissions": [{"kind": "project", "namespace": "test", "access": PUSH}]}), 201).json()
    assert robot["name"] == "robot$test+ci"
    _login(dockyard, host, robot["name"], robot["secret"])
    dockyard("tag", "busybox", f"{host}/test/robot:1")
    assert "Pushed" in dockyard("push", f"{host}/test/robot:1").out
    assert robot["secret"] not in server.log.read_text()
    # Only its project: another project refuses it.
    _ok(requests.post(f"{api}/projects", auth=ADMIN, json={"project_name": "other"}), 201)
    dockyard("tag", "busybox", f"{host}/other/robot:1")
    assert dockyard("push", f"{host}/other/robot:1", check=False).code == 1
    # Disabled: refused at once; enabled again: accepted.
    _ok(requests.put(f"{api}/robots/{robot['id']}", auth=ADMIN, json={"disable": True}))
    assert requests.get(f"{server.url}/v2/", auth=(robot["name"], robot["secret"])).status_code == 401
    assert dockyard("push", f"{host}/test/robot:1", check=False).code == 1
    _ok(requests.put(f"{api}/robots/{robot['id']}", auth=ADMIN, json={"disable": False}))
    _ok(requests.get(f"{server.url}/v2/", auth=(robot["name"], robot["secret"])))
    # Expired (its expiry moved into the past, as time would; the auth generation changed as any write through
    # the model changes it, so no worker keeps the robot's earlier login): refused.
    from registry.model.access import changed
    from registry.model.db import Database
    from registry.model.tables import Robot
    db = Database(f"sqlite:///{server.root}/registry.db")
    with db.session() as s:
        s.execute(update(Robot).where(Robot.id == robot["id"]).values(expires_at=time.time() - 1))
        changed(s)
    db.engine.dispose()
    assert requests.get(f"{server.url}/v2/", auth=(robot["name"], robot["secret"])).status_code == 401
    assert _login(dockyard, host, robot["name"], robot["secret"], check=False).code == 1


def test_robot_through_the_token_endpoint(product_server):
    server = product_server("--token")
    api = f"{server.url}/api/v2.0"
    robot = _reader_robot(api)
    body = _ok(requests.get(f"{server.url}/token", auth=(robot["name"], robot["secret"]),
                            params={"service": "dockyard-registry",
                                    "scope": ["repository:test/app:pull,push", "repository:other/x:pull"]})).json()
    import jwt
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["sub"] == robot["name"] == "robot$test+reader"
    assert claims["access"] == [{"type": "repository", "name": "test/app", "actions": ["pull"]}]
    tags = requests.get(f"{server.url}/v2/test/app/tags/list", headers={"Authorization": f"Bearer {body['token']}"})
    assert tags.status_code == 404  # authorized; the repository is simply empty
    anon = _ok(requests.get(f"{server.url}/token", params={"scope": "repository:test/app:pull"})).json()
    assert jwt.decode(anon["token"], options={"verify_signature": False})["access"] == []


def test_a_token_outlives_no_revocation(product_server):
    """A token's grant is decided again by the model's current rights at each request (the verdict kept only for the
    auth generation): a robot disabled, or a user whose membership was removed, is refused with the token it holds,
    at once on every worker, and a robot enabled again is served again."""
    server = product_server("--token")
    api = f"{server.url}/api/v2.0"
    robot = _reader_robot(api)

    def bearer(credentials: tuple[str, str]) -> dict:
        body = _ok(requests.get(f"{server.url}/token", auth=credentials,
                                params={"service": "dockyard-registry", "scope": "repository:test/app:pull"})).json()
        return {"Authorization": f"Bearer {body['token']}"}

    def status(headers: dict) -> set:  # several requests, so both workers answer
        answers = [requests.get(f"{server.url}/v2/test/app/tags/list", headers=headers) for _ in range(6)]
        return {(r.status_code, r.headers.get("WWW-Authenticate", "").rpartition(",")[2]) for r in answers}

    robot_token, viewer_token = bearer((robot["name"], robot["secret"])), bearer(("viewer", "Pass12345word"))
    assert status(robot_token) == status(viewer_token) == {(404, "")}  # authorized; the repository is empty
    _ok(requests.put(f"{api}/robots/{robot['id']}", auth=ADMIN, json={"disable": True}))
    assert status(robot_token) == {(401, 'error="invalid_token"')}
    _ok(requests.put(f"{api}/robots/{robot['id']}", auth=ADMIN, json={"disable": False}))
    assert status(robot_token) == {(404, "")}
    members = _ok(requests.get(f"{api}/projects/test/members", auth=ADMIN, headers=NAME)).json()
    viewer = next(m for m in members if m["entity_name"] == "viewer")
    _ok(requests.delete(f"{api}/projects/test/members/{viewer['id']}", auth=ADMIN, headers=NAME))
    assert status(viewer_token) == {(401, 'error="insufficient_scope"')}


def test_a_kept_token_verdict_ends_with_the_token_and_the_rights(tmp_path):
    """A token's verdict is kept per token and need (later requests neither decode it nor look up its grant): it
    still ends when the token expires, at once when the robot is disabled, and a kept verdict answers only the need
    it was made for."""
    import base64

    from registry.app import create_app
    from registry.config import Config
    from registry.model.users import bootstrap

    app = create_app(Config(root=str(tmp_path / "root"), projects=True, token=True, token_ttl=2, access_log=""))
    bootstrap(app.extensions["registry"].model, ADMIN_PASSWORD)
    client = app.test_client()
    admin = {"Authorization": "Basic " + base64.b64encode(f"{ADMIN[0]}:{ADMIN[1]}".encode()).decode()}
    assert client.post("/api/v2.0/projects", headers=admin, json={"project_name": "test"}).status_code == 201
    robot = client.post("/api/v2.0/robots", headers=admin, json={
        "name": "reader", "level": "project", "duration": -1,
        "permissions": [{"kind": "project", "namespace": "test", "access": PUSH[:1]}]}).json
    basic = base64.b64encode(f"{robot['name']}:{robot['secret']}".encode()).decode()

    def token() -> dict:
        body = client.get("/token?service=dockyard-registry&scope=repository:test/app:pull",
                          headers={"Authorization": f"Basic {basic}"}).json
        return {"Authorization": f"Bearer {body['token']}"}

    def status(headers: dict, path: str = "/v2/test/app/tags/list") -> int:
        return client.get(path, headers=headers).status_code

    first = token()
    assert [status(first) for _ in range(3)] == [404] * 3  # authorized (an empty repository); then kept
    assert client.post("/v2/test/app/blobs/uploads/", headers=first).status_code == 401  # pull only
    time.sleep(2.1)
    assert status(first) == 401  # expired, though its verdict was kept
    second = token()
    assert status(second) == 404
    # A kept verdict's signature on other claims is not answered by that verdict: it is verified, and refused; the
    # kept one still answers.
    head, payload, signature = second["Authorization"][7:].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["access"][0]["actions"] = ["pull", "push", "delete"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    assert status({"Authorization": f"Bearer {head}.{forged}.{signature}"}) == 401
    assert status(second) == 404
    assert client.put(f"/api/v2.0/robots/{robot['id']}", headers=admin, json={"disable": True}).status_code == 200
    assert status(second) == 401
    app.extensions["registry"].model.engine.dispose()


def test_login_throttling(product_server):
    server = product_server()
    api = f"{server.url}/api/v2.0"
    _ok(requests.post(f"{api}/users", auth=ADMIN, json={"username": "dev", "password": "Pass12345word"}), 201)
    for _ in range(10):
        assert requests.get(f"{server.url}/v2/", auth=("dev", "wrong")).status_code == 401
    locked = requests.get(f"{server.url}/v2/", auth=("dev", "Pass12345word"))
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) <= 60
    assert json.loads(locked.text)["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert requests.get(f"{api}/users/current", auth=("dev", "Pass12345word")).status_code == 429
    # Another name from the same address is not locked out.
    _ok(requests.get(f"{server.url}/v2/", auth=ADMIN))


def test_generation_is_read_once_per_change_on_sqlite(tmp_path, monkeypatch):
    """Readers compare their mapping of the sentinel and query only after a committed change rewrote it: a write that
    bypasses the model's writers (no sentinel) goes unseen, one through them is seen at once by another process's
    Database. A sentinel replaced or removed behind the writers' back is found at the next recheck."""
    from sqlalchemy import text

    from registry.model import access
    from registry.model.access import changed, generation
    from registry.model.db import Database

    url = f"sqlite:///{tmp_path}/registry.db"
    reader, writer = Database(url), Database(url)
    reader.migrate()
    first = generation(reader)
    with writer.engine.begin() as conn:  # behind the model's back: the sentinel stays
        conn.execute(text("UPDATE settings SET value = 'sneaky' WHERE key = 'auth.generation'"))
    assert generation(reader) == first
    with writer.session() as s:
        changed(s)
    after = generation(reader)
    assert after not in (first, "sneaky")
    # In a process forked after its first read (a worker of gunicorn's master): the shared mapping shows a later
    # change at once.
    go_r, go_w = os.pipe()
    out_r, out_w = os.pipe()
    if (pid := os.fork()) == 0:
        os.read(go_r, 1)
        os.write(out_w, generation(reader).encode())
        os._exit(0)
    with writer.session() as s:
        changed(s)
    os.write(go_w, b"x")
    seen_by_child = os.read(out_r, 100).decode()
    os.waitpid(pid, 0)
    for fd in (go_r, go_w, out_r, out_w):
        os.close(fd)
    assert seen_by_child not in (after, first) and seen_by_child == generation(reader)
    monkeypatch.setattr(access, "SENTINEL_RECHECK", 0.0)  # the next read rechecks the file
    os.unlink(reader.sentinel)  # no sentinel: every read queries
    with writer.engine.begin() as conn:
        conn.execute(text("UPDATE settings SET value = 'direct' WHERE key = 'auth.generation'"))
    assert generation(reader) == "direct"
    with writer.session() as s:  # the writer makes a new sentinel: mapped, and read under
        changed(s)
    renewed = generation(reader)
    assert renewed != "direct" and generation(reader) == renewed
    writer.engine.dispose()
    reader.engine.dispose()


@pytest.mark.parametrize("url, message", [
    ("mysql://x/y", "Error: database.url mysql://x/y: only sqlite and postgresql are supported"),
    ("not a url", "Error: database.url: not a URL such as postgresql+psycopg://user@host/db"),
    ("postgresql+nodriver://h/x", "Error: database.url postgresql+nodriver://h/x: no driver for it"),
    # Nothing listens on port 1: the server's refusal, the password hidden.
    ("postgresql+psycopg://u:hunter2@127.0.0.1:1/x", "Error: database postgresql+psycopg://u:***@127.0.0.1:1/x: "),
])
def test_bad_database_urls_are_one_line(tmp_path, url, message):
    p = subprocess.run([sys.executable, "-m", "dockyard", "registry", "serve", "--projects", "--root", str(tmp_path / "r"),
                        "--database-url", url], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert p.returncode != 0 and p.stderr.startswith(message), p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "hunter2" not in p.stderr


@pytest.mark.parametrize("path", ["/v2/_catalog", "/api/v2.0/users"])
def test_first_request_of_a_worker_is_authorized(tmp_path, path):
    """A worker's first request starts its background loops, whose hook then leaves the app's list of hooks: it must
    not take the authorization gate with it. An anonymous first request for what needs credentials is refused."""
    root = tmp_path / "registry"
    root.mkdir()
    server = Server(root, free_port(), ["--projects", "--workers", "1"],
                    env={"DOCKYARD_REGISTRY_ADMIN_PASSWORD": ADMIN_PASSWORD}, entry=("dockyard", "registry", "serve"))
    try:
        server.start(probe=False)  # no /healthz first: ours is the worker's first request
        for _ in range(2):
            assert requests.get(server.url + path, timeout=30).status_code == 401
    finally:
        server.stop()
    server.assert_clean_log()
