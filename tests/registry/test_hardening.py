"""Hostile requests: inputs that once ended in a 500, manifests against the OCI schemas, catalog and /metrics
rights, an auth gate that fails closed."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import requests

from dockyard import mediatypes as mt
from dockyard.digest import Digest
from registry.storage import open_storage
from regkit import LONG, htpasswd_file, layer_tar, make_image, push_image, sha256


def _error(r: requests.Response) -> dict:
    assert r.headers["Content-Type"] == "application/json" and "Traceback" not in r.text
    return r.json()["errors"][0]


def test_long_passwords_are_checked_like_htpasswd_and_reveal_no_user(make_server, htpasswd):
    server = make_server("--htpasswd", str(htpasswd))
    v2 = f"{server.url}/v2/"
    assert requests.get(v2, auth=("lena", LONG)).status_code == 200
    # `htpasswd -B` hashes and verifies only the first 72 bytes; so do we (Apache's own tool made this file).
    assert requests.get(v2, auth=("lena", LONG[:72] + "tail")).status_code == 200
    assert requests.get(v2, auth=("lena", LONG[:71])).status_code == 401
    # A long wrong password for a real user is answered exactly as any password for an unknown one.
    known, unknown = (requests.get(v2, auth=(user, "x" * 5000)) for user in ("alice", "nobody"))
    assert known.status_code == unknown.status_code == 401
    assert known.json() == unknown.json() and known.headers["WWW-Authenticate"] == \
        unknown.headers["WWW-Authenticate"]


def test_htpasswd_file_broken_while_serving_fails_closed(make_server, htpasswd):
    server = make_server("--htpasswd", str(htpasswd))
    assert requests.get(f"{server.url}/v2/", auth=("alice", "alice-pw")).status_code == 200
    for breakage in ("malformed hash", "directory"):
        htpasswd.unlink()
        if breakage == "directory":  # an admin's slip: a directory where the file was
            htpasswd.mkdir()
        else:
            htpasswd.write_text("alice:$2y$05$tooshort\n")
        for user in ("alice", "nobody"):
            r = requests.get(f"{server.url}/v2/", auth=(user, "alice-pw"))
            assert r.status_code == 401 and _error(r)["code"] == "UNAUTHORIZED", breakage
    # Workers started while the file is broken fail closed too, instead of failing to boot.
    def workers() -> set[str]:
        with open(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children") as f:
            return set(f.read().split())

    old = workers()
    for pid in old:  # the master boots replacements, which load the broken file
        os.kill(int(pid), signal.SIGKILL)
    deadline = time.monotonic() + 60
    while (not workers() or workers() & old) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert workers() and not workers() & old, "the workers were not replaced"
    r = requests.get(f"{server.url}/v2/", auth=("alice", "alice-pw"))
    assert r.status_code == 401 and server.proc.poll() is None
    htpasswd.rmdir()
    htpasswd_file(htpasswd, {"alice": "alice-pw"})
    assert requests.get(f"{server.url}/v2/", auth=("alice", "alice-pw")).status_code == 200


def test_pagination_takes_ascii_digits_only(server):
    push_image(server.url, "pages/x", make_image([layer_tar({"p": b"p"})]))
    for path in ("/v2/_catalog", "/v2/pages/x/tags/list"):
        for n in ("²", "٣", "1²", "+1", " 1", "0x1"):
            r = requests.get(server.url + path, params={"n": n})
            assert r.status_code == 400 and _error(r)["code"] == "PAGINATION_NUMBER_INVALID", (path, n)
        assert requests.get(server.url + path, params={"n": "1"}).status_code == 200


def test_huge_numbers_in_range_headers(server):
    blob = b"0123456789" * 10
    r = requests.post(f"{server.url}/v2/ranges/x/blobs/uploads/", params={"digest": sha256(blob)}, data=blob)
    assert r.status_code == 201
    url = f"{server.url}/v2/ranges/x/blobs/{sha256(blob)}"
    huge = "9" * 5000
    r = requests.get(url, headers={"Range": f"bytes={huge}-"})
    assert r.status_code == 416 and _error(r)["code"] == "RANGE_INVALID"
    for header in (f"bytes=0-{huge}", f"bytes=-{huge}", f"bytes=0-{'0' * 4999}99"):
        r = requests.get(url, headers={"Range": header})
        assert r.status_code == 206 and r.content == blob, header[:20]
    r = requests.get(url, headers={"Range": f"bytes={'0' * 5000}1-2"})
    assert r.status_code == 206 and r.content == b"12"
    loc = requests.post(f"{server.url}/v2/ranges/x/blobs/uploads/").headers["Location"]
    big = huge[:4000]  # two of them still fit gunicorn's 8190-byte header limit
    for header in (f"0-{huge}", f"{big}-{big}", f"bytes {big}-0/{big}"):
        r = requests.patch(server.url + loc, data=b"abc", headers={"Content-Range": header})
        assert r.status_code in (400, 416) and _error(r)["code"] in ("RANGE_INVALID", "SIZE_INVALID"), header[:20]
    assert requests.get(server.url + loc).headers["Range"] == "0-0"


def test_deeply_nested_manifests_are_invalid(server):
    url = f"{server.url}/v2/deep/x/manifests/latest"
    base = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST}
    nested: list = []
    for _ in range(200):  # deep enough to refuse, shallow enough for json.loads
        nested = [nested]
    for body in (b"[" * 100_000 + b"]" * 100_000,
                 b'{"schemaVersion": 2, "annotations": ' + b'{"a":' * 100_000 + b"1" + b"}" * 100_001,
                 json.dumps({**base, "x": nested}).encode()):
        r = requests.put(url, data=body, headers={"Content-Type": mt.OCI_MANIFEST})
        assert r.status_code == 400 and _error(r)["code"] == "MANIFEST_INVALID"
        assert "nested" in _error(r)["message"]


def _index(children: list[dict], media_type: str = mt.OCI_INDEX) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": children}).encode()


def test_index_child_platform_must_be_an_object(server):
    img = make_image([layer_tar({"e": b"e"})])
    assert push_image(server.url, "plat/x", img, None).status_code == 201
    child = {"mediaType": mt.OCI_MANIFEST, "digest": img.digest, "size": len(img.manifest)}
    for media_type in mt.INDEXES:
        for platform in ("linux", ["linux"], {"os": "linux"}, {"os": "linux", "architecture": 64}):
            r = requests.put(f"{server.url}/v2/plat/x/manifests/bad", data=_index([{**child, "platform": platform}],
                                                                                  media_type),
                             headers={"Content-Type": media_type})
            assert r.status_code == 400 and _error(r)["code"] == "MANIFEST_INVALID", platform
            assert "manifests[0].platform" in _error(r)["message"]
    # One stored by an older version is still served, never a 500.
    stored = _index([{**child, "platform": "linux"}, {**child, "platform": {"os": 1}}, "junk"])
    storage = open_storage("filesystem", {"rootdirectory": str(server.root)})
    storage.put_manifest("plat/x", Digest.of_bytes(stored), stored, mt.OCI_INDEX)
    storage.set_tag("plat/x", "old", Digest.of_bytes(stored))
    for accept in (mt.OCI_MANIFEST, f"{mt.OCI_MANIFEST}, {mt.DOCKER_MANIFEST}", mt.OCI_INDEX):
        r = requests.get(f"{server.url}/v2/plat/x/manifests/old", headers={"Accept": accept})
        assert r.status_code == 200 and r.content == stored


def _where(keys: tuple) -> str:
    """How error messages name a field: layers[0].size."""
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys).lstrip(".")


def _mutated(doc: dict, keys: tuple, value: object) -> dict:
    """A deep copy of `doc` with the field at `keys` set to `value`, or removed when value is `...`."""
    doc = json.loads(json.dumps(doc))
    target = doc
    for key in keys[:-1]:
        target = target[key]
    if value is ...:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return doc


_MANIFEST_CASES = [
    (("schemaVersion",), 2.0), (("schemaVersion",), "2"), (("schemaVersion",), ...), (("mediaType",), 7),
    (("artifactType",), 5), (("artifactType",), "no-slash"), (("annotations",), ["x"]),
    (("annotations",), {"k": 1}), (("config",), ...), (("config",), "x"), (("config", "mediaType"), "not a type"),
    (("config", "mediaType"), ...), (("config", "mediaType"), "a/" + "b" * 200), (("config", "digest"), "sha256:xyz"),
    (("config", "digest"), 7), (("config", "size"), -1), (("config", "size"), 1.0), (("config", "size"), True),
    (("config", "size"), 2 ** 63), (("layers",), ...), (("layers",), {}), (("layers", 0), 5),
    (("layers", 0, "urls"), "http://x"), (("layers", 0, "urls"), [5]), (("layers", 0, "urls"), ["no scheme"]),
    (("layers", 0, "annotations"), {"a": None}), (("layers", 0, "data"), "!!notb64"), (("layers", 0, "data"), 3),
    (("layers", 0, "artifactType"), "x"), (("subject",), {"mediaType": mt.OCI_MANIFEST}), (("subject",), []),
]


@pytest.mark.parametrize("keys,value", _MANIFEST_CASES, ids=[f"{_where(k)}={v!r}"[:40] for k, v in _MANIFEST_CASES])
def test_manifest_schema(server, keys, value):
    img = make_image([layer_tar({"s": b"schema"})])
    assert push_image(server.url, "schema/x", img, None).status_code == 201
    body = json.dumps(_mutated(json.loads(img.manifest), keys, value)).encode()
    r = requests.put(f"{server.url}/v2/schema/x/manifests/t", data=body, headers={"Content-Type": mt.OCI_MANIFEST})
    assert r.status_code == 400 and _error(r)["code"] == "MANIFEST_INVALID"
    assert _where(keys) in _error(r)["message"]
    assert requests.get(f"{server.url}/v2/schema/x/manifests/t").status_code == 404


_INDEX_CASES = [
    (("manifests",), ...), (("manifests",), "x"), (("manifests", 0, "platform", "os"), ...),
    (("manifests", 0, "platform", "variant"), 8), (("manifests", 0, "platform", "os.features"), "x"),
    (("manifests", 0, "platform", "os.features"), [1]), (("manifests", 0, "platform", "os.version"), 1.5),
    (("manifests", 0, "size"), -4), (("manifests", 0, "digest"), "sha256:" + "A" * 64), (("annotations",), {"a": {}}),
]


@pytest.mark.parametrize("keys,value", _INDEX_CASES, ids=[f"{_where(k)}={v!r}"[:40] for k, v in _INDEX_CASES])
def test_index_schema(server, keys, value):
    img = make_image([layer_tar({"i": b"index"})])
    assert push_image(server.url, "schema/i", img, None).status_code == 201
    doc = json.loads(_index([{"mediaType": mt.OCI_MANIFEST, "digest": img.digest, "size": len(img.manifest),
                              "platform": {"os": "linux", "architecture": "amd64", "os.features": ["f"]}}]))
    r = requests.put(f"{server.url}/v2/schema/i/manifests/t", data=json.dumps(_mutated(doc, keys, value)),
                     headers={"Content-Type": mt.OCI_INDEX})
    assert r.status_code == 400 and _error(r)["code"] == "MANIFEST_INVALID"
    assert _where(keys) in _error(r)["message"]


def test_valid_manifests_still_accepted(server):
    img = make_image([layer_tar({"ok": b"ok"})])
    assert push_image(server.url, "schema/ok", img, None).status_code == 201
    doc = json.loads(img.manifest)
    doc["layers"][0].update(urls=["https://example.com/l.tgz"], annotations={"k": "v"}, data="", artifactType="a/b")
    doc.update(annotations={"org.opencontainers.image.created": "now"}, artifactType="application/x.y+json")
    # An artifact with no layers (our builder's FROM scratch image has none too): the spec says only SHOULD.
    empty = {**doc, "layers": []}
    for body in (doc, empty):
        r = requests.put(f"{server.url}/v2/schema/ok/manifests/t", data=json.dumps(body),
                         headers={"Content-Type": mt.OCI_MANIFEST})
        assert r.status_code == 201, r.text


def _token(server, scope: str, auth) -> dict:
    r = requests.get(f"{server.url}/token", params={"service": "dockyard-registry", "scope": scope}, auth=auth)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['token']}"}


@pytest.mark.parametrize("mode", ["basic", "token"])
def test_catalog_lists_only_pullable_repositories(make_server, htpasswd, access_config, mode):
    server = make_server("--htpasswd", str(htpasswd), "--config", str(access_config), *(["--token"] if mode == "token" else []))
    img = make_image([layer_tar({"c": b"cat"})])
    for repo, user in (("secret/app", "alice"), ("team/app", "carol"), ("team/lib", "alice")):
        auth = (user, f"{user}-pw")
        if mode == "basic":
            assert push_image(server.url, repo, img, auth=auth).status_code == 201
        else:
            headers = _token(server, f"repository:{repo}:pull,push", auth)
            for blob in [img.config, *img.layers]:
                requests.post(f"{server.url}/v2/{repo}/blobs/uploads/", params={"digest": sha256(blob)}, data=blob,
                              headers=headers)
            assert requests.put(f"{server.url}/v2/{repo}/manifests/v1", data=img.manifest,
                                headers={**headers, "Content-Type": img.media_type}).status_code == 201

    def catalog(user: str, **params) -> requests.Response:
        auth = (user, f"{user}-pw")
        if mode == "basic":
            return requests.get(f"{server.url}/v2/_catalog", auth=auth, params=params)
        return requests.get(f"{server.url}/v2/_catalog", headers=_token(server, "registry:catalog:*", auth),
                            params=params)

    assert catalog("alice").json()["repositories"] == ["secret/app", "team/app", "team/lib"]
    assert catalog("carol").json()["repositories"] == ["team/app", "team/lib"]
    # Pages are cut from what the caller may see, so no page or Link leaks a hidden name.
    r = catalog("carol", n=1)
    assert r.json()["repositories"] == ["team/app"] and "last=team%2Fapp" in r.headers["Link"]
    assert catalog("carol", n=5, last="team/app").json()["repositories"] == ["team/lib"]
    assert requests.get(f"{server.url}/v2/_catalog").status_code == 401


def test_metrics_only_for_users_with_the_right(make_server, htpasswd, access_config, tmp_path):
    for extra in ([], ["--token"]):
        server = make_server("--htpasswd", str(htpasswd), "--config", str(access_config), *extra,
                             root=tmp_path / f"root{len(extra)}")
        url = f"{server.url}/metrics"
        r = requests.get(url)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic ")
        assert "registry_http_requests_total" not in r.text
        assert requests.get(url, auth=("alice", "wrong")).status_code == 401
        r = requests.get(url, auth=("bob", "bob-pw"))
        assert r.status_code == 403 and _error(r)["code"] == "DENIED"
        r = requests.get(url, auth=("alice", "alice-pw"))
        assert r.status_code == 200 and "# TYPE registry_http_requests_total counter" in r.text
        server.stop()
    # Auth on but nobody named for metrics: nobody reads them.
    server = make_server("--htpasswd", str(htpasswd), root=tmp_path / "root-none")
    assert requests.get(f"{server.url}/metrics", auth=("alice", "alice-pw")).status_code == 403


def test_gate_covers_every_route_and_refuses_undeclared_ones(tmp_path):
    from registry.app import ACCESS, create_app
    from registry.config import Config

    app = create_app(Config(root=str(tmp_path / "root"), access_log=""))
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert endpoints == set(ACCESS), endpoints ^ set(ACCESS)

    # A route someone adds without an access rule is refused, even on a registry without auth.
    @app.route("/v2/<path:name>/debug", methods=["GET"])
    def debug(name: str):
        return "internals"

    @app.route("/debug", methods=["GET"])
    def debug_root():
        return "internals"

    client = app.test_client()
    for path in ("/v2/x/debug", "/debug"):
        r = client.get(path)
        assert r.status_code == 403 and r.json["errors"][0]["code"] == "DENIED" and b"internals" not in r.data
    assert client.get("/v2/").status_code == 200


def test_unknown_users_cost_as_much_as_known_ones(tmp_path):
    from registry.auth.htpasswd import Htpasswd

    for cost in (5, 9):
        path = htpasswd_file(tmp_path / f"htpasswd{cost}", {"alice": "a", "bob": "b"}, cost=cost)
        table = Htpasswd(str(path))
        assert table.dummy.startswith(f"$2b${cost:02d}$".encode())
        assert not table.check("nobody", "a") and table.check("alice", "a")
