"""Harbor's REST API over the artifact index: repositories, artifacts, tags, quotas, immutable tag rules; paging,
q, sort, double-encoded names, hostile tag names, and who may do what."""

from __future__ import annotations

import html
from urllib.parse import quote

import requests
from artifactkit import ADMIN, api, image, make_member, make_project, pull, push
from postgres import any_database_server, postgres  # noqa: F401 (fixtures: each test on SQLite and PostgreSQL)

from registry.model.roles import DEVELOPER, GUEST

GUEST_USER = ("visitor", "Visitor123")


def test_repositories_paging_q_sort_and_double_encoded_names(any_database_server):
    server = any_database_server()
    make_project(server, "test")
    img = image("r")
    names = ["app", "team/api", "team/web", "tools/app-cli"]
    for name in names:
        assert push(server, f"test/{name}", img, "1").status_code == 201
    r = api(server, "GET", "/projects/test/repositories", params={"page_size": 2, "sort": "name"})
    assert r.status_code == 200 and r.headers["X-Total-Count"] == "4"
    assert [x["name"] for x in r.json()] == ["test/app", "test/team/api"]
    assert 'rel="next"' in r.headers["Link"] and "page=2" in r.headers["Link"]
    page2 = api(server, "GET", "/projects/test/repositories", params={"page": 2, "page_size": 2, "sort": "name"})
    assert [x["name"] for x in page2.json()] == ["test/team/web", "test/tools/app-cli"]
    assert 'rel="prev"' in page2.headers["Link"] and 'rel="next"' not in page2.headers["Link"]
    fuzzy = api(server, "GET", "/projects/test/repositories", params={"q": "name=~team/", "sort": "-name"})
    assert [x["name"] for x in fuzzy.json()] == ["test/team/web", "test/team/api"]
    assert api(server, "GET", "/projects/test/repositories", params={"q": "name=~%"}).json() == []  # literal
    exact = api(server, "GET", "/projects/test/repositories", params={"q": "name=test/app"}).json()
    assert [x["name"] for x in exact] == ["test/app"] and exact[0]["artifact_count"] == 1
    assert api(server, "GET", "/projects/test/repositories", params={"sort": "nope"}).status_code == 400
    assert api(server, "GET", "/projects/test/repositories", params={"q": "size=1"}).status_code == 400
    # Harbor's clients encode the slash twice: team%252Fapi.
    one = api(server, "GET", f"/projects/test/repositories/{quote(quote('team/api', safe=''), safe='')}")
    assert one.status_code == 200 and one.json()["name"] == "test/team/api"
    arts = api(server, "GET", "/projects/test/repositories/team%252Fapi/artifacts")
    assert [a["digest"] for a in arts.json()] == [img.digest]
    # The project by id as well as by name.
    project_id = one.json()["project_id"]
    assert api(server, "GET", f"/projects/{project_id}/repositories").headers["X-Total-Count"] == "4"
    assert api(server, "GET", "/projects/nothere/repositories").status_code == 404
    assert api(server, "GET", "/projects/test/repositories/missing").status_code == 404


def test_repository_description_and_delete(any_database_server):
    server = any_database_server()
    make_project(server, "test")
    img = image("d")
    push(server, "test/app", img, "1")
    assert api(server, "PUT", "/projects/test/repositories/app", json={"description": "the app"}).status_code == 200
    assert api(server, "GET", "/projects/test/repositories/app").json()["description"] == "the app"
    assert api(server, "PUT", "/projects/test/repositories/app", json={"description": 5}).status_code == 400
    assert api(server, "DELETE", "/projects/test/repositories/app").status_code == 200
    assert api(server, "GET", "/projects/test/repositories/app").status_code == 404
    assert pull(server, "test/app", "1").status_code == 404


def test_artifacts_list_filters_sort_and_tags(any_database_server):
    server = any_database_server()
    make_project(server, "test")
    imgs = [image(f"i{i}", size=500 + 400 * i) for i in range(3)]
    push(server, "test/app", imgs[0], "v1")
    push(server, "test/app", imgs[1], "v2")
    push(server, "test/app", imgs[2], None)  # untagged
    base = "/projects/test/repositories/app/artifacts"
    newest_first = api(server, "GET", base).json()
    assert [a["digest"] for a in newest_first] == [imgs[2].digest, imgs[1].digest, imgs[0].digest]
    by_size = api(server, "GET", base, params={"sort": "size"}).json()
    assert [a["size"] for a in by_size] == sorted(a["size"] for a in by_size)
    untagged = api(server, "GET", base, params={"q": "tags=nil"}).json()
    assert [a["digest"] for a in untagged] == [imgs[2].digest]
    assert len(api(server, "GET", base, params={"q": "tags=*"}).json()) == 2
    assert [a["digest"] for a in api(server, "GET", base, params={"q": "tags=~2"}).json()] == [imgs[1].digest]
    assert [a["digest"] for a in api(server, "GET", base, params={"q": f"digest={imgs[0].digest}"}).json()] \
        == [imgs[0].digest]
    assert "tags" not in api(server, "GET", base, params={"with_tag": "false"}).json()[0]
    assert api(server, "GET", base, params={"with_tag": "maybe"}).status_code == 400
    paged = api(server, "GET", base, params={"page": 2, "page_size": 2})
    assert paged.headers["X-Total-Count"] == "3" and len(paged.json()) == 1
    # One artifact by tag or digest; its tags; tag create (409 twice), tag delete.
    by_tag = api(server, "GET", f"{base}/v1").json()
    assert by_tag["digest"] == imgs[0].digest and by_tag == api(server, "GET", f"{base}/{imgs[0].digest}").json()
    assert api(server, "GET", f"{base}/nope").status_code == 404
    created = api(server, "POST", f"{base}/v1/tags", json={"name": "latest"})
    assert created.status_code == 201
    assert api(server, "POST", f"{base}/v1/tags", json={"name": "latest"}).status_code == 409
    assert api(server, "POST", f"{base}/v1/tags", json={"name": "bad tag"}).status_code == 400
    assert pull(server, "test/app", "latest").headers["Docker-Content-Digest"] == imgs[0].digest
    tags = api(server, "GET", f"{base}/v1/tags", params={"sort": "name"})
    assert [t["name"] for t in tags.json()] == ["latest", "v1"] and tags.headers["X-Total-Count"] == "2"
    assert api(server, "DELETE", f"{base}/v1/tags/latest").status_code == 200
    assert pull(server, "test/app", "latest").status_code == 404
    assert api(server, "DELETE", f"{base}/v1/tags/v2").status_code == 404  # not this artifact's tag
    assert api(server, "DELETE", f"{base}/{imgs[2].digest}").status_code == 200
    assert pull(server, "test/app", imgs[2].digest).status_code == 404


def test_hostile_tag_names_come_back_as_data(any_database_server):
    server = any_database_server()
    make_project(server, "test")
    img = image("x")
    push(server, "test/app", img, "1")
    base = "/projects/test/repositories/app/artifacts"
    # A tag cannot hold markup (the tag grammar refuses it), so the API refuses it too, as data.
    r = api(server, "POST", f"{base}/1/tags", json={"name": "<script>alert(1)</script>"})
    assert r.status_code == 400 and r.headers["Content-Type"].startswith("application/json")
    # Markup in a description and a q value is stored and echoed as JSON strings, never interpreted.
    evil = '<img src=x onerror="alert(1)">'
    api(server, "PUT", "/projects/test/repositories/app", json={"description": evil})
    got = api(server, "GET", "/projects/test/repositories/app")
    assert got.headers["Content-Type"].startswith("application/json") and got.json()["description"] == evil
    assert html.escape(evil) not in got.text
    assert api(server, "GET", "/projects/test/repositories", params={"q": f"name=~{evil}"}).json() == []


def test_quotas_api(any_database_server):
    server = any_database_server()
    first = make_project(server, "one", storage_limit=1 << 20)
    make_project(server, "two")
    img = image("q")
    push(server, "one/app", img, "1")
    listed = api(server, "GET", "/quotas")
    assert listed.headers["X-Total-Count"] == "2"
    one = next(q for q in listed.json() if q["ref"]["name"] == "one")
    assert one["id"] == first and one["hard"] == {"storage": 1 << 20} and one["used"]["storage"] > 0
    assert [q["ref"]["name"] for q in api(server, "GET", "/quotas", params={"reference": "project",
                                                                          "reference_id": first}).json()] == ["one"]
    assert api(server, "PUT", f"/quotas/{first}", json={"hard": {"storage": 5}}).status_code == 200
    assert api(server, "GET", f"/quotas/{first}").json()["hard"]["storage"] == 5
    assert api(server, "PUT", f"/quotas/{first}", json={"hard": {"storage": -7}}).status_code == 400
    assert api(server, "PUT", f"/quotas/{first}", json={"hard": "x"}).status_code == 400
    assert api(server, "GET", "/quotas/999").status_code == 404


def test_immutable_rules_api(any_database_server):
    server = any_database_server()
    make_project(server, "test")
    base = "/projects/test/immutabletagrules"
    rule = {"disabled": False, "action": "immutable", "template": "immutable_template",
            "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "v*"}],
            "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches",
                                                "pattern": "**"}]}}
    created = api(server, "POST", base, json=rule)
    assert created.status_code == 201 and created.headers["Location"].startswith(f"/api/v2.0{base}/")
    [listed] = api(server, "GET", base).json()
    assert listed["tag_selectors"] == rule["tag_selectors"] and listed["scope_selectors"] == rule["scope_selectors"]
    assert listed["action"] == "immutable" and listed["template"] == "immutable_template"
    img, other = image("a"), image("b")
    push(server, "test/app", img, "v1")
    assert push(server, "test/app", other, "v1").status_code == 412
    assert api(server, "GET", "/projects/test/repositories/app/artifacts/v1").json()["tags"][0]["immutable"] is True
    # Disabled, the rule holds nothing.
    assert api(server, "PUT", f"{base}/{listed['id']}", json={**rule, "disabled": True}).status_code == 200
    assert push(server, "test/app", other, "v1").status_code == 201
    assert api(server, "DELETE", f"{base}/{listed['id']}").status_code == 200
    assert api(server, "GET", base).json() == []
    bad = {**rule, "tag_selectors": [{"kind": "regex", "decoration": "matches", "pattern": "v*"}]}
    assert api(server, "POST", base, json=bad).status_code == 400
    unbalanced = {**rule, "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "{a,b"}]}
    assert api(server, "POST", base, json=unbalanced).status_code == 400
    assert api(server, "DELETE", f"{base}/9999").status_code == 404


def test_rights_guest_reads_developer_pushes_nobody_else(any_database_server):
    server = any_database_server()
    make_project(server, "test")
    make_member(server, "test", *GUEST_USER, GUEST)
    make_member(server, "test", "dev", "Developer1", DEVELOPER)
    img = image("g")
    push(server, "test/app", img, "1")
    base = f"{server.url}/api/v2.0/projects/test/repositories/app/artifacts"
    assert requests.get(base, auth=GUEST_USER).status_code == 200
    assert requests.delete(f"{base}/1", auth=GUEST_USER).status_code == 403
    assert requests.post(f"{base}/1/tags", json={"name": "g"}, auth=GUEST_USER).status_code == 403
    assert requests.post(f"{base}/1/tags", json={"name": "d"}, auth=("dev", "Developer1")).status_code == 201
    assert requests.delete(f"{base}/1", auth=("dev", "Developer1")).status_code == 403
    assert requests.get(base).status_code == 401
    assert requests.get(f"{server.url}/api/v2.0/quotas", auth=GUEST_USER).status_code == 403
    assert requests.get(f"{server.url}/api/v2.0/quotas", auth=ADMIN).status_code == 200
    rules = f"{server.url}/api/v2.0/projects/test/immutabletagrules"
    assert requests.post(rules, json={}, auth=("dev", "Developer1")).status_code == 403
