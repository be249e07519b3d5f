"""Requests-level tests of every endpoint, status code and header of the distribution API."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import time

import pytest
import requests

from dockyard import mediatypes as mt
from regkit import layer_tar, make_image, push_image, sha256

pytestmark = pytest.mark.drivers("fs", "s3")

V = "registry/2.0"


def _errors(r: requests.Response) -> list[str]:
    assert r.headers["Content-Type"] == "application/json"
    assert "Traceback" not in r.text
    return [e["code"] for e in r.json()["errors"]]


def test_base(server):
    r = requests.get(f"{server.url}/v2/")
    assert r.status_code == 200 and r.headers["Docker-Distribution-Api-Version"] == V
    assert requests.get(f"{server.url}/healthz").json() == {"status": "ok"}


def test_monolithic_upload_and_blob_get_head(server):
    data = os.urandom(100_000)
    d = sha256(data)
    r = requests.post(f"{server.url}/v2/mono/blobs/uploads/", params={"digest": d}, data=data)
    assert r.status_code == 201
    assert r.headers["Location"] == f"/v2/mono/blobs/{d}" and r.headers["Docker-Content-Digest"] == d
    h = requests.head(f"{server.url}/v2/mono/blobs/{d}")
    assert h.status_code == 200 and h.content == b""
    assert h.headers["Content-Length"] == str(len(data)) and h.headers["Docker-Content-Digest"] == d
    assert h.headers["Content-Type"] == "application/octet-stream"
    g = requests.get(f"{server.url}/v2/mono/blobs/{d}")
    assert g.status_code == 200 and g.content == data and g.headers["Docker-Content-Digest"] == d
    # Another repository has no link to the blob.
    assert _errors(requests.get(f"{server.url}/v2/other/blobs/{d}")) == ["BLOB_UNKNOWN"]
    assert requests.head(f"{server.url}/v2/other/blobs/{d}").status_code == 404


def test_sha512_upload(server):
    data = b"sha512 content"
    d = "sha512:" + hashlib.sha512(data).hexdigest()
    r = requests.post(f"{server.url}/v2/five12/blobs/uploads/", params={"digest": d}, data=data)
    assert r.status_code == 201 and r.headers["Docker-Content-Digest"] == d
    assert requests.get(f"{server.url}/v2/five12/blobs/{d}").content == data


def test_ranges(server):
    data = bytes(range(256)) * 40
    d = sha256(data)
    requests.post(f"{server.url}/v2/ranges/blobs/uploads/", params={"digest": d}, data=data)
    url = f"{server.url}/v2/ranges/blobs/{d}"
    r = requests.get(url, headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == data[10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{len(data)}" and r.headers["Content-Length"] == "10"
    r = requests.get(url, headers={"Range": "bytes=10000-"})
    assert r.status_code == 206 and r.content == data[10000:]
    r = requests.get(url, headers={"Range": "bytes=-5"})
    assert r.status_code == 206 and r.content == data[-5:]
    r = requests.get(url, headers={"Range": "bytes=5-999999"})
    assert r.status_code == 206 and r.content == data[5:]
    for bad in (f"bytes={len(data)}-", "bytes=9-3", "items=1-2", "bytes=-0"):
        r = requests.get(url, headers={"Range": bad})
        assert r.status_code == 416, bad
        assert _errors(r) == ["RANGE_INVALID"] and r.headers["Content-Range"] == f"bytes */{len(data)}"


def test_chunked_upload_session(server):
    data = os.urandom(300_000)
    d = sha256(data)
    r = requests.post(f"{server.url}/v2/chunks/blobs/uploads/")
    assert r.status_code == 202
    loc, uuid = r.headers["Location"], r.headers["Docker-Upload-UUID"]
    assert loc.endswith(uuid) and r.headers["Range"] == "0-0" and "OCI-Chunk-Min-Length" in r.headers
    r = requests.patch(server.url + loc, data=data[:100_000],
                       headers={"Content-Range": "0-99999", "Content-Type": "application/octet-stream"})
    assert r.status_code == 202 and r.headers["Range"] == "0-99999" and r.headers["Location"] == loc
    # Out of order: 416 with the current range.
    r = requests.patch(server.url + loc, data=data[200_000:], headers={"Content-Range": "200000-299999"})
    assert r.status_code == 416 and r.headers["Range"] == "0-99999" and _errors(r) == ["RANGE_INVALID"]
    r = requests.patch(server.url + loc, data=data[100_000:200_000], headers={"Content-Range": "100000-199999"})
    assert r.status_code == 202 and r.headers["Range"] == "0-199999"
    r = requests.get(server.url + loc)
    assert r.status_code == 204 and r.headers["Range"] == "0-199999" and r.headers["Docker-Upload-UUID"] == uuid
    # Last chunk with the PUT.
    r = requests.put(server.url + loc, params={"digest": d}, data=data[200_000:])
    assert r.status_code == 201 and r.headers["Location"] == f"/v2/chunks/blobs/{d}"
    assert requests.get(f"{server.url}/v2/chunks/blobs/{d}").content == data
    assert _errors(requests.get(server.url + loc)) == ["BLOB_UPLOAD_UNKNOWN"]


def test_streamed_patch_without_content_range_then_empty_put(server):
    data = os.urandom(50_000)
    r = requests.post(f"{server.url}/v2/stream/blobs/uploads/")
    loc = r.headers["Location"]
    r = requests.patch(server.url + loc, data=iter([data[:20_000], data[20_000:]]))  # chunked transfer encoding
    assert r.status_code == 202 and r.headers["Range"] == f"0-{len(data) - 1}"
    r = requests.put(server.url + loc, params={"digest": sha256(data)})
    assert r.status_code == 201


def test_digest_mismatch_stores_nothing(server):
    data = b"some bytes"
    wrong = sha256(b"other bytes")
    r = requests.post(f"{server.url}/v2/mismatch/blobs/uploads/", params={"digest": wrong}, data=data)
    assert r.status_code == 400 and _errors(r) == ["DIGEST_INVALID"]
    assert requests.head(f"{server.url}/v2/mismatch/blobs/{wrong}").status_code == 404
    loc = requests.post(f"{server.url}/v2/mismatch/blobs/uploads/").headers["Location"]
    requests.patch(server.url + loc, data=data)
    r = requests.put(server.url + loc, params={"digest": wrong})
    assert r.status_code == 400 and _errors(r) == ["DIGEST_INVALID"]
    assert requests.get(server.url + loc).status_code == 404
    for bad in ("sha256:xyz", "md5:abc", ""):
        r = requests.post(f"{server.url}/v2/mismatch/blobs/uploads/", params={"digest": bad}, data=data)
        assert r.status_code == 400 and _errors(r) == ["DIGEST_INVALID"], bad
    r = requests.put(server.url + requests.post(f"{server.url}/v2/mismatch/blobs/uploads/").headers["Location"])
    assert r.status_code == 400 and _errors(r) == ["DIGEST_INVALID"]


def test_cancel_and_unknown_upload(server):
    loc = requests.post(f"{server.url}/v2/cancel/blobs/uploads/").headers["Location"]
    r = requests.delete(server.url + loc)
    assert r.status_code == 204
    assert _errors(requests.delete(server.url + loc)) == ["BLOB_UPLOAD_UNKNOWN"]
    for bad in ("nope", "0" * 32, "..." + "0" * 29):
        r = requests.patch(f"{server.url}/v2/cancel/blobs/uploads/{bad}", data=b"x")
        assert r.status_code == 404 and _errors(r) == ["BLOB_UPLOAD_UNKNOWN"], bad
    # A session belongs to the repository that opened it.
    loc = requests.post(f"{server.url}/v2/cancel/blobs/uploads/").headers["Location"]
    other = loc.replace("/v2/cancel/", "/v2/elsewhere/")
    assert requests.get(server.url + other).status_code == 404


def test_mount(server):
    data = b"mount me"
    d = sha256(data)
    requests.post(f"{server.url}/v2/src/blobs/uploads/", params={"digest": d}, data=data)
    r = requests.post(f"{server.url}/v2/dst/blobs/uploads/", params={"mount": d, "from": "src"})
    assert r.status_code == 201 and r.headers["Location"] == f"/v2/dst/blobs/{d}"
    assert r.headers["Docker-Content-Digest"] == d
    assert requests.get(f"{server.url}/v2/dst/blobs/{d}").content == data
    # Cannot mount: a session instead.
    for src in ("nowhere", "Bad/Name"):
        r = requests.post(f"{server.url}/v2/dst2/blobs/uploads/", params={"mount": d, "from": src})
        assert r.status_code == 202 and "Docker-Upload-UUID" in r.headers


def _push_blobs(server, repo, image):
    for blob in [image.config, *image.layers]:
        assert requests.post(f"{server.url}/v2/{repo}/blobs/uploads/", params={"digest": sha256(blob)},
                             data=blob).status_code == 201


def test_manifest_put_get_head_by_tag_and_digest(server):
    img = make_image([layer_tar({"f": b"1"})])
    r = push_image(server.url, "man/oci", img, "v1")
    assert r.status_code == 201
    assert r.headers["Docker-Content-Digest"] == img.digest
    assert r.headers["Location"] == f"/v2/man/oci/manifests/{img.digest}"
    for ref in ("v1", img.digest):
        g = requests.get(f"{server.url}/v2/man/oci/manifests/{ref}", headers={"Accept": mt.OCI_MANIFEST})
        assert g.status_code == 200 and g.content == img.manifest
        assert g.headers["Content-Type"] == mt.OCI_MANIFEST and g.headers["Docker-Content-Digest"] == img.digest
        h = requests.head(f"{server.url}/v2/man/oci/manifests/{ref}")
        assert h.status_code == 200 and h.headers["Content-Length"] == str(len(img.manifest))
        assert h.headers["Docker-Content-Digest"] == img.digest
    # Push by digest: no tag.
    img2 = make_image([layer_tar({"g": b"2"})])
    _push_blobs(server, "man/oci", img2)
    r = requests.put(f"{server.url}/v2/man/oci/manifests/{img2.digest}", data=img2.manifest,
                     headers={"Content-Type": mt.OCI_MANIFEST})
    assert r.status_code == 201
    assert requests.get(f"{server.url}/v2/man/oci/tags/list").json()["tags"] == ["v1"]


def test_docker_manifest_and_lists(server):
    amd = make_image([layer_tar({"a": b"amd"})], docker=True)
    arm = make_image([layer_tar({"a": b"arm"})], docker=True)
    for img in (amd, arm):
        assert push_image(server.url, "man/docker", img, None).status_code == 201
    lst = json.dumps({"schemaVersion": 2, "mediaType": mt.DOCKER_LIST, "manifests": [
        {"mediaType": mt.DOCKER_MANIFEST, "digest": arm.digest, "size": len(arm.manifest),
         "platform": {"os": "linux", "architecture": "arm64"}},
        {"mediaType": mt.DOCKER_MANIFEST, "digest": amd.digest, "size": len(amd.manifest),
         "platform": {"os": "linux", "architecture": "amd64"}}]}).encode()
    r = requests.put(f"{server.url}/v2/man/docker/manifests/multi", data=lst,
                     headers={"Content-Type": mt.DOCKER_LIST})
    assert r.status_code == 201
    g = requests.get(f"{server.url}/v2/man/docker/manifests/multi",
                     headers={"Accept": f"{mt.DOCKER_LIST}, {mt.DOCKER_MANIFEST}"})
    assert g.content == lst and g.headers["Content-Type"] == mt.DOCKER_LIST
    # A client that only takes single manifests gets the linux/amd64 one, as from distribution.
    g = requests.get(f"{server.url}/v2/man/docker/manifests/multi", headers={"Accept": mt.DOCKER_MANIFEST})
    assert g.content == amd.manifest and g.headers["Docker-Content-Digest"] == amd.digest
    # An OCI index of OCI manifests.
    img = make_image([layer_tar({"o": b"oci"})])
    push_image(server.url, "man/docker", img, None)
    idx = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [
        {"mediaType": mt.OCI_MANIFEST, "digest": img.digest, "size": len(img.manifest)}]}).encode()
    r = requests.put(f"{server.url}/v2/man/docker/manifests/index", data=idx, headers={"Content-Type": mt.OCI_INDEX})
    assert r.status_code == 201
    g = requests.get(f"{server.url}/v2/man/docker/manifests/index", headers={"Accept": mt.OCI_INDEX})
    assert g.content == idx and g.headers["Content-Type"] == mt.OCI_INDEX
    # An index whose child is not in the repository.
    missing = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [
        {"mediaType": mt.OCI_MANIFEST, "digest": sha256(b"nope"), "size": 4}]}).encode()
    r = requests.put(f"{server.url}/v2/man/docker/manifests/bad", data=missing, headers={"Content-Type": mt.OCI_INDEX})
    assert r.status_code == 400 and _errors(r) == ["MANIFEST_BLOB_UNKNOWN"]


def test_manifest_validation(server):
    img = make_image([layer_tar({"v": b"v"})])
    url = f"{server.url}/v2/valid/manifests/t"
    # Blobs not pushed: MANIFEST_BLOB_UNKNOWN.
    r = requests.put(url, data=img.manifest, headers={"Content-Type": mt.OCI_MANIFEST})
    assert r.status_code == 400 and _errors(r) == ["MANIFEST_BLOB_UNKNOWN"]
    _push_blobs(server, "valid", img)
    cases = [b"not json", b"[]", b'{"schemaVersion": 1}', json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
             "config": {"digest": "x"}, "layers": []}).encode()]
    for body in cases:
        r = requests.put(url, data=body, headers={"Content-Type": mt.OCI_MANIFEST})
        assert r.status_code == 400 and _errors(r) == ["MANIFEST_INVALID"], body
    # Content-Type disagreeing with the body's mediaType.
    r = requests.put(url, data=img.manifest, headers={"Content-Type": mt.DOCKER_MANIFEST})
    assert _errors(r) == ["MANIFEST_INVALID"]
    # Wrong digest in the URL.
    r = requests.put(f"{server.url}/v2/valid/manifests/{sha256(b'x')}", data=img.manifest,
                     headers={"Content-Type": mt.OCI_MANIFEST})
    assert r.status_code == 400 and _errors(r) == ["DIGEST_INVALID"]
    # Too large.
    r = requests.put(url, data=b" " * (4 << 20) + b"{}", headers={"Content-Type": mt.OCI_MANIFEST})
    assert r.status_code == 413 and _errors(r) == ["SIZE_INVALID"]
    # Invalid tag.
    r = requests.put(f"{server.url}/v2/valid/manifests/-bad", data=img.manifest,
                     headers={"Content-Type": mt.OCI_MANIFEST})
    assert r.status_code == 400 and _errors(r) == ["MANIFEST_INVALID"]
    # None of that stored anything.
    assert _errors(requests.get(url)) == ["MANIFEST_UNKNOWN"]
    assert requests.put(url, data=img.manifest, headers={"Content-Type": mt.OCI_MANIFEST}).status_code == 201


def test_unknown_manifest_and_name(server):
    assert _errors(requests.get(f"{server.url}/v2/never/pushed/manifests/latest")) == ["NAME_UNKNOWN"]
    push_image(server.url, "known", make_image([layer_tar({"k": b"k"})]))
    r = requests.get(f"{server.url}/v2/known/manifests/nope")
    assert r.status_code == 404 and _errors(r) == ["MANIFEST_UNKNOWN"]
    r = requests.get(f"{server.url}/v2/known/manifests/{sha256(b'none')}")
    assert r.status_code == 404 and _errors(r) == ["MANIFEST_UNKNOWN"]
    r = requests.get(f"{server.url}/v2/known/manifests/sha256:bad")
    assert r.status_code == 400 and _errors(r) == ["DIGEST_INVALID"]


def _raw(server, method: str, path: str) -> tuple[int, dict]:
    """A request whose path is sent exactly as given (requests would normalize `..`)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request(method, path, headers={"Content-Length": "0"})
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert b"Traceback" not in body
    return resp.status, json.loads(body)


def test_invalid_names(server):
    for name in ("Bad/UPPER", "a/../b", "a//b", "-a", "a/-", "_x", "a" * 256, "a/.b", "../../etc"):
        status, body = _raw(server, "GET", f"/v2/{name}/tags/list")
        assert status == 400 and body["errors"][0]["code"] == "NAME_INVALID", name
        status, body = _raw(server, "POST", f"/v2/{name}/blobs/uploads/")
        assert status == 400 and body["errors"][0]["code"] == "NAME_INVALID", name
    stored = {name for _, dirs, files in server.storage().driver.walk("") for name in dirs + files}
    assert "etc" not in stored and not any(server.root.rglob("etc"))


def test_tags_pagination(server):
    img = make_image([layer_tar({"t": b"t"})])
    _push_blobs(server, "paged", img)
    tags = ["a", "b", "c", "d", "e"]
    for tag in reversed(tags):
        requests.put(f"{server.url}/v2/paged/manifests/{tag}", data=img.manifest,
                     headers={"Content-Type": mt.OCI_MANIFEST})
    r = requests.get(f"{server.url}/v2/paged/tags/list")
    assert r.json() == {"name": "paged", "tags": tags} and "Link" not in r.headers
    r = requests.get(f"{server.url}/v2/paged/tags/list", params={"n": 2})
    assert r.json()["tags"] == ["a", "b"]
    assert r.headers["Link"] == '</v2/paged/tags/list?n=2&last=b>; rel="next"'
    r = requests.get(f"{server.url}/v2/paged/tags/list", params={"n": 2, "last": "b"})
    assert r.json()["tags"] == ["c", "d"]
    r = requests.get(f"{server.url}/v2/paged/tags/list", params={"n": 2, "last": "d"})
    assert r.json()["tags"] == ["e"] and "Link" not in r.headers
    assert requests.get(f"{server.url}/v2/paged/tags/list", params={"n": 0}).json()["tags"] == []
    r = requests.get(f"{server.url}/v2/paged/tags/list", params={"n": "-1"})
    assert r.status_code == 400 and _errors(r) == ["PAGINATION_NUMBER_INVALID"]
    assert _errors(requests.get(f"{server.url}/v2/nothing/here/tags/list")) == ["NAME_UNKNOWN"]


def test_catalog(server):
    for repo in ("cat/b", "cat/a", "cat/c"):
        push_image(server.url, repo, make_image([layer_tar({"c": repo.encode()})]))
    repos = requests.get(f"{server.url}/v2/_catalog").json()["repositories"]
    assert repos == sorted(repos) and {"cat/a", "cat/b", "cat/c"} <= set(repos)
    r = requests.get(f"{server.url}/v2/_catalog", params={"n": 1, "last": "cat/a"})
    assert r.json()["repositories"] == ["cat/b"]
    assert r.headers["Link"] == '</v2/_catalog?n=1&last=cat%2Fb>; rel="next"'


def test_referrers(server):
    subject = make_image([layer_tar({"s": b"subject"})])
    push_image(server.url, "refs", subject)
    empty = b"{}"
    requests.post(f"{server.url}/v2/refs/blobs/uploads/", params={"digest": sha256(empty)}, data=empty)
    subj = {"mediaType": mt.OCI_MANIFEST, "digest": subject.digest, "size": len(subject.manifest)}
    arts = []
    for kind in ("application/vnd.example.sbom", "application/vnd.example.sig"):
        doc = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "artifactType": kind,
               "config": {"mediaType": mt.OCI_EMPTY, "digest": sha256(empty), "size": 2},
               "layers": [{"mediaType": mt.OCI_EMPTY, "digest": sha256(empty), "size": 2}],
               "subject": subj, "annotations": {"k": kind}}
        body = json.dumps(doc).encode()
        r = requests.put(f"{server.url}/v2/refs/manifests/{sha256(body)}", data=body,
                         headers={"Content-Type": mt.OCI_MANIFEST})
        assert r.status_code == 201 and r.headers["OCI-Subject"] == subject.digest
        arts.append((kind, sha256(body), len(body)))
    r = requests.get(f"{server.url}/v2/refs/referrers/{subject.digest}")
    assert r.status_code == 200 and r.headers["Content-Type"] == mt.OCI_INDEX
    index = r.json()
    assert index["mediaType"] == mt.OCI_INDEX and index["schemaVersion"] == 2
    assert sorted((m["artifactType"], m["digest"], m["size"]) for m in index["manifests"]) == sorted(arts)
    assert all(m["annotations"] == {"k": m["artifactType"]} for m in index["manifests"])
    r = requests.get(f"{server.url}/v2/refs/referrers/{subject.digest}",
                     params={"artifactType": "application/vnd.example.sig"})
    assert r.headers["OCI-Filters-Applied"] == "artifactType"
    assert [m["artifactType"] for m in r.json()["manifests"]] == ["application/vnd.example.sig"]
    r = requests.get(f"{server.url}/v2/refs/referrers/{sha256(b'no subject')}")
    assert r.status_code == 200 and r.json()["manifests"] == []
    assert _errors(requests.get(f"{server.url}/v2/refs/referrers/bogus")) == ["DIGEST_INVALID"]
    # Deleting a referrer removes it from the list.
    assert requests.delete(f"{server.url}/v2/refs/manifests/{arts[0][1]}").status_code == 202
    r = requests.get(f"{server.url}/v2/refs/referrers/{subject.digest}")
    assert [m["digest"] for m in r.json()["manifests"]] == [arts[1][1]]


def test_deletes(server):
    img = make_image([layer_tar({"d": b"delete me"})])
    push_image(server.url, "del", img, "v1")
    requests.put(f"{server.url}/v2/del/manifests/v2", data=img.manifest, headers={"Content-Type": mt.OCI_MANIFEST})
    # Delete by tag removes only that tag.
    assert requests.delete(f"{server.url}/v2/del/manifests/v2").status_code == 202
    assert requests.get(f"{server.url}/v2/del/tags/list").json()["tags"] == ["v1"]
    assert requests.delete(f"{server.url}/v2/del/manifests/{img.digest}").status_code == 202
    assert requests.get(f"{server.url}/v2/del/manifests/v1").status_code == 404
    assert _errors(requests.delete(f"{server.url}/v2/del/manifests/{img.digest}")) == ["MANIFEST_UNKNOWN"]
    layer = sha256(img.layers[0])
    assert requests.delete(f"{server.url}/v2/del/blobs/{layer}").status_code == 202
    assert requests.get(f"{server.url}/v2/del/blobs/{layer}").status_code == 404
    assert _errors(requests.delete(f"{server.url}/v2/del/blobs/{layer}")) == ["BLOB_UNKNOWN"]


def test_unknown_routes_and_methods(server):
    r = requests.get(f"{server.url}/v2/x/unknown/thing")
    assert r.status_code == 404 and "Traceback" not in r.text and r.json()["errors"]
    r = requests.post(f"{server.url}/v2/x/manifests/latest")
    assert r.status_code == 405 and _errors(r) == ["UNSUPPORTED"]


def test_metrics_and_access_log(server):
    requests.get(f"{server.url}/v2/metered/tags/list")
    requests.get(f"{server.url}/v2/metered/tags/list")
    text = requests.get(f"{server.url}/metrics").text
    assert "# TYPE registry_http_requests_total counter" in text
    assert "registry_uploads_in_progress " in text and "registry_http_response_bytes_total " in text
    log = server.log.read_text()
    lines = [json.loads(line) for line in log.splitlines() if '"/v2/metered/tags/list"' in line]
    assert len(lines) == 2 and lines[0]["status"] == 404 and lines[0]["method"] == "GET"


def test_metrics_count_across_workers(make_server):
    server = make_server("--workers", "3")
    for _ in range(30):
        requests.get(f"{server.url}/v2/counted/tags/list", headers={"Connection": "close"})
    loc = requests.post(f"{server.url}/v2/counted/blobs/uploads/").headers["Location"]
    requests.patch(server.url + loc, data=b"x" * 1000)
    line = 'registry_http_requests_total{route="/v2/<path:name>/tags/list",method="GET",status="404"} 30'
    deadline = time.monotonic() + 15  # each worker flushes its counters within about a second
    while time.monotonic() < deadline:
        text = requests.get(f"{server.url}/metrics").text
        if line in text and int(text.split("\nregistry_http_request_bytes_total ")[1].split()[0]) >= 1000:
            break
        time.sleep(0.2)
    assert line in text
    assert "registry_uploads_in_progress 1" in text
    assert int(text.split("\nregistry_http_request_bytes_total ")[1].split()[0]) >= 1000


def test_blob_bodies_go_out_with_sendfile(tmp_path):
    from registry.config import Config
    from registry.serve import _Gunicorn

    assert _Gunicorn(Config(root=str(tmp_path))).cfg.sendfile is True
