"""A COPY from the context is written on a tmpfs first and diffed there; the store gets files on disk only for a
layer it lacks. ADD of plain files takes the disk path all along, so the two must give the same layer."""

from __future__ import annotations

import os
import stat

from dockyard.digest import chain_ids

EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}


def _tree(ctx) -> None:
    (ctx / "src" / "a" / "b").mkdir(parents=True)
    (ctx / "src" / "a" / "b" / "deep.txt").write_text("deep\n")
    (ctx / "src" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(ctx / "src" / "run.sh", 0o755)
    (ctx / "src" / "empty").mkdir()
    os.symlink("a/b/deep.txt", ctx / "src" / "link")
    (ctx / "src" / "big.bin").write_bytes(os.urandom(3 << 20))  # beyond what hashing keeps: read again


def test_staged_copy_gives_the_disk_path_layer(context, build, inspect, store_mounts):
    ctx = context({})
    _tree(ctx)
    # Into a new directory, and into an existing one (/etc is copied up, its mtime clamped by the epoch).
    for name, word in (("copied", "COPY"), ("added", "ADD")):
        (ctx / f"{name}.Dockerfile").write_text(f"FROM busybox\n{word} src/ /app/\n{word} src/ /etc/app/\n")
        build(ctx, "-q", "--no-cache", "-t", name, dockerfile=ctx / f"{name}.Dockerfile", env=EPOCH)
    copied, added = inspect.image("copied"), inspect.image("added")
    assert copied.config["rootfs"]["diff_ids"] == added.config["rootfs"]["diff_ids"]
    assert copied.manifest["layers"] == added.manifest["layers"]
    assert inspect.read("copied", "etc/app/a/b/deep.txt") == "deep\n"
    run = os.lstat(inspect.path("copied", "app/run.sh"))
    assert stat.S_IMODE(run.st_mode) == 0o755 and run.st_mtime_ns == os.lstat(ctx / "src" / "run.sh").st_mtime_ns
    assert os.readlink(os.path.join(inspect.path("copied", "app"), "link")) == "a/b/deep.txt"  # not followed
    assert store_mounts() == []  # no tmpfs (or overlay) left behind


def test_rebuilt_copy_keeps_the_stored_layer(context, build, inspect):
    # /etc is copied up and /etc/new made at the time of writing: the epoch keeps that out of the diff, so a
    # rebuild a second later diffs the same.
    ctx = context({"Dockerfile": "FROM busybox\nCOPY src/ /etc/new/app/\nRUN cat /etc/new/app/a/b/deep.txt > /seen\n"})
    _tree(ctx)
    build(ctx, "-q", "-t", "first", env=EPOCH)
    diff_ids = inspect.image("first").config["rootfs"]["diff_ids"]
    layer = inspect.store.layer_dir(chain_ids(diff_ids)[-2])  # the COPY's
    blob = inspect.store.blob_path(inspect.image("first").layers[-2].digest)
    before = os.stat(layer).st_ino, os.stat(blob).st_ino
    assert inspect.read("first", "seen") == "deep\n"  # the RUN ran on the layer the COPY stored
    build(ctx, "-q", "--no-cache", "-t", "again", env=EPOCH)
    assert inspect.image("again").config["rootfs"]["diff_ids"][:-1] == diff_ids[:-1]
    assert inspect.image("again").layers[:-1] == inspect.image("first").layers[:-1]
    # The stored layer stayed (nothing was written on disk for it), and so did its blob (not compressed again).
    assert (os.stat(layer).st_ino, os.stat(blob).st_ino) == before
    assert os.listdir(inspect.store.tmp_dir) == []  # nor left there
    # A changed file makes a new layer, written on disk.
    (ctx / "src" / "a" / "b" / "deep.txt").write_text("changed\n")
    build(ctx, "-q", "-t", "changed", env=EPOCH)
    assert inspect.read("changed", "seen") == "changed\n"
    assert inspect.read("changed", "etc/new/app/a/b/deep.txt") == "changed\n"
