"""The local store: OCI layout readable by skopeo and umoci, tags, rmi, gc, layer cache, concurrency, safety."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import tarfile
import subprocess
import sys

import pytest

from crafted import GOOD, OTHER, tar_of
from support import run_cli, tool
from dockyard.digest import Digest
from dockyard.errors import DigestMismatch, NotFound
from dockyard.image import Descriptor
from dockyard.layers import LayerError
from dockyard.store import Store


def _layout_ok(store: Store) -> None:
    """Every index entry's manifest, config and layers exist and hash to their names."""
    for e in store.entries():
        for d in [e.digest]:
            assert Digest.of_file(store.blob_path(d)) == d
        img = store.image(e.digest)
        for d in [img.id, *(l.digest for l in img.layers)]:
            assert Digest.of_file(store.blob_path(d)) == d


def test_import_makes_an_oci_layout(busybox_image, store_root):
    store = Store(store_root)
    assert json.load(open(os.path.join(store.layout, "oci-layout"))) == {"imageLayoutVersion": "1.0.0"}
    index = json.load(open(os.path.join(store.layout, "index.json")))
    assert index["schemaVersion"] == 2
    [entry] = index["manifests"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "busybox:latest"
    assert entry["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    img = store.resolve("busybox")
    assert img.config["config"]["Cmd"] == ["/bin/sh"]
    assert img.config["rootfs"]["type"] == "layers" and len(img.diff_ids) == 1
    assert img.layers[0].media_type == "application/vnd.oci.image.layer.v1.tar+gzip"
    _layout_ok(store)


def test_skopeo_and_umoci_read_the_store(busybox_image, store_root, tmp_path):
    layout = Store(store_root).layout
    out = subprocess.run([tool("skopeo"), "inspect", f"oci:{layout}:busybox:latest"], capture_output=True,
                         text=True, check=True).stdout
    info = json.loads(out)
    assert info["Architecture"] == "amd64" and info["Os"] == "linux" and len(info["Layers"]) == 1
    cfg = json.loads(subprocess.run([tool("skopeo"), "inspect", "--config", f"oci:{layout}:busybox:latest"],
                                    capture_output=True, text=True, check=True).stdout)
    assert cfg["config"]["Cmd"] == ["/bin/sh"]
    # umoci unpacks it into a runtime bundle whose rootfs has busybox.
    bundle = tmp_path / "bundle"
    subprocess.run([tool("umoci"), "unpack", "--image", f"{layout}:busybox:latest", str(bundle)],
                   check=True, capture_output=True)
    assert (bundle / "rootfs" / "bin" / "busybox").stat().st_size > 100_000
    assert json.load(open(bundle / "config.json"))["process"]["args"] == ["/bin/sh"]


def test_tag_untag_dangling_and_gc(busybox_image, busybox_tar, dockyard, store_root):
    store = Store(store_root)
    first = store.resolve("busybox")
    dockyard("tag", "busybox", "localhost:5000/team/bb:v1")
    assert sorted(store.tags_of(first.manifest_digest)) == ["busybox:latest", "localhost:5000/team/bb:v1"]
    # Re-import under the same tag with a different config: the old image becomes dangling, not lost.
    dockyard("import", "-c", "CMD [\"/bin/true\"]", str(busybox_tar), "busybox:latest")
    second = store.resolve("busybox:latest")
    assert second.manifest_digest != first.manifest_digest
    assert store.resolve("localhost:5000/team/bb:v1").manifest_digest == first.manifest_digest
    # Removing the last tag of an image removes the image, as docker does.
    out = dockyard("rmi", "localhost:5000/team/bb:v1").out
    assert out.splitlines() == ["Untagged: localhost:5000/team/bb:v1", f"Deleted: {first.id}"]
    assert not store.has_blob(first.id)
    # A tag that moves leaves the old image dangling (<none>) until pruned.
    dockyard("import", "-c", "CMD [\"/bin/false\"]", str(busybox_tar), "busybox:latest")
    rows = [json.loads(r) for r in dockyard("images", "--format", "json").out.splitlines()]
    assert sorted((r["Repository"], r["Tag"]) for r in rows) == [("<none>", "<none>"), ("busybox", "latest")]
    pruned = dockyard("image", "prune", "-f").out
    assert f"deleted: {second.id}" in pruned
    with pytest.raises(NotFound):
        store.image(second.manifest_digest)
    assert not store.has_blob(second.id) and store.has_blob(second.layers[0].digest)
    _layout_ok(store)


def test_rmi_rules(busybox_image, dockyard, store_root):
    store = Store(store_root)
    img = store.resolve("busybox")
    dockyard("tag", "busybox", "other:1")
    r = dockyard("rmi", img.id.short, check=False)
    assert r.code == 1 and "must be forced" in r.err and "Traceback" not in r.err
    assert dockyard("rmi", "other:1").out.strip() == "Untagged: other:1"
    store.hold("container-abc", [img.manifest_digest])
    r = dockyard("rmi", "busybox", check=False)
    assert r.code == 1 and "being used by container-abc" in r.err
    out = dockyard("rmi", "-f", "busybox").out
    assert "Untagged: busybox:latest" in out and f"Deleted: {img.id}" in out
    # The held image's content stays until its holder lets go.
    assert store.has_blob(img.layers[0].digest)
    store.release("container-abc")
    store.gc()
    assert not store.has_blob(img.layers[0].digest)
    assert dockyard("images", "-q").out == ""


def test_layer_cache_unpacks_once_and_goes_with_the_image(busybox_image, store_root, dockyard):
    store = Store(store_root)
    img = store.resolve("busybox")
    [lower] = store.lowerdirs(img)
    assert lower == store.layer_dir(img.chain_ids[0])
    assert os.path.islink(os.path.join(lower, "bin", "sh"))
    inode = os.stat(os.path.join(lower, "bin", "busybox")).st_ino
    assert store.lowerdirs(img) == [lower]
    assert os.stat(os.path.join(lower, "bin", "busybox")).st_ino == inode
    dockyard("rmi", "busybox")
    assert not os.path.exists(lower)


def test_layer_cache_verifies_diff_id(busybox_image, store_root):
    store = Store(store_root)
    img = store.resolve("busybox")
    img.config["rootfs"]["diff_ids"] = ["sha256:" + "0" * 64]
    with pytest.raises(DigestMismatch):
        store.lowerdirs(img)
    assert os.listdir(store.layers_dir) == []


def test_write_blob_verifies(store_root, tmp_path):
    import io

    store = Store(store_root)
    good = Digest.of_bytes(b"hello")
    assert store.write_blob(io.BytesIO(b"hello"), good, 5) == (good, 5)
    bad = Digest.of_bytes(b"other")
    with pytest.raises(DigestMismatch):
        store.write_blob(io.BytesIO(b"hello!"), bad)
    assert not store.has_blob(bad)
    assert os.listdir(store.tmp_dir) == []


def _layer(tar: bytes) -> tuple[bytes, Descriptor]:
    """A gzip layer blob of `tar` and its descriptor."""
    blob = gzip.compress(tar, mtime=0)
    return blob, Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", Digest.of_bytes(blob), len(blob))


def _nothing_kept(store: Store, digest: Digest) -> None:
    assert not store.has_blob(digest)
    assert os.listdir(store.layers_dir) == [] and os.listdir(store.tmp_dir) == []


# write_layer unpacks in the reading thread, or (a big layer) on a thread of its own: both ways are tested.
unpack_ways = pytest.mark.parametrize("apart", [False, True], ids=["in-thread", "apart"])


def _unpack_apart(monkeypatch, apart: bool) -> None:
    monkeypatch.setattr("dockyard.store.UNPACK_THREAD_SIZE", 0 if apart else 1 << 62)


@unpack_ways
def test_write_layer_unpacks_as_it_stores(store_root, monkeypatch, apart):
    """A layer blob streamed in is unpacked on the way: blob and layer directory arrive together."""
    _unpack_apart(monkeypatch, apart)
    store = Store(store_root)
    blob, desc = _layer(GOOD)
    diff_id = Digest.of_bytes(GOOD)
    added: set[Digest] = set()
    path = store.write_layer(io.BytesIO(blob), desc, lambda: (diff_id, diff_id), added)
    assert path == store.layer_dir(diff_id) and added == {desc.digest}
    assert open(os.path.join(path, "etc", "hello")).read() == "hello\n"
    assert store.has_blob(desc.digest) and os.listdir(store.tmp_dir) == []
    # Stored already: the offered bytes are still checked, and the layer is there once.
    assert store.write_layer(io.BytesIO(blob), desc, lambda: (diff_id, diff_id), added) == path


def test_adopt_layer_dir_publishes_a_tree_once(store_root):
    """A directory adopted as a layer (a build step's upperdir) becomes the layer whole; a second one for the same
    chain goes to `discard` and the first stays; only the first is recorded as added."""
    from dockyard.store import Added

    store = Store(store_root)
    chain = Digest.of_bytes(b"chain")
    trees = []
    for word in ("first", "second"):
        tree = os.path.join(store.tmp_dir, word)
        os.makedirs(os.path.join(tree, "etc"))
        with open(os.path.join(tree, "etc", "word"), "w") as f:
            f.write(word)
        trees.append(tree)
    added = Added()
    discarded: list[str] = []
    assert store.adopt_layer_dir(trees[0], chain, added) == store.layer_dir(chain)
    assert store.adopt_layer_dir(trees[1], chain, added, discard=discarded.append) == store.layer_dir(chain)
    assert discarded == [trees[1]] and added.layers == {chain}
    assert open(os.path.join(store.layer_dir(chain), "etc", "word")).read() == "first"
    assert os.listdir(store.layers_dir) == [chain.hex] and not os.path.exists(trees[0])


@unpack_ways
def test_write_layer_keeps_nothing_of_a_bad_layer(store_root, monkeypatch, apart):
    """Not its diff_id, not unpackable, or not its digest: neither the blob nor any unpacked file stays."""
    _unpack_apart(monkeypatch, apart)
    store = Store(store_root)
    blob, desc = _layer(GOOD)
    other = Digest.of_bytes(OTHER)
    with pytest.raises(DigestMismatch, match="layer"):
        store.write_layer(io.BytesIO(blob), desc, lambda: (other, other), set())
    _nothing_kept(store, desc.digest)

    escaping, desc = _layer(tar_of(("etc/a", b"a" * 100_000), ("../../escaped", b"x")))
    with pytest.raises(LayerError, match=f"layer {desc.digest}: .*outside"):
        store.write_layer(io.BytesIO(escaping), desc, lambda: (other, other), set())
    _nothing_kept(store, desc.digest)
    assert not os.path.exists(os.path.join(os.path.dirname(store_root), "escaped"))

    # A blob that is not its digest is reported as such, even when it would not unpack either.
    junk = b"\x1f\x8b" + b"junk" * 1000
    with pytest.raises(DigestMismatch, match="blob"):
        store.write_layer(io.BytesIO(junk), desc, lambda: (other, other), set())
    _nothing_kept(store, desc.digest)


@unpack_ways
def test_write_layer_leaves_its_blob_out_of_the_page_cache(store_root, monkeypatch, apart):
    """A pulled layer's blob, once on disk, holds no page-cache pages (a run reads the unpacked copy; the pages serve
    the next writes), through the writeback steps of a big blob too; a blob written otherwise stays cached."""
    _unpack_apart(monkeypatch, apart)
    store = Store(store_root)
    content = os.urandom(20 << 20)  # past two writeback steps (fsutil.WRITEBACK_STEP)
    blob, desc = _layer(tar_of(("big", content)))
    diff_id = Digest.of_bytes(tar_of(("big", content)))
    path = store.write_layer(io.BytesIO(blob), desc, lambda: (diff_id, diff_id), set())
    with open(os.path.join(path, "big"), "rb") as f:
        assert f.read() == content

    def resident(path: str) -> int:
        out = subprocess.run([tool("fincore"), "--bytes", "--noheadings", "--output", "RES", path],
                             capture_output=True, text=True, check=True).stdout
        return int(out.strip())

    assert resident(store.blob_path(desc.digest)) == 0
    kept = store.write_blob_bytes(b"x" * (1 << 20))
    assert resident(store.blob_path(kept)) > 0


def test_concurrent_imports_leave_a_consistent_store(busybox_tar, store_root):
    """Several processes import (and tag) at once; every tag ends up valid and index.json intact."""
    procs = [subprocess.Popen([sys.executable, "-m", "dockyard", "import", "-c", f"LABEL n={i}",
                               str(busybox_tar), f"img{i}:latest"], env={**os.environ, "DOCKYARD_ROOT": store_root},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(6)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    store = Store(store_root)
    names = sorted(e.name for e in store.entries())
    assert names == [f"img{i}:latest" for i in range(6)]
    for i in range(6):
        assert store.resolve(f"img{i}").config["config"]["Labels"] == {"n": str(i)}
    _layout_ok(store)


def test_crash_mid_import_leaves_no_visible_partial(busybox_tar, store_root):
    """SIGKILL during an import: afterwards every blob matches its name and no tag dangles."""
    import signal
    import time

    big = busybox_tar.parent / "big.tar"
    if not big.exists():
        with tarfile.open(big, "w") as tf:
            for i in range(8):
                data = os.urandom(8 << 20)
                info = tarfile.TarInfo(f"data/{i}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    for delay in (0.05, 0.2, 0.5):
        p = subprocess.Popen([sys.executable, "-m", "dockyard", "import", str(big), "big:latest"],
                             env={**os.environ, "DOCKYARD_ROOT": store_root})
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        store = Store(store_root)
        _layout_ok(store)
        for algo in os.listdir(os.path.join(store.layout, "blobs")):
            for name in os.listdir(os.path.join(store.layout, "blobs", algo)):
                assert Digest.of_file(os.path.join(store.layout, "blobs", algo, name)).hex == name


def test_resolve_by_id_digest_and_errors(busybox_image, store_root, dockyard):
    store = Store(store_root)
    img = store.resolve("busybox")
    assert store.resolve(img.id.hex[:8]).id == img.id
    assert store.resolve(str(img.id)).id == img.id
    assert store.resolve(f"busybox@{img.manifest_digest}").id == img.id
    with pytest.raises(NotFound, match="No such image: nothere:latest"):
        store.resolve("nothere")
    r = dockyard("inspect", "nothere", check=False)
    assert r.code == 1 and r.err.strip() == "Error: No such object: nothere"


@pytest.fixture
def small_store(tmp_path):
    """A store root on a 4 MiB tmpfs, to run out of space for real."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], check=True)
    try:
        yield str(mnt / "store")
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def test_full_disk_is_one_line_and_loses_nothing(small_store, busybox_tar, tmp_path):
    run_cli(small_store, "import", str(busybox_tar), "bb")
    index = os.path.join(small_store, "images", "index.json")
    before = open(index).read()
    big = tmp_path / "random.tar"
    with tarfile.open(big, "w") as tf:
        data = os.urandom(12 << 20)
        info = tarfile.TarInfo("random.bin")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    r = run_cli(small_store, "import", str(big), "big", check=False)
    assert r.code == 1 and "no space left on device" in r.err and len(r.err.strip().splitlines()) == 1, r.err
    assert open(index).read() == before and os.listdir(os.path.join(small_store, "tmp")) == []
    # Fill what is left, then a tag (an index.json rewrite) must fail without touching the old index.
    filler = os.path.join(small_store, "filler")
    with open(filler, "wb") as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)
                f.flush()
    r = run_cli(small_store, "tag", "bb", "bb:two", check=False)
    assert r.code == 1 and "no space left on device" in r.err, r.err
    assert open(index).read() == before
    os.unlink(filler)
    run_cli(small_store, "tag", "bb", "bb:two")
    assert sorted(e.name for e in Store(small_store).entries()) == ["bb:latest", "bb:two"]


def test_store_from_an_older_layout_gains_new_directories(busybox_image, store_root):
    """A store whose root lacks directories added by later versions (e.g. locks/) still works."""
    import shutil

    shutil.rmtree(os.path.join(store_root, "locks"))
    store = Store(store_root)
    assert store.lowerdirs(store.resolve("busybox"))
    store.gc()


def test_a_new_store_spreads_its_directories(store_root):
    """A new store's root carries the top-directory flag (chattr +T), where the filesystem has one: each of its
    subdirectories gets an inode group of its own; an existing store is left as is."""
    def flags(*paths: str) -> list[str]:
        shown = subprocess.run([tool("lsattr"), "-d", *paths], capture_output=True, text=True)
        if shown.returncode:
            pytest.skip(f"no inode flags on this filesystem: {shown.stderr.strip()}")
        return [line.split()[0] for line in shown.stdout.splitlines()]

    Store(store_root)
    assert "T" in flags(store_root)[0]
    subprocess.run([tool("chattr"), "-T", store_root], check=True)
    Store(store_root)
    assert "T" not in flags(store_root)[0]


def test_summaries_cache_matches_the_images_and_survives_damage(busybox_image, busybox_tar, dockyard, store_root):
    store = Store(store_root)
    dockyard("import", "-c", "CMD [\"/bin/true\"]", str(busybox_tar), "other:1")

    def listed() -> list[tuple]:
        return sorted((r["Repository"], r["Tag"], r["ID"], r["Size"], r["CreatedAt"])
                      for r in map(json.loads, dockyard("images", "--format", "json").out.splitlines()))

    truth = sorted((n.rpartition(":")[0], n.rpartition(":")[2], img.id.short) for img, names in store.images()
                   for n in names)
    assert [r[:3] for r in listed()] == truth
    cache = os.path.join(store_root, "summaries.json")
    assert set(json.load(open(cache))) == {str(img.manifest_digest) for img, _ in store.images()}
    full = listed()
    # A damaged cache (wrong types, garbage, a stale entry for an image since removed) is rebuilt, not believed.
    for damage in (b"[1, 2]", b"{not json", json.dumps({d: ["x", None, "big"] for d in json.load(open(cache))}
                                                     ).encode()):
        with open(cache, "wb") as f:
            f.write(damage)
        assert listed() == full
    dockyard("rmi", "other:1")
    assert [r[:2] for r in listed()] == [("busybox", "latest")]
    assert set(json.load(open(cache))) == {str(img.manifest_digest) for img, _ in store.images()}


def test_hostile_index_entries_list_or_end_in_one_line(busybox_image, dockyard, store_root):
    """Listings read index.json's entries without a Descriptor each: odd ones are shown untagged or refused in one
    line naming the file, never a traceback."""
    path = os.path.join(store_root, "images", "index.json")
    good = json.load(open(path))
    entry = good["manifests"][0]

    def with_entries(*entries) -> None:
        with open(path, "w") as f:
            json.dump({**good, "manifests": list(entries)}, f)

    try:
        for odd in ({**entry, "annotations": ["x"]}, {**entry, "annotations": {"org.opencontainers.image.ref.name": 5}}):
            with_entries(odd)
            assert dockyard("images", "--format", "{{.Repository}}:{{.Tag}}").out == "<none>:<none>\n"
        for bad in ({"mediaType": entry["mediaType"], "size": 1}, "x", {**entry, "digest": ["sha256:0"]}):
            with_entries(entry, bad)
            r = dockyard("images", check=False)
            assert r.code == 1 and r.err.startswith(f"Error: {path}: an entry without a digest") and r.out == ""
            assert "Traceback" not in r.err and len(r.err.splitlines()) == 1
        with_entries({**entry, "digest": "sha256:../../../../etc/passwd"})
        r = dockyard("image", "inspect", "busybox", check=False)
        assert r.code == 1 and r.err.splitlines() == ["Error: invalid digest: 'sha256:../../../../etc/passwd'"]
    finally:
        with open(path, "w") as f:
            json.dump(good, f)
    assert dockyard("images", "--format", "{{.Repository}}:{{.Tag}}").out == "busybox:latest\n"
