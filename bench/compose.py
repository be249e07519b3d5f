"""`dockyard compose up -d` then `down` of a 5-service project against podman-compose (Debian's 1.0.3), same images.

The project: five busybox services on one network, two serving httpd, three sleeping, each under an init (`init:
true`; as PID 1 they would ignore SIGTERM, and both tools' `down` would time the 10 s stop timeout). The busybox rootfs
(examples/busybox-rootfs.sh) is imported into a fresh dockyard store and moved to podman with `dockyard save` |
`podman load`, so both tools run the very same image under the same name. Rounds alternate the tools so drift hits
both alike; each round times `up -d` and `down` apart. dockyard's networks use a bench bridge and pool
(10.246.0.0/16, 10.247.0.0/16), torn down after; podman-compose never removes the networks it made (1.0.3's `down`
leaves them), so its later rounds reuse one: a small advantage to podman, kept as it is what its users get.
Goal: dockyard's up+down ≤ 0.3× podman-compose's.
Usage: python bench/compose.py [--rounds 5]   (root; podman with /etc/containers/containers.conf set up)
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
IMAGE = f"localhost/dockyard-bench-compose-{os.getpid()}:latest"
PROJECT = f"dybench{os.getpid()}"
COMPOSE = f"""\
services:
  web1: {{image: "{IMAGE}", init: true, command: [httpd, -f, -p, "80"], networks: [net]}}
  web2: {{image: "{IMAGE}", init: true, command: [httpd, -f, -p, "80"], networks: [net]}}
  worker1: {{image: "{IMAGE}", init: true, command: [sleep, "3600"], networks: [net]}}
  worker2: {{image: "{IMAGE}", init: true, command: [sleep, "3600"], networks: [net]}}
  worker3: {{image: "{IMAGE}", init: true, command: [sleep, "3600"], networks: [net]}}
networks:
  net: {{}}
"""
NET_ENV = {"DOCKYARD_BRIDGE": "dybenchc", "DOCKYARD_BRIDGE_SUBNET": "10.246.0.0/16",
           "DOCKYARD_NETWORK_POOL": "10.247.0.0/16", "DOCKYARD_NAT_TABLE": "dybenchc"}


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def podman_cleanup() -> None:
    """Whatever podman-compose left of the project (containers, its network), and the bench image."""
    label = f"label=io.podman.compose.project={PROJECT}"

    def podman(*args: str) -> list[str]:
        return subprocess.run(["podman", *args], capture_output=True, text=True).stdout.split()

    ids = podman("ps", "-aq", "--filter", label)
    if ids:
        podman("rm", "-f", "-t", "0", *ids)
    nets = podman("network", "ls", "-q", "--filter", label)
    if nets:
        podman("network", "rm", "-f", *nets)
    podman("rmi", "-f", IMAGE)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    opts = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-compose-")
    env = {**os.environ, **NET_ENV, "DOCKYARD_ROOT": os.path.join(work, "store")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # measure dockyard as installed: with cached bytecode
    # The interpreter's own entry point: a pyenv shim in front of `dockyard` would add a bash run to every call.
    dockyard = [sys.executable, "-m", "dockyard"]
    compose_file = os.path.join(work, "compose.yaml")
    try:
        rootfs, tar = os.path.join(work, "rootfs"), os.path.join(work, "rootfs.tar")
        subprocess.run(["bash", str(REPO / "examples" / "busybox-rootfs.sh"), rootfs], check=True)
        subprocess.run(["tar", "-C", rootfs, "-cf", tar, "."], check=True)
        subprocess.run([*dockyard, "import", tar, IMAGE], check=True, env=env, stdout=subprocess.DEVNULL)
        archive = os.path.join(work, "image.tar")
        subprocess.run([*dockyard, "save", "-o", archive, IMAGE], check=True, env=env)
        subprocess.run(["podman", "load", "-i", archive], check=True, stdout=subprocess.DEVNULL)
        with open(compose_file, "w") as f:
            f.write(COMPOSE)

        ours = [*dockyard, "compose", "-p", PROJECT, "-f", compose_file]
        theirs = ["podman-compose", "-p", PROJECT, "-f", compose_file]
        series = {"dockyard": ([*ours, "up", "-d"], [*ours, "down"]),
                  "podman-compose": ([*theirs, "up", "-d"], [*theirs, "down"])}
        times: dict[str, dict[str, list[float]]] = {k: {"up": [], "down": []} for k in series}
        for i in range(opts.rounds + 1):  # round 0 warms up: layer unpacking, bridges, podman's storage
            for name, (up, down) in series.items():
                t_up, t_down = timed(up, env), timed(down, env)
                if i:
                    times[name]["up"].append(t_up)
                    times[name]["down"].append(t_down)
        med = {name: {step: statistics.median(v) for step, v in t.items()} for name, t in times.items()}
        for name, m in med.items():
            print(f"{name:15s} up -d median {m['up'] * 1000:7.1f} ms   down median {m['down'] * 1000:7.1f} ms   "
                  f"total {(m['up'] + m['down']) * 1000:7.1f} ms")
        d, p = med["dockyard"], med["podman-compose"]
        print(f"ratio dockyard/podman-compose: up {d['up'] / p['up']:.2f}  down {d['down'] / p['down']:.2f}  "
              f"total {(d['up'] + d['down']) / (p['up'] + p['down']):.2f}  (goal ≤ 0.3)")
    finally:
        subprocess.run([*dockyard, "compose", "-p", PROJECT, "-f", compose_file, "down", "-v"], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run([sys.executable, "-c", "from runner.network import networks; networks.reset()"], env=env)
        podman_cleanup()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
