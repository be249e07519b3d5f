"""save/load: docker-archive and oci-archive, with podman as the peer; corrupt archives leave the store as it was."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile

import pytest

from crafted import BAD, GOOD, docker_archive, image, oci_archive
from support import tool
from dockyard.store import Store

PODMAN_IMAGE = "localhost/dockyard-test-busybox:latest"


def _podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([tool("podman"), *args], capture_output=True, text=True, check=check, timeout=300)


def _store_state(root: str) -> tuple:
    """Everything observable about a store: index.json and the set of blob files."""
    store = Store(root)
    blobs = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(store.layout, "blobs")) for f in fs)
    return open(os.path.join(store.layout, "index.json")).read(), blobs


def test_save_then_podman_load_and_run(busybox_image, dockyard, tmp_path):
    archive = tmp_path / "bb.tar"
    dockyard("tag", "busybox", PODMAN_IMAGE)
    dockyard("save", "-o", str(archive), PODMAN_IMAGE)
    names = tarfile.open(archive).getnames()
    assert "manifest.json" in names and "repositories" in names and "index.json" in names
    _podman("rmi", "-f", PODMAN_IMAGE, check=False)
    try:
        out = _podman("load", "-i", str(archive)).stdout
        assert PODMAN_IMAGE in out
        run = _podman("run", "--rm", "--network", "none", PODMAN_IMAGE, "sh", "-c", "echo hello-from-$(basename $0)")
        assert run.stdout.strip() == "hello-from-sh"
    finally:
        _podman("rmi", "-f", PODMAN_IMAGE, check=False)


def test_podman_save_then_load_keeps_diff_ids_and_config(busybox_tar, dockyard, store_root, tmp_path):
    _podman("import", "--change", 'CMD ["/bin/sh"]', str(busybox_tar), PODMAN_IMAGE)
    try:
        podman_cfg = json.loads(_podman("image", "inspect", PODMAN_IMAGE).stdout)[0]
        for fmt in ("docker-archive", "oci-archive"):
            archive = tmp_path / f"podman-{fmt}.tar"
            _podman("save", "--format", fmt, "-o", str(archive), PODMAN_IMAGE)
            out = dockyard("load", "-i", str(archive)).out
            assert "Loaded image" in out
            img = Store(store_root).resolve(PODMAN_IMAGE)
            assert [str(d) for d in img.diff_ids] == podman_cfg["RootFS"]["Layers"]
            assert str(img.id) == podman_cfg["Id"] if podman_cfg["Id"].startswith("sha256:") else \
                img.id.hex == podman_cfg["Id"]
            assert img.config["config"]["Cmd"] == ["/bin/sh"]
            dockyard("rmi", PODMAN_IMAGE)
    finally:
        _podman("rmi", "-f", PODMAN_IMAGE, check=False)


def test_save_load_round_trip_both_formats(busybox_image, dockyard, store_root, tmp_path):
    before = Store(store_root).resolve("busybox")
    for fmt in ("docker-archive", "oci-archive"):
        archive = tmp_path / f"{fmt}.tar"
        dockyard("save", "--format", fmt, "-o", str(archive), "busybox")
        dockyard("rmi", "busybox")
        assert dockyard("load", "-i", str(archive)).out.strip() == "Loaded image: busybox:latest"
        after = Store(store_root).resolve("busybox")
        assert after.id == before.id and after.diff_ids == before.diff_ids


def test_load_from_stdin_compressed(busybox_image, dockyard, tmp_path):
    archive = tmp_path / "bb.tar"
    dockyard("save", "-o", str(archive), "busybox")
    dockyard("rmi", "busybox")
    import gzip

    out = dockyard("load", input=gzip.compress(archive.read_bytes(), 1)).out
    assert "Loaded image: busybox:latest" in out


def _rewrite(src, dst, change) -> None:
    """Copy a tar, passing each member's bytes through change(name, data)."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read() if m.isfile() else None
            if data is not None:
                data = change(m.name, data)
                m.size = len(data)
            tout.addfile(m, io.BytesIO(data) if data is not None else None)


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_corrupt_archive_leaves_store_unchanged(busybox_image, dockyard, store_root, tmp_path, fmt):
    archive, bad = tmp_path / "good.tar", tmp_path / "bad.tar"
    dockyard("tag", "busybox", "victim:1")
    dockyard("save", "--format", fmt, "-o", str(archive), "victim:1")
    dockyard("rmi", "victim:1")
    before = _store_state(store_root)

    def flip_layer(name, data):
        # Corrupt the biggest blob (the layer) by one byte, keeping its size.
        return data[:1000] + bytes([data[1000] ^ 1]) + data[1001:] if len(data) > 100_000 else data

    _rewrite(archive, bad, flip_layer)
    r = dockyard("load", "-i", str(bad), check=False)
    assert r.code == 1 and "mismatch" in r.err and len(r.err.strip().splitlines()) == 1, r.err
    assert "Traceback" not in r.err
    assert _store_state(store_root) == before


@pytest.mark.parametrize("content, message", [
    (b"this is not a tar file at all" * 100, "not a valid tar"),
    (b"", "not a valid tar"),
])
def test_load_garbage(dockyard, tmp_path, content, message):
    f = tmp_path / "garbage.tar"
    f.write_bytes(content)
    r = dockyard("load", "-i", str(f), check=False)
    assert r.code == 1 and (message in r.err or "neither" in r.err), r.err
    assert "Traceback" not in r.err


def test_missing_input_file(dockyard):
    r = dockyard("load", "-i", "/nonexistent/x.tar", check=False)
    assert r.code == 1 and r.err.strip() == "Error: open /nonexistent/x.tar: no such file or directory"
    r = dockyard("import", "/nonexistent/x.tar", "x", check=False)
    assert r.code == 1 and "no such file" in r.err


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
@pytest.mark.parametrize("case", list(BAD))
def test_load_refuses_crafted_image(case, fmt, dockyard, store_root, tmp_path):
    crafted, word = BAD[case]
    path = tmp_path / "crafted.tar"
    path.write_bytes((docker_archive if fmt == "docker-archive" else oci_archive)(crafted, "crafted:1"))
    dockyard("images")  # the store exists, empty
    before = _store_state(store_root)
    res = dockyard("load", "-i", str(path), check=False)
    assert res.code == 1 and "Traceback" not in res.err, res.err
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and word in lines[0], res.err
    assert _store_state(store_root) == before
    assert os.listdir(os.path.join(store_root, "layers")) == []


def test_load_unpacks_good_crafted_image(dockyard, store_root, tmp_path):
    path = tmp_path / "good.tar"
    path.write_bytes(oci_archive(image([GOOD]), "crafted:1"))
    dockyard("load", "-i", str(path))
    assert len(os.listdir(os.path.join(store_root, "layers"))) == 1
