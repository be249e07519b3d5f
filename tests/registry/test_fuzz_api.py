"""Property: no request at all, whatever its method, path, headers or body, gets a 5xx from the registry — without
auth, with htpasswd basic auth, and with token auth (each a real server on loopback)."""

from __future__ import annotations

import base64
import http.client
import json
from dataclasses import dataclass
from urllib.parse import quote, urlencode

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard import mediatypes as mt
from regkit import LONG, Server, free_port, htpasswd_file, layer_tar, make_image, sha256


@dataclass
class Target:
    """A seeded server and the values that reach past its first checks."""

    server: Server
    authorizations: list[str]
    upload_id: str
    digests: list[str]


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _seed(server: Server, headers: dict[str, str]) -> tuple[str, list[str]]:
    """Push an image, an index over it and an artifact referring to it; open an upload session."""
    img = make_image([layer_tar({"f": b"fuzz"})])
    child = {"mediaType": mt.OCI_MANIFEST, "digest": img.digest, "size": len(img.manifest),
             "platform": {"os": "linux", "architecture": "amd64"}}
    index = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [child]}).encode()
    artifact = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "artifactType": "application/x.sig",
                           "config": {"mediaType": mt.OCI_EMPTY, "digest": sha256(b"{}"), "size": 2},
                           "layers": [], "subject": {k: child[k] for k in ("mediaType", "digest", "size")}}).encode()
    for blob in [img.config, *img.layers, b"{}"]:
        r = requests.post(f"{server.url}/v2/fuzz/img/blobs/uploads/", params={"digest": sha256(blob)}, data=blob,
                          headers=headers)
        assert r.status_code == 201, r.text
    for ref, data, media_type in (("latest", img.manifest, mt.OCI_MANIFEST), ("multi", index, mt.OCI_INDEX),
                                  ("sig", artifact, mt.OCI_MANIFEST)):
        r = requests.put(f"{server.url}/v2/fuzz/img/manifests/{ref}", data=data,
                         headers={**headers, "Content-Type": media_type})
        assert r.status_code == 201, r.text
    upload = requests.post(f"{server.url}/v2/fuzz/img/blobs/uploads/", headers=headers)
    return upload.headers["Docker-Upload-UUID"], [img.digest, sha256(index), sha256(artifact), sha256(img.config)]


@pytest.fixture(scope="module", params=["open", "basic", "token"])
def target(request, tmp_path_factory):
    mode = request.param
    tmp = tmp_path_factory.mktemp(f"fuzz-{mode}")
    args = ["--enable-delete", "--workers", "2"]
    authorizations = ["", "Basic", "Basic !!!", "Bearer", "Bearer x.y.z", _basic("", ""), _basic("alice", LONG),
                      _basic("nobody", LONG), _basic("alice", "wrong"), "Digest x"]
    if mode != "open":
        users = htpasswd_file(tmp / "htpasswd", {"alice": "alice-pw", "bob": "bob-pw", "lena": LONG})
        config = tmp / "registry.toml"
        config.write_text('[auth]\nmetrics = ["alice"]\nanonymous = ["pull"]\n[auth.token]\nttl = 3600\n'
                          '[auth.access]\nalice = ["pull", "push", "delete"]\nbob = ["pull"]\nlena = ["pull"]\n')
        args += ["--htpasswd", str(users), "--config", str(config)] + (["--token"] if mode == "token" else [])
    server = Server(tmp / "root", free_port(), args).start()
    alice = {"Authorization": _basic("alice", "alice-pw")} if mode != "open" else {}
    if mode == "token":
        scope = "repository:fuzz/img:pull,push,delete registry:catalog:*"
        r = requests.get(f"{server.url}/token", params={"scope": scope}, headers=alice)
        alice = {"Authorization": f"Bearer {r.json()['token']}"}
    authorizations += [alice.get("Authorization", ""), _basic("bob", "bob-pw"), _basic("lena", LONG)]
    upload_id, digests = _seed(server, alice)
    yield Target(server, authorizations, upload_id, digests)
    server.stop()
    server.assert_clean_log()


_garbage = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FF), max_size=30)
_header_garbage = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=30)  # latin-1
_name = st.one_of(st.sampled_from(["fuzz/img", "fuzz/other", "a", "-bad", "A/B", "x/" + "y" * 300, "..", "a//b",
                                   "_catalog", "fuzz/img/blobs", "fuzz/img/manifests/latest"]),
                  st.text(alphabet="abcz09/._-:%", min_size=1, max_size=20))
_huge = "9" * 5000


def _maybe(values: list[str], header: bool = False) -> st.SearchStrategy[str | None]:
    """Absent, one of `values` (twice as likely), or garbage."""
    choices = st.sampled_from(values)
    return st.one_of(st.none(), choices, choices, _header_garbage if header else _garbage)


@st.composite
def _requests(draw, target: Target):
    """(method, path, headers, body) built from the API's route shapes, real values and garbage."""
    stored = st.sampled_from(target.digests)
    digest = draw(st.one_of(stored, stored, st.sampled_from(["sha256:" + "0" * 64, "sha256:bad", "sha512:x", ""]),
                            _garbage))
    reference = draw(st.one_of(st.sampled_from(["latest", "multi", "sig", "v1", "-x", "a" * 200]), st.just(digest),
                               _garbage))
    upload = draw(st.one_of(st.just(target.upload_id), st.sampled_from(["0" * 32, "x"]), _garbage))
    name = draw(st.one_of(st.just("fuzz/img"), _name))
    api = ["/v2/", "/v2/_catalog", "/v2/{n}/blobs/{d}", "/v2/{n}/blobs/uploads/", "/v2/{n}/blobs/uploads/{u}",
           "/v2/{n}/manifests/{r}", "/v2/{n}/tags/list", "/v2/{n}/referrers/{d}", "/token", "/metrics"]
    shape = draw(st.sampled_from(api * 3 + ["/v2", "/healthz", "/static/x", "/{g}", "/v2/{g}", "/v2/{n}/{g}"]))
    path = shape.format(n=quote(name, safe="/:"), d=quote(digest, safe=":"), r=quote(reference, safe=":"),
                        u=quote(upload), g=quote(draw(_garbage), safe="/"))
    query = {key: value for key, value in (
        ("n", draw(_maybe(["1", "0", "²", "٣", "-1", "1e3", _huge]))),
        ("last", draw(_maybe(["fuzz/img", "latest", "zzz"]))),
        ("digest", draw(_maybe(target.digests))), ("mount", draw(_maybe(target.digests))),
        ("from", draw(_maybe(["fuzz/img", "fuzz/other", "Bad", "a" * 300]))),
        ("scope", draw(_maybe(["repository:fuzz/img:pull,push", "registry:catalog:*", "repository::", ":::"]))),
        ("service", draw(_maybe(["dockyard-registry", "other"]))), ("account", draw(_maybe(["alice", "nobody"]))),
        ("artifactType", draw(_maybe(["application/x.sig"])))) if value is not None}
    if query:
        path += "?" + urlencode(query)
    headers = {key: value for key, value in (
        ("Authorization", draw(_maybe(target.authorizations, header=True))),
        ("Range", draw(_maybe(["bytes=0-", f"bytes={_huge}-", f"bytes=0-{_huge}", f"bytes=-{_huge}", "bytes=1-0",
                               "bytes=²-", "bytes=0-1,2-3", "bytes=-0"], header=True))),
        ("Content-Range", draw(_maybe(["0-0", f"0-{_huge}", "bytes 0-3/4", "5-1", "0-1/*"], header=True))),
        ("Accept", draw(_maybe([mt.OCI_MANIFEST, mt.OCI_INDEX, mt.DOCKER_MANIFEST, "*/*",
                                f"{mt.OCI_MANIFEST}, {mt.DOCKER_MANIFEST}"], header=True))),
        ("Content-Type", draw(_maybe([mt.OCI_MANIFEST, mt.OCI_INDEX, mt.DOCKER_LIST, "application/json",
                                      "x/y; charset=utf-8"], header=True))),
        ("Content-Length", draw(_maybe(["0", "abc", "-1", "²", "1e3", " 1", _huge[:30]], header=True))))
        if value is not None}
    body = draw(st.one_of(st.just(b""), st.binary(max_size=200), st.just(b"[" * 50_000),
                          st.sampled_from([b'{"schemaVersion": 2, "manifests": [{"platform": "linux"}]}',
                                           b'{"schemaVersion": 2, "config": {}, "layers": [[]]}'])))
    # Never more than is sent (the server would wait for the rest); smaller or malformed values are fair game.
    value = headers.get("Content-Length", "")
    if not value or (value.strip().isdigit() and value.isascii() and int(value.strip()) > len(body)):
        headers["Content-Length"] = str(len(body))
    method = draw(st.sampled_from(["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "OPTIONS", "TRACE", "BREW"]))
    return method, path, headers, body


def _send(server: Server, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for key, value in headers.items():
            conn.putheader(key, value.encode("latin-1"))
        conn.putheader("Connection", "close")
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_no_request_gets_a_5xx(target, data):
    method, path, headers, body = data.draw(_requests(target))
    status, reply = _send(target.server, method, path, headers, body)
    assert status < 500, (status, method, path[:200], {k: v[:80] for k, v in headers.items()}, reply[:300])
    assert b"Traceback" not in reply
