"""A COPY writes each file once: straight on disk when its layer is new, on a tmpfs (diffed there, the store
getting nothing) when the step's last layer is stored; a staged layer that turns out new is copied from memory to
disk, the context not read again. ADD of plain files takes the disk path all along, so both must give one layer."""

from __future__ import annotations

import os
import re
import stat
import time

from support import strace_python

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


def _traced(store_root: str, ctx, *args: str) -> str:
    """Build under strace; returns its log of file opens and mounts."""
    return strace_python(store_root, "openat,mount", "-m", "dockyard", "build", "-q", *args, str(ctx), env=EPOCH)


def _opens(trace: str, name: str) -> tuple[list[str], list[str]]:
    """The paths files named `name` were opened by, for reading and created (O_CREAT)."""
    reads: list[str] = []
    creates: list[str] = []
    for path, flags in re.findall(rf'openat\([^,]+, "((?:[^"]*/)?{re.escape(name)})", ([A-Z_|]+)', trace):
        (creates if "O_CREAT" in flags else reads).append(path)
    return reads, creates


def _staged(trace: str) -> bool:
    return 'mount("tmpfs"' in trace


def test_staged_copy_gives_the_disk_path_layer(context, build, inspect, store_mounts, store_root):
    ctx = context({})
    _tree(ctx)
    # Into a new directory, and into an existing one (/etc is copied up, its mtime clamped by the epoch).
    for name, word in (("copied", "COPY"), ("added", "ADD")):
        (ctx / f"{name}.Dockerfile").write_text(f"FROM busybox\n{word} src/ /app/\n{word} src/ /etc/app/\n")
    build(ctx, "-q", "--no-cache", "-t", "added", dockerfile=ctx / "added.Dockerfile", env=EPOCH)
    assert not _staged(_traced(store_root, ctx, "--no-cache", "-t", "copied", "-f", str(ctx / "copied.Dockerfile")))
    copied, added = inspect.image("copied"), inspect.image("added")
    assert copied.config["rootfs"]["diff_ids"] == added.config["rootfs"]["diff_ids"]
    assert copied.manifest["layers"] == added.manifest["layers"]
    assert inspect.read("copied", "etc/app/a/b/deep.txt") == "deep\n"
    run = os.lstat(inspect.path("copied", "app/run.sh"))
    assert stat.S_IMODE(run.st_mode) == 0o755 and run.st_mtime_ns == os.lstat(ctx / "src" / "run.sh").st_mtime_ns
    assert os.readlink(os.path.join(inspect.path("copied", "app"), "link")) == "a/b/deep.txt"  # not followed
    # Older times, the same contents: the cache key and the last layer say "stored", the diff says new. The tree
    # staged on the tmpfs is what the store gets: each file read once from the context.
    for dirpath, dirnames, filenames in os.walk(ctx / "src"):
        for n in dirnames + filenames:
            os.utime(os.path.join(dirpath, n), (1_600_000_000, 1_600_000_000), follow_symlinks=False)
    trace = _traced(store_root, ctx, "--no-cache", "-t", "copied", "-f", str(ctx / "copied.Dockerfile"))
    assert _staged(trace)
    for name in ("deep.txt", "run.sh", "big.bin"):
        reads, creates = _opens(trace, name)
        # Into /app on the tmpfs, then copied to disk; into /etc/app on disk only (its parent layer is new now).
        assert len(creates) == 3, creates
        on_disk = [p for p in creates if "/step-" not in p]  # the staged tree's copy (not in a step directory)
        assert len(on_disk) == 1 and "/app/" in on_disk[0], creates
        # From the context once per COPY (a file too big to keep is read for the cache key, then to be copied).
        assert len([p for p in reads if "/" not in p]) == 2 + (name == "big.bin"), reads
    build(ctx, "-q", "--no-cache", "-t", "added", dockerfile=ctx / "added.Dockerfile", env=EPOCH)
    again, added = inspect.image("copied"), inspect.image("added")
    diff_ids = again.config["rootfs"]["diff_ids"]
    assert diff_ids == added.config["rootfs"]["diff_ids"] != copied.config["rootfs"]["diff_ids"]
    assert again.manifest["layers"] == added.manifest["layers"]
    assert os.lstat(inspect.path("copied", "etc/app/a/b/deep.txt")).st_mtime == 1_600_000_000
    assert store_mounts() == []  # no tmpfs (or overlay) left behind


def test_new_layer_files_are_written_once(context, build, inspect, store_root):
    ctx = context({"Dockerfile": "FROM busybox\nCOPY . /app/\n"})
    names = [f"w-{d}-{i:02}.dat" for d in range(3) for i in range(10)]
    for name in names:
        (ctx / name.split("-")[1]).mkdir(exist_ok=True)
        (ctx / name.split("-")[1] / name).write_bytes(os.urandom(5000))
    time.sleep(2.1)  # a build keeps no hash of a file changed in the 2 s before it (it could change unseen)
    # The first build hashes each file, the second only the edited one (the others' hashes are kept): either
    # way each file is opened once in the context, created once on disk, and not read back for the diff.
    for edit in (False, True):
        if edit:
            (ctx / "0" / names[0]).write_bytes(os.urandom(5000))
        trace = _traced(store_root, ctx, "-t", "once")
        assert not _staged(trace)
        for name in names:
            reads, creates = _opens(trace, name)
            assert reads == [name], (name, reads)  # by name in its directory (through the directory's fd)
            assert len(creates) == 1 and "/step-" in creates[0], (name, creates)
    assert inspect.path("once", "app/0/" + names[0]) is not None


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
