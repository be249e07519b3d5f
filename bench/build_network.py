"""What a RUN's own network costs: `dockyard build --no-cache` of ten `RUN true` steps with the default network
(a namespace on the default bridge per RUN) against `--network none` and `--network host`.

Usage: python bench/build_network.py [--rounds 5]   (root). Prints the medians and the ratios to `none`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NET_ENV = {"DOCKYARD_BRIDGE": "dybench2", "DOCKYARD_BRIDGE_SUBNET": "10.246.0.0/16",
           "DOCKYARD_NETWORK_POOL": "10.247.0.0/16", "DOCKYARD_NAT_TABLE": "dybenchn"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-build-network-"))
    env = {**os.environ, **NET_ENV, "DOCKYARD_ROOT": str(work / "store")}
    try:
        rootfs, tar = work / "rootfs", work / "rootfs.tar"
        subprocess.run(["bash", str(REPO / "examples" / "busybox-rootfs.sh"), str(rootfs)], check=True)
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(tar), "."], check=True)
        subprocess.run([sys.executable, "-m", "dockyard", "import", str(tar), "busybox:latest"], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        ctx = work / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text("FROM busybox\n" + "".join(f"RUN true {i}\n" for i in range(10)))
        times: dict[str, list[float]] = {"default": [], "none": [], "host": []}
        for _ in range(args.rounds):
            for mode in times:
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "dockyard", "build", "-q", "--no-cache", "--network", mode,
                                str(ctx)], check=True, env=env, stdout=subprocess.DEVNULL)
                times[mode].append(time.perf_counter() - start)
        med = {k: statistics.median(v) for k, v in times.items()}
        for mode, t in med.items():
            print(f"{mode:>8}: {t:6.3f}s for 10 RUNs  ratio to none {t / med['none']:.2f}")
    finally:
        subprocess.run([sys.executable, "-c", "from runner.network import networks; networks.reset()"], env=env)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
