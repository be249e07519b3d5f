"""Time our runtime's `run` of a busybox bundle running `true` against `runc run` of the same bundle.

Alternates them 20 times; prints medians and ratios for our run in-process, as a fresh Python process
(the least a `dockyard run` CLI pays), and sandbox.run (the builder's RUN: overlay root, /etc files,
fresh upper each time). Needs root and runc.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from runner import runtime, sandbox, spec  # noqa: E402


def main(rounds: int = 20) -> None:
    """Build the bundle, alternate the runtimes, print the medians and ratios."""
    with tempfile.TemporaryDirectory(prefix="bench-runtime-") as tmp:
        bundle = Path(tmp) / "bundle"
        subprocess.run(["bash", str(REPO / "examples" / "busybox-rootfs.sh"), str(bundle / "rootfs")], check=True)
        (bundle / "config.json").write_text(json.dumps(spec.default_spec("rootfs", ["true"], network="none")))
        cli = [sys.executable, "-c", f"from runner.runtime import run; raise SystemExit(run({str(bundle)!r}, 'b').code)"]
        times: dict[str, list[float]] = {"ours in-process": [], "ours as a process": [], "sandbox.run overlay": [],
                                         "runc run": []}
        for i in range(rounds):
            t = time.perf_counter()
            assert runtime.run(str(bundle), f"bench-{i}").code == 0
            times["ours in-process"].append(time.perf_counter() - t)
            t = time.perf_counter()
            subprocess.run(cli, check=True, cwd=REPO)
            times["ours as a process"].append(time.perf_counter() - t)
            box = sandbox.Sandbox(["true"], [str(bundle / "rootfs")], f"{tmp}/c{i}/upper")
            t = time.perf_counter()
            assert sandbox.run(box, scratch=tmp).code == 0
            times["sandbox.run overlay"].append(time.perf_counter() - t)
            t = time.perf_counter()
            subprocess.run(["runc", "run", "--bundle", str(bundle), f"bench-runc-{i}"], check=True)
            times["runc run"].append(time.perf_counter() - t)
        runc = statistics.median(times["runc run"])
        for name, samples in times.items():
            med = statistics.median(samples)
            print(f"{name:20s} median {med * 1000:7.1f} ms  ratio to runc {med / runc:5.2f}")


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("bench/runtime.py needs root")
    main()
