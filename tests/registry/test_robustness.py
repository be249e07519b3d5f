"""16 concurrent clients, kill -9 in the middle of pushes, and hypothesis fuzzing: never a 500, nothing lost."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard import mediatypes as mt
from registry.storage import Layout
from regkit import chunked_push_blob, layer_tar, make_image, push_image, sha256

pytestmark = pytest.mark.drivers("fs", "s3")


def test_sixteen_clients_overlapping_blobs(make_server):
    server = make_server("--workers", "2", "--threads", "8")
    shared = [layer_tar({f"shared{i}": os.urandom(300_000)}) for i in range(4)]

    def client(n: int) -> int:
        layers = [shared[n % 4], shared[(n + 1) % 4], layer_tar({f"own{n}": os.urandom(100_000)})]
        img = make_image(layers)
        repo = f"conc/c{n % 5}"
        for blob in [img.config, *img.layers]:
            if n % 2:
                chunked_push_blob(server.url, repo, blob, 64 * 1024)
            else:
                r = requests.post(f"{server.url}/v2/{repo}/blobs/uploads/", params={"digest": sha256(blob)},
                                  data=blob)
                assert r.status_code == 201, r.text
        r = requests.put(f"{server.url}/v2/{repo}/manifests/c{n}", data=img.manifest,
                         headers={"Content-Type": img.media_type})
        assert r.status_code == 201, r.text
        for _ in range(3):
            assert requests.get(f"{server.url}/v2/{repo}/manifests/c{n}").content == img.manifest
            for blob in img.layers:
                r = requests.get(f"{server.url}/v2/{repo}/blobs/{sha256(blob)}")
                assert r.status_code == 200 and hashlib.sha256(r.content).digest() == \
                    hashlib.sha256(blob).digest()
        return n

    with ThreadPoolExecutor(16) as pool:
        assert sorted(pool.map(client, range(16))) == list(range(16))


def _verify_store(storage: Layout) -> None:
    """Every visible blob hashes to its name: nothing half-written is in the store."""
    for digest, _ in storage.iter_blobs():
        with storage.open_blob(digest) as f:
            assert sha256(f.read()) == str(digest)


def test_kill_9_during_pushes(make_server, tmp_path):
    root = tmp_path / "crash-root"
    server = make_server("--workers", "2", root=root)
    acknowledged: dict[str, object] = {}
    stop = threading.Event()

    def pusher(n: int) -> None:
        i = 0
        while not stop.is_set():
            img = make_image([layer_tar({f"p{n}-{i}": os.urandom(400_000)}), layer_tar({"small": b"x" * n})])
            try:
                r = push_image(server.url, f"crash/p{n}", img, f"t{i}")
            except (requests.RequestException, AssertionError):
                return
            if r.status_code == 201:
                acknowledged[f"crash/p{n}:t{i}"] = img
            i += 1

    # An upload session with one chunk in, to resume after the crash.
    loc = requests.post(f"{server.url}/v2/crash/resume/blobs/uploads/").headers["Location"]
    first = os.urandom(70_000)
    requests.patch(server.url + loc, data=first)
    threads = [threading.Thread(target=pusher, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 12 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.stop(signal.SIGKILL)
    stop.set()
    for t in threads:
        t.join()
    assert len(acknowledged) >= 12
    server = make_server("--workers", "2", root=root)
    _verify_store(server.storage())
    for ref, img in acknowledged.items():
        repo, tag = ref.split(":")
        r = requests.get(f"{server.url}/v2/{repo}/manifests/{tag}")
        assert r.status_code == 200 and r.content == img.manifest, ref
        for blob in [img.config, *img.layers]:
            r = requests.get(f"{server.url}/v2/{repo}/blobs/{sha256(blob)}")
            assert r.status_code == 200 and sha256(r.content) == sha256(blob), ref
    # The session survived the restart.
    r = requests.get(server.url + loc)
    assert r.status_code == 204 and r.headers["Range"] == f"0-{len(first) - 1}"
    rest = os.urandom(1000)
    r = requests.put(server.url + loc, params={"digest": sha256(first + rest)}, data=rest)
    assert r.status_code == 201


# -- fuzzing ------------------------------------------------------------------------------------------------------

_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 2**70), st.text(max_size=20),
                       st.sampled_from([sha256(b""), "sha256:zz", "sha512:" + "a" * 128, mt.OCI_MANIFEST]))
_json = st.recursive(_json_leaf, lambda c: st.one_of(st.lists(c, max_size=4),
                                                      st.dictionaries(st.text(max_size=12), c, max_size=4)),
                     max_leaves=20)
_descriptor = st.fixed_dictionaries({"mediaType": st.sampled_from([mt.OCI_LAYER_GZIP, mt.OCI_CONFIG, mt.OCI_MANIFEST,
                                                                    "", 5]),
                                     "digest": st.sampled_from([sha256(b"x"), "nope", "sha256:" + "0" * 64, 7]),
                                     "size": st.one_of(st.integers(-3, 10), st.text(max_size=3))})
_manifest = st.one_of(
    _json,
    st.fixed_dictionaries({"schemaVersion": st.sampled_from([2, 1, "2", True]),
                           "mediaType": st.sampled_from(list(mt.MANIFESTS) + ["text/plain", 3]),
                           "config": st.one_of(_descriptor, _json),
                           "layers": st.one_of(st.lists(_descriptor, max_size=3), _json),
                           "manifests": st.one_of(st.lists(_descriptor, max_size=3), _json),
                           "subject": st.one_of(_descriptor, _json)}),
)
_reference = st.one_of(st.sampled_from(["latest", "v1", sha256(b"x"), "sha256:bad", "-x", "a" * 200, "..",
                                        "%00", "ü"]), st.text(alphabet="abc:._-0123456789", min_size=1, max_size=8))
_content_type = st.sampled_from([None, mt.OCI_MANIFEST, mt.OCI_INDEX, mt.DOCKER_MANIFEST, mt.DOCKER_LIST,
                                 "application/json", "x/y; charset=utf-8", ""])


def _no_500(r: requests.Response) -> None:
    assert r.status_code < 500, (r.status_code, r.text)
    assert "Traceback" not in r.text
    if r.status_code >= 400 and r.request.method != "HEAD":
        assert r.json()["errors"][0]["code"]


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=_manifest, reference=_reference, content_type=_content_type,
       raw=st.one_of(st.none(), st.binary(max_size=64)))
def test_fuzz_manifest_put(server, body, reference, content_type, raw):
    data = raw if raw is not None else json.dumps(body).encode()
    headers = {"Content-Type": content_type} if content_type is not None else {}
    r = requests.put(f"{server.url}/v2/fuzz/repo/manifests/{requests.utils.quote(reference, safe='')}",
                     data=data, headers=headers)
    _no_500(r)
    if r.status_code == 201:
        got = requests.get(f"{server.url}/v2/fuzz/repo/manifests/{r.headers['Docker-Content-Digest']}")
        assert got.content == data


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(method=st.sampled_from(["GET", "HEAD", "PATCH", "PUT", "DELETE", "POST"]),
       session=st.booleans(),
       content_range=st.one_of(st.none(), st.text(alphabet="0123456789-/ bytes=*", max_size=14).map(str.strip)),
       digest=st.one_of(st.none(), st.sampled_from([sha256(b""), sha256(b"data"), "sha256:", "md5:1", "x" * 300])),
       mount=st.one_of(st.none(), st.sampled_from([sha256(b"data"), "bad"])),
       source=st.one_of(st.none(), st.sampled_from(["fuzz/repo", "Bad", "", "a" * 300])),
       payload=st.binary(max_size=32),
       range_header=st.one_of(st.none(), st.text(alphabet="0123456789-=,bytes ", max_size=12).map(str.strip)))
def test_fuzz_upload_requests(server, method, session, content_range, digest, mount, source, payload,
                              range_header):
    base = f"{server.url}/v2/fuzz/up/blobs/uploads/"
    url = requests.post(base).headers["Location"] if session else base
    if session:
        url = server.url + url
    params = {k: v for k, v in (("digest", digest), ("mount", mount), ("from", source)) if v is not None}
    headers = {}
    if content_range is not None:
        headers["Content-Range"] = content_range
    if range_header is not None:
        headers["Range"] = range_header
    _no_500(requests.request(method, url, params=params, data=payload, headers=headers))
    if digest is not None:
        _no_500(requests.request(method, f"{server.url}/v2/fuzz/up/blobs/{digest}", headers=headers))


def test_broken_off_monolithic_upload_leaves_nothing(make_server):
    import socket

    server = make_server()
    digest = sha256(b"x" * 100_000)
    for head in (f"Content-Length: 100000\r\n", "Transfer-Encoding: chunked\r\n"):
        s = socket.create_connection(("127.0.0.1", server.port))
        body = b"x" * 5000 if "Length" in head else b"186A0\r\n" + b"x" * 5000
        s.sendall(f"POST /v2/broken/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode() + body)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(10)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
        s.close()
        assert reply.startswith(b"HTTP/1.1 400"), reply[:200]
    assert requests.head(f"{server.url}/v2/broken/blobs/{digest}").status_code == 404
    driver = server.storage().driver
    assert driver.list("uploads") == []
    # The metrics flusher's own write is a temp file for a moment; one the broken uploads left would stay.
    deadline = time.monotonic() + 5
    while driver.purge_partial_writes(float("inf"), dry_run=True) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert driver.purge_partial_writes(float("inf"), dry_run=True) == 0
