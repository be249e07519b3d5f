"""Real clients against the real server: skopeo, podman, oras-py, python-dxf."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import shutil
import tarfile
import tempfile

import pytest
import requests

from support import tool
from regkit import layer_tar, make_image, sha256, write_layout

pytestmark = pytest.mark.drivers("fs", "s3")


def _run(*cmd: str) -> subprocess.CompletedProcess:
    p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, f"{' '.join(cmd)}: {p.stderr[-2000:]}"
    return p


@pytest.mark.parametrize("fmt", ["oci", "v2s2"])
def test_skopeo_round_trip(server, tmp_path, fmt):
    img = make_image([layer_tar({"big": os.urandom(2 << 20)}), layer_tar({"etc/hostname": b"box\n"}),
                      layer_tar({"x": b"y" * 1000})])
    write_layout(tmp_path / "src", img)
    ref = f"docker://{server.host}/skopeo/{fmt}:v1"
    _run(tool("skopeo"), "copy", "--dest-tls-verify=false", "--format", fmt, f"oci:{tmp_path}/src:latest", ref)
    raw = _run(tool("skopeo"), "inspect", "--raw", "--tls-verify=false", ref).stdout.encode()
    if fmt == "oci":
        assert raw == img.manifest  # stored and served byte for byte
    served = requests.get(f"{server.url}/v2/skopeo/{fmt}/manifests/v1",
                          headers={"Accept": json.loads(raw)["mediaType"]}).content
    assert served == raw
    # dir: keeps the manifest exactly as the registry served it.
    _run(tool("skopeo"), "copy", "--src-tls-verify=false", ref, f"dir:{tmp_path}/dst")
    assert (tmp_path / "dst" / "manifest.json").read_bytes() == raw
    for layer in img.layers:
        assert (tmp_path / "dst" / sha256(layer).split(":")[1]).read_bytes() == layer


def test_podman_push_pull(server, tmp_path):
    podman = tool("podman")
    short = tempfile.mkdtemp(prefix="pd", dir="/tmp")  # podman limits the runroot path to 50 characters
    tar = tmp_path / "rootfs.tar"
    with tarfile.open(tar, "w") as tf:
        tf.add("/bin/busybox", arcname="bin/busybox")
    name = f"{server.host}/podman/busybox:t1"
    store = ["--root", f"{short}/s", "--runroot", f"{short}/r", "--storage-driver", "vfs"]
    _run(podman, *store, "import", str(tar), name)
    _run(podman, *store, "push", "--tls-verify=false", "--digestfile", f"{short}/digest", name)
    local_digest = open(f"{short}/digest").read().strip()
    _run(podman, *store, "rmi", name)
    _run(podman, *store, "pull", "--tls-verify=false", name)
    pulled = _run(podman, *store, "image", "inspect", "--format", "{{.Digest}}", name).stdout.strip()
    assert pulled == local_digest
    r = requests.get(f"{server.url}/v2/podman/busybox/manifests/t1", headers={"Accept": "*/*"})
    assert sha256(r.content) == r.headers["Docker-Content-Digest"] == pulled
    _run(podman, *store, "rmi", "-a", "-f")
    shutil.rmtree(short, ignore_errors=True)


def test_oras_push_pull(server, tmp_path):
    import oras.client

    client = oras.client.OrasClient(hostname=server.host, insecure=True)
    artifact = tmp_path / "artifact.txt"
    artifact.write_bytes(os.urandom(5000))
    target = f"{server.host}/oras/art:v1"
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        r = client.push(target=target, files=["artifact.txt"])
        assert r.status_code == 201
        out = tmp_path / "out"
        files = client.pull(target=target, outdir=str(out))
        assert [open(f, "rb").read() for f in files] == [artifact.read_bytes()]
        # Chunked upload path of oras-py.
        r = client.push(target=f"{server.host}/oras/art:chunked", files=["artifact.txt"], do_chunked=True,
                        chunk_size=1024)
        assert r.status_code == 201
        files = client.pull(target=f"{server.host}/oras/art:chunked", outdir=str(tmp_path / "out2"))
        assert [open(f, "rb").read() for f in files] == [artifact.read_bytes()]
    finally:
        os.chdir(old)


def test_dxf_blobs_and_aliases(server):
    from dxf import DXF

    d = DXF(server.host, "dxf/repo", insecure=True)
    data = os.urandom(70_000)
    path_digest = d.push_blob(data=iter([data]), digest="sha256:" + hashlib.sha256(data).hexdigest())
    assert path_digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert b"".join(d.pull_blob(path_digest)) == data
    assert d.blob_size(path_digest) == len(data)
    d.set_alias("v1", path_digest)
    assert d.list_aliases() == ["v1"]
    assert d.get_alias("v1") == [path_digest]
    other = DXF(server.host, "dxf/other", insecure=True)
    other.mount_blob("dxf/repo", path_digest)
    assert b"".join(other.pull_blob(path_digest)) == data
    assert "dxf/repo" in d.list_repos()
