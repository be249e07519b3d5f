"""Crafted images pushed to a real registry (distribution on loopback): a pull refuses each whose layers and
diff_ids disagree or whose layers would not unpack, and the store keeps nothing of it."""

from __future__ import annotations

import os

import pytest
import requests

from crafted import BAD, GOOD, OCI_MANIFEST, Crafted, image, sha
from registries import store_snapshot


def push_raw(host: str, repo: str, tag: str, c: Crafted) -> None:
    """Upload the blobs and manifest exactly as crafted (no client of ours in between)."""
    base = f"http://{host}/v2/{repo}"
    for blob in [c.config, *c.layers]:
        r = requests.post(f"{base}/blobs/uploads/")
        assert r.status_code == 202, r.text
        r = requests.put(requests.compat.urljoin(base, r.headers["Location"]), params={"digest": sha(blob)},
                         data=blob, headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == 201, r.text
    r = requests.put(f"{base}/manifests/{tag}", data=c.manifest, headers={"Content-Type": OCI_MANIFEST})
    assert r.status_code == 201, r.text


def layer_dirs(root: str) -> list[str]:
    return os.listdir(os.path.join(root, "layers"))


def test_good_crafted_image_pulls_and_unpacks(distribution, dockyard, store_root):
    push_raw(distribution.host, "crafted/good", "1", image([GOOD]))
    dockyard("pull", f"{distribution.host}/crafted/good:1")
    assert len(layer_dirs(store_root)) == 1
    with open(os.path.join(store_root, "layers", layer_dirs(store_root)[0], "etc", "hello")) as f:
        assert f.read() == "hello\n"


@pytest.mark.parametrize("case", list(BAD))
def test_pull_refuses_crafted_image(case, distribution, dockyard, store_root):
    crafted, word = BAD[case]
    push_raw(distribution.host, "crafted/bad", "1", crafted)
    dockyard("images")  # the store exists, empty
    before = store_snapshot(store_root)
    res = dockyard("pull", f"{distribution.host}/crafted/bad:1", check=False)
    assert res.code == 1 and "Traceback" not in res.err, res.err
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and word in lines[0], res.err
    assert store_snapshot(store_root) == before
    assert layer_dirs(store_root) == []
