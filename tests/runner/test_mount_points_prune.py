"""`container prune` (and so `system prune`) drops the shared "-init" mount-point lowerdirs no container names."""

from __future__ import annotations

import json
import os


def _mount_points(store_root, ctr, name: str) -> str:
    """The container's shared mount-point lowerdir (its overlay's top lowerdir)."""
    cid = ctr("inspect", "--format", "{{.Id}}", name).out.strip()
    with open(os.path.join(store_root, "containers", cid, "config.json")) as f:
        return json.loads(json.load(f)["annotations"]["io.dockyard.rootfs.overlay"])["lower"][0]


def test_prune_removes_only_the_mount_points_no_container_names(ctr, store_root, tmp_path):
    shared = os.path.join(store_root, "mountpoints")
    src = tmp_path / "src"
    src.mkdir()
    ctr("run", "-d", "--name", "running", "--network", "none", "busybox", "sleep", "60")
    ctr("create", "--name", "twin", "--network", "none", "busybox", "true")
    ctr("create", "--name", "other", "--network", "none", "-v", f"{src}:/only/here", "busybox", "true")
    kept, twin, other = (_mount_points(store_root, ctr, n) for n in ("running", "twin", "other"))
    assert kept == twin != other and os.path.dirname(kept) == os.path.dirname(other) == shared
    os.mkdir(os.path.join(shared, "crashed.123.tmp"))  # what a create killed halfway leaves
    ctr("container", "prune", "-f")  # removes the stopped "twin" and "other"
    assert os.path.isdir(kept) and os.path.isfile(kept + ".key")
    assert not os.path.exists(other) and not os.path.exists(other + ".key")
    assert sorted(os.listdir(shared)) == sorted([".lock", os.path.basename(kept), os.path.basename(kept) + ".key"])
    assert ctr("exec", "running", "cat", "/etc/hostname").code == 0
    ctr("rm", "-f", "running")
    ctr("system", "prune", "-f")
    assert sorted(os.listdir(shared)) == [".lock"]
    # A new container makes its directory again.
    assert ctr("run", "--rm", "--network", "none", "-v", f"{src}:/only/here", "busybox", "ls", "/only").out == "here\n"
    assert os.path.isdir(other)
