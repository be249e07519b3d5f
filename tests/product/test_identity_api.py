"""The Harbor-shaped identity API (projects, members, users, robots, system) on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import pytest
import requests
from postgres import postgres  # noqa: F401 (the module-scoped cluster fixture)
from productkit import ADMIN
from sqlalchemy import create_engine, insert

DEV = ("dev", "Dev12345pass")
NAME = {"X-Is-Resource-Name": "true"}


@pytest.fixture(params=["sqlite", "postgresql"])
def api(request, product_server):
    """(base URL, database URL) of a --projects server on SQLite or on a fresh PostgreSQL database."""
    if request.param == "postgresql":
        db_url = request.getfixturevalue("postgres")()
        server = product_server("--database-url", db_url)
    else:
        server = product_server()
        db_url = f"sqlite:///{server.root}/registry.db"
    return f"{server.url}/api/v2.0", db_url


def _ok(resp: requests.Response, status: int = 200) -> requests.Response:
    assert resp.status_code == status, (resp.status_code, resp.text)
    return resp


def _error(resp: requests.Response, status: int) -> str:
    assert resp.status_code == status, (resp.status_code, resp.text)
    errors = resp.json()["errors"]
    assert errors[0]["code"] and errors[0]["message"]
    return errors[0]["message"]


def test_users_projects_members(api):
    base, _ = api
    info = _ok(requests.get(f"{base}/systeminfo")).json()
    assert info["auth_mode"] == "db_auth" and info["harbor_version"].startswith("dockyard-")
    assert _ok(requests.get(f"{base}/health")).json()["status"] == "healthy"
    anon = requests.get(f"{base}/users")
    _error(anon, 401)
    assert anon.headers["WWW-Authenticate"].startswith("Basic ")
    _error(requests.get(f"{base}/users", auth=("admin", "wrong")), 401)

    # Users: create (Location), duplicate, Harbor's password rule, a bad name.
    created = _ok(requests.post(f"{base}/users", auth=ADMIN, json={"username": "dev", "password": DEV[1],
                                                                   "email": "dev@example.com"}), 201)
    dev_id = int(created.headers["Location"].rsplit("/", 1)[1])
    _error(requests.post(f"{base}/users", auth=ADMIN, json={"username": "dev", "password": DEV[1]}), 409)
    assert "uppercase" in _error(requests.post(f"{base}/users", auth=ADMIN,
                                               json={"username": "weak", "password": "password"}), 400)
    _error(requests.post(f"{base}/users", auth=ADMIN, json={"username": "robot$x", "password": DEV[1]}), 400)
    me = _ok(requests.get(f"{base}/users/current", auth=DEV)).json()
    assert me["username"] == "dev" and me["user_id"] == dev_id and me["sysadmin_flag"] is False
    assert "password" not in str(me) and me["creation_time"].endswith("Z")
    _error(requests.post(f"{base}/users", auth=DEV, json={"username": "x", "password": DEV[1]}), 403)
    _error(requests.get(f"{base}/users/1", auth=DEV), 403)
    assert [u["username"] for u in _ok(requests.get(f"{base}/users/search?username=de", auth=DEV)).json()] == ["dev"]

    # Projects: create, refuse bad and duplicate names, HEAD, by name and by id.
    loc = _ok(requests.post(f"{base}/projects", auth=ADMIN, json={"project_name": "test",
                                                                  "metadata": {"public": "false"}}), 201)
    pid = int(loc.headers["Location"].rsplit("/", 1)[1])
    _error(requests.post(f"{base}/projects", auth=ADMIN, json={"project_name": "Bad_Name"}), 400)
    _error(requests.post(f"{base}/projects", auth=ADMIN, json={"project_name": "a--b"}), 400)
    _error(requests.post(f"{base}/projects", auth=ADMIN, json={"project_name": "test"}), 409)
    assert requests.head(f"{base}/projects?project_name=test", auth=ADMIN).status_code == 200
    assert requests.head(f"{base}/projects?project_name=nope", auth=ADMIN).status_code == 404
    by_name = _ok(requests.get(f"{base}/projects/test", auth=ADMIN, headers=NAME)).json()
    by_id = _ok(requests.get(f"{base}/projects/{pid}", auth=ADMIN)).json()
    assert by_name == by_id
    assert by_name["metadata"]["public"] == "false" and by_name["owner_name"] == "admin"
    assert by_name["current_user_role_id"] == 1  # the creator is its project admin, as in Harbor

    # dev cannot see the private project until made a member; then as developer: read, not manage.
    _error(requests.get(f"{base}/projects/test", auth=DEV, headers=NAME), 404)
    assert _ok(requests.get(f"{base}/projects", auth=DEV)).json() == []
    member = _ok(requests.post(f"{base}/projects/test/members", auth=ADMIN, headers=NAME,
                               json={"role_id": 2, "member_user": {"username": "dev"}}), 201)
    mid = int(member.headers["Location"].rsplit("/", 1)[1])
    _error(requests.post(f"{base}/projects/test/members", auth=ADMIN, headers=NAME,
                         json={"role_id": 2, "member_user": {"user_id": dev_id}}), 409)
    _error(requests.post(f"{base}/projects/test/members", auth=ADMIN, headers=NAME,
                         json={"role_id": 9, "member_user": {"username": "dev"}}), 400)
    seen = _ok(requests.get(f"{base}/projects", auth=DEV)).json()
    assert [p["name"] for p in seen] == ["test"] and seen[0]["current_user_role_id"] == 2
    members = _ok(requests.get(f"{base}/projects/test/members", auth=DEV, headers=NAME)).json()
    assert {(m["entity_name"], m["role_name"]) for m in members} == {("admin", "projectAdmin"), ("dev", "developer")}
    _error(requests.put(f"{base}/projects/test/members/{mid}", auth=DEV, headers=NAME, json={"role_id": 1}), 403)
    _error(requests.put(f"{base}/projects/test", auth=DEV, headers=NAME, json={"metadata": {"public": "true"}}),
           403)
    _ok(requests.put(f"{base}/projects/test/members/{mid}", auth=ADMIN, headers=NAME, json={"role_id": 3}))
    assert _ok(requests.get(f"{base}/projects/test/members/{mid}", auth=ADMIN, headers=NAME)).json()["role_name"] \
        == "guest"
    _ok(requests.put(f"{base}/projects/test", auth=ADMIN, headers=NAME,
                     json={"metadata": {"public": "true", "enable_content_trust": "true"}}))
    meta = _ok(requests.get(f"{base}/projects/test", headers=NAME)).json()["metadata"]  # public: anonymous sees it
    assert meta["public"] == "true" and meta["enable_content_trust"] == "true"
    _ok(requests.delete(f"{base}/projects/test/members/{mid}", auth=ADMIN, headers=NAME))
    _error(requests.get(f"{base}/projects/test/members", auth=DEV, headers=NAME), 403)  # public: pull, not read

    # Passwords: the old one is needed for one's own; a sysadmin resets others' without it.
    pw = f"{base}/users/{dev_id}/password"
    _error(requests.put(pw, auth=DEV, json={"old_password": "wrong", "new_password": "New12345pass"}), 403)
    _ok(requests.put(pw, auth=DEV, json={"old_password": DEV[1], "new_password": "New12345pass"}))
    _error(requests.get(f"{base}/users/current", auth=DEV), 401)
    _ok(requests.put(pw, auth=ADMIN, json={"new_password": DEV[1]}))
    _ok(requests.get(f"{base}/users/current", auth=DEV))

    # The sysadmin flag, then deletion.
    _ok(requests.put(f"{base}/users/{dev_id}/sysadmin", auth=ADMIN, json={"sysadmin_flag": True}))
    assert _ok(requests.get(f"{base}/users", auth=DEV)).headers["X-Total-Count"] == "2"
    _error(requests.put(f"{base}/users/{dev_id}/sysadmin", auth=DEV, json={"sysadmin_flag": False}), 403)
    _error(requests.delete(f"{base}/users/1", auth=DEV), 403)  # nobody deletes the initial admin
    _ok(requests.delete(f"{base}/users/{dev_id}", auth=ADMIN))
    _error(requests.get(f"{base}/users/current", auth=DEV), 401)


def test_paging_query_search_statistics_delete(api):
    base, db_url = api
    for i in range(12):
        _ok(requests.post(f"{base}/projects", auth=ADMIN, json={"project_name": f"p{i:02d}",
                                                                "public": i % 3 == 0}), 201)
    page = _ok(requests.get(f"{base}/projects?page=2&page_size=5", auth=ADMIN))
    assert page.headers["X-Total-Count"] == "12"
    assert [p["name"] for p in page.json()] == ["p05", "p06", "p07", "p08", "p09"]
    assert 'rel="prev"' in page.headers["Link"] and 'rel="next"' in page.headers["Link"]
    assert "page=3" in page.headers["Link"]
    last = _ok(requests.get(f"{base}/projects?page=3&page_size=5", auth=ADMIN))
    assert [p["name"] for p in last.json()] == ["p10", "p11"] and 'rel="next"' not in last.headers["Link"]
    fuzzy = _ok(requests.get(f"{base}/projects", params={"q": "name=~p1", "page_size": 100}, auth=ADMIN))
    assert [p["name"] for p in fuzzy.json()] == ["p10", "p11"]
    either = _ok(requests.get(f"{base}/projects", params={"q": "name={p01 p02}"}, auth=ADMIN)).json()
    assert [p["name"] for p in either] == ["p01", "p02"]
    public = _ok(requests.get(f"{base}/projects", params={"public": "true"}, auth=ADMIN)).json()
    assert [p["name"] for p in public] == ["p00", "p03", "p06", "p09"]
    assert [p["name"] for p in _ok(requests.get(f"{base}/projects?name=p0", auth=ADMIN)).json()][:2] == ["p00", "p01"]
    desc = _ok(requests.get(f"{base}/projects?sort=-name&page_size=1", auth=ADMIN)).json()
    assert desc[0]["name"] == "p11"
    _error(requests.get(f"{base}/projects?page=0", auth=ADMIN), 400)
    _error(requests.get(f"{base}/projects", params={"q": "nokey=1"}, auth=ADMIN), 400)
    # Anonymous callers see the public projects only.
    assert _ok(requests.get(f"{base}/projects")).headers["X-Total-Count"] == "4"

    # A repository in p01 (as the artifact index records pushes): search, statistics, and delete refused (412).
    engine = create_engine(db_url)
    with engine.begin() as conn:
        from registry.model.tables import Repository
        conn.execute(insert(Repository).values(project_id=_id(base, "p01"), name="p01/app", description="",
                                               pull_count=0, created_at=0, updated_at=0))
    engine.dispose()
    found = _ok(requests.get(f"{base}/search?q=app", auth=ADMIN)).json()
    assert [r["repository_name"] for r in found["repository"]] == ["p01/app"] and found["project"] == []
    assert [p["name"] for p in _ok(requests.get(f"{base}/search?q=p0")).json()["project"]] == ["p00", "p03", "p06",
                                                                                                  "p09"]
    assert _ok(requests.get(f"{base}/search?q=app")).json()["repository"] == []  # p01 is private
    stats = _ok(requests.get(f"{base}/statistics", auth=ADMIN)).json()
    assert stats["private_project_count"] == 8 and stats["public_project_count"] == 4
    assert stats["private_repo_count"] == 1 and stats["total_repo_count"] == 1
    assert stats["total_storage_consumption"] == 0
    assert "deleted" in _error(requests.delete(f"{base}/projects/p01", auth=ADMIN, headers=NAME), 412)
    _ok(requests.delete(f"{base}/projects/p02", auth=ADMIN, headers=NAME))
    _error(requests.get(f"{base}/projects/p02", auth=ADMIN, headers=NAME), 404)


def _id(base: str, name: str) -> int:
    return _ok(requests.get(f"{base}/projects/{name}", auth=ADMIN, headers=NAME)).json()["project_id"]


def test_robots_api(api):
    base, _ = api
    _ok(requests.post(f"{base}/projects", auth=ADMIN, json={"project_name": "test"}), 201)
    _ok(requests.post(f"{base}/users", auth=ADMIN, json={"username": "dev", "password": DEV[1]}), 201)
    _ok(requests.post(f"{base}/projects/test/members", auth=ADMIN, headers=NAME,
                      json={"role_id": 2, "member_user": {"username": "dev"}}), 201)
    push = [{"kind": "project", "namespace": "test", "access": [{"resource": "repository", "action": "pull"},
                                                                {"resource": "repository", "action": "push"}]}]
    body = {"name": "ci", "level": "project", "duration": 30, "permissions": push, "description": "CI"}
    _error(requests.post(f"{base}/robots", auth=DEV, json=body), 403)  # a developer manages no robots
    created = _ok(requests.post(f"{base}/robots", auth=ADMIN, json=body), 201)
    robot = created.json()
    assert robot["name"] == "robot$test+ci" and len(robot["secret"]) >= 16 and robot["expires_at"] > 0
    assert created.headers["Cache-Control"] == "no-store"
    _error(requests.post(f"{base}/robots", auth=ADMIN, json=body), 409)
    # The secret logs in (Basic) and is never shown again.
    auth = (robot["name"], robot["secret"])
    shown = _ok(requests.get(f"{base}/robots/{robot['id']}", auth=ADMIN)).json()
    assert "secret" not in shown and shown["level"] == "project" and shown["duration"] == 30
    assert shown["permissions"] == push
    assert [p["name"] for p in _ok(requests.get(f"{base}/projects", auth=auth)).json()] == ["test"]
    _error(requests.get(f"{base}/users/current", auth=auth), 404)
    # Listing: admin all (q by Level), a project's robots under the project.
    system = {"name": "sweeper", "level": "system", "duration": -1,
              "permissions": [{"kind": "project", "namespace": "*",
                               "access": [{"resource": "repository", "action": "pull"}]}]}
    sys_robot = _ok(requests.post(f"{base}/robots", auth=ADMIN, json=system), 201).json()
    assert sys_robot["name"] == "robot$sweeper" and sys_robot["expires_at"] == -1
    _error(requests.post(f"{base}/projects/test/robots", auth=DEV, headers=NAME, json=body), 403)
    listed = _ok(requests.get(f"{base}/robots", auth=ADMIN, params={"q": "Level=system"})).json()
    assert [r["name"] for r in listed] == ["robot$sweeper"]
    assert _ok(requests.get(f"{base}/robots", auth=ADMIN)).headers["X-Total-Count"] == "2"
    _error(requests.get(f"{base}/robots", auth=DEV), 403)
    in_project = _ok(requests.get(f"{base}/projects/test/robots", auth=ADMIN, headers=NAME)).json()
    assert [r["name"] for r in in_project] == ["robot$test+ci"]
    _error(requests.post(f"{base}/robots", auth=ADMIN, json={**body, "name": "Bad Name"}), 400)
    _error(requests.post(f"{base}/robots", auth=ADMIN, json={**body, "name": "x", "duration": 0}), 400)
    _error(requests.post(f"{base}/robots", auth=ADMIN, json={**body, "name": "y", "permissions": [
        {**push[0], "namespace": "other"}]}), 404)
    # Refresh: the old secret stops working; disable: the robot is refused.
    fresh = _ok(requests.patch(f"{base}/robots/{robot['id']}", auth=ADMIN, json={})).json()["secret"]
    _error(requests.get(f"{base}/projects", auth=auth), 401)
    auth = (robot["name"], fresh)
    _ok(requests.get(f"{base}/projects", auth=auth))
    _ok(requests.put(f"{base}/robots/{robot['id']}", auth=ADMIN, json={"disable": True}))
    _error(requests.get(f"{base}/projects", auth=auth), 401)
    _ok(requests.delete(f"{base}/robots/{robot['id']}", auth=ADMIN))
    _error(requests.get(f"{base}/robots/{robot['id']}", auth=ADMIN), 404)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_replicas_migrate_and_bootstrap_at_once(backend, request, tmp_path):
    """Several processes starting on one empty database: each migrates and creates the admin; one admin results."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    url = request.getfixturevalue("postgres")() if backend == "postgresql" else f"sqlite:///{tmp_path}/r.db"
    script = ("import sys\nfrom registry.model.db import Database\nfrom registry.model.users import bootstrap\n"
              "db = Database(sys.argv[1])\ndb.migrate()\nbootstrap(db, 'Start12345')\n")
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo), "DOCKYARD_REGISTRY_ADMIN_PASSWORD": ""}
    procs = [subprocess.Popen([sys.executable, "-c", script, url], env=env, stderr=subprocess.PIPE, text=True)
             for _ in range(6)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, errors
    engine = create_engine(url)
    with engine.connect() as conn:
        from sqlalchemy import text
        assert conn.execute(text("SELECT count(*) FROM users WHERE username = 'admin'")).scalar() == 1
        from alembic.script import ScriptDirectory

        from registry.model.db import _MIGRATIONS
        head = ScriptDirectory(_MIGRATIONS).get_current_head()
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
    engine.dispose()
