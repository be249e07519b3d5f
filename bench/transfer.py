"""Push and pull a 3-layer ~100 MB image with dockyard and with skopeo against the same kind of fresh registry.

Usage: python bench/transfer.py [--registry distribution|dockyard] [--mb 100] [--runs 5]
Goal: dockyard's time at most 0.8x skopeo's, for push and for pull. Prints each run's times (the tools alternate)
and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import compileall
import gzip
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The client tests' registry launchers (and the `support` helpers they use).
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "client")]

from dockyard import mediatypes as mt  # noqa: E402
from dockyard.image import Descriptor, canonical_json, empty_config, manifest_for  # noqa: E402
from dockyard.digest import Digest  # noqa: E402
from dockyard.reference import parse  # noqa: E402
from dockyard.store import Store  # noqa: E402
from registries import start_distribution, start_dockyard_registry  # noqa: E402


def make_image(store: Store, total_mb: int) -> None:
    """bench:latest with three gzip layers of incompressible data (50%, 30%, 20% of the total)."""
    layers, diff_ids = [], []
    with store.transaction() as added:
        for i, share in enumerate((0.5, 0.3, 0.2)):
            raw = io.BytesIO()
            with tarfile.open(fileobj=raw, mode="w") as tf:
                data = os.urandom(int(total_mb * share * (1 << 20)))
                info = tarfile.TarInfo(f"layer{i}.bin")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            diff_ids.append(str(Digest.of_bytes(raw.getvalue())))
            blob = gzip.compress(raw.getvalue(), compresslevel=1)
            d = store.write_blob_bytes(blob, added=added)
            layers.append(Descriptor(mt.OCI_LAYER_GZIP, d, len(blob)))
        config = empty_config()
        config["rootfs"]["diff_ids"] = diff_ids
        cfg = canonical_json(config)
        cdesc = Descriptor(mt.OCI_CONFIG, store.write_blob_bytes(cfg, added=added), len(cfg))
        store.add_image(canonical_json(manifest_for(cdesc, layers)), [parse("bench:latest")], added)


def timed(cmd: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    return time.perf_counter() - start


def fresh_registry(kind: str, workdir: Path):
    if kind == "dockyard":
        return start_dockyard_registry(workdir)
    return start_distribution(workdir)


def one_run(kind: str, tool: str, src: Store, work: Path, env: dict) -> tuple[float, float]:
    """Push to a fresh registry, then pull into a fresh store (dockyard) or OCI layout (skopeo)."""
    dockyard = [sys.executable, "-m", "dockyard"]
    skopeo = ["skopeo", "--insecure-policy"]
    reg = fresh_registry(kind, work / "registry")
    try:
        ref = f"{reg.host}/bench/img:1"
        if tool == "dockyard":
            subprocess.run([*dockyard, "tag", "bench:latest", ref], check=True,
                           env={**os.environ, **env, "DOCKYARD_ROOT": src.root})
            push = timed([*dockyard, "push", "-q", ref], {**env, "DOCKYARD_ROOT": src.root})
            pull = timed([*dockyard, "pull", "-q", ref], {**env, "DOCKYARD_ROOT": str(work / "dst")})
            subprocess.run([*dockyard, "rmi", ref], check=True, stdout=subprocess.DEVNULL,
                           env={**os.environ, **env, "DOCKYARD_ROOT": src.root})
        else:
            push = timed([*skopeo, "copy", "-q", "--dest-tls-verify=false", f"oci:{src.layout}:bench:latest",
                          f"docker://{ref}"])
            pull = timed([*skopeo, "copy", "-q", "--src-tls-verify=false", f"docker://{ref}",
                          f"oci:{work / 'dst'}:img"])
    finally:
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)
    return push, pull


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--registry", choices=["distribution", "dockyard"], default="distribution")
    ap.add_argument("--mb", type=int, default=100, help="total image size in MB")
    ap.add_argument("--runs", type=int, default=5, help="alternate runs and compare medians (this box is noisy)")
    args = ap.parse_args()
    # Installed packages run from bytecode; with PYTHONDONTWRITEBYTECODE set every run would compile ~10 ms anew.
    for package in ("dockyard", "registry"):
        compileall.compile_dir(str(REPO / package), quiet=1)
    work = Path(tempfile.mkdtemp(prefix="dyk-bench-transfer-"))
    try:
        src = Store(str(work / "src"))
        make_image(src, args.mb)
        size = sum(d.size for d in src.resolve("bench:latest").layers)
        print(f"image: 3 layers, {size / 1e6:.1f} MB compressed; registry: {args.registry}; runs: {args.runs}")
        env = {"DOCKYARD_CONFIG": str(work / "daemon.json"), "DOCKER_CONFIG": str(work / "docker")}
        times: dict[str, list[tuple[float, float]]] = {"dockyard": [], "skopeo": []}
        for i in range(args.runs):
            for tool in times:
                times[tool].append(one_run(args.registry, tool, src, work / f"{tool}-{i}", env))
            row = "   ".join(f"{tool} push {runs[-1][0]:.3f} s pull {runs[-1][1]:.3f} s" for tool, runs in times.items())
            print(f"run {i + 1}: {row}", flush=True)
        med = {tool: (statistics.median(p for p, _ in runs), statistics.median(q for _, q in runs))
               for tool, runs in times.items()}
        for tool, (push, pull) in med.items():
            print(f"{tool:>8}: push {push:6.2f} s   pull {pull:6.2f} s")
        (dpush, dpull), (spush, spull) = med["dockyard"], med["skopeo"]
        print(f"ratio dockyard/skopeo: push {dpush / spush:.2f}x   pull {dpull / spull:.2f}x   (goal <= 0.80x)")
        print(json.dumps({"push_ratio": round(dpush / spush, 3), "pull_ratio": round(dpull / spull, 3)}))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
