"""The registry on S3 storage (a Ceph RADOS Gateway): dockyard push/pull, skopeo, a chunked upload across parts, GC."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from dockyard.digest import Digest
from dockyard.store import Store
from registry.gc import CLOCK_SLACK
from registry.storage import open_driver
from regkit import Server, chunked_push_blob, free_port, layer_tar, make_image, s3_section, sha256, write_layout
from support import REPO, run_cli, tool

pytestmark = pytest.mark.s3


def _config(path: Path, params: dict) -> Path:
    """A config file with distribution's `storage.s3` section (the lock directory left to its default)."""
    settings = {key: value for key, value in params.items() if key != "lockdirectory"}
    path.write_text(s3_section({**settings, "chunksize": 5 << 20}))  # S3's minimum part: a 12 MiB blob spans three
    return path


def _gc(config: Path, state: Path) -> str:
    p = subprocess.run([sys.executable, "-m", "dockyard", "registry", "gc", "--config", str(config), "--root",
                        str(state), "--grace", "0"], capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_push_pull_skopeo_chunked_upload_and_gc_on_s3(s3_params, tmp_path, store_root, busybox_image, dockyard):
    config = _config(tmp_path / "registry.toml", s3_params)
    state = tmp_path / "state"
    server = Server(state, free_port(), ["--config", str(config), "--workers", "2"],
                    entry=("dockyard", "registry", "serve")).start()
    try:
        ref = f"{server.host}/s3/busybox:1"
        dockyard("tag", busybox_image, ref)
        dockyard("push", ref)
        other = str(tmp_path / "other-store")
        run_cli(other, "pull", ref)
        digest = Store(store_root).resolve(busybox_image).manifest_digest
        assert Store(other).resolve(ref).manifest_digest == digest
        # The content is in the bucket, not on the local disk (which holds the locks alone).
        driver = open_driver("s3", s3_params)
        assert driver.list("repositories/s3") == ["busybox"] and driver.list("blobs/sha256")
        assert not (state / "blobs").exists()

        # skopeo there and back: a layer of more than one part, served byte for byte.
        img = make_image([layer_tar({"big": os.urandom(6 << 20)}), layer_tar({"small": b"s"})])
        write_layout(tmp_path / "src", img)
        skopeo_ref = f"docker://{server.host}/s3/skopeo:v1"
        for src, dst in ((f"oci:{tmp_path}/src:latest", skopeo_ref), (skopeo_ref, f"dir:{tmp_path}/dst")):
            subprocess.run([tool("skopeo"), "copy", "--src-tls-verify=false", "--dest-tls-verify=false", src, dst],
                           check=True, capture_output=True)
        assert (tmp_path / "dst" / "manifest.json").read_bytes() == img.manifest
        for layer in img.layers:
            assert (tmp_path / "dst" / sha256(layer).split(":")[1]).read_bytes() == layer

        # PATCHes of 3 MiB against 5 MiB parts: parts and the tail below the minimum carried across requests.
        blob = os.urandom(12 << 20)
        chunked_push_blob(server.url, "s3/chunked", blob, 3 << 20)
        r = requests.get(f"{server.url}/v2/s3/chunked/blobs/{sha256(blob)}")
        assert r.status_code == 200 and r.content == blob
        assert driver.list("uploads") == [] and driver.purge_partial_writes(float("inf"), dry_run=True) == 0

        # Unreferenced, the chunked blob goes; the tagged images stay whole.
        # S3 mtimes can't be aged, so wait: GC's clock is a HEAD's Last-Modified (whole seconds, rounded down)
        # and its cutoff (grace 0) lies the clock slack back from that, while listings carry milliseconds.
        time.sleep(CLOCK_SLACK + 1.1)
        assert f"removed 1 blobs ({len(blob)} bytes)" in _gc(config, state)
        assert requests.get(f"{server.url}/v2/s3/chunked/blobs/{sha256(blob)}").status_code == 404
        for layer in img.layers:
            assert requests.head(f"{server.url}/v2/s3/skopeo/blobs/{sha256(layer)}").status_code == 200
        third = str(tmp_path / "third-store")
        run_cli(third, "pull", ref)
        assert Store(third).resolve(ref).manifest_digest == digest
    finally:
        server.stop()
    server.assert_clean_log()


def test_a_refusing_s3_is_a_clean_500(s3_params, tmp_path):
    """S3 refusing every request (a wrong secret key: permanent, not retried) is the spec's error body, no blob."""
    config = _config(tmp_path / "registry.toml", {**s3_params, "secretkey": "wrong"})
    server = Server(tmp_path / "state", free_port(), ["--config", str(config)],
                    entry=("dockyard", "registry", "serve")).start()
    try:
        blob = b"never stored"
        for r in (requests.post(f"{server.url}/v2/s3/refused/blobs/uploads/", params={"digest": sha256(blob)},
                                data=blob),
                  requests.get(f"{server.url}/v2/s3/refused/tags/list")):
            assert r.status_code == 500
            assert r.json() == {"errors": [{"code": "UNKNOWN", "message": "internal server error"}]}
    finally:
        server.stop()
    assert "SignatureDoesNotMatch" in server.log.read_text()
    assert open_driver("s3", s3_params).list("") == []


@pytest.mark.parametrize("v4auth", [True, False], ids=["sigv4", "sigv2"])
def test_signed_requests_with_either_signature_and_odd_key_names(s3_params, v4auth):
    """The driver's own signed requests, signature version 4 or 2, on keys that need escaping (a root with a space,
    "+", "=" and "%"): every kind of call it makes, a multipart write and a copy among them."""
    driver = open_driver("s3", {**s3_params, "rootdirectory": f"{s3_params['rootdirectory']}/odd name+a=b%20",
                                "v4auth": v4auth, "chunksize": 5 << 20})
    driver.put_content("d/f 1", b"one")
    assert driver.get_content("d/f 1") == b"one" and driver.stat("d/f 1").size == 3
    with driver.reader("d/f 1", 3) as f:  # from the end: empty
        assert f.read() == b""
    data = os.urandom((5 << 20) + 7)
    with driver.writer("d/big") as w:  # one part uploaded, the rest in the tail
        w.write(data)
    with driver.writer("d/big", append=True) as w:
        assert w.size == len(data)
        w.commit()
    driver.move("d/big", "e/big")
    driver.touch("e/big")
    with driver.reader("e/big", 5 << 20) as f:
        assert f.read() == data[5 << 20:]
    assert sorted(driver.list("")) == ["d", "e"] and driver.list("d") == ["f 1"]
    assert driver.delete("d") and driver.delete("e/big")
    assert driver.list("") == [] and driver.purge_partial_writes(time.time() + 60) == 0
    with pytest.raises(FileNotFoundError):
        driver.get_content("d/f 1")



def _counting(driver) -> list[str]:
    """The S3 requests `driver` sends from now on (method and key or URL), its own signed ones and botocore's."""
    sent: list[str] = []
    request = driver.http.request

    def counted(method, key, *args, **kwargs):
        sent.append(f"{method} {key}")
        return request(method, key, *args, **kwargs)

    driver.http.request = counted
    driver.client.meta.events.register("before-send.s3", lambda request, **_: sent.append(
        f"{request.method} {request.url}"))
    return sent


class _Broken(io.BytesIO):
    """A request body whose client goes away after its first bytes."""

    def read(self, size: int | None = -1) -> bytes:
        if self.tell():
            raise ConnectionResetError("client gone")
        return super().read(10)


def test_s3_requests_per_blob_upload(s3_params):
    """The S3 requests one blob's upload costs, monolithic (POST with the digest) and chunked (POST, PATCH, PUT):
    counted, since every request is a round trip a replica's lone worker sleeps through. A fresh session's writer
    looks for no data, and the finished session goes in one DeleteObjects."""
    from registry.storage.layout import Layout

    driver = open_driver("s3", s3_params)
    layout = Layout(driver)
    sent = _counting(driver)
    counts = {}
    for kind, blob in (("monolithic", b"m" * 1000), ("chunked", b"c" * 1000)):
        del sent[:]
        d = Digest.of_bytes(blob)
        info = layout.create_upload("s3/count")
        if kind == "chunked":
            assert layout.upload_info("s3/count", info.id).size == 0
            layout.append_upload("s3/count", info.id, io.BytesIO(blob[:600]), 0)
            layout.append_upload("s3/count", info.id, io.BytesIO(blob[600:]), 600)
            layout.commit_upload("s3/count", info.id, d)
        else:
            layout.commit_upload("s3/count", info.id, d, io.BytesIO(blob))
        counts[kind] = len(sent)
        with layout.open_blob(d) as f:
            assert f.read() == blob
    # Before: 11 and 24. Gone: a fresh session's lookups of its data (a status GET's HEAD, listing and GET of the
    # tail; the first writer's GET of the tail and HEAD, for one PUT of the info in a PATCH), and of the finished
    # session's removal, its listings of keys and of multipart uploads and the tail's own DELETE. Then 7 and 17;
    # gone since: the listing before each lock of the session (its info, read under the lock, tells), and the
    # failed touch of the new blob before its write.
    assert counts == {"monolithic": 5, "chunked": 13}
    assert driver.list("uploads") == [] and driver.purge_partial_writes(float("inf"), dry_run=True) == 0

    # A last chunk broken off in a fresh session leaves it fresh: without data, for the client to start again.
    blob = b"b" * 100
    info = layout.create_upload("s3/count")
    with pytest.raises(ConnectionResetError):
        layout.commit_upload("s3/count", info.id, Digest.of_bytes(blob), _Broken(blob))
    assert layout.upload_info("s3/count", info.id).size == 0 and driver.list(f"uploads/{info.id}") == ["info"]
    with pytest.raises(ConnectionResetError):  # a PATCH keeps what came
        layout.append_upload("s3/count", info.id, _Broken(blob), 0)
    assert layout.upload_info("s3/count", info.id).size == 10
    layout.commit_upload("s3/count", info.id, Digest.of_bytes(blob), io.BytesIO(blob[10:]))
    assert driver.list("uploads") == [] and driver.purge_partial_writes(float("inf"), dry_run=True) == 0


def _s3_app(s3_params, tmp_path):
    """The registry's app on the test's S3 bucket, its state under tmp_path."""
    from registry.app import create_app
    from registry.config import build

    conf = tmp_path / "registry.toml"
    conf.write_text(f'access_log = ""\nroot = "{tmp_path / "state"}"\n' + s3_section(s3_params))
    return create_app(build(str(conf)))


def test_s3_requests_per_image_push(s3_params, tmp_path):
    """An image pushed the way docker does (each blob POST, PATCH, PUT; then the manifest) through the registry's
    app on S3: its S3 requests counted (bench/scale.py's push)."""
    app = _s3_app(s3_params, tmp_path)
    sent = _counting(app.extensions["registry"].storage.driver)
    client = app.test_client()
    layer = os.urandom(1 << 20)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha256(layer)]}}).encode()
    for blob in (config, layer):
        r = client.post("/v2/s3/count/blobs/uploads/")
        assert r.status_code == 202
        r = client.patch(r.headers["Location"], data=blob, content_type="application/octet-stream")
        assert r.status_code == 202
        r = client.put(r.headers["Location"], query_string={"digest": sha256(blob)})
        assert r.status_code == 201
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config),
                           "size": len(config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(layer),
                            "size": len(layer)}]}
    r = client.put("/v2/s3/count/manifests/v1", data=json.dumps(manifest),
                   content_type="application/vnd.oci.image.manifest.v1+json")
    assert r.status_code == 201
    # 42 before a fresh session's writer looked for no data and a finished one went in one DeleteObjects; 34 before
    # a session's lock went without a listing first and a new blob or manifest without a failed touch first.
    assert len(sent) == 27, sent


def test_made_up_upload_ids_leave_no_locks_on_s3(s3_params, tmp_path):
    """A client that makes up upload ids (well formed, never issued) gets 404 for each. Each request takes the
    session's lock before it reads the info that says the session is unknown (no listing first), and the lock's
    files must not stay behind, one per made-up id; a session of another repository keeps its lock and finishes."""
    client = _s3_app(s3_params, tmp_path).test_client()
    locks = Path(s3_params["lockdirectory"]) / "uploads"
    for _ in range(3):
        url = f"/v2/s3/locks/blobs/uploads/{uuid.uuid4().hex}"
        for r in (client.patch(url, data=b"x", content_type="application/octet-stream"),
                  client.put(url, data=b"x", query_string={"digest": sha256(b"x")}), client.delete(url)):
            assert r.status_code == 404 and r.json["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN", r.data
    assert not locks.exists() or list(locks.iterdir()) == []
    r = client.post("/v2/s3/other/blobs/uploads/")
    assert r.status_code == 202
    owner = r.headers["Location"]
    stranger = owner.replace("/s3/other/", "/s3/locks/")
    r = client.patch(stranger, data=b"x", content_type="application/octet-stream")
    assert r.status_code == 404 and r.json["errors"][0]["code"] == "BLOB_UPLOAD_UNKNOWN", r.data
    assert (locks / owner.partition("?")[0].rpartition("/")[2] / "lock").exists()  # (its session's, not forgotten)
    r = client.patch(owner, data=b"y", content_type="application/octet-stream")
    assert r.status_code == 202
    r = client.put(r.headers["Location"], query_string={"digest": sha256(b"y")})
    assert r.status_code == 201 and client.get(f"/v2/s3/other/blobs/{sha256(b'y')}").data == b"y"
    assert list(locks.iterdir()) == []
