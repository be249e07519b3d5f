"""Project policies on the v2 path: storage quotas, tag immutability, content trust, auto-delete of untagged
artifacts; and a real `dockyard push` meeting them."""

from __future__ import annotations

import json

import requests
from artifactkit import ADMIN, api, image, make_project, pull, push, referrer, set_project
from postgres import any_database_server, postgres  # noqa: F401 (fixtures: each test on SQLite and PostgreSQL)
from regkit import sha256

from dockyard import mediatypes as mt


def _usage(server, project_id: int) -> int:
    r = api(server, "GET", f"/quotas/{project_id}")
    assert r.status_code == 200, r.text
    return r.json()["used"]["storage"]


def _size(img) -> int:
    return len(img.manifest) + len(img.config) + sum(len(layer) for layer in img.layers)


def test_quota_refuses_upload_over_the_limit_with_harbors_message(any_database_server):
    server = any_database_server()
    small = image("small", size=500)
    project_id = make_project(server, "test", storage_limit=_size(small) + 1000)
    assert push(server, "test/app", small, "1").status_code == 201
    big = image("big", size=3000)
    r = requests.post(f"{server.url}/v2/test/app/blobs/uploads/", params={"digest": sha256(big.layers[0])},
                      data=big.layers[0], auth=ADMIN)
    assert r.status_code == 403
    error = r.json()["errors"][0]
    assert error["code"] == "DENIED"
    assert "which when updated to current usage of" in error["message"]
    assert "will exceed the configured upper limit of" in error["message"]
    # Refused blobs are not linked: the repository cannot serve them, and usage is unchanged.
    assert requests.head(f"{server.url}/v2/test/app/blobs/{sha256(big.layers[0])}", auth=ADMIN).status_code == 404
    assert _usage(server, project_id) == _size(small)
    # Raising the limit (PUT /quotas/{id}) lets the same push through.
    assert api(server, "PUT", f"/quotas/{project_id}", json={"hard": {"storage": -1}}).status_code == 200
    assert push(server, "test/app", big, "2").status_code == 201


def test_quota_counts_the_manifest_at_push(any_database_server):
    server = any_database_server()
    img = image("exact")
    project_id = make_project(server, "test", storage_limit=len(img.config) + len(img.layers[0]))
    r = push(server, "test/app", img, "1")  # the blobs fit exactly; the manifest does not
    assert r.status_code == 403 and "exceed the configured upper limit" in r.json()["errors"][0]["message"]
    assert pull(server, "test/app", "1").status_code == 404
    assert _usage(server, project_id) == len(img.config) + len(img.layers[0])


def test_shared_blobs_count_once_and_usage_drops_after_deletes(any_database_server):
    server = any_database_server()
    project_id = make_project(server, "test")
    other = make_project(server, "other")
    img = image("shared")
    assert push(server, "test/a", img, "1").status_code == 201
    assert push(server, "test/b", img, "1").status_code == 201
    assert push(server, "other/c", img, "1").status_code == 201
    assert _usage(server, project_id) == _size(img)  # once in the project, though two repositories hold it
    assert _usage(server, other) == _size(img)  # and once in each project
    assert requests.delete(f"{server.url}/v2/test/a/manifests/{img.digest}", auth=ADMIN).status_code == 202
    assert _usage(server, project_id) == _size(img)  # test/b still references every blob
    assert requests.delete(f"{server.url}/v2/test/b/manifests/{img.digest}", auth=ADMIN).status_code == 202
    assert _usage(server, project_id) == 0
    assert _usage(server, other) == _size(img)


def _rule(server, tag_pattern: str, decoration: str = "matches", repo_pattern: str = "**") -> None:
    rule = {"disabled": False, "action": "immutable", "template": "immutable_template",
            "tag_selectors": [{"kind": "doublestar", "decoration": decoration, "pattern": tag_pattern}],
            "scope_selectors": {"repository": [{"kind": "doublestar", "decoration": "repoMatches",
                                                "pattern": repo_pattern}]}}
    r = api(server, "POST", "/projects/test/immutabletagrules", json=rule)
    assert r.status_code == 201, r.text


def test_immutable_tag_refuses_overwrite_and_delete(any_database_server):
    server = any_database_server()
    make_project(server, "test")
    _rule(server, "v{1,2}.*", repo_pattern="app")
    first, second = image("one"), image("two")
    assert push(server, "test/app", first, "v1.0").status_code == 201
    assert push(server, "test/app", first, "v1.0").status_code == 201  # the same content again is no change
    moved = push(server, "test/app", second, "v1.0")
    assert moved.status_code == 412
    assert moved.json()["errors"][0]["message"] == \
        "Failed to process request due to 'test/app:v1.0' configured as immutable."
    assert pull(server, "test/app", "v1.0").headers["Docker-Content-Digest"] == first.digest
    assert requests.delete(f"{server.url}/v2/test/app/manifests/v1.0", auth=ADMIN).status_code == 412
    assert requests.delete(f"{server.url}/v2/test/app/manifests/{first.digest}", auth=ADMIN).status_code == 412
    assert api(server, "DELETE", f"/projects/test/repositories/app/artifacts/{first.digest}").status_code == 412
    assert api(server, "DELETE", "/projects/test/repositories/app/artifacts/v1.0/tags/v1.0").status_code == 412
    # Tags and repositories outside the rule move freely.
    assert push(server, "test/app", first, "v3.0").status_code == 201
    assert push(server, "test/app", second, "v3.0").status_code == 201
    assert push(server, "test/other", first, "v1.0").status_code == 201
    assert push(server, "test/other", second, "v1.0").status_code == 201


def test_immutable_excludes_decoration(any_database_server):
    server = any_database_server()
    make_project(server, "test")
    _rule(server, "dev-*", decoration="excludes")  # every tag but dev-* is immutable
    first, second = image("one"), image("two")
    for tag in ("dev-1", "release"):
        assert push(server, "test/app", first, tag).status_code == 201
    assert push(server, "test/app", second, "dev-1").status_code == 201
    assert push(server, "test/app", second, "release").status_code == 412


def test_content_trust_refuses_unsigned_until_a_signature_arrives(any_database_server):
    server = any_database_server()
    make_project(server, "test", enable_content_trust="true")
    img = image("trust")
    assert push(server, "test/app", img, "1").status_code == 201
    for reference in ("1", img.digest):
        refused = pull(server, "test/app", reference)
        assert refused.status_code == 412
        assert "not signed" in refused.json()["errors"][0]["message"]
    sig = referrer(server, "test/app", img)
    assert sig.status_code == 201
    assert pull(server, "test/app", "1").status_code == 200
    assert pull(server, "test/app", sig.headers["Docker-Content-Digest"]).status_code == 200  # the signature
    # A referrer that is no signature (an SBOM) does not count.
    other = image("sbom")
    push(server, "test/app", other, "2")
    referrer(server, "test/app", other, artifact_type="application/spdx+json")
    assert pull(server, "test/app", "2").status_code == 412
    # cosign's tag scheme does.
    tagged = referrer(server, "test/app", image("unrelated"), tag=other.digest.replace(":", "-") + ".sig")
    assert tagged.status_code == 201
    assert pull(server, "test/app", "2").status_code == 200
    # Switched off, anything may be pulled.
    set_project(server, "test", content_trust=False)
    unsigned = image("plain")
    push(server, "test/app", unsigned, "3")
    assert pull(server, "test/app", "3").status_code == 200


def test_auto_delete_untagged(any_database_server):
    server = any_database_server()
    make_project(server, "test", auto_delete_untagged="true")
    first, second, third = image("one"), image("two"), image("three")
    push(server, "test/app", first, "1")
    push(server, "test/app", second, "1")  # moves the tag: the first artifact is left untagged, so it goes
    assert pull(server, "test/app", first.digest).status_code == 404
    digests = [a["digest"] for a in api(server, "GET", "/projects/test/repositories/app/artifacts").json()]
    assert digests == [second.digest]
    # A child of an index and a signature stay; deleting a tag deletes the artifact it leaves untagged.
    push(server, "test/app", third, "child")
    index = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [
        {"mediaType": mt.OCI_MANIFEST, "digest": third.digest, "size": len(third.manifest),
         "platform": {"os": "linux", "architecture": "amd64"}}]}).encode()
    r = requests.put(f"{server.url}/v2/test/app/manifests/multi", data=index, auth=ADMIN,
                     headers={"Content-Type": mt.OCI_INDEX})
    assert r.status_code == 201
    sig = referrer(server, "test/app", second)
    assert requests.delete(f"{server.url}/v2/test/app/manifests/child", auth=ADMIN).status_code == 202
    assert pull(server, "test/app", third.digest).status_code == 200  # the index holds it
    assert pull(server, "test/app", sig.headers["Docker-Content-Digest"]).status_code == 200
    assert api(server, "DELETE", "/projects/test/repositories/app/artifacts/1/tags/1").status_code == 200
    assert pull(server, "test/app", second.digest).status_code == 404


def test_dockyard_push_meets_quota_and_immutability(any_database_server, busybox_image, busybox_tar, dockyard, tmp_path,
                                                    monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("DOCKYARD_CONFIG", str(tmp_path / "daemon.json"))
    server = any_database_server()
    make_project(server, "tiny", storage_limit=10_000)
    make_project(server, "test")
    _rule(server, "stable")
    dockyard("login", server.host, "-u", ADMIN[0], "--password-stdin", input=ADMIN[1].encode())
    dockyard("tag", busybox_image, f"{server.host}/tiny/bb:1")
    over = dockyard("push", f"{server.host}/tiny/bb:1", check=False)
    assert over.code != 0 and "exceed the configured upper limit" in over.err, over.err
    dockyard("tag", busybox_image, f"{server.host}/test/bb:stable")
    dockyard("push", f"{server.host}/test/bb:stable")
    dockyard("import", "--change", "ENV CHANGED=1", str(busybox_tar), "changed:1")
    dockyard("tag", "changed:1", f"{server.host}/test/bb:stable")
    moved = dockyard("push", f"{server.host}/test/bb:stable", check=False)
    assert moved.code != 0 and "configured as immutable" in moved.err, moved.err
    [art] = api(server, "GET", "/projects/test/repositories/bb/artifacts").json()
    assert [t["name"] for t in art["tags"]] == ["stable"] and art["tags"][0]["immutable"] is True
    assert art["extra_attrs"]["os"] == "linux"
