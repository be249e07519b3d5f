"""`ps`, `inspect` and name lookups through the containers' states cache (containers/states.json): right at once
after other processes' changes, and after any damage to the cache."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from support import wait_for

from runner.containers import SETTLE_NS

SETTLED = SETTLE_NS / 1e9 + 0.1  # a state.json unchanged this long is served from the cache


def test_states_cache_follows_other_writers(ctr, store_root):
    ids = [ctr("create", "--name", f"c{i}", "--network", "none", "busybox", "true").out.strip() for i in range(3)]
    cache = Path(store_root, "containers", "states.json")
    listed = ctr("ps", "-a", "--format", "{{.Names}}").out.split()
    assert listed == ["c2", "c1", "c0"]
    time.sleep(SETTLED)
    assert ctr("ps", "-a", "--format", "{{.Names}}").out.split() == listed
    assert set(json.loads(cache.read_text())) == set(ids)

    # Each change is seen by the next command although the cache still holds the old state: a rename to a name of
    # the same length (state.json keeps its size), a start, a new container, a removal.
    ctr("rename", "c0", "c9")
    assert ctr("ps", "-a", "--format", "{{.Names}}").out.split() == ["c2", "c1", "c9"]
    assert ctr("inspect", "-f", "{{.Id}}", "c9").out.strip() == ids[0]
    assert ctr("inspect", "c0", check=False).code == 1
    ctr("create", "--name", "c0", "--network", "none", "busybox", "true")  # the old name is free again
    ctr("start", "c1")
    wait_for(lambda: ctr("inspect", "-f", "{{.State.Status}}", "c1").out == "exited\n")
    ctr("rm", "c2")
    assert ctr("ps", "-a", "--format", "{{.Names}} {{.State}}").out.splitlines() == [
        "c0 created", "c1 exited", "c9 created"]
    assert set(json.loads(cache.read_text())) <= set(ids) - {ids[2]}  # a removed container is forgotten

    # A running container served from the cache whose monitor dies shows exited (and is saved so).
    cid = ctr("run", "-d", "--name", "long", "--network", "none", "busybox", "sleep", "60").out.strip()
    time.sleep(SETTLED)
    assert "long" in ctr("ps", "--format", "{{.Names}}").out.split()
    assert json.loads(cache.read_text())[cid][1]["state"] == "running"
    os.kill(json.loads(Path(store_root, "containers", cid, "state.json").read_text())["monitor_pid"], 9)
    assert ctr("ps", "-a", "-f", "name=long", "--format", "{{.State}}").out == "exited\n"
    assert ctr("ps", "-q").out == ""


def test_damaged_or_forged_states_cache_is_not_believed(ctr, store_root):
    ids = [ctr("create", "--name", f"d{i}", "--network", "none", "--label", f"n={i}", "busybox", "true").out.strip()
           for i in range(3)]
    time.sleep(SETTLED)
    listing = ("ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Image}} {{.Command}} {{.CreatedAt}} {{.Status}} "
               "{{.State}} {{.Names}} {{.Labels}}")  # all but the ages, which change as the test runs
    truth = ctr(*listing).out
    cache = Path(store_root, "containers", "states.json")
    good = json.loads(cache.read_text())
    assert set(good) == set(ids)
    row = good[ids[1]]
    forged_state = {**row[1], "name": "forged", "state": "running", "monitor_pid": 1}
    ghost = "f" * 64  # no such container directory
    damages = [
        cache.read_bytes()[:len(cache.read_bytes()) // 2],  # truncated
        b"\x00\xff not json",
        b"[1, 2]",
        b"[" * 100_000,  # deeper than the parser goes
        json.dumps({ids[0]: "x", ids[1]: [1, 2, 3], ids[2]: [[1, 2, 3], "state"]}).encode(),
        json.dumps({ids[1]: [[0, 0, 0], forged_state]}).encode(),  # another file's key: read again
        json.dumps({ids[1]: [row[0], {**forged_state, "id": ids[0]}]}).encode(),  # another container's state
        json.dumps({ghost: [row[0], {**row[1], "id": ghost, "name": "ghost"}]}).encode(),
    ]
    for damage in damages:
        cache.write_bytes(damage)
        assert ctr(*listing).out == truth, damage[:80]
        assert ctr("inspect", "-f", "{{.Id}}", "d1").out.strip() == ids[1]
        assert ctr("inspect", "forged", check=False).code == 1 and ctr("inspect", "ghost", check=False).code == 1
        assert json.loads(cache.read_text()) == good  # rebuilt from the files
    # A cache that cannot be replaced (here a directory in its place) costs the reads, not the listing.
    cache.unlink()
    cache.mkdir()
    try:
        assert ctr(*listing).out == truth
        assert ctr("create", "--name", "d1", "busybox", "true", check=False).code == 125  # names still checked
    finally:
        cache.rmdir()
