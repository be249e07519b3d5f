"""Build the same Dockerfile with `dockyard build` and `buildah build --layers`, cold (--no-cache) and cached.

The Dockerfile: a RUN writing 64 MiB of random data, a RUN writing 5 million lines, a COPY of 200 files, and an
ENV/WORKDIR/CMD tail, on the busybox base (made by examples/busybox-rootfs.sh, loaded into both tools).
Usage: python bench/build.py [--runs 1]   (root; needs buildah and podman with containers.conf set up)
Goal: dockyard at most buildah's time in both modes. Prints the times and the ratios dockyard/buildah.

--registry-cache: the CI case instead. Runner A builds and exports its cache to a local distribution registry
(`--cache-to type=registry,mode=max`; buildah: `--cache-to REPO`), then a fresh runner B (an empty store; buildah:
an empty --root) builds the same context cold and with `--cache-from`. Goal: B's cached build at most 0.5x
buildah's cached one.

--big-context: `COPY . /app` of 20,000 small files (79 MB in 100 directories) with --no-cache, ours and buildah's
alternating: once unchanged (a layer each tool has stored already) and once with one file edited before each build
(a new layer). Goal: dockyard at most 0.7x buildah.

--noop: CI's rebuild of an unchanged context, every step cached, `-q`: dockyard as installed (this checkout's
launcher, bench/installed.py), cold (DOCKYARD_RESIDENT=0: interpreter start, imports, the build) and through a
resident server of the bench's own, next to buildah's cached rebuild; rounds alternate the three (use --runs 20:
each takes well under a second). Prints each series' median and quartiles, the ratios, and how many of the
resident series the server served (none: `build` is not served by this checkout).
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from installed import installed
from series import alternate, report

REPO = Path(__file__).resolve().parents[1]
BASE = f"localhost/dockyard-bench-base-{os.getpid()}:latest"
DOCKERFILE = f"""\
FROM {BASE}
RUN head -c 67108864 /dev/urandom > /random.bin
RUN seq 1 5000000 > /lines.txt
COPY files/ /files/
ENV MODE=bench
WORKDIR /files
CMD ["ls"]
"""
# RUN steps join the store's default bridge: the bench's own, taken down at the end.
NET_ENV = {"DOCKYARD_BRIDGE": "dybench1", "DOCKYARD_BRIDGE_SUBNET": "10.244.0.0/16",
           "DOCKYARD_NETWORK_POOL": "10.245.0.0/16", "DOCKYARD_NAT_TABLE": "dybenchb"}


# Measure dockyard as installed: with cached bytecode (the first run writes it), as bench/run.py does.
BASE_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def dockyard(root: str, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "dockyard", *args], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env={**BASE_ENV, **NET_ENV, "DOCKYARD_ROOT": root})


def timed(cmd: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**BASE_ENV, **(env or {})})
    return time.perf_counter() - start


def _podman_images() -> list[str]:
    """IDs of every image in podman/buildah storage, intermediate ones included."""
    out = subprocess.run(["podman", "images", "-a", "-q", "--no-trunc"], check=True, capture_output=True, text=True)
    return out.stdout.split()


def setup(work: Path) -> tuple[str, Path]:
    """A dockyard store and podman/buildah storage with the busybox base; the build context."""
    root = str(work / "store")
    rootfs, tar = work / "rootfs", work / "rootfs.tar"
    subprocess.run(["bash", str(REPO / "examples" / "busybox-rootfs.sh"), str(rootfs)], check=True)
    with tarfile.open(tar, "w") as tf:
        for entry in sorted(os.listdir(rootfs)):
            tf.add(rootfs / entry, arcname=entry)
    dockyard(root, "import", "--change", 'CMD ["/bin/sh"]', str(tar), BASE)
    dockyard(root, "save", "-o", str(work / "base.tar"), BASE)
    subprocess.run(["podman", "load", "-i", str(work / "base.tar")], check=True, stdout=subprocess.DEVNULL)
    ctx = work / "ctx"
    (ctx / "files").mkdir(parents=True)
    for i in range(200):
        (ctx / "files" / f"f{i:03}.txt").write_bytes(os.urandom(2048))
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    return root, ctx


def big_context(work: Path, root: str, runs: int) -> None:
    """COPY of a context of 20,000 small files after a cache miss, against buildah doing the same."""
    import random

    rng = random.Random(14)
    ctx = work / "big"
    for d in range(100):
        (ctx / "src" / f"d{d:03}").mkdir(parents=True)
        for i in range(200):
            (ctx / "src" / f"d{d:03}" / f"f{i:03}.txt").write_bytes(os.urandom(rng.randint(1000, 6900)))
    (ctx / "Dockerfile").write_text(f"FROM {BASE}\nCOPY . /app\n")
    ours = [sys.executable, "-m", "dockyard", "build", "-q", "--no-cache", "-t", "bench-big", str(ctx)]
    theirs = ["buildah", "build", "--layers", "--pull=never", "--format", "docker", "-q", "--no-cache",
              "-t", "localhost/bench-big-buildah", str(ctx)]
    edited = ctx / "src" / "d000" / "f000.txt"
    # Unchanged, the layer is one each tool stored before; after an edit of one file it is a new layer.
    for series, edit in (("unchanged", False), ("one file edited", True)):
        times: dict[str, list[float]] = {"ours": [], "theirs": []}
        for _ in range(runs):
            for tool, cmd, env in (("ours", ours, {**NET_ENV, "DOCKYARD_ROOT": root}), ("theirs", theirs, None)):
                if edit:
                    edited.write_bytes(os.urandom(4000))
                times[tool].append(timed(cmd, env))
        ours_t, theirs_t = statistics.median(times["ours"]), statistics.median(times["theirs"])
        print(f"COPY of 20,000 files, {series}: dockyard {ours_t:6.2f}s  buildah {theirs_t:6.2f}s  "
              f"ratio {ours_t / theirs_t:.2f}  (goal <= 0.7)")


def registry_cache(work: Path, root: str, ctx: Path, runs: int) -> None:
    """Runner B, cold and with the registry cache runner A exported, against buildah doing the same."""
    sys.path.insert(0, str(REPO / "tests"))
    sys.path.insert(0, str(REPO / "tests" / "client"))
    from registries import start_distribution

    server = start_distribution(work / "registry")
    try:
        reg = server.host
        base = f"{reg}/bench/base:latest"
        dockyard(root, "tag", BASE, base)
        dockyard(root, "push", "-q", base)
        (ctx / "Dockerfile").write_text(DOCKERFILE.replace(BASE, base))
        cache, buildah_cache = f"{reg}/bench/cache:dockyard", f"{reg}/bench/cache-buildah"
        ours = [sys.executable, "-m", "dockyard", "build", "-q", "--network", "none"]

        def buildah(store: str, *args: str) -> list[str]:
            return ["buildah", "--root", f"{work}/{store}", "--runroot", f"{work}/{store}-run", "build", "--layers",
                    "--network", "none", "--tls-verify=false", "--format", "oci", "-q", *args, str(ctx)]

        fresh = lambda name: {**NET_ENV, "DOCKYARD_ROOT": str(work / name)}  # noqa: E731 (a runner's own store)
        timed([*ours, "--cache-to", f"type=registry,ref={cache},mode=max", str(ctx)],
              {**NET_ENV, "DOCKYARD_ROOT": root})
        timed(buildah("buildah-a", "--cache-to", buildah_cache))
        times: dict[str, list[float]] = {k: [] for k in ("ours-cold", "ours-cached", "theirs-cold", "theirs-cached")}
        for i in range(runs):
            times["ours-cold"].append(timed([*ours, str(ctx)], fresh(f"b-cold-{i}")))
            times["ours-cached"].append(timed([*ours, "--cache-from", f"type=registry,ref={cache}", str(ctx)],
                                              fresh(f"b-cached-{i}")))
            times["theirs-cold"].append(timed(buildah(f"buildah-b-cold-{i}")))
            times["theirs-cached"].append(timed(buildah(f"buildah-b-cached-{i}", "--cache-from", buildah_cache)))
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"runner B cold:   dockyard {med['ours-cold']:6.2f}s  buildah {med['theirs-cold']:6.2f}s  "
              f"ratio {med['ours-cold'] / med['theirs-cold']:.2f}")
        print(f"runner B cached: dockyard {med['ours-cached']:6.2f}s  buildah {med['theirs-cached']:6.2f}s  "
              f"ratio {med['ours-cached'] / med['theirs-cached']:.2f}  (goal <= 0.5)")
        print(f"dockyard cached / cold: {med['ours-cached'] / med['ours-cold']:.2f}")
    finally:
        server.stop()
        for store in work.glob("buildah-*"):
            if not store.name.endswith("-run"):
                subprocess.run(["buildah", "--root", str(store), "--runroot", f"{store}-run", "rmi", "-af"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                subprocess.run(["umount", "-R", str(store / "overlay")], stderr=subprocess.DEVNULL)


def noop(work: Path, root: str, ctx: Path, runs: int) -> None:
    """The no-op rebuild through the launcher, cold and resident, against buildah's cached rebuild."""
    ours = installed(str(work), {**BASE_ENV, **NET_ENV, "DOCKYARD_ROOT": root})
    try:
        build = [*ours.command, "build", "-q", "-t", "bench-noop", str(ctx)]
        theirs = ["buildah", "build", "--layers", "--pull=never", "--format", "docker", "-q",
                  "-t", "localhost/bench-noop-buildah", str(ctx)]
        timed(build, ours.cold)  # the first builds: every step runs
        timed(theirs)
        timed([*ours.command, "version"], ours.warm)  # (runs directly and starts the resident server)
        ours.server()
        series = {"dockyard": (build, ours.cold), "dockyard resident": (build, ours.warm), "buildah": (theirs, None)}
        for cmd, env in series.values():  # warm-up: bytecode written, the store's files in the page cache
            timed(cmd, env)
        served = ours.served()
        times = alternate({name: functools.partial(timed, *run) for name, run in series.items()}, runs)
        print("no-op rebuild:")
        med = report(times)
        print(f"ratio dockyard/buildah: cold {med['dockyard'] / med['buildah']:.2f}  resident "
              f"{med['dockyard resident'] / med['buildah']:.2f}  (resident/cold "
              f"{med['dockyard resident'] / med['dockyard']:.2f}); resident series served: "
              f"{ours.served() - served} of {runs}")
    finally:
        ours.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1, help="alternating runs per mode (median reported)")
    ap.add_argument("--registry-cache", action="store_true", help="the registry cache case (see above)")
    ap.add_argument("--big-context", action="store_true", help="the COPY of 20,000 files case (see above)")
    ap.add_argument("--noop", action="store_true", help="the no-op cached rebuild, cold and resident (see above)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-build-"))
    before = set(_podman_images())
    try:
        root, ctx = setup(work)
        if args.registry_cache:
            registry_cache(work, root, ctx, args.runs)
            return
        if args.big_context:
            big_context(work, root, args.runs)
            return
        if args.noop:
            noop(work, root, ctx, args.runs)
            return
        ours_cmd = [sys.executable, "-m", "dockyard", "build", "-q", "-t", "bench-built"]
        theirs_cmd = ["buildah", "build", "--layers", "--pull=never", "--format", "docker", "-q",
                      "-t", "localhost/bench-built-buildah"]
        env = {**NET_ENV, "DOCKYARD_ROOT": root}
        times: dict[str, list[float]] = {k: [] for k in ("ours-cold", "theirs-cold", "ours-cached", "theirs-cached")}
        for _ in range(args.runs):
            times["ours-cold"].append(timed([*ours_cmd, "--no-cache", str(ctx)], env))
            times["theirs-cold"].append(timed([*theirs_cmd, "--no-cache", str(ctx)]))
            times["ours-cached"].append(timed([*ours_cmd, str(ctx)], env))
            times["theirs-cached"].append(timed([*theirs_cmd, str(ctx)]))
        med = {k: statistics.median(v) for k, v in times.items()}
        for mode in ("cold", "cached"):
            ours, theirs = med[f"ours-{mode}"], med[f"theirs-{mode}"]
            print(f"{mode:>6}: dockyard {ours:6.2f}s  buildah {theirs:6.2f}s  ratio {ours / theirs:.2f}")
    finally:
        # The base, the result and buildah's intermediate --layers images: everything this run added.
        new = [i for i in _podman_images() if i not in before]
        subprocess.run(["podman", "rmi", "-f", *new], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run([sys.executable, "-c", "from runner.network import networks; networks.reset()"],
                       env={**os.environ, **NET_ENV, "DOCKYARD_ROOT": str(work / "store")})
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
