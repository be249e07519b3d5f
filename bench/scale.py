"""Benchmark: the registry scaled out. 1, 2 and 3 replicas of `dockyard registry serve` behind HAProxy (round robin,
no sticky sessions) over one storage: a filesystem root the replicas share, and S3 on a Ceph RADOS Gateway (the test
suite's one-node cluster, tests/registry/ceph.py). Then one replica on S3 against distribution 2.8 on the same
radosgw (its own prefix in the bucket), side by side, both answered directly.

Per setup: manifest GETs (`wrk -t2 -c32`), 64 MiB blob GETs (`wrk -t2 -c4`), and pushes by 16 concurrent clients
(threads here, each pushing images of a fresh 1 MiB layer and a config the way docker does: POST, PATCH, PUT; then
the manifest PUT). Throughput per busy core: the throughput over the cores the registry's processes and HAProxy kept
busy meanwhile (their CPU time from /proc/<pid>/stat over the wall time; Ceph's and the clients' are not counted).
The setups alternate within a round; the best of the rounds is kept. A second table says where the CPU went:
HAProxy's share, and the registry processes' context switches per request (voluntary: a process idle, waiting for
work; involuntary: preempted by another process).

Workers per replica: the cores the replica would own (--workers N sets a fixed count instead). The replicas stand
for hosts of their own, simulated on one machine, so on this 2-core machine 1 replica gets 2 workers and each of 2
or 3 replicas 1 (at least one). With a fixed 2 each, 3 replicas run 6 worker processes on 2 cores (with HAProxy, wrk
and the pushing clients), and what that costs is not coordination: --control adds one replica with as many workers
as the 3 replicas together, which shares nothing with anyone yet loses as much per core. In five measurements
(2026-11-29, a busy machine; fs and S3, 2 workers each or the cores' worth) the control's ratio to 1 replica spanned
what the 3 replicas' did: manifest GET 0.55-1.05x against 0.55-0.97x, blob 0.69-1.11x against 0.74-1.06x, push
0.78-0.85x against 0.69-0.94x; the same setup rerun moved a ratio by up to 0.3. The read path takes no lock and
reads only the tag and the manifest's link (a blob GET: the link and the blob's size) per request, the same with any
number of replicas.

2026-11-30, a quiet box, 3-4 rounds: HAProxy is ~85% of the CPU of a 64 MiB blob GET through it, copying through
16 KiB buffers; with `option splice-response` (the kernel moves the body) fs x1 blob GETs went 1403-1528 -> 1950 MiB/s
and 1055-1120 -> 1729 MiB/s per core. 3 replicas / 1 per core then: manifest 0.94x, blob 0.90x, push 0.85x (before:
0.85-0.89x, 0.76-0.88x, 0.97-0.98x; push moves that much between runs).

2026-11-30 evening, a busy box (load 5-12): what a push costs 3 replicas more. Per pushed image, `strace -c -f` of
every worker made the same storage calls with 1 or 3 replicas (fs: 18 fsyncs, ~41 opens; S3: 44 requests) but one: a
PUT on another replica than its PATCH read the digest so far from its own object (S3: a GET). That digest now rides
in the data writer's note (S3: the tail's metadata; one PUT less per PATCH too). The rest is the event loop: a lone
worker per replica sleeps and wakes twice as often per image (voluntary switches fs 17-18 vs 11-12, S3 28-31 vs
10-15; epoll_wait 2x), on S3 ~6 ms of user time an image (+25%): no storage call, no per-process cache. CPU per
image, registry and HAProxy, before/after the note (both trees' fleets on one Ceph, 4 alternating rounds, medians):
S3 x3 / x1 per core 0.81-0.87x -> 0.86-0.91x (x3 -6 to -8% an image, x1 -1%), fs 0.94x -> 0.95x (noise). This
script, with a second of pushes through each setup first (each worker's first S3 use, boto3's import, ~0.2 s of CPU,
had fallen in round 1): fs (two runs, the second with the note) manifest 0.89-0.91x, blob 0.84-0.91x, push
0.90-0.91x; S3 before the note 0.99x, 0.94x, 0.96x; with it (two runs at load 10-12) 0.80-1.01x, 0.84-1.02x,
0.82-0.90x: the reads, which it does not touch, moved as much, so the box's load sets these ratios more than the
registry does.

2026-11-30, quiet box after CI, 3 rounds, with S3's fewer requests per push (42 -> 34 an image) and the digest note:
S3 x3 / x1 per core manifest 0.96x, blob 0.89x, push 0.88x (dockyard / distribution 1.63x, 1.20x, 1.54x); fs 0.91x,
0.86x, 0.83x, rerun with --control: x3 0.91x, 0.85x, 0.84x, control 0.98x, 0.90x, 0.91x.

2026-11-30 night, a quiet box, the same code: fs x3 / x1 per core (3 rounds, twice) manifest 0.96x, 0.91x, blob
0.93x, 0.91x, push 0.92x, 0.94x; S3 (3 rounds, 3 rounds, 5 rounds) manifest 0.93x, 0.84x, 1.05x, blob 0.96x, 0.87x,
0.97x, push 0.90x, 0.86x, 0.89x; dockyard / distribution on S3 1.54-1.62x, 1.11-1.32x, 1.46-1.64x. On S3 a lone
worker per replica sleeps 2.5x as often per pushed image as each of one replica's two (22.6 vs 8.8 waits), ~3.5 ms
more CPU an image (34.6 vs 31.0 ms): radosgw takes the rest of the two cores, so the ratio moves with its load.

2026-12-01, a freshly booted quiet box. Before: S3 x3 / x1 per core manifest 0.83x, blob 0.81x, push 0.89x. Then a
pushed image's S3 requests 34 -> 27 (no listing before an upload session's lock: its info, read under the lock, says
whether it is there; no failed touch before writing a new blob or manifest): S3 push per core x1 30.7 -> 34.6, x3
27.2 -> 33.5 images/s; x3 / x1 (3, 3 and 3 rounds) manifest 0.93x, 0.95x, 0.99x, blob 0.93x, 0.99x, 0.85x, push
0.97x, 0.92x, 0.91x; fs 1.00x, 0.90x, 0.97x. Then 1 MiB splice pipes for HAProxy (tune.pipesize; at the kernel's
64 KiB it spent 0.56 ms of CPU per MiB of a blob GET, now 0.28; fs, 4 alternating 5 s runs each: blob GETs per core
x1 1372 -> 1539 MiB/s, x3 1303 -> 1616): S3 (3 rounds, 5 rounds with --control) manifest 0.91x, 1.00x, blob 0.98x,
1.05x, push 0.90x, 0.91x (control 0.97x, 0.97x, 0.93x); fs 1.02x, 1.27x, 1.07x; dockyard / distribution on S3
1.55x, 1.27-1.36x, 1.79-1.91x. Push stays the closest: per image, a replica's lone worker still waits ~3x as often
(19.5 vs 6.9 sleeps) and that costs more than the switches themselves on this VM (an idle vCPU's wake-up).

Goals: 3 replicas keep >= 0.90 of one replica's throughput per core; on S3, one replica >= 1.0x distribution.

Run: python bench/scale.py [--quick] [--rounds N] [--duration S] [--workers N] [--control] [--storage fs|s3|both]
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The registry tests' Ceph cluster and kit (and the `support` helpers they use).
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "registry"), str(REPO / "tests" / "client")]

from ceph import Ceph  # noqa: E402
from registries import start_distribution as launch_distribution  # noqa: E402
from regkit import s3_section  # noqa: E402
from servers import wait_up  # noqa: E402
from support import free_port  # noqa: E402

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
BLOB_SIZE = 64 << 20
PUSH_LAYER = 1 << 20
PUSHERS = 16
WARM_UP = 1.0  # seconds of pushes through each setup before the rounds
REPLICAS = (1, 2, 3)
BUCKET = "bench"
TICK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1


@dataclass
class Usage:
    """What processes spent: CPU seconds and context switches (voluntary: waited; involuntary: preempted)."""

    cpu: float = 0.0
    waits: int = 0
    preempted: int = 0

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.cpu - other.cpu, self.waits - other.waits, self.preempted - other.preempted)


def usage(sessions: dict[int, str]) -> dict[str, Usage]:
    """Per role ("lb", "registry"), what the live processes of `sessions` (session id -> role) spent so far; each
    server starts its own session."""
    out = {role: Usage() for role in set(sessions.values())}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            role = sessions.get(int(fields[3]))  # fields after the name: state ppid pgrp session ... utime stime
            if role is None:
                continue
            with open(f"/proc/{entry.name}/status") as f:
                status = dict(line.split(":", 1) for line in f if "ctxt_switches" in line)
        except OSError:
            continue
        u = out[role]
        u.cpu += (int(fields[11]) + int(fields[12])) / TICK
        u.waits += int(status["voluntary_ctxt_switches"])
        u.preempted += int(status["nonvoluntary_ctxt_switches"])
    return out


def spawn(argv: list[str], log: Path, **kw) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kw)


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def connect(url: str) -> http.client.HTTPConnection:
    """A keep-alive connection to the server at `url`."""
    return http.client.HTTPConnection(urllib.parse.urlsplit(url).netloc, timeout=300)


@dataclass
class Setup:
    """Servers answering at `url`; `sessions` (session id -> role) are the processes whose CPU time counts."""

    name: str
    url: str
    sessions: dict[int, str]


def replica_workers(replicas: int, workers: int | None) -> int:
    """Worker processes per replica: `workers`, or (None) the cores each replica would own on hosts of this size
    sharing the machine's cores, at least one."""
    return workers or max(1, CORES // replicas)


@dataclass
class Fleet:
    """Replicas on one storage and an HAProxy in front of 1, 2 and 3 of them (`workers` each, see replica_workers);
    `control`: also one replica with as many workers as the 3 replicas have together."""

    storage: str
    work: Path
    workers: int | None
    control: bool = False
    config: Path | None = None
    procs: list[subprocess.Popen] = field(default_factory=list)
    replicas: dict[int, list[tuple[str, subprocess.Popen]]] = field(default_factory=dict)  # by workers each
    proxies: dict[str, Setup] = field(default_factory=dict)

    def start(self) -> Fleet:
        wanted = {n: replica_workers(n, self.workers) for n in REPLICAS}
        for n, workers in wanted.items():
            self._replicas(workers, n)
        for n, workers in wanted.items():
            self._haproxy(f"{self.storage} x{n}", self._replicas(workers, n))
        if self.control:
            together = max(REPLICAS) * wanted[max(REPLICAS)]
            self._haproxy(f"{self.storage} x1 w{together}", self._replicas(together, 1, started=False))
        return self

    def _replicas(self, workers: int, count: int, started: bool = True) -> list[tuple[str, subprocess.Popen]]:
        """`count` replicas of `workers` workers, starting those missing; started=False: new ones too (a replica
        with as many workers as several others together)."""
        key = workers if started else -workers
        group = self.replicas.setdefault(key, [])
        root = self.work / f"{self.storage}-root"  # on S3 the local state alone: the token key and the locks
        while len(group) < count:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            argv = [sys.executable, "-m", "dockyard", "registry", "serve", "--addr", f"127.0.0.1:{port}",
                    "--root", str(root), "--workers", str(workers), "--access-log", "",
                    *(["--config", str(self.config)] if self.config else [])]
            log = self.work / f"{self.storage}-replica{len(self.procs)}.log"
            proc = spawn(argv, log, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
            self.procs.append(proc)
            group.append((url, proc))
            # One at a time: the first makes the shared root (and the token key in it) before the others start.
            wait_up(url, proc, log=log)
        return group[:count]

    def direct(self) -> tuple[str, subprocess.Popen]:
        """The replica the 1-replica setup balances to."""
        return self.replicas[replica_workers(1, self.workers)][0]

    def _haproxy(self, name: str, replicas: list[tuple[str, subprocess.Popen]]) -> None:
        port = free_port()
        servers = "\n".join(f"    server r{i} {urllib.parse.urlsplit(url).netloc}"
                            for i, (url, _) in enumerate(replicas))
        label = name.replace(" ", "-")
        config = self.work / f"haproxy-{label}.cfg"
        config.write_text(f"""global
    maxconn 4096
    # As examples/deploy/haproxy.cfg: 1 MiB pipes for the splice (HAProxy's CPU per MiB of blob GETs halved).
    tune.pipesize 1048576
defaults
    mode http
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    # As examples/deploy/haproxy.cfg: blob bodies spliced in the kernel (per core, blob GETs 1055 -> 1729 MiB/s).
    option splice-response
frontend registry
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    # Idle server connections serve any client's next request (the default, "safe", keeps a client's first request
    # off them): without it most requests to 2 or 3 replicas open a new connection.
    http-reuse always
{servers}
""")
        log = self.work / f"haproxy-{label}.log"
        proc = spawn(["haproxy", "-db", "-f", str(config)], log)
        self.procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_up(url, proc, log=log)
        self.proxies[name] = Setup(name, url, {proc.pid: "lb"} | {p.pid: "registry" for _, p in replicas})


def start_distribution(work: Path, ceph: Ceph) -> tuple[Setup, subprocess.Popen]:
    """distribution 2.8 on S3 (the same radosgw, its own prefix), blob GETs proxied as ours are."""
    storage = ["  s3:", f"    accesskey: {ceph.access_key}", f"    secretkey: {ceph.secret_key}",
               "    region: us-east-1", f"    regionendpoint: {ceph.endpoint}", f"    bucket: {BUCKET}",
               "    rootdirectory: /distribution",
               "    secure: false", "    v4auth: true", "  redirect:", "    disable: true", "  cache:",
               "    blobdescriptor: inmemory"]
    # aws-sdk-go panics on AWS_CA_BUNDLE with distribution's own HTTP transport; radosgw here is plain HTTP.
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    server = launch_distribution(work / "distribution", access_log=False, storage=storage, env=env)
    return Setup("distribution s3", f"http://{server.host}", {server.proc.pid: "registry"}), server.proc


# -- clients ------------------------------------------------------------------------------------------------------

def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _target(location: str) -> str:
    """A Location header (absolute from distribution, a path from ours) as the path and query to send."""
    parts = urllib.parse.urlsplit(location)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def push_blob(conn: http.client.HTTPConnection, repo: str, data: bytes) -> str:
    """POST, PATCH, PUT on one keep-alive connection, as docker pushes a layer; the digest."""
    digest = sha256(data)
    steps = [("POST", f"/v2/{repo}/blobs/uploads/", None, {"Content-Length": "0"}, 202),
             ("PATCH", None, data, {"Content-Type": "application/octet-stream"}, 202),
             ("PUT", None, b"", {"Content-Length": "0"}, 201)]
    location = ""
    for method, path, body, headers, expected in steps:
        if path is None:
            path = _target(location)
            if method == "PUT":
                path += ("&" if "?" in path else "?") + f"digest={digest}"
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        r.read()
        if r.status != expected:
            raise RuntimeError(f"{method} {path}: {r.status}")
        location = r.getheader("Location", "")
    return digest


def push_image(conn: http.client.HTTPConnection, repo: str, tag: str, layer: bytes) -> None:
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha256(layer)]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, "digest": push_blob(conn, repo, config),
                                      "size": len(config)},
                           "layers": [{"mediaType": OCI_LAYER, "digest": push_blob(conn, repo, layer),
                                       "size": len(layer)}]}).encode()
    conn.request("PUT", f"/v2/{repo}/manifests/{tag}", body=manifest, headers={"Content-Type": OCI_MANIFEST})
    r = conn.getresponse()
    r.read()
    if r.status != 201:
        raise RuntimeError(f"PUT manifest {repo}:{tag}: {r.status}")


def seed(url: str) -> str:
    """The small image the manifest GETs fetch and the 64 MiB blob the blob GETs fetch; the blob's digest."""
    conn = connect(url)
    try:
        push_image(conn, "bench/manifest", "latest", os.urandom(1000))
        return push_blob(conn, "bench/blobs", os.urandom(BLOB_SIZE))
    finally:
        conn.close()


def wrk(url: str, path: str, connections: int, duration: float, accept: str | None = None) -> float:
    """Requests per second of `wrk -t2 -c<connections>` GETs of `path`; exits if any answer was an error."""
    headers = ["-H", f"Accept: {accept}"] if accept else []
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{duration:g}s", "--timeout", "60s", *headers,
                          f"{url}{path}"], capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", out)
    if errors:
        sys.exit(f"wrk against {url}{path}: {errors.group(0)}")
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rate is None:
        sys.exit(f"wrk against {url}{path} printed no rate: {out}")
    return float(rate.group(1))


_push_rounds = itertools.count()  # each measurement's tags and layers are its own


def pushes(url: str, duration: float) -> float:
    """Images per second pushed by PUSHERS clients at once, each a fresh 1 MiB layer."""
    base = os.urandom(PUSH_LAYER)
    run = next(_push_rounds)
    done = [0] * PUSHERS
    failures: list[str] = []
    deadline = time.monotonic() + duration

    def client(n: int) -> None:
        conn = connect(url)
        try:
            i = 0
            while time.monotonic() < deadline:
                layer = f"{run}-{n}-{i}".encode().ljust(32) + base[32:]
                push_image(conn, f"bench/push{n}", f"r{run}-{i}", layer)
                i += 1
                done[n] = i
        except (OSError, RuntimeError, http.client.HTTPException) as e:
            failures.append(f"client {n}: {e}")
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(PUSHERS)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        sys.exit(f"pushes to {url} failed: {failures[0]}")
    return sum(done) / (time.monotonic() - start)


# -- measuring ----------------------------------------------------------------------------------------------------

METRICS = {"manifest": "manifest GET (req/s)", "blob": "blob GET 64 MiB (MiB/s)", "push": "push, 16 clients (img/s)"}


@dataclass
class Result:
    """The best throughput and the best throughput per busy core seen for one setup and metric, with where that
    measurement's CPU went: HAProxy's share of it, and the registry's context switches per unit (request, MiB,
    image) waiting and preempted."""

    rate: float = 0.0
    per_core: float = 0.0
    cores: float = 0.0
    lb_share: float = 0.0
    waits: float = 0.0
    preempted: float = 0.0

    def add(self, rate: float, spent: dict[str, Usage], wall: float) -> None:
        self.rate = max(self.rate, rate)
        cpu = sum(u.cpu for u in spent.values())
        cores = max(cpu / wall, 0.01)
        if rate / cores > self.per_core:
            units = max(rate * wall, 1)
            registry = spent["registry"]
            self.per_core, self.cores = rate / cores, cores
            self.lb_share = spent["lb"].cpu / cpu if "lb" in spent and cpu else 0.0
            self.waits, self.preempted = registry.waits / units, registry.preempted / units


def measure(setup: Setup, digest: str, duration: float, results: dict[tuple[str, str], Result]) -> None:
    """Every metric once against `setup`, each with the CPU its servers spent."""
    runs = {
        "manifest": lambda: wrk(setup.url, "/v2/bench/manifest/manifests/latest", 32, duration, OCI_MANIFEST),
        "blob": lambda: wrk(setup.url, f"/v2/bench/blobs/blobs/{digest}", 4, duration) * BLOB_SIZE / (1 << 20),
        "push": lambda: pushes(setup.url, duration),
    }
    for metric, run in runs.items():
        before, wall = usage(setup.sessions), time.monotonic()
        rate = run()
        after, wall = usage(setup.sessions), time.monotonic() - wall
        spent = {role: after[role] - before[role] for role in after}
        results.setdefault((setup.name, metric), Result()).add(rate, spent, wall)


def report(results: dict[tuple[str, str], Result], names: list[str], storages: list[str]) -> None:
    print(f"\n{'setup':<18}" + "".join(f"{METRICS[m]:>26}{'per core':>10}{'cores':>7}" for m in METRICS))
    for name in names:
        row = [results[(name, m)] for m in METRICS]
        print(f"{name:<18}" + "".join(f"{r.rate:>26.1f}{r.per_core:>10.1f}{r.cores:>7.2f}" for r in row))
    print("\nwhere the CPU went: HAProxy's share; the registry's context switches per request/MiB/image, "
          "waiting / preempted:")
    for name in names:
        row = [results[(name, m)] for m in METRICS]
        print(f"{name:<18}" + "".join(f"{m:>10} lb {r.lb_share:4.0%} cs {r.waits:6.2f} / {r.preempted:5.2f}"
                                      for m, r in zip(METRICS, row, strict=True)))
    print("\nper core, 3 replicas / 1 replica (goal >= 0.90); 1 replica with the 3's workers / 1 replica (control):")
    for s in storages:
        for label, other in (("x3", f"{s} x3"), ("control", next((n for n in names if n.startswith(f"{s} x1 w")),
                                                                 None))):
            if other is None:
                continue
            ratios = [results[(other, m)].per_core / results[(f"{s} x1", m)].per_core for m in METRICS]
            print(f"  {s:<3}{label:<8}" + "".join(f"{m:>10} {r:5.2f}x"
                                                  for m, r in zip(METRICS, ratios, strict=True)))
    if "s3" not in storages:
        return
    print("\ndockyard (1 replica, direct) / distribution 2.8, both on S3 (goal >= 1.0):")
    print("  " + "".join(f"{m:>10} {results[('dockyard s3', m)].rate / results[('distribution s3', m)].rate:5.2f}x"
                         for m in METRICS)
          + "   (per core:" + "".join(f" {m} {results[('dockyard s3', m)].per_core:.1f} vs "
                                    f"{results[('distribution s3', m)].per_core:.1f};" for m in METRICS) + ")")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one round of 2 s per measurement (about 2 minutes)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; each runs every setup once (best is kept)")
    ap.add_argument("--duration", type=float, default=5, help="seconds per measurement")
    ap.add_argument("--workers", type=int, help="worker processes per replica (default: the cores it would own)")
    ap.add_argument("--control", action="store_true",
                    help="also one replica with as many workers as the 3 replicas together")
    ap.add_argument("--storage", choices=("fs", "s3", "both"), default="both",
                    help="which storages (distribution runs with s3)")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.duration = 1, 2
    storages = ["fs", "s3"] if args.storage == "both" else [args.storage]
    for tool in ("haproxy", "wrk", *(["docker-registry"] if "s3" in storages else [])):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: run scripts/install.sh")
    work = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    # Room for every round's pushes, nothing deleted between them (memstore holds it in memory, so at most 8 GiB):
    # with the tests' 2 GiB the OSD was full in the fifth round, and Ceph then blocks every write.
    ceph = Ceph(work / "ceph", memstore_bytes=min(8, 2 + args.rounds) << 30)
    procs: list[subprocess.Popen] = []
    try:
        fleets = [Fleet("fs", work, args.workers, args.control)] if "fs" in storages else []
        if "s3" in storages:
            ceph.start()
            import boto3
            from botocore.config import Config

            boto3.client("s3", endpoint_url=ceph.endpoint, region_name="us-east-1",
                         aws_access_key_id=ceph.access_key, aws_secret_access_key=ceph.secret_key,
                         config=Config(s3={"addressing_style": "path"})).create_bucket(Bucket=BUCKET)
            s3_config = work / "s3.toml"
            s3_config.write_text(s3_section({"bucket": BUCKET, "region": "us-east-1",
                                             "regionendpoint": ceph.endpoint, "accesskey": ceph.access_key,
                                             "secretkey": ceph.secret_key, "secure": False, "forcepathstyle": True,
                                             "rootdirectory": "/dockyard"}))
            fleets.append(Fleet("s3", work, args.workers, args.control, s3_config))
        for fleet in fleets:
            procs += fleet.start().procs
        digests = {fleet.storage: seed(fleet.proxies[f"{fleet.storage} x1"].url) for fleet in fleets}
        setups = [(setup, digests[fleet.storage]) for fleet in fleets for setup in fleet.proxies.values()]
        if "s3" in storages:
            distribution, proc = start_distribution(work, ceph)
            procs.append(proc)
            url, replica = fleets[-1].direct()
            digests["distribution"] = seed(distribution.url)
            setups += [(Setup("dockyard s3", url, {replica.pid: "registry"}), digests["s3"]),
                       (distribution, digests["distribution"])]
        # Every worker's first use of its storage outside the rounds: on S3 that is boto3's import and client, ~0.2 s
        # of CPU a worker, which the seed paid only for the 1-replica setup's.
        for setup, _ in setups:
            pushes(setup.url, WARM_UP)
        results: dict[tuple[str, str], Result] = {}
        for i in range(args.rounds):
            for setup, digest in setups if i % 2 == 0 else reversed(setups):
                print(f"round {i + 1}/{args.rounds}: {setup.name}", file=sys.stderr)
                measure(setup, digest, args.duration, results)
        report(results, [setup.name for setup, _ in setups], storages)
    finally:
        stop(procs)
        ceph.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
