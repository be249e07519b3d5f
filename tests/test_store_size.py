"""Store size: the prunes remove unpacked layers no container mounts, `system df` counts what du counts, and
`images` shows docker's SIZE (the layers unpacked)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dockyard.api import Client
from dockyard.sizes import content_size
from dockyard.store import Store
from tests.support import REPO


def du(*paths: str) -> int:
    """`du -scb`'s total: apparent bytes, each inode once across the paths."""
    if not paths:
        return 0
    out = subprocess.run(["du", "-scb", *paths], capture_output=True, text=True, check=True).stdout
    return int(out.splitlines()[-1].split()[0])


def unpacked(store_root: str) -> list[str]:
    return sorted(os.listdir(os.path.join(store_root, "layers")))


def test_images_size_is_the_unpacked_layer_as_docker_counts_it(busybox_image, busybox_rootfs, dockyard, store_root):
    # Docker's rule (its directory.Size on the layer's diff dir): every non-directory's size, hard links once.
    found = subprocess.run(["find", str(busybox_rootfs), "!", "-type", "d", "-printf", "%i %s\n"],
                           capture_output=True, text=True, check=True).stdout
    want = sum(int(size) for size in dict(line.split() for line in found.splitlines()).values())
    assert want == content_size(str(busybox_rootfs))
    assert want > 1_000_000
    store = Store(store_root)
    image = store.resolve(busybox_image)
    assert unpacked(store_root) == []  # an import keeps the blob only: the size comes from its tar stream
    assert dockyard("images", "--format", "{{.Size}}\t{{.CompressedSize}}").out.split("\t") == [
        _human(want), _human(image.size) + "\n"]
    assert Client(store_root).images.get(busybox_image).attrs["Size"] == want
    # From the unpacked copy when the record is gone: the same number.
    store.lowerdirs(image)
    for name in os.listdir(store.sizes_dir):
        os.unlink(os.path.join(store.sizes_dir, name))
    os.unlink(os.path.join(store_root, "summaries.json"))
    assert dockyard("images", "--format", "{{.Size}}").out == _human(want) + "\n"
    assert os.listdir(store.sizes_dir) == [image.diff_ids[0].hex]


def _human(n: int) -> str:
    from dockyard.cli.output import human_size

    return human_size(n)


def test_prune_drops_unpacked_layers_no_container_mounts(busybox_image, dockyard, store_root):
    dockyard("run", "--name", "kept", busybox_image, "true")  # stopped, but it still mounts the layers
    dockyard("run", "--rm", busybox_image, "true")
    layers = unpacked(store_root)
    assert len(layers) == 1
    dockyard("tag", busybox_image, "other:1")
    out = dockyard("image", "prune", "-a").out
    assert out.strip() == "Total reclaimed space: 0B" and unpacked(store_root) == layers
    dockyard("rm", "kept")
    before = du(os.path.join(store_root, "layers", layers[0]))
    out = dockyard("image", "prune").out
    assert out.strip() == f"Total reclaimed space: {_human(before)}" and unpacked(store_root) == []
    assert dockyard("run", "--rm", busybox_image, "echo", "again").out == "again\n"  # unpacked again
    assert unpacked(store_root) == layers
    assert dockyard("image", "prune", "--keep-unpacked").out.strip() == "Total reclaimed space: 0B"
    assert unpacked(store_root) == layers
    reclaimed = Client(store_root).images.prune()["SpaceReclaimed"]
    assert reclaimed == before and unpacked(store_root) == []
    assert dockyard("system", "prune", "-f").out.strip() == "Total reclaimed space: 0B"


def test_builds_after_prunes_and_system_df_counts_what_du_counts(busybox_image, dockyard, store_root, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\n"
                                    "RUN --mount=type=cache,target=/cache head -c 300000 /dev/urandom > /cache/blob\n"
                                    "RUN head -c 200000 /dev/urandom > /made && ln /made /made.link\n")
    dockyard("build", "-q", "-t", "built:1", str(ctx))
    dockyard("create", "--name", "c1", "-v", "vol1:/data", busybox_image)
    dockyard("run", "--name", "c2", "-v", "vol2:/data", busybox_image, "sh", "-c", "echo hello > /data/x; echo 1 > /y")
    dockyard("volume", "create", "unused")
    store = Store(store_root)
    usage = Client(store_root).df()
    blobs = os.path.join(store.layout, "blobs", "sha256")
    images = {e.digest for e in store.entries()}
    img_blobs, img_chains, _ = store._reachable(images)
    cache_blobs = store._reachable(store.held() - images)[0]

    def present(chains: set[str]) -> list[str]:
        return [p for p in (os.path.join(store.layers_dir, c) for c in chains) if os.path.isdir(p)]

    assert usage["LayersSize"] == du(*(store.blob_path(d) for d in img_blobs), *present(img_chains))
    used_blobs, used_chains, _ = store._reachable(store.held(mounted=True))  # the containers' busybox
    assert used_chains and used_chains < img_chains
    assert usage["LayersReclaimable"] == du(*(store.blob_path(d) for d in img_blobs - cache_blobs - used_blobs),
                                            *present(img_chains - used_chains))
    steps = [r for r in usage["BuildCache"] if r["Type"] == "regular"]
    mounts = [r for r in usage["BuildCache"] if r["Type"] == "exec.cachemount"]
    assert len(mounts) == 1 and mounts[0]["Size"] == du(os.path.join(store_root, "buildcache", "mounts",
                                                                       mounts[0]["ID"])) > 300000
    # Everything under blobs/ and layers/ is an image's or the build cache's, each file counted once.
    everything = [os.path.join(d, n) for d in (blobs, store.layers_dir) for n in os.listdir(d)]
    assert usage["LayersSize"] + sum(r["Size"] for r in steps) == du(*everything)
    by_name = {c["Names"][0]: c for c in usage["Containers"]}
    assert by_name["/c2"]["SizeRw"] == du(os.path.join(store_root, "containers", by_name["/c2"]["Id"], "diff"))
    vols = {v["Name"]: v["UsageData"] for v in usage["Volumes"]}
    assert vols["vol2"]["Size"] == du(os.path.join(store_root, "volumes", "vol2", "_data"))
    assert [vols[n]["RefCount"] for n in ("vol1", "vol2", "unused")] == [1, 1, 0]
    rows = [json.loads(line) for line in dockyard("system", "df", "--format", "json").out.splitlines()]
    assert [(r["Type"], r["TotalCount"], r["Active"]) for r in rows] == [
        ("Images", "2", "1"), ("Containers", "2", "0"), ("Local Volumes", "3", "2"),
        ("Build Cache", str(len(steps) + 1), "0")]
    assert rows[0]["Size"] == _human(usage["LayersSize"])
    assert dockyard("system", "df", "--format", "{{.Type}}:{{.Reclaimable}}").out.splitlines()[3] == \
        f"Build Cache:{_human(sum(r['Size'] for r in usage['BuildCache']))}"
    verbose = dockyard("system", "df", "-v").out
    assert "Images space usage:" in verbose and "Build cache usage:" in verbose and "vol2" in verbose

    # builder prune: the cache goes, and every unpacked layer but the containers' busybox.
    dockyard("rm", "c1", "c2")
    out = dockyard("builder", "prune", "-f").out
    assert out.splitlines()[-1].startswith("Total reclaimed space: ") and unpacked(store_root) == []
    assert not os.path.exists(os.path.join(store_root, "buildcache", "mounts"))
    # Builds on pruned bases: the layers are unpacked again from their blobs.
    rebuilt = dockyard("build", "-q", "-t", "built:2", str(ctx)).out
    assert dockyard("run", "--rm", "built:2", "sh", "-c", "test -s /made && cat /proc/self/comm").out == "cat\n"
    (ctx / "Dockerfile").write_text("FROM built:1\nRUN cp /made /copy\n")
    dockyard("system", "prune", "-f")
    dockyard("build", "-q", "-t", "on-pruned:1", str(ctx))
    assert dockyard("run", "--rm", "on-pruned:1", "cmp", "/made", "/copy").code == 0
    assert rebuilt


def test_concurrent_runs_never_see_half_pruned_layers(busybox_image, store_root):
    """Two processes: one runs containers in a loop while the other prunes in a loop (see Store.gc)."""
    env = {**os.environ, "DOCKYARD_ROOT": store_root, "PYTHONPATH": str(REPO)}
    runner = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys\n"
         "for i in range(12):\n"
         "    r = subprocess.run([sys.executable, '-m', 'dockyard', 'run', '--rm', 'busybox', 'cat', '/bin/busybox'],"
         " capture_output=True)\n"
         "    assert r.returncode == 0 and len(r.stdout) > 100000, (i, r.returncode, r.stderr)\n"],
        env=env, cwd=str(REPO), stderr=subprocess.PIPE, text=True)
    pruner = subprocess.Popen(
        [sys.executable, "-c", "from dockyard.store import Store\nimport os\n"
         "s = Store(os.environ['DOCKYARD_ROOT'])\nn = 0\n"
         "while not os.path.exists(os.environ['DOCKYARD_ROOT'] + '/stop'):\n"
         "    n += bool(s.gc(drop_unpacked=True))\n"
         "print(n)\n"],
        env=env, cwd=str(REPO), stdout=subprocess.PIPE, text=True)
    try:
        _, err = runner.communicate(timeout=60)
    finally:
        open(os.path.join(store_root, "stop"), "w").close()
        freed, _ = pruner.communicate(timeout=30)
    assert runner.returncode == 0, err
    assert int(freed) > 0  # the pruner did remove layers between runs


@pytest.mark.parametrize("owner_kind", ["container", "buildcache"])
def test_holds_say_whether_they_mount(busybox_image, store_root, owner_kind):
    store = Store(store_root)
    image = store.resolve(busybox_image)
    store.lowerdirs(image)
    store.hold(f"{owner_kind}-x", [image.manifest_digest], mounts=owner_kind == "container")
    store.gc(drop_unpacked=True)
    assert bool(unpacked(store_root)) == (owner_kind == "container")
    assert store.holders(image.manifest_digest) == [f"{owner_kind}-x"]
    assert store.held() == {image.manifest_digest}
    assert store.held(mounted=True) == ({image.manifest_digest} if owner_kind == "container" else set())
    store.release(f"{owner_kind}-x")
