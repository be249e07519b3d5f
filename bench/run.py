"""`dockyard run --rm busybox true` against `podman run --rm` (runc) of the same image, with `runc run` as the floor.

The busybox rootfs (examples/busybox-rootfs.sh) is imported into a fresh dockyard store and into podman; runc gets
a prepared bundle. Rounds alternate the tools so drift hits all alike. Both container tools use their default
bridge network (dockyard's on a bench bridge, 10.242.0.0/16, torn down after); a second series uses
--network none. Goals (issue 15): dockyard ≤ 0.2× podman's time with the bridge, ≤ 1.5× `runc run` with none.
`python -c pass` is timed too: the interpreter's own start, which every dockyard command pays and no change of ours
can cut (site hooks of the machine included). Each series prints its median and quartiles: a wide spread means a
busy machine.
Usage: python bench/run.py [--rounds 10]   (root; podman with /etc/containers/containers.conf set up)
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
IMAGE = f"localhost/dockyard-bench-run-{os.getpid()}:latest"


def timed(cmd: list[str], env: dict | None = None) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    opts = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-run-")
    env = {**os.environ, "DOCKYARD_ROOT": os.path.join(work, "store"), "DOCKYARD_BRIDGE": "dybench0",
           "DOCKYARD_BRIDGE_SUBNET": "10.242.0.0/16", "DOCKYARD_NETWORK_POOL": "10.243.0.0/16",
           "DOCKYARD_NAT_TABLE": "dybench"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # measure dockyard as installed: with cached bytecode
    # The installed entry point itself (a pyenv shim in front of it would add a bash run to every call).
    entry = os.path.join(os.path.dirname(sys.executable), "dockyard")
    dockyard = [entry] if os.path.exists(entry) else [sys.executable, "-m", "dockyard"]
    try:
        rootfs = os.path.join(work, "rootfs")
        subprocess.run(["bash", str(REPO / "examples" / "busybox-rootfs.sh"), rootfs], check=True)
        tar = os.path.join(work, "rootfs.tar")
        subprocess.run(["tar", "-C", rootfs, "-cf", tar, "."], check=True)
        subprocess.run([*dockyard, "import", tar, "busybox:latest"], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(["podman", "import", tar, IMAGE], check=True, stdout=subprocess.DEVNULL)
        bundle = os.path.join(work, "bundle")
        os.makedirs(bundle)
        os.rename(rootfs, os.path.join(bundle, "rootfs"))
        subprocess.run(["runc", "spec", "--bundle", bundle], check=True)
        cfg_path = os.path.join(bundle, "config.json")
        with open(cfg_path) as f:
            cfg = json.load(f)
        cfg["process"].update(terminal=False, args=["/bin/true"])
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)

        series = {
            "dockyard": [*dockyard, "run", "--rm", "busybox", "/bin/true"],
            "podman": ["podman", "run", "--rm", IMAGE, "/bin/true"],
            "dockyard --network none": [*dockyard, "run", "--rm", "--network", "none", "busybox", "/bin/true"],
            "podman --network none": ["podman", "run", "--rm", "--network", "none", IMAGE, "/bin/true"],
            "runc run (floor)": ["runc", "run", "--bundle", bundle, f"bench-{os.getpid()}"],
            "python -c pass": [sys.executable, "-c", "pass"],
        }
        for cmd in series.values():  # warm-up: layer unpacking, bridge creation, podman's storage
            timed(cmd, env)
        times: dict[str, list[float]] = {k: [] for k in series}
        for _ in range(opts.rounds):
            for name, cmd in series.items():
                times[name].append(timed(cmd, env))
        med = {k: statistics.median(v) for k, v in times.items()}
        for name, t in med.items():
            q1, _, q3 = statistics.quantiles(times[name], n=4) if len(times[name]) > 1 else [t] * 3
            print(f"{name:26s} median {t * 1000:7.1f} ms  (quartiles {q1 * 1000:.1f} to {q3 * 1000:.1f}, "
                  f"min {min(times[name]) * 1000:.1f})")
        print(f"ratio dockyard/podman (bridge):       {med['dockyard'] / med['podman']:.2f}  (goal ≤ 0.2)")
        print(f"ratio dockyard/podman (network none): "
              f"{med['dockyard --network none'] / med['podman --network none']:.2f}")
        print(f"ratio dockyard/runc floor (none):     {med['dockyard --network none'] / med['runc run (floor)']:.2f}"
              "  (goal ≤ 1.5)")
    finally:
        subprocess.run([sys.executable, "-c", "from runner.network import networks; networks.reset()"], env=env)
        subprocess.run(["podman", "rmi", "-f", IMAGE], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
