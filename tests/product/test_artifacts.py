"""The artifact index the v2 API keeps under --projects: pushes, tag moves, deletes, pulls, indexes, referrers, and
storage that predates the switch."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from artifactkit import ADMIN, api, image, make_project, pull, push, referrer
from regkit import Server, free_port, layer_tar, make_image, push_image, sha256

from dockyard import mediatypes as mt
from registry.events import FLUSH_EVERY
from registry.model.db import Database, default_url


def _artifacts(server, repo: str = "app", project: str = "test", **params) -> list[dict]:
    r = api(server, "GET", f"/projects/{project}/repositories/{repo}/artifacts", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_push_indexes_size_platform_layers_and_history(product_server):
    server = product_server()
    make_project(server, "test")
    img = image("a", history=["/bin/sh -c #(nop) ADD file", "RUN make"])
    assert push(server, "test/app", img, "1").status_code == 201
    [art] = _artifacts(server)
    assert art["digest"] == img.digest
    assert art["size"] == len(img.manifest) + len(img.config) + sum(len(layer) for layer in img.layers)
    assert art["type"] == "IMAGE" and art["manifest_media_type"] == mt.OCI_MANIFEST
    assert art["media_type"] == mt.OCI_CONFIG
    assert art["extra_attrs"]["os"] == "linux" and art["extra_attrs"]["architecture"] == "amd64"
    assert art["extra_attrs"]["created"] == "2026-01-02T00:00:00Z"
    assert art["extra_attrs"]["config"]["Labels"] == {"org.example.seed": "a"}
    assert [t["name"] for t in art["tags"]] == ["1"]
    history = api(server, "GET", f"/projects/test/repositories/app/artifacts/{img.digest}/additions/build_history")
    assert [h["created_by"] for h in history.json()] == ["/bin/sh -c #(nop) ADD file", "RUN make"]
    assert art["addition_links"]["build_history"]["href"].endswith(f"{img.digest}/additions/build_history")


def test_tag_move_then_tag_and_artifact_deletes(product_server):
    server = product_server()
    make_project(server, "test")
    first, second = image("first"), image("second")
    assert push(server, "test/app", first, "1").status_code == 201
    assert push(server, "test/app", second, "1").status_code == 201
    by_digest = {a["digest"]: a for a in _artifacts(server)}
    assert by_digest[first.digest]["tags"] == [] and [t["name"] for t in by_digest[second.digest]["tags"]] == ["1"]
    # v2 DELETE by tag removes the tag from storage and index; by digest removes the artifact.
    assert requests.delete(f"{server.url}/v2/test/app/manifests/1", auth=ADMIN).status_code == 202
    assert all(a["tags"] == [] for a in _artifacts(server))
    assert requests.get(f"{server.url}/v2/test/app/tags/list", auth=ADMIN).json()["tags"] == []
    assert requests.delete(f"{server.url}/v2/test/app/manifests/{first.digest}", auth=ADMIN).status_code == 202
    assert [a["digest"] for a in _artifacts(server)] == [second.digest]
    assert pull(server, "test/app", first.digest).status_code == 404
    # Deleting what is not there is still the spec's 404.
    missing = requests.delete(f"{server.url}/v2/test/app/manifests/{first.digest}", auth=ADMIN)
    assert missing.status_code == 404 and missing.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"


def test_pull_records_time_and_count(product_server):
    server = product_server()
    make_project(server, "test")
    img = image("p")
    push(server, "test/app", img, "1")
    [before] = _artifacts(server)
    assert before["pull_time"] == "0001-01-01T00:00:00.000Z"
    assert requests.head(f"{server.url}/v2/test/app/manifests/1", auth=ADMIN).status_code == 200
    for _ in range(3):
        assert pull(server, "test/app", "1").status_code == 200
    # Pulls are written by the worker's flusher in batches (every registry.events.FLUSH_EVERY seconds).
    deadline = time.monotonic() + 10
    while api(server, "GET", "/projects/test/repositories/app").json()["pull_count"] < 3:
        assert time.monotonic() < deadline, "the pulls were not counted"
        time.sleep(0.1)
    [after] = _artifacts(server)
    assert after["pull_time"] > after["push_time"] and after["tags"][0]["pull_time"] == after["pull_time"]
    time.sleep(2 * FLUSH_EVERY)  # a HEAD counted by mistake would be written by now
    assert api(server, "GET", "/projects/test/repositories/app").json()["pull_count"] == 3  # the HEAD is no pull


def test_index_size_adds_children_and_lists_references(product_server):
    server = product_server()
    make_project(server, "test")
    amd, arm = image("amd"), image("arm")
    for img in (amd, arm):
        assert push(server, "test/multi", img, None).status_code == 201
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [
        {"mediaType": mt.OCI_MANIFEST, "digest": img.digest, "size": len(img.manifest),
         "platform": {"os": "linux", "architecture": arch}} for img, arch in ((amd, "amd64"), (arm, "arm64"))]}
    data = json.dumps(index).encode()
    r = requests.put(f"{server.url}/v2/test/multi/manifests/v1", data=data, auth=ADMIN,
                     headers={"Content-Type": mt.OCI_INDEX})
    assert r.status_code == 201, r.text
    arts = {a["digest"]: a for a in _artifacts(server, "multi")}
    top = arts[sha256(data)]
    assert top["size"] == len(data) + arts[amd.digest]["size"] + arts[arm.digest]["size"]
    assert [(ref["child_digest"], ref["child_id"], ref["platform"]["architecture"]) for ref in top["references"]] \
        == [(amd.digest, arts[amd.digest]["id"], "amd64"), (arm.digest, arts[arm.digest]["id"], "arm64")]
    assert top["manifest_media_type"] == mt.OCI_INDEX and top["type"] == "IMAGE"


def test_referrers_are_accessories_of_their_subject(product_server):
    server = product_server()
    make_project(server, "test")
    img = image("signed")
    push(server, "test/app", img, "1")
    sig = referrer(server, "test/app", img)
    assert sig.status_code == 201 and sig.headers["OCI-Subject"] == img.digest
    arts = _artifacts(server, with_accessory="true", with_signature="true")
    assert [a["digest"] for a in arts] == [img.digest]  # the signature is listed under its subject only
    [acc] = arts[0]["accessories"]
    assert acc["type"] == "signature.cosign" and acc["subject_artifact_digest"] == img.digest
    assert acc["digest"] == sig.headers["Docker-Content-Digest"]
    assert arts[0]["tags"][0]["signed"] is True
    # The OCI referrers API still answers from storage.
    listed = requests.get(f"{server.url}/v2/test/app/referrers/{img.digest}", auth=ADMIN).json()["manifests"]
    assert [d["digest"] for d in listed] == [acc["digest"]]


def test_storage_from_before_projects_is_indexed(tmp_path):
    """A registry that ran without --projects, switched on: its repositories appear with artifacts, tags, usage."""
    root = tmp_path / "root"
    root.mkdir()
    plain = Server(root, free_port(), [], entry=("dockyard", "registry", "serve")).start()
    try:
        img = image("old", history=["RUN old"])
        assert push_image(plain.url, "legacy/app", img, "1.0").status_code == 201
        assert push_image(plain.url, "nobody/app", image("orphan"), "1").status_code == 201
    finally:
        plain.stop()
    db = Database(default_url(str(root)))
    db.migrate()
    db.engine.dispose()
    server = Server(root, free_port(), ["--projects", "--enable-delete"],
                    env={"DOCKYARD_REGISTRY_ADMIN_PASSWORD": ADMIN[1]}, entry=("dockyard", "registry", "serve"))
    server.start()
    try:
        project_id = make_project(server, "legacy")
        [art] = _artifacts(server, project="legacy")
        assert art["digest"] == img.digest and [t["name"] for t in art["tags"]] == ["1.0"]
        assert art["size"] == len(img.manifest) + len(img.config) + len(img.layers[0])
        quota = api(server, "GET", f"/quotas/{project_id}").json()
        assert quota["used"]["storage"] == art["size"]
        # A repository whose project does not exist stays out of the index; pulls from storage still work.
        assert pull(server, "legacy/app", "1.0").status_code == 200
    finally:
        server.stop()
        server.assert_clean_log()


def test_concurrent_pushes_into_a_new_repository(product_server):
    """Parallel pushes (as buildx pushes platforms) sharing a new repository and a layer all land, counted once."""
    server = product_server()
    project_id = make_project(server, "test")
    common = layer_tar({"common": b"shared by all" * 100})
    imgs = [make_image([common, layer_tar({f"own{i}": str(i).encode() * 50})]) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda i: push(server, "test/par", imgs[i], f"t{i}").status_code, range(8)))
    assert codes == [201] * 8
    arts = _artifacts(server, "par", page_size=20)
    assert sorted(a["digest"] for a in arts) == sorted(img.digest for img in imgs)
    assert sorted(t["name"] for a in arts for t in a["tags"]) == sorted(f"t{i}" for i in range(8))
    blobs = {sha256(b): len(b) for img in imgs for b in (img.config, *img.layers, img.manifest)}
    assert api(server, "GET", f"/quotas/{project_id}").json()["used"]["storage"] == sum(blobs.values())
