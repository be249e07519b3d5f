"""`dockyard images`, `ps -a` and `inspect` on a big store, each against `dockyard version` (process start).

The store gets busybox and N-1 more images (each its own config, so its own image ID and manifest) plus M created
containers; rounds alternate the commands so drift hits all alike. Goal (issue 15): each listing ≤ 2× `version`.
Usage: python bench/listing.py [--images 500] [--containers 200] [--rounds 15]

2026-12-01, 10 rounds, the resident server warm: `image inspect` 86.9 ms (2.89x version: the `image` group was not
served, so each ran directly, interpreter and imports included) -> 36.5 ms (1.13x) once the groups' forms of served
commands are served; images 1.39x, ps -a 1.42x, inspect 1.19x.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t


def populate(env: dict, images: int, containers: int) -> None:
    """N images derived from busybox (a label each) and M created containers, made in-process (not timed)."""
    os.environ.update(env)
    from dockyard import mediatypes as mt
    from dockyard import reference
    from dockyard.api import Client
    from dockyard.store import Store

    store = Store(env["DOCKYARD_ROOT"])
    base = store.resolve("busybox:latest")
    manifest = json.loads(store.read_blob(base.manifest_digest))
    config = json.loads(store.read_blob(base.id))
    for i in range(1, images):
        config["config"]["Labels"] = {"bench.n": str(i)}
        config["created"] = f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z"
        data = json.dumps(config).encode()
        digest = store.write_blob_bytes(data)
        manifest["config"] = {"mediaType": mt.OCI_CONFIG, "digest": str(digest), "size": len(data)}
        store.add_image(json.dumps(manifest).encode(), [reference.parse(f"bench/img{i}:v{i % 7}")])
    client = Client(env["DOCKYARD_ROOT"])
    for i in range(containers):
        client.containers.create("busybox:latest", ["true"], name=f"bench-{i}", labels={"n": str(i)})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--containers", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=15)
    opts = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-listing-")
    env = {**os.environ, "DOCKYARD_ROOT": os.path.join(work, "store")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # measure dockyard as installed: with cached bytecode
    entry = os.path.join(os.path.dirname(sys.executable), "dockyard")
    dockyard = [entry] if os.path.exists(entry) else [sys.executable, "-m", "dockyard"]
    try:
        rootfs = os.path.join(work, "rootfs")
        subprocess.run(["bash", str(REPO / "examples" / "busybox-rootfs.sh"), rootfs], check=True)
        tar = os.path.join(work, "rootfs.tar")
        subprocess.run(["tar", "-C", rootfs, "-cf", tar, "."], check=True)
        subprocess.run([*dockyard, "import", tar, "busybox:latest"], check=True, env=env, stdout=subprocess.DEVNULL)
        populate(env, opts.images, opts.containers)
        commands = {"version": ["version"], "images": ["images"], "ps -a": ["ps", "-a"],
                    "inspect": ["inspect", "bench-7"], "image inspect": ["image", "inspect", "bench/img7:v0"]}
        times: dict[str, list[float]] = {k: [] for k in commands}
        for args in commands.values():  # warm the page cache and bytecode
            timed([*dockyard, *args], env)
        for _ in range(opts.rounds):
            for name, args in commands.items():
                times[name].append(timed([*dockyard, *args], env))
        base = statistics.median(times["version"])
        print(f"{opts.images} images, {opts.containers} containers, {opts.rounds} rounds (median ms)")
        for name, ts in times.items():
            med = statistics.median(ts)
            print(f"  {name:14s} {med * 1000:7.1f} ms   {med / base:4.2f}× version")
    finally:
        from dockyard.api import Client
        client = Client(env["DOCKYARD_ROOT"])
        for c in client.containers.list(all=True):
            c.remove(force=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
