"""Benchmark: dockyard's registry vs Debian's docker-registry (CNCF distribution 2.8), side by side on loopback.

(a) GET of a 64 MiB blob, MB/s (curl, best of several runs)
(b) manifest GET requests/s under `wrk -t2 -c32`
(c) skopeo push then pull of a 3-layer ~100 MB image, seconds

Run: python bench/registry.py [--workers N] [--threads N] [--duration S]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import requests

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
BLOB_SIZE = 64 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server {url} exited with {proc.returncode}")
        try:
            requests.get(url + "/v2/", timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.1)
    sys.exit(f"server {url} did not start")


def start_distribution(work: Path) -> tuple[str, subprocess.Popen]:
    port = free_port()
    config = work / "distribution.yml"
    config.write_text(f"""version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {work / 'distribution-root'}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
""")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_up(url, proc)
    return url, proc


def start_dockyard(work: Path, workers: int, threads: int) -> tuple[str, subprocess.Popen]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "registry", "--addr", f"127.0.0.1:{port}",
                             "--root", str(work / "dockyard-root"), "--workers", str(workers),
                             "--threads", str(threads), "--access-log", ""],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            cwd=Path(__file__).resolve().parent.parent)
    url = f"http://127.0.0.1:{port}"
    wait_up(url, proc)
    return url, proc


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(url: str, repo: str, data: bytes) -> str:
    d = sha256(data)
    r = requests.post(f"{url}/v2/{repo}/blobs/uploads/")
    r.raise_for_status()
    loc = r.headers["Location"]
    if loc.startswith("/"):
        loc = url + loc
    sep = "&" if "?" in loc else "?"
    r = requests.put(f"{loc}{sep}digest={d}", data=data, headers={"Content-Type": "application/octet-stream"})
    r.raise_for_status()
    return d


def bench_blob(url: str, digest: str, runs: int) -> float:
    speeds = []
    for _ in range(runs):
        out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{speed_download}",
                              f"{url}/v2/bench/blobs/blobs/{digest}"], capture_output=True, text=True, check=True)
        speeds.append(float(out.stdout) / 1e6)
    return max(speeds)


def bench_manifest(url: str, duration: int) -> float:
    out = subprocess.run(["wrk", "-t2", "-c32", f"-d{duration}s", "-H", f"Accept: {OCI_MANIFEST}",
                          f"{url}/v2/bench/manifest/manifests/latest"], capture_output=True, text=True, check=True)
    m = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    if non2xx:
        sys.exit(f"wrk saw {non2xx.group(1)} errors against {url}")
    return float(m.group(1))


def small_image(url: str) -> None:
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = os.urandom(1000)
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": OCI_CONFIG, "digest": push_blob(url, "bench/manifest", config),
                                      "size": len(config)},
                           "layers": [{"mediaType": OCI_LAYER, "digest": push_blob(url, "bench/manifest", layer),
                                       "size": len(layer)}]}).encode()
    requests.put(f"{url}/v2/bench/manifest/manifests/latest", data=manifest,
                 headers={"Content-Type": OCI_MANIFEST}).raise_for_status()


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--duration", type=int, default=5, help="wrk seconds per server")
    ap.add_argument("--runs", type=int, default=8, help="blob GETs per server (best is kept)")
    ap.add_argument("--rounds", type=int, default=3, help="skopeo push+pull rounds per server (best is kept)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="registry-bench-"))
    procs = []
    try:
        dist_url, p = start_distribution(work)
        procs.append(p)
        ours_url, p = start_dockyard(work, args.workers, args.threads)
        procs.append(p)
        servers = {"distribution": dist_url, "dockyard": ours_url}
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
            results[name]["manifest"] = bench_manifest(url, args.duration)
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
            os.killpg(p.pid, signal.SIGTERM)
            p.wait()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
