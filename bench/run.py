"""`dockyard run --rm busybox true` against `podman run --rm` (runc) of the same image, with `runc run` as the floor.

The busybox rootfs (examples/busybox-rootfs.sh) is imported into a fresh dockyard store and into podman; runc gets
a prepared bundle. Rounds alternate the tools so drift hits all alike. Both container tools use their default
bridge network (dockyard's on a bench bridge, 10.242.0.0/16, torn down after); a second series uses
--network none. Goals (issue 15): dockyard ≤ 0.2× podman's time with the bridge, ≤ 1.5× `runc run` with none.
Each dockyard series runs twice: cold (DOCKYARD_RESIDENT=0: interpreter, imports, the command) and through a warm
resident server (dockyard.resident: the launcher's client hands the command to a pre-imported process's child).
dockyard is this checkout, started as installed: by the launcher dockyard/launcher.py writes (`python -S`, no site
step), here into the bench's temp dir. `python -c pass` and `python -S -c pass` are timed too: the interpreter's
own start with the site step (the machine's .pth hooks included) and without it, as the launcher starts. Each
series prints its median and quartiles: a wide spread means a busy machine.
--phases also splits `dockyard run --rm --network none` into its phases (interpreter, imports, create,
spawn, container, cleanup), and again with every module it imports loaded beforehand: what is left then is what a
run would cost a resident, pre-imported process.
Usage: python bench/run.py [--rounds 10] [--phases]   (root; podman with /etc/containers/containers.conf set up)
"""

from __future__ import annotations

import argparse
import functools
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
sys.path.insert(0, str(REPO))  # this checkout's launcher, whatever is installed
from installed import installed  # noqa: E402
from series import alternate, report  # noqa: E402

from dockyard.launcher import search_path  # noqa: E402

IMAGE = f"localhost/dockyard-bench-run-{os.getpid()}:latest"
# One `run --rm --network none busybox /bin/true` in a fresh interpreter that stamps its phases (the functions that
# bound them wrapped) and prints them, with the modules the run imported, to stderr as it exits. $PRELOAD names
# modules to import before the clock starts (the clock then starts after them). Run by python() as the launcher
# starts the CLI.
PHASED_RUN = r"""
import time
T0 = time.perf_counter()
import importlib, os
for name in filter(None, os.environ.get("PRELOAD", "").split(",")):
    importlib.import_module(name)
T0 = time.perf_counter() if os.environ.get("PRELOAD") else T0
before = set(sys.modules)
sys.argv = ["dockyard", "run", "--rm", "--network", "none", "busybox", "/bin/true"]
M = {}
from dockyard.cli import main
M["cli"] = time.perf_counter()
import runner.create, runner.runtime
def stamp(module, name, first, last):
    f = getattr(module, name)
    def stamped(*a, **k):
        M.setdefault(first, time.perf_counter())
        try:
            return f(*a, **k)
        finally:
            M[last] = time.perf_counter()
    setattr(module, name, stamped)
stamp(runner.create, "create", "create", "created")
stamp(runner.runtime, "_spawn", "spawn", "forked")
stamp(runner.runtime, "_reap", "reap", "reaped")
real_exit = os._exit
def _exit(code):
    M["exit"] = time.perf_counter()
    ms = [(M[k] - T0) * 1000 for k in ("cli", "create", "created", "forked", "reaped", "exit")]
    mods = ",".join(sorted(n for n in set(sys.modules) - before if n.split(".")[0] in ("dockyard", "runner")))
    sys.stderr.write(f"PHASES {' '.join(map(str, ms))} {mods}\n")
    sys.stderr.flush()
    real_exit(code)
os._exit = _exit
main.main()
"""
PHASES = ("interpreter -S", "cli import", "imports+parse", "create", "spawn", "container", "after exit")


def timed(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t


def python(code: str) -> list[str]:
    """The command running `code` in an interpreter started as the launcher starts the CLI: -S, its sys.path."""
    return [sys.executable, "-S", "-c", f"import sys; sys.path += {search_path(str(REPO))!r}\n{code}"]


def phased(env: dict, preload: str = "") -> tuple[list[float], str]:
    """One phased run (PHASED_RUN): the wall time of each of PHASES in ms, and the modules of ours it imported."""
    t = time.perf_counter()
    p = subprocess.run(python(PHASED_RUN), env={**env, "PRELOAD": preload}, check=True, cwd=REPO,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    total = (time.perf_counter() - t) * 1000
    words = next(line for line in p.stderr.splitlines() if line.startswith("PHASES ")).split()
    cli, create, created, forked, reaped, end = map(float, words[1:7])
    return [total - end, cli, create - cli, created - create, forked - created, reaped - forked, end - reaped], \
        words[7] if len(words) > 7 else ""


def print_phases(rounds: int, env: dict) -> None:
    """Median phases of `run --rm --network none`, as it is and with its modules (and the stdlib's) pre-imported."""
    _, ours = phased(env)  # (also the warm-up)
    probe = "import sys; print(','.join(sorted(sys.modules)))"
    bare = set(subprocess.run(python(probe), env=env, cwd=REPO, capture_output=True, text=True).stdout.split(","))
    loaded = subprocess.run(python(f"import {ours}; {probe}"), env=env, cwd=REPO, capture_output=True,
                            text=True).stdout.strip().split(",")
    preload = ",".join(sorted(set(loaded) - bare))
    for title, pre in (("as it is", ""), ("pre-imported", preload)):
        rows = [phased(env, pre)[0] for _ in range(rounds)]
        cols = [statistics.median(col) for col in zip(*rows, strict=True)]
        # Pre-imported, the interpreter's time holds the imports and the CLI's is none: the rest is the run's own.
        shown = [(name, ms) for name, ms in zip(PHASES, cols, strict=True) if not (pre and name in PHASES[:2])]
        print(f"phases, {title} (median ms): " + ", ".join(f"{name} {ms:.1f}" for name, ms in shown)
              + f"; sum {sum(ms for _, ms in shown):.1f}" + (" (what a resident process would spend)" if pre else ""))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--phases", action="store_true", help="also split `run --rm --network none` into its phases")
    opts = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-run-")
    env = {**os.environ, "DOCKYARD_ROOT": os.path.join(work, "store"), "DOCKYARD_BRIDGE": "dybench0",
           "DOCKYARD_BRIDGE_SUBNET": "10.242.0.0/16", "DOCKYARD_NETWORK_POOL": "10.243.0.0/16",
           "DOCKYARD_NAT_TABLE": "dybench"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # measure dockyard as installed: with cached bytecode
    dockyard = installed(work, env)
    try:
        rootfs = os.path.join(work, "rootfs")
        subprocess.run(["bash", str(REPO / "examples" / "busybox-rootfs.sh"), rootfs], check=True)
        tar = os.path.join(work, "rootfs.tar")
        subprocess.run(["tar", "-C", rootfs, "-cf", tar, "."], check=True)
        subprocess.run([*dockyard.command, "import", tar, "busybox:latest"], check=True, env=dockyard.cold,
                       stdout=subprocess.DEVNULL)
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

        cold, warm = dockyard.cold, dockyard.warm
        run = [*dockyard.command, "run", "--rm"]
        none = ["--network", "none"]
        series = {  # name: (command, environment)
            "dockyard": ([*run, "busybox", "/bin/true"], cold),
            "dockyard resident": ([*run, "busybox", "/bin/true"], warm),
            "podman": (["podman", "run", "--rm", IMAGE, "/bin/true"], env),
            "dockyard --network none": ([*run, *none, "busybox", "/bin/true"], cold),
            "dockyard resident none": ([*run, *none, "busybox", "/bin/true"], warm),
            "podman --network none": (["podman", "run", "--rm", *none, IMAGE, "/bin/true"], env),
            "runc run (floor)": (["runc", "run", "--bundle", bundle, f"bench-{os.getpid()}"], env),
            "python -c pass": ([sys.executable, "-c", "pass"], env),
            "python -S -c pass": ([sys.executable, "-S", "-c", "pass"], env),
        }
        for cmd, cmd_env in series.values():  # warm-up: layer unpacking, bridge creation, podman's storage
            timed(cmd, cmd_env)
        dockyard.server()
        times = alternate({name: functools.partial(timed, *run) for name, run in series.items()}, opts.rounds)
        served = dockyard.served()
        assert served >= 2 * opts.rounds, f"the resident server served {served} of {2 * opts.rounds} runs"
        med = report(times)
        for title, key in (("cold", "dockyard"), ("resident", "dockyard resident")):
            none_key = "dockyard --network none" if title == "cold" else "dockyard resident none"
            print(f"{title}: ratio dockyard/podman (bridge):       {med[key] / med['podman']:.2f}  (goal ≤ 0.2)")
            print(f"{title}: ratio dockyard/podman (network none): {med[none_key] / med['podman --network none']:.2f}")
            print(f"{title}: ratio dockyard/runc floor (none):     {med[none_key] / med['runc run (floor)']:.2f}"
                  "  (goal ≤ 1.5)")
        if opts.phases:
            print_phases(opts.rounds, env)
    finally:
        dockyard.stop()
        subprocess.run(python("from runner.network import networks; networks.reset()"), env=env, cwd=REPO)
        subprocess.run(["podman", "rmi", "-f", IMAGE], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
