"""Benchmark: dockyard's registry vs Debian's docker-registry (CNCF distribution 2.8), side by side on loopback.

(a) GET of a 64 MiB blob, MB/s (curl, best of several runs)
(b) manifest GET requests/s under `wrk -t2 -c32`
(c) skopeo push then pull of a 3-layer ~100 MB image, seconds

With --slow-clients instead: each server holds 500 idle connections (half sent nothing, half a partial request)
and 50 uploads trickling a byte every 5 s, while one client makes 1,000 manifest GETs, each on a new connection
with a 5 s timeout; prints the share answered and the p50/p99 latency.

With --connections N instead: manifest GET, blob HEAD and 1 MiB blob GET with N connections (wrk; ab for HEADs) on
both servers, alternating, with the medians of requests/s and p99 latency (goal at N=64: >= 2x distribution's rate,
at a lower p99).

With --product instead: manifest and 1 MiB blob GETs (wrk) on a plain registry and on a --projects one where the
image sits in a private project read with a robot account's token (goal: within 10%; medians of alternating rounds;
also each server's CPU time per request, less exposed than requests/s to load from elsewhere on the machine), then
UI page render times (p50/p95) for a project of 1,000 repositories and a repository of 10,000 tags (goal: p95 <=
50 ms).

With --instructions instead: the same pair's instructions per manifest GET, counted by callgrind in one worker of
each, and their ratio (the goal, within 10%, is on requests/s; this says where the difference is): deterministic to
about +-0.5% (the worker's idle loop and greenlet switches vary a little), where requests/s vary by several percent
with the machine's load. The servers' timers are stopped (the pull flusher then writes a batch per 1,024 pulls, as
under full load): under callgrind a second holds ~50x fewer requests than natively, and timed work would count ~50x
over. At 187bfc2 (3 runs): plain 1,237.5k-1,241.2k, projects 1,352.9k-1,359.0k, ratio 0.913-0.915; of the
difference, ~60k was gunicorn's parse of the robot's 631-byte token in the Authorization header (~66 instructions a
byte, mostly its check of the value for control characters; measured by sending a plain server such headers), ~31k
the product's Python on the request, ~21k writing the pull's records (the flusher's thread). At e1c9360: plain
1,231.2k, projects 1,335.5k, ratio 0.922 (the flusher's thread ~10.5k a pull: entries alike bound once, grouped in
C; the token 16 characters shorter); at 3678f89 1,237.7k and 1,335.7k, 0.927. --product then, 4 runs on a quiet box:
manifest GET 0.89-0.96x (median 0.935x; CPU per request 0.89-0.95x), 1 MiB blob GET 0.97-1.02x.

Run: python bench/registry.py [--workers N] [--threads N] [--duration S] [--slow-clients [--idle N] ...]
     python bench/registry.py --connections 64 [--rounds N] [--duration S]
     python bench/registry.py --product [--rounds N] [--duration S] [--baseline REV]
     python bench/registry.py --instructions [--requests N] [--baseline REV] [--callgrind-out DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import io
import json
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import requests
from servers import process_cpu, wait_up

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
BLOB_SIZE = 64 << 20
ONE_MIB = 1 << 20
MANIFEST_PATH = "/v2/bench/manifest/manifests/latest"
REPO = Path(__file__).resolve().parent.parent  # this source tree
# Seconds for the pull flusher to write a batch of FLUSH_MAX pulls under callgrind (natively ~20 ms).
_FLUSH_WAIT = 5
# wrk's timeout in the --connections runs (s): far above any p99, so no slow request drops out of it.
_P99_TIMEOUT = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_distribution(work: Path) -> tuple[str, subprocess.Popen]:
    """distribution 2.8 on the filesystem, with no access log (ours runs without one too)."""
    sys.path[:0] = [str(REPO / d) for d in ("tests", "tests/client")]
    from registries import start_distribution as launch

    server = launch(work / "distribution", access_log=False)
    return f"http://{server.host}", server.proc


def start_dockyard(work: Path, workers: int, threads: int, *extra: str, root: str = "dockyard-root",
                   env: dict | None = None, tree: Path = REPO, under: tuple[str, ...] = (),
                   boot_timeout: float = 30, main: tuple[str, ...] = ("-m", "registry")
                   ) -> tuple[str, subprocess.Popen]:
    """Our registry, run from the source tree `tree` (default: this one) by Python's arguments `main`, under the
    command `under` if any (valgrind: then the process is valgrind's, which runs the registry itself, not a child)."""
    port = free_port()
    proc = subprocess.Popen([*under, sys.executable, *main, "--addr", f"127.0.0.1:{port}",
                             "--root", str(work / root), "--workers", str(workers),
                             "--threads", str(threads), "--access-log", "", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            cwd=tree, env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    wait_up(url, proc, boot_timeout)
    return url, proc


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to a server: to its whole session when it leads one (ours: gunicorn's master and workers)."""
    if os.getpgid(proc.pid) == proc.pid:
        os.killpg(proc.pid, signal.SIGTERM)
    else:  # distribution, started in our own process group
        proc.terminate()
    proc.wait()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(url: str, repo: str, data: bytes, auth=None) -> str:
    d = sha256(data)
    r = requests.post(f"{url}/v2/{repo}/blobs/uploads/", auth=auth)
    r.raise_for_status()
    loc = r.headers["Location"]
    if loc.startswith("/"):
        loc = url + loc
    sep = "&" if "?" in loc else "?"
    r = requests.put(f"{loc}{sep}digest={d}", data=data, headers={"Content-Type": "application/octet-stream"},
                     auth=auth)
    r.raise_for_status()
    return d


def bench_blob(url: str, digest: str, runs: int) -> float:
    speeds = []
    for _ in range(runs):
        out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{speed_download}",
                              f"{url}/v2/bench/blobs/blobs/{digest}"], capture_output=True, text=True, check=True)
        speeds.append(float(out.stdout) / 1e6)
    return max(speeds)


def wrk(url: str, path: str, duration: int, connections: int = 32,
        headers: tuple[str, ...] = (), timeout: int = 2) -> tuple[float, float, int]:
    """Requests/s, p99 latency (ms) and timeouts (requests unanswered after `timeout` s, which wrk leaves out of its
    latency figures) of `wrk -t2 -c<connections>` GETs of `path`."""
    extra = [arg for h in headers for arg in ("-H", h)]
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{duration}s", f"--timeout={timeout}s", "--latency",
                          "-H", f"Accept: {OCI_MANIFEST}", *extra, f"{url}{path}"],
                         capture_output=True, text=True, check=True)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    if non2xx:
        sys.exit(f"wrk saw {non2xx.group(1)} errors against {url}{path}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out.stdout).group(1))
    value, unit = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out.stdout, re.M).groups()
    timeouts = re.search(r"Socket errors:.*timeout (\d+)", out.stdout)
    return rate, float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit], int(timeouts.group(1)) if timeouts else 0


def ab_head(url: str, path: str, duration: int, connections: int) -> tuple[float, float, int]:
    """Requests/s and p99 latency (ms) of keep-alive HEADs by `ab` (wrk waits for a HEAD answer's body and hangs);
    no timeouts (ab counts every request in its percentiles, waiting up to its 30 s)."""
    out = subprocess.run(["ab", "-q", "-k", "-i", f"-c{connections}", f"-t{duration}", "-n10000000",
                          f"{url}{path}"], capture_output=True, text=True, check=True)
    failed = re.search(r"^(?:Failed requests|Non-2xx responses):\s+([1-9]\d*)", out.stdout, re.M)
    if failed:
        sys.exit(f"ab saw {failed.group(1)} failures against {url}{path}")
    rate = float(re.search(r"Requests per second:\s+([\d.]+)", out.stdout).group(1))
    return rate, float(re.search(r"^\s+99%\s+(\d+)", out.stdout, re.M).group(1)), 0


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def small_image(url: str, auth=None) -> None:
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = os.urandom(1000)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, "digest": push_blob(url, "bench/manifest", config, auth),
                                      "size": len(config)},
                           "layers": [{"mediaType": OCI_LAYER, "digest": push_blob(url, "bench/manifest", layer, auth),
                                       "size": len(layer)}]}).encode()
    requests.put(f"{url}{MANIFEST_PATH}", data=manifest, auth=auth,
                 headers={"Content-Type": OCI_MANIFEST}).raise_for_status()


class SlowClients:
    """Holds idle connections (reopening those the server closes) and byte-a-time uploads against one server."""

    def __init__(self, url: str, idle: int, trickling: int, interval: float):
        self.host, self.port = urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port
        self.url, self.interval = url, interval
        self.sel = selectors.DefaultSelector()
        self.trickling: list[socket.socket] = []
        self.closed = 0
        self._stop = threading.Event()
        # Upload sessions first: a server starved by the idle connections would not open them.
        for _ in range(trickling):
            self._open_trickle()
        for i in range(idle):
            self._open_idle(i)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _open_idle(self, i: int) -> None:
        s = socket.create_connection((self.host, self.port))
        if i % 2:
            s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: bench\r\nUser-Agent: slow")
        self.sel.register(s, selectors.EVENT_READ, i)

    def _open_trickle(self) -> None:
        r = requests.post(f"{self.url}/v2/bench/slow/blobs/uploads/", timeout=30)
        r.raise_for_status()
        loc = urllib.parse.urlsplit(r.headers["Location"])
        target = loc.path + (f"?{loc.query}" if loc.query else "")
        s = socket.create_connection((self.host, self.port))
        s.sendall(f"PATCH {target} HTTP/1.1\r\nHost: bench\r\nContent-Length: 1000000\r\n"
                  "Content-Type: application/octet-stream\r\n\r\n".encode())
        self.sel.register(s, selectors.EVENT_READ, None)
        self.trickling.append(s)

    def _run(self) -> None:
        next_byte = time.monotonic()
        while not self._stop.is_set():
            for key, _ in self.sel.select(0.05):
                self.sel.unregister(key.fileobj)
                key.fileobj.close()
                self.closed += 1
                if key.data is None:
                    self.trickling.remove(key.fileobj)
                else:
                    self._open_idle(key.data)
            if time.monotonic() >= next_byte:
                next_byte += self.interval
                for s in self.trickling:
                    try:
                        s.send(b"x")
                    except OSError:
                        pass  # closed by the server; the selector reports it

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()
        self.sel.close()


def bench_under_slow_clients(url: str, requests_n: int, timeout: float) -> tuple[int, list[float]]:
    """Manifest GETs one after another, each on a new connection: (answered, latencies in ms of those)."""
    parts = urllib.parse.urlsplit(url)
    latencies = []
    for _ in range(requests_n):
        started = time.perf_counter()
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
        try:
            conn.request("GET", MANIFEST_PATH, headers={"Accept": OCI_MANIFEST})
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                latencies.append((time.perf_counter() - started) * 1000)
        except OSError:
            pass
        finally:
            conn.close()
    return len(latencies), latencies


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else float("nan")


def raise_file_limit(needed: int) -> None:
    """Each held connection is a descriptor here and (for the bench's lifetime) one on the server."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            sys.exit(f"open-files limit {hard} is below the {needed} this run needs; lower --idle")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def run_slow_clients(servers: dict[str, str], args: argparse.Namespace) -> None:
    print(f"{args.idle} idle + {args.trickling} trickling connections (a byte every {args.interval:g} s), "
          f"{args.requests} manifest GETs on new connections, {args.timeout:g} s timeout each")
    print(f"{'server':<16}{'answered':>16}{'p50 ms':>10}{'p99 ms':>10}{'closed':>8}")
    for name, url in servers.items():
        load = SlowClients(url, args.idle, args.trickling, args.interval)
        try:
            answered, latencies = bench_under_slow_clients(url, args.requests, args.timeout)
            closed = load.closed
        finally:
            load.close()
        share = f"{answered}/{args.requests} ({100 * answered / args.requests:.0f}%)"
        print(f"{name:<16}{share:>16}{percentile(latencies, 0.5):>10.1f}{percentile(latencies, 0.99):>10.1f}"
              f"{closed:>8}")
    print("(closed = held connections the server closed meanwhile; idle ones are reopened)")


def run_concurrency(servers: dict[str, str], args: argparse.Namespace) -> None:
    """Manifest GET, blob HEAD and 1 MiB blob GET with `args.connections` connections on each server, alternating
    rounds; medians of requests/s and of p99 latency."""
    blob = os.urandom(ONE_MIB)
    paths = {}
    for name, url in servers.items():
        small_image(url)
        paths[name] = f"/v2/bench/blobs/blobs/{push_blob(url, 'bench/blobs', blob)}"
    # wrk leaves requests slower than its timeout out of its percentiles: a long one, so a server's worst requests
    # count in its p99 (ab's HEADs count them all already).
    cases = {"manifest GET": lambda url, name: wrk(url, MANIFEST_PATH, args.duration, args.connections,
                                                   timeout=_P99_TIMEOUT),
             "blob HEAD": lambda url, name: ab_head(url, paths[name], args.duration, args.connections),
             "1 MiB blob GET": lambda url, name: wrk(url, paths[name], args.duration, args.connections,
                                                     timeout=_P99_TIMEOUT)}
    runs: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
    for i in range(args.rounds):
        order = list(servers.items()) if i % 2 == 0 else list(reversed(servers.items()))
        for label, measure in cases.items():
            for name, url in order:
                runs.setdefault((label, name), []).append(measure(url, name))
    print(f"{args.connections} connections (GETs: wrk -t2, HEADs: ab -k), {args.rounds} rounds of {args.duration} s, "
          "medians")
    print(f"{'case':<16}{'distribution req/s':>20}{'dockyard req/s':>16}{'ratio':>8}"
          f"{'p99 ms dist':>13}{'p99 ms ours':>13}{'timeouts':>10}")
    for label in cases:
        d_rate, d_p99 = (median([r[k] for r in runs[label, "distribution"]]) for k in (0, 1))
        o_rate, o_p99 = (median([r[k] for r in runs[label, "dockyard"]]) for k in (0, 1))
        timeouts = "/".join(str(sum(r[2] for r in runs[label, name])) for name in ("distribution", "dockyard"))
        print(f"{label:<16}{d_rate:>20.0f}{o_rate:>16.0f}{o_rate / d_rate:>7.2f}x{d_p99:>13.1f}{o_p99:>13.1f}"
              f"{timeouts:>10}")
    print(f"(goal: ratio >= 2.0 at a lower p99; timeouts: requests over {_P99_TIMEOUT} s, dist/ours, all rounds)")
    print("(wrk corrects for coordinated omission: a request that took k times a connection's mean time per request\n"
          " counts about k times, so one first request left 0.6 s in the accept backlog weighs ~40 samples)")


def make_layout(path: Path) -> None:
    """A 3-layer OCI layout of ~100 MB (uncompressed tar layers of random data)."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    layers, diff_ids = [], []
    for i, size in enumerate((50 << 20, 35 << 20, 15 << 20)):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            info = tarfile.TarInfo(f"layer{i}.bin")
            info.size = size
            tf.addfile(info, io.BytesIO(os.urandom(size)))
        data = buf.getvalue()
        (blobs / sha256(data)[7:]).write_bytes(data)
        layers.append({"mediaType": OCI_LAYER, "digest": sha256(data), "size": len(data)})
        diff_ids.append(sha256(data))
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    (blobs / sha256(config)[7:]).write_bytes(config)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
                           "layers": layers}).encode()
    (blobs / sha256(manifest)[7:]).write_bytes(manifest)
    (path / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha256(manifest), "size": len(manifest),
         "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}))
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')


def bench_skopeo(url: str, layout: Path, work: Path, repo: str) -> tuple[float, float]:
    """Seconds for a skopeo push of the layout, then for a pull of it back."""
    host = url.split("//", 1)[1]
    dest = work / f"pulled-{repo}"
    subprocess.run(["sync"], check=True)  # the previous round's writes must not land on this round's clock
    started = time.perf_counter()
    subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:latest",
                    f"docker://{host}/bench/{repo}:latest"], check=True)
    pushed = time.perf_counter()
    subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{host}/bench/{repo}:latest",
                    f"oci:{dest}:latest"], check=True)
    pulled = time.perf_counter()
    shutil.rmtree(dest)
    return pushed - started, pulled - pushed


ADMIN = ("admin", "Bench-admin-1")


def product_setup(url: str) -> str:
    """A private project `bench`, a robot with pull and push on it; returns the robot's bearer token."""
    api = f"{url}/api/v2.0"
    requests.post(f"{api}/projects", auth=ADMIN, json={"project_name": "bench", "metadata": {"public": "false"}}
                  ).raise_for_status()
    r = requests.post(f"{api}/robots", auth=ADMIN, json={
        "name": "bench", "level": "project", "duration": -1, "permissions": [{
            "kind": "project", "namespace": "bench",
            "access": [{"resource": "repository", "action": "pull"}, {"resource": "repository", "action": "push"}]}]})
    r.raise_for_status()
    robot = (r.json()["name"], r.json()["secret"])
    r = requests.get(f"{url}/token", auth=robot, params=[
        ("service", "dockyard-registry"), ("scope", "repository:bench/manifest:pull,push"),
        ("scope", "repository:bench/blobs:pull,push")])
    r.raise_for_status()
    return r.json()["token"]


def wrk_with_cpu(url: str, path: str, duration: int, headers: tuple[str, ...],
                 proc: subprocess.Popen) -> tuple[float, int, float]:
    """wrk()'s requests/s and timeouts, and the server's CPU microseconds per request meanwhile."""
    cpu, started = process_cpu(proc.pid), time.monotonic()
    rate, _, timeouts = wrk(url, path, duration, 32, headers)
    return rate, timeouts, (process_cpu(proc.pid) - cpu) / (rate * (time.monotonic() - started)) * 1e6


def fill_for_ui(root: Path) -> tuple[int, str]:
    """1,000 repositories in project `bench` and one artifact with 10,000 tags, written through the model's tables."""
    sys.path.insert(0, str(REPO))
    from sqlalchemy import insert, select

    from registry.model.db import Database, default_url
    from registry.model.tables import Artifact, Project, Repository, Tag

    db = Database(default_url(str(root)))
    now = time.time()
    digest = "sha256:" + "b" * 64
    with db.session() as s:
        project = s.scalar(select(Project).where(Project.name == "bench"))
        s.execute(insert(Repository), [{"project_id": project.id, "name": f"bench/r{i:04d}", "pull_count": 0,
                                        "created_at": now, "updated_at": now} for i in range(1000)])
        repo = Repository(project_id=project.id, name="bench/tags")
        s.add(repo)
        s.flush()
        art = Artifact(repository_id=repo.id, digest=digest, media_type=OCI_MANIFEST, size=1, extra={})
        s.add(art)
        s.flush()
        s.execute(insert(Tag), [{"repository_id": repo.id, "artifact_id": art.id, "name": f"t{i:05d}",
                                 "push_time": now + i, "pull_time": 0} for i in range(10000)])
        project_id = project.id
    db.engine.dispose()
    return project_id, digest


def ui_session(url: str) -> requests.Session:
    """A session signed in through the UI's login form (the Secure cookie sent by hand over http://)."""
    page = requests.get(f"{url}/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = requests.post(f"{url}/login", data={"username": ADMIN[0], "password": ADMIN[1], "csrf_token": token},
                      headers={"Cookie": f"login_csrf={page.cookies['login_csrf']}"}, allow_redirects=False)
    sid = re.search(r"\bsid=([^;]+)", r.headers["Set-Cookie"]).group(1)
    session = requests.Session()
    session.headers["Cookie"] = f"sid={sid}"
    return session


def product_pair(work: Path, workers: int, threads: int, tree: Path, tag: str, **how
                 ) -> tuple[dict[str, tuple[str, tuple[str, ...], subprocess.Popen, str]], list[subprocess.Popen]]:
    """A plain and a --projects registry run from `tree` (`how`: start_dockyard's under, boot_timeout and main), each
    holding the small image and a 1 MiB blob (the second in a private project, read with a robot's token): name ->
    (URL, headers, process, the blob's path), and the processes (to stop, whatever happens next)."""
    procs = []
    plain, p = start_dockyard(work, workers, threads, root=f"{tag}plain-root", tree=tree, **how)
    procs.append(p)
    try:
        product, p = start_dockyard(work, workers, threads, "--projects", "--token",
                                    root=f"{tag}product-root", env={"DOCKYARD_REGISTRY_ADMIN_PASSWORD": ADMIN[1]},
                                    tree=tree, **how)
        procs.append(p)
        token = product_setup(product)

        def bearer(r):
            r.headers["Authorization"] = f"Bearer {token}"
            return r

        blob = os.urandom(ONE_MIB)
        servers: dict[str, tuple[str, tuple[str, ...], subprocess.Popen, str]] = {}
        no_headers: tuple[str, ...] = ()
        for name, url, auth, headers, proc in (("plain", plain, None, no_headers, procs[0]),
                                               ("projects", product, bearer, (f"Authorization: Bearer {token}",),
                                                procs[1])):
            small_image(url, auth)
            blob_path = f"/v2/bench/blobs/blobs/{push_blob(url, 'bench/blobs', blob, auth)}"
            servers[tag + name] = (url, headers, proc, blob_path)
    except BaseException:
        for p in procs:
            stop(p)
        raise
    return servers, procs


def source_trees(work: Path, baseline: str | None) -> dict[str, tuple[Path, str]]:
    """The servers' name prefix -> (the source tree to run them from, its label): this tree, and with `baseline`
    that git revision's, extracted under `work`."""
    trees = {"": (REPO, "this tree")}
    if baseline:
        tree = work / "baseline"
        tree.mkdir()
        archive = subprocess.run(["git", "-C", str(REPO), "archive", baseline], capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        trees["baseline-"] = (tree, baseline)
    return trees


def run_product(work: Path, args: argparse.Namespace) -> None:
    """The model's cost on reads (plain registry vs a private project read with a robot's token) and UI render times;
    with --baseline, the same pair of servers from that revision alongside, alternated in the same rounds."""
    procs = []
    try:
        trees = source_trees(work, args.baseline)
        servers: dict[str, tuple[str, tuple[str, ...], subprocess.Popen, str]] = {}
        for tag, (tree, _label) in trees.items():
            tree_servers, tree_procs = product_pair(work, args.workers, args.threads, tree, tag)
            procs += tree_procs
            servers.update(tree_servers)
        product = servers["projects"][0]
        # (req/s, timeouts, the server's CPU microseconds per request) of each run
        runs: dict[tuple[str, str], list[tuple[float, int, float]]] = {}
        for i in range(args.rounds):  # alternate, so load from elsewhere on the machine hits all alike
            for name, (url, headers, proc, blob_path) in list(servers.items())[::1 if i % 2 == 0 else -1]:
                for key, path in (("manifest", MANIFEST_PATH), ("blob", blob_path)):
                    runs.setdefault((name, key), []).append(wrk_with_cpu(url, path, args.duration, headers, proc))
        for tag, (_tree, label) in trees.items():
            pair = (tag + "plain", tag + "projects")
            if len(trees) > 1:
                print(f"{label}:")
            print(f"{'wrk -t2 -c32 (medians)':<22}{'req/s plain':>12}{'projects':>10}{'ratio':>7}"
                  f"{'CPU us/req plain':>18}{'projects':>10}{'ratio':>7}{'timeouts':>10}")
            for key, label in (("manifest", "manifest GET"), ("blob", "1 MiB blob GET")):
                a, b = (median([r[0] for r in runs[name, key]]) for name in pair)
                ca, cb = (median([r[2] for r in runs[name, key]]) for name in pair)
                timeouts = "/".join(str(sum(r[1] for r in runs[name, key])) for name in pair)
                print(f"{label:<22}{a:>12.0f}{b:>10.0f}{b / a:>6.2f}x{ca:>18.0f}{cb:>10.0f}{ca / cb:>6.2f}x"
                      f"{timeouts:>10}")
        print("(goal: projects within 10% of plain, ratio >= 0.90; the CPU ratio (plain's CPU per request over the\n"
              " projects') is the same comparison less exposed to load from elsewhere; timeouts: plain/projects, all "
              "rounds)")
        project_id, digest = fill_for_ui(work / "product-root")
        session = ui_session(product)
        pages = {"projects list": "/projects",
                 "project of 1,000 repositories": f"/projects/{project_id}",
                 "repository with 10,000 tags": f"/projects/{project_id}/repositories/tags",
                 "artifact with 10,000 tags": f"/projects/{project_id}/repositories/tags/-/artifacts/{digest}"}
        print(f"{'UI page (ms over loopback)':<34}{'p50':>8}{'p95':>8}")
        for label, path in pages.items():
            times = []
            for _ in range(args.ui_requests):
                started = time.perf_counter()
                r = session.get(product + path, allow_redirects=False)
                times.append((time.perf_counter() - started) * 1000)
                if r.status_code != 200:
                    sys.exit(f"{path}: {r.status_code}")
            print(f"{label:<34}{percentile(times, 0.50):>8.1f}{percentile(times, 0.95):>8.1f}")
        print("(goal: p95 <= 50 ms)")
    finally:
        for p in procs:
            stop(p)


def manifest_gets(url: str, headers: tuple[str, ...], n: int) -> None:
    """`n` manifest GETs one after another on one kept-alive connection, as wrk sends them (the same bytes)."""
    parts = urllib.parse.urlsplit(url)
    request = "".join([f"GET {MANIFEST_PATH} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: {OCI_MANIFEST}\r\n",
                       *(f"{h}\r\n" for h in headers), "\r\n"]).encode()
    with socket.create_connection((parts.hostname, parts.port)) as s:
        reader = s.makefile("rb")
        for _ in range(n):
            s.sendall(request)
            status = reader.readline()
            length = 0
            while (line := reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            reader.read(length)
            if not status.startswith(b"HTTP/1.1 200 "):
                sys.exit(f"manifest GET from {url}: {status!r}")


# The registry run with its timers stopped (--instructions): the pull flusher's (it writes a batch when FLUSH_MAX
# pulls are queued), the pollers' and the metrics'. Under callgrind a worker serves ~50x fewer requests a second than
# natively, which would put 50x their share of the timed work on each request.
_UNTIMED = """
import importlib, runpy
for module, name in [("registry.events", "FLUSH_EVERY"), ("registry.events.webhooks", "POLL"),
                     ("registry.replication.engine", "POLL"), ("registry.model.retention", "SCHEDULER_POLL"),
                     ("registry.metrics", "_FLUSH_INTERVAL")]:
    loaded = importlib.import_module(module)
    if not hasattr(loaded, name):
        raise SystemExit(f"{module} has no {name} to stop")
    setattr(loaded, name, 1e6)
runpy.run_module("registry", run_name="__main__")
"""


def run_instructions(work: Path, args: argparse.Namespace) -> None:
    """Instructions per manifest GET, plain vs a private project read with a robot's token: each server runs one
    worker under callgrind, its timers stopped (see _UNTIMED); after a warm-up of FLUSH_MAX GETs (the first batch of
    pulls written), its counts are dumped, `args.requests` GETs (rounded up to batches of FLUSH_MAX) are sent one
    after another, the flusher is given time to write the last batch, and the counts are dumped again. With
    --baseline, that revision's pair too (one pair at a time: the counts do not depend on what else runs)."""
    sys.path.insert(0, str(REPO))
    from registry.events import FLUSH_MAX

    n = -(-args.requests // FLUSH_MAX) * FLUSH_MAX
    out = Path(args.callgrind_out) if args.callgrind_out else work / "callgrind"
    out.mkdir(parents=True, exist_ok=True)
    # callgrind_control cannot reach a forked worker (valgrind's gdbserver serves only the process it started), so
    # the dumps are asked for by a GET of /healthz, the one request that calls os.access (CPython's os_access).
    under = ("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/callgrind.%p", "--dump-before=os_access")
    # A fixed hash seed: the same dicts and sets, laid out alike, in every run.
    os.environ["PYTHONHASHSEED"] = "0"
    for tag, (tree, label) in source_trees(work, args.baseline).items():
        servers, procs = product_pair(work, 1, args.threads, tree, tag, under=under, boot_timeout=600,
                                      main=("-c", _UNTIMED))
        try:
            counts = {}
            for name, (url, headers, proc, _blob) in servers.items():
                worker = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()[0]
                manifest_gets(url, headers, FLUSH_MAX)  # caches filled, lazy imports done, a batch written
                time.sleep(_FLUSH_WAIT)
                callgrind_dump(url, out, worker)
                manifest_gets(url, headers, n)
                time.sleep(_FLUSH_WAIT)  # the last batch written: its cost is the requests'
                dump = callgrind_dump(url, out, worker)
                # What the dump holds besides the GETs: the rest of the first /healthz, this one up to os.access,
                # and the worker's idle loop. Alike for both servers, and under 1% of one GET per 1,000 of them.
                counts[name[len(tag):]] = int(re.search(r"^summary: (\d+)", dump.read_text(), re.M).group(1))
                print(f"  {name}: {dump}", flush=True)
        finally:
            for p in procs:
                stop(p)
        plain, product = counts["plain"] / n, counts["projects"] / n
        print(f"{label}: instructions per manifest GET (callgrind, one worker, {n} GETs): plain "
              f"{plain / 1000:,.1f}k, projects {product / 1000:,.1f}k, ratio {plain / product:.3f}", flush=True)


def callgrind_dump(url: str, out: Path, worker: str) -> Path:
    """The file of the callgrind dump (and zeroing) that a GET of /healthz makes the worker `worker` write."""
    before = set(out.glob(f"callgrind.{worker}.*"))
    requests.get(f"{url}/healthz", timeout=600).raise_for_status()
    made = set(out.glob(f"callgrind.{worker}.*")) - before
    if len(made) != 1:
        sys.exit(f"a GET of {url}/healthz made {len(made)} callgrind dumps of process {worker}, not 1")
    return made.pop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--duration", type=int, default=5, help="wrk seconds per server")
    ap.add_argument("--runs", type=int, default=8, help="blob GETs per server (best is kept)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds per server: skopeo push+pull (best is kept), wrk (--product, --connections: median)")
    ap.add_argument("--slow-clients", action="store_true", help="run the slow-clients benchmark instead")
    ap.add_argument("--idle", type=int, default=500, help="idle connections held (--slow-clients)")
    ap.add_argument("--trickling", type=int, default=50, help="trickling uploads held (--slow-clients)")
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between trickled bytes (--slow-clients)")
    ap.add_argument("--requests", type=int, default=1000, help="manifest GETs (--slow-clients, --instructions)")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds each GET may take (--slow-clients)")
    ap.add_argument("--connections", type=int, default=0,
                    help="instead: manifest GET, blob HEAD and 1 MiB blob GET with this many connections (e.g. 64)")
    ap.add_argument("--product", action="store_true",
                    help="the --projects model's cost on reads, and UI page render times, instead")
    ap.add_argument("--instructions", action="store_true",
                    help="instead: instructions per manifest GET (callgrind), plain vs a private project's")
    ap.add_argument("--callgrind-out", metavar="DIR", help="(--instructions) keep callgrind's files here")
    ap.add_argument("--ui-requests", type=int, default=40, help="GETs per UI page (--product)")
    ap.add_argument("--baseline", metavar="REV",
                    help="(--product, --instructions) also this git revision's pair of servers (A/B)")
    args = ap.parse_args()
    raise_file_limit(args.idle + args.trickling + 256)
    work = Path(tempfile.mkdtemp(prefix="registry-bench-"))
    if args.product or args.instructions:
        try:
            (run_instructions if args.instructions else run_product)(work, args)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return 0
    procs = []
    try:
        dist_url, p = start_distribution(work)
        procs.append(p)
        ours_url, p = start_dockyard(work, args.workers, args.threads)
        procs.append(p)
        servers = {"distribution": dist_url, "dockyard": ours_url}
        if args.slow_clients:
            for url in servers.values():
                small_image(url)
            run_slow_clients(servers, args)
            return 0
        if args.connections:
            run_concurrency(servers, args)
            return 0
        blob = os.urandom(BLOB_SIZE)
        results: dict[str, dict[str, float]] = {name: {} for name in servers}
        digests = {}
        for name, url in servers.items():
            digests[name] = push_blob(url, "bench/blobs", blob)
            small_image(url)
        del blob
        subprocess.run(["sync"], check=True)
        speeds: dict[str, list[float]] = {name: [] for name in servers}
        for _ in range(args.runs):  # alternate, so load from elsewhere on the machine hits both alike
            for name, url in servers.items():
                speeds[name].append(bench_blob(url, digests[name], 1))
        for name in servers:
            results[name]["blob"] = max(speeds[name])
        for name, url in servers.items():
            results[name]["manifest"] = wrk(url, MANIFEST_PATH, args.duration)[0]
        timings: dict[str, list[tuple[float, float]]] = {name: [] for name in servers}
        for i in range(args.rounds):
            # Fresh content each round, so no push finds its blobs already stored.
            layout = work / f"layout{i}"
            make_layout(layout)
            order = list(servers.items()) if i % 2 == 0 else list(reversed(servers.items()))
            for name, url in order:
                timings[name].append(bench_skopeo(url, layout, work, f"{name}{i}"))
            shutil.rmtree(layout)
        for name in servers:
            results[name]["skopeo"] = min(push + pull for push, pull in timings[name])
            results[name]["push"] = min(push for push, _ in timings[name])
            results[name]["pull"] = min(pull for _, pull in timings[name])
        print(f"{'metric':<34}{'distribution':>14}{'dockyard':>14}{'ratio':>8}")
        rows = [("blob GET 64 MiB (MB/s)", "blob", False), ("manifest GET wrk -t2 -c32 (req/s)", "manifest", False),
                ("skopeo push+pull 100 MB (s)", "skopeo", True), ("  of which push, best (s)", "push", True),
                ("  of which pull, best (s)", "pull", True)]
        for label, key, lower_better in rows:
            d, o = results["distribution"][key], results["dockyard"][key]
            ratio = d / o if lower_better else o / d
            print(f"{label:<34}{d:>14.2f}{o:>14.2f}{ratio:>7.2f}x")
        print("(ratio = dockyard relative to distribution; >= 1.0 means as fast or faster)")
    finally:
        for p in procs:
            stop(p)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
