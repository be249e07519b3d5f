"""COPY of a context tree (the path that copies the bytes read for the cache key), and --output compression."""

from __future__ import annotations

import json
import os
import stat
import tarfile

from dockyard.compression import decompressed


def test_copy_tree_keeps_contents_modes_owners_and_links(context, build, inspect):
    big = os.urandom(3 << 20)  # over the per-file budget kept from hashing: opened again to be copied
    ctx = context({"Dockerfile": "FROM busybox\nCOPY src /app/\nCOPY --chown=1000:1001 src /etc/\n",
                   "src/a/b/deep.txt": "deep\n", "src/a/empty": "", "src/top.txt": "top\n",
                   "src/hostname": "replaced\n"})
    (ctx / "src" / "big.bin").write_bytes(big)
    os.chmod(ctx / "src" / "a", 0o751)
    os.chmod(ctx / "src" / "top.txt", 0o640)
    os.symlink("../../../etc/shadow", ctx / "src" / "a" / "out")  # leads outside: copied as a link
    build(ctx, "-t", "tree")
    for base, owner in (("app", (0, 0)), ("etc", (1000, 1001))):
        assert inspect.read("tree", f"{base}/a/b/deep.txt") == "deep\n"
        assert inspect.read("tree", f"{base}/a/empty") == ""
        assert inspect.read("tree", f"{base}/hostname") == "replaced\n"  # in /etc: replaces busybox's
        with open(inspect.path("tree", f"{base}/big.bin"), "rb") as f:
            assert f.read() == big
        top = os.lstat(inspect.path("tree", f"{base}/top.txt"))
        assert stat.S_IMODE(top.st_mode) == 0o640 and (top.st_uid, top.st_gid) == owner
        assert top.st_mtime_ns == os.lstat(ctx / "src" / "top.txt").st_mtime_ns
        a = os.lstat(inspect.path("tree", f"{base}/a"))
        assert stat.S_IMODE(a.st_mode) == 0o751 and (a.st_uid, a.st_gid) == owner
        link = os.path.join(inspect.path("tree", f"{base}/a"), "out")  # its layer's copy, not followed
        assert os.readlink(link) == "../../../etc/shadow" and os.lstat(link).st_uid == owner[0]
    # A changed file reaches the next build (bytes kept from hashing belong to the step that read them).
    (ctx / "src" / "a" / "b" / "deep.txt").write_text("changed\n")
    build(ctx, "-t", "tree2")
    assert inspect.read("tree2", "app/a/b/deep.txt") == "changed\n"


def test_output_compression_zstd(context, build, tmp_path):
    ctx = context({"f": "content\n", "Dockerfile": "FROM busybox\nCOPY f /f\n"})
    oci = tmp_path / "img.oci.tar"
    build(ctx, "-q", "-t", "zst", "-o", f"type=oci,dest={oci},compression=zstd")
    with tarfile.open(oci) as tf:
        index = json.load(tf.extractfile("index.json"))
        manifest = json.load(tf.extractfile("blobs/sha256/" + index["manifests"][0]["digest"].split(":")[1]))
        top = manifest["layers"][-1]
        assert top["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd"
        blob = tf.extractfile("blobs/sha256/" + top["digest"].split(":")[1])
        assert blob.read(4) == b"\x28\xb5\x2f\xfd"
    with tarfile.open(oci) as tf, tarfile.open(fileobj=decompressed(
            tf.extractfile("blobs/sha256/" + top["digest"].split(":")[1])), mode="r|") as layer:
        assert [m.name for m in layer] == ["f"]


def test_output_compression_errors_are_one_line(context, build, tmp_path):
    ctx = context({"Dockerfile": "FROM busybox\n"})
    for out, message in ((f"type=oci,dest={tmp_path}/x,compression=lz4", "unsupported 'lz4'"),
                         (f"type=local,dest={tmp_path}/x,compression=zstd", "oci and docker outputs only"),
                         (f"type=oci,dest={tmp_path}/x,compression=zstd", "conflicting")):
        extra = ["-o", f"type=docker,dest={tmp_path}/y,compression=gzip"] if message == "conflicting" else []
        res = build(ctx, "-o", out, *extra, check=False)
        assert res.code == 1, out
        lines = res.err.strip().splitlines()
        assert lines[-1].startswith("Error: ") and message in lines[-1], res.err
        assert "Traceback" not in res.err
