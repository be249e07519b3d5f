"""Push and pull an image with dockyard and with skopeo against the same kind of fresh registry.

Shapes (issue 15): `mixed`, three incompressible layers of ~100 MB in all; `big`, one 64 MiB incompressible layer
plus a 10 MB text layer plus a 1 MB layer (per-stream throughput); `many`, 40 layers of 100 KB-2 MB (round trips).
Usage: python bench/transfer.py [--shape mixed|big|many] [--registry distribution|dockyard] [--mb 100] [--runs 5]
Goal: dockyard's time at most 0.8x skopeo's, for push and for pull. Prints each run's times (the tools alternate)
and the ratio of the medians.

What the two sides do differs on pull: skopeo copies into an `oci:` layout (not `dir:`, not containers-storage:),
so it writes each blob once and fsyncs it, but never decompresses or unpacks. Dockyard keeps the blob (fsynced) in
its OCI layout *and* unpacks every layer into its layer cache as docker does (gunzip, a second sha256 for the
diff_id, every file written): twice the bytes written and more CPU for the same download. The unpack reads the
bytes as they arrive: a layer under 8 MiB in the downloading thread itself (each read also hashed into the blob),
a bigger one on a thread of its own fed the same reads, so blob and unpack each take a core. Push is the same work
on both sides (blobs from an OCI layout to the registry). A third series, `skopeo-unpack`, pulls with skopeo into
a fresh containers-storage (overlay) as `podman pull` does: unpacked layers, like ours, the like-for-like anchor. The
ingest floor printed first is the registry's own: one `curl -T` PUT of the largest layer blob (a monolithic upload),
the time no client's push of that blob can beat.

Measured 2026-11-29 on the 2-core CI-like box, 3 runs, medians: `big` to distribution, the floor is 0.45 s for the
67 MB blob, dockyard's whole push 0.61 s, skopeo's 0.69 s (0.88x): three quarters of our push is distribution
taking the blob in, so 0.8x would leave ~0.1 s for interpreter start and the other two layers. To our registry the
floor is 0.23 s, dockyard 0.53 s, skopeo 0.99 s (0.54x).

2026-11-29 evening, a busy box (other benches running), 3 runs: `many` pull to distribution 1.54x -> 1.34x, to our
registry 1.72x -> 1.45x (alternating 8-10 pulls of one image: 1.49x -> 1.16x). What is left: skopeo's whole pull
of `many` takes ~0.4 s of CPU, ours ~0.5 s, of which ~0.1 s is the interpreter and its imports and ~0.2 s the unpack
skopeo does not do (gunzip, the diff_id's sha256, 40 directories and files written); on two cores that is the gap.

2026-11-30, a busy box, 3 runs, to distribution, before -> after malloc keeping freed buffers (page faults: mixed
42k -> 16k) and layers unpacked in layers/ (their creation no longer queues behind the blob temp files in tmp/):
`many` pull 1.63x -> 1.37x (unpacked 0.32x -> 0.30x), `mixed` 1.69x -> 1.26x (0.67x -> 0.54x); our pulls alone,
before and after alternating, 10 each: `many` 0.50 -> 0.47 s, `mixed` 0.50 -> 0.42 s (medians). Where the rest
goes (`many`): ~0.1 s interpreter and imports, ~1 ms per file or directory created (ext4 without a journal skips
recently deleted inodes one by one; three per layer: blob, layer directory, its file), an fsync per blob, and
~10-20 ms of interpreter teardown after the pull (the CLI could skip it).

2026-11-30 night, a busy box, 5 runs each, start commit -> a new store's root marked chattr +T and a pulled layer's
blob dropped from the page cache as it reaches the disk (median pull times; ratios vs skopeo-oci / containers-storage):
`many` to distribution 0.45 -> 0.33 s (1.70x -> 1.20x / 0.33x -> 0.26x), `mixed` 0.57 -> 0.42 s (1.87x -> 1.24x /
0.75x -> 0.57x), `big` 0.39 -> 0.35 s (1.17x -> 1.07x / 0.63x -> 0.56x); to our registry `big` 0.48 -> 0.36 s
(1.45x -> 1.11x), `many` 0.32-0.35 -> 0.29 s (skopeo's 0.18-0.35 s swings the ratio). Both fixes are about this VM's
storage, not the work: (1) its ext4 has no journal, so creating an inode steps over every inode deleted in the same
group within minutes; in /tmp's group, where every bench and test churns, that cost 0.1-1 ms per file or directory
(0.015 ms in a quiet group), and a pull makes ~3 per layer (blob, layer directory, file); (2) a page the guest has not
touched lately costs a host fault on its first write (200 MB into fresh pages 0.6 s, 0.4 s of it system time; into
recycled ones 0.07 s), and a pull writes the image twice (blob and unpacked copy). What is left, measured: `many`
without the unpack (an experiment that keeps blobs only) 0.59 -> 0.46 s on the busy box, so even a free unpack stays
above skopeo-oci; the interpreter and imports take ~0.09 s before the first request (http.client alone ~18 ms, of
which email.parser ~10), where skopeo's whole pull takes 0.18-0.28 s; the unpack is gunzip, a second sha256 (~1 GB/s
here) and a second write of every byte. Neither more parallel streams (6, 10: no change or slower; the box is CPU-bound
with the registry on the same 2 cores) nor a separate inflate thread for big layers helped. Push `big` to
distribution: the floor, one `curl -T` of the 67 MB blob, is 0.26-0.28 s of dockyard's 0.39 s and skopeo's
0.37-0.39 s, so 0.8x (0.30 s) would leave ~0.03 s for interpreter start and the other two layers: distribution's
ingest is the bound.

2026-11-30 afternoon (issue 15 item 2), a busy box (other helpers' callgrind runs, load 2-4), pulls from distribution.
Each change measured in-process (one process per code version, pulls alternating, medians): (1) a pulled layer's
blob temp file and unpacked tree made durable by one syncfs before either rename (was an fsync of the blob, then a
syncfs), and layers/ fsynced once by the index commit (was once per layer): `many` 0.290 -> 0.262 s (16 each);
(2) the referrers listed on the config's thread while the layers download (were two round trips after them: the
referrers API's 404, then the fallback tag's); (3) a big unpacked file sent to the disk every WRITEBACK_STEP as it is
written, as the blob is (this box holds 2 GB dirty before writing back, so the layer's syncfs wrote the whole file):
(2)+(3) `mixed` 0.371 -> 0.314 s, `big` 0.207 -> 0.179 s (10 each). This bench, 5 runs, start commit -> after (the
two ran minutes apart under different load: skopeo's own medians moved by up to 2x, so the ratios are rough): `many`
1.24x -> 1.05x (0.29 s vs skopeo 0.23 s -> 0.45 vs 0.43 s), `mixed` 1.25x -> 1.39x (0.53 vs 0.43 s -> 0.51 vs
0.37 s), `big` 1.06x -> 0.96x (0.40 vs 0.38 s -> 0.37 vs 0.39 s); to our registry `many` 1.06x -> 0.90x (0.23 vs
0.22 s -> 0.27 vs 0.30 s). Tried and not kept (in-process, alternating):
fsyncs of each file and directory instead of the syncfs for layers of up to 8 entries, `many` 0.415 -> 0.449 s
(slower even with other helpers' dirty data in each syncfs); 2, 3, 4 or 6 streams 0.341, 0.335, 0.336, 0.335 s (no
change); chattr +T on layers/ 0.342 -> 0.325 s and sys.setswitchinterval(1 ms) 0.444 -> 0.409 s (both within the
noise); dropping a big unpacked file's pages as they reach the disk (as the blob's are), `mixed` with 2 s idle before
each pull 0.482 -> 0.418 s (sys 0.22 -> 0.14 s: the VM's fresh-page faults), not kept: it moves that cost to the
first run that reads the files; each small file's and blob's writeback started as it is closed, `many` 0.297 ->
0.287 s, then 0.312 -> 0.320 s (nothing). No per-layer syncfs at all, the bound on deferring them to one at the end
of the pull: `many` 0.262 -> 0.235 s, of which that last syncfs (the image's data still unwritten) would take back
part; not tried. Where `many` goes: a client that only reads the 41 bodies (no store) takes
0.13-0.17 s in-process, and distribution spends 0.165 s of CPU serving them (0.18-0.22 s beside our full pull, which
uses 0.21-0.24 s of CPU itself: on two cores the pair is CPU-bound); curl alone fetches 40 1 KB blobs one after
another with a median 2.5-3.7 ms to first byte; in our pull with 3 streams a request takes ~10 ms to its headers and
a layer's syncfs 3-7 ms. So distribution's serving, ~0.15 s of the ~0.18 s that 0.8x of skopeo would allow, is the
bound for `many`; the unpack's own CPU (gunzip, the diff_id's sha256, the file writes: apply_layer of all 40 layers
from memory 0.097 s vs 0.082 s for bare inflate + two sha256 + one write) is near its floor.

2026-11-30, the same changes on a quiet box after CI, 5 runs, resident (pull vs skopeo-oci / vs containers-storage;
push): to distribution `many` 1.08x / 0.21x, push 0.36x; `mixed` 0.86x / 0.38x, push 0.57x; `big` 0.67x / 0.34x,
push 0.74x (skopeo's push 0.36-0.63 s over the runs, the ingest floor 0.31 s of our 0.38 s); to our registry `many`
1.07x, push 0.58x; `mixed` 0.79x, push 0.65x.

2026-11-30 evening (issue 15 item 2), a busy box (load 3-10), to distribution, in-process pulls alternating between
variants, medians. Is the registry the bound? Its CPU (all its threads' schedstat) per pull of `many`, 10 pulls each
alternating with skopeo's `oci:` pull: ours 0.180 s vs skopeo's 0.188 s, in a second run 0.173 vs 0.163 s (a 4 MiB
SO_RCVBUF on our sockets: 0.174 s): the same within the noise, ~4 ms a request, and we make 45 requests to skopeo's 43
(the referrers API's 404 and its fallback tag's). So both clients cost distribution ~0.17 s of CPU per ~0.21-0.26 s
pull: it is the bound for either. Not kept: isal for the gunzip (alone faster on text, a 10 MB text layer 11.2 ->
10.4 ms, the same on random data; in pulls slower, 16 each: `many` 0.224 -> 0.241 s, CPU 0.201 -> 0.223 s; `big`
0.172 -> 0.188 s, CPU 0.211 -> 0.240 s; apply_layer of `many`'s layers from memory +8 ms user time; a sha256 just
after an isal inflate ran slower over the same bytes, 46 -> 51-58 ms); one syncfs at the end of the pull instead of
one per layer (timed without deferring the renames, the bound): `many` 0.222 -> 0.235 s, `mixed` 0.228 -> 0.232 s,
the last syncfs waiting for the whole image. Kept: a layer of at most 8 files and directories made durable by an
fsync of each and of its blob, not a syncfs, which also waits for every other writer's dirty data on the filesystem
(distribution syncs what it is pushed: 0.2 MB dirty after pushing `mixed`, so not this bench's own pushes). 12 each,
with 100 MB written unsynced before each pull: `many` 0.261 -> 0.238 s, `mixed` 0.283 -> 0.243 s; nothing else
dirty: 0.214 -> 0.209 s, 0.232 -> 0.234 s; on a journaled ext4 (a loop device) 0.477 -> 0.274 s dirty, 0.265 ->
0.279 s not. This bench, 5 runs each, start commit -> after, minutes apart: `many` 1.16x -> 1.07x (0.28 vs 0.24 s ->
0.27 vs 0.25 s), `mixed` 0.87x -> 0.95x (0.29 vs 0.33 s -> 0.29 vs 0.31 s): our times unchanged, skopeo's moving.
The same evening, a quiet box after CI, 5 runs, resident: to distribution `many` pull 1.00x (vs containers-storage
0.15x), push 0.43x; `mixed` pull 0.89x (0.40x), push 0.59x; to our registry `many` pull 0.97x, push 0.49x.

2026-11-30 night, a quiet box, 5 runs, resident: to distribution `many` pull 1.08x (0.19x), push 0.43x; `mixed` pull
0.94x (0.39x), push 0.60x; to our registry `many` pull 1.13x (0.16x), push 0.46x. Who is the bound, in-process pulls
(12 each, CPU of all threads): from distribution, `many` takes it 0.175 s of CPU and us 0.21 s, `mixed` 0.065 s and
us 0.29 s; from our registry, 0.04 s and 0.02 s: there our client's own CPU is the bound (`many` 0.21 s in a 0.16 s
pull, `mixed` 0.32 s in 0.21 s; skopeo's whole `oci:` pull of `many` from it takes 0.18-0.19 s). Where ours goes
(`perf`, `many`): 55% kernel (file and directory creation ~10%, fsync ~6%, page faults ~6%, futex and task switches
~15%: the GIL handed between the download threads), sha256 11% (SHA-NI, ~2 GB/s), inflate 7%, memmove 5%; `mixed`:
sha256 35%, memmove 15% (the chunks copied on their way from the socket to the inflater). The resident child costs
a pull ~20 ms beyond `dockyard version`'s round trip (21 ms): 13-15k page faults against 6k in a warm process and
1.2k in `version`'s child, 70% of them in memmove (first writes into the buffers of the copies above). Tried: 3 or 4
download threads instead of 6, `many` from our registry CPU 0.198 -> 0.182-0.185 s, wall unchanged (0.161 vs
0.157-0.168 s); fewer or smaller buffers left the child's faults as they were: the unpack queue 8 -> 2 chunks (15.0k),
one malloc arena (14.0k), the decompression's 1 MiB buffers at 256 KiB (14.7-15.1k against 15.4k).

2026-11-30 late (issue 15 item 2), what those faults were: `perf record -e page-faults` with Python 3.12's `-X perf`
named the Python frames. Every fresh buffer a thread fills is faulted in page by page (~3 us a page on this VM), and
a pull's threads each held several 1 MiB ones (a buffer per read handed to the unpacking thread, the gunzip's input,
each file's data, the blob's reads; ~6 download threads): a 100 MB pull in a new process faulted in ~50 MB. Now the
unit is 256 KiB (digest.CHUNK), the unpacking thread's chunks come from a few reused buffers, and the gunzip's input,
a layer's file data and a blob's reads each go through one buffer sized to what they carry. Pulls from our registry,
one new process per pull, versions alternating (medians, start -> after): `mixed` 0.274 -> 0.261 s (20 each; CPU
0.401 -> 0.374 s, faults 12.7k -> 3.6k), `many` 0.198 -> 0.183 s (CPU 0.238 -> 0.218 s, 11.7k -> 3.4k), `big` 0.173
-> 0.168 s (15 each, 7.9k -> 2.4k); in one process pulling again and again, `many` 0.176 -> 0.160 s, `mixed` 0.202 ->
0.200 s. Our registry keeps reading an upload's body by 1 MiB (at 256 KiB a 100 MB push took ~0.38 s, not ~0.32 s).
This bench, 5 runs each, resident, now starting each run with another tool (the first one met the disk still writing
back the last run's data): to distribution `mixed` pull 0.90x (0.37x), push 0.61x; `many` pull 0.88x (0.16x), push
0.38x; to our registry `many` 0.94x (0.13x), push 0.54x; `mixed` 0.88x (0.37x), push 0.64x. On this VM what runs
just before a pull moves it more than this change: from a registry just started and pushed to, the same pull took
0.31-0.37 s, from one that had served a while 0.24 s.

2026-12-01, each series now also prints its pull's CPU, the client's and the registry's (medians; for dockyard the
launcher's and the resident child's). 5 runs, to distribution: `many` pull 1.00x, client 0.29 s vs skopeo's 0.30 s,
registry 0.25 vs 0.24 s, both pulls 0.34 s; `mixed` 0.79x (0.37 vs 0.47 s), client 0.46 vs 0.58 s, registry 0.11 vs
0.10 s. Both tools' pulls are CPU-bound on these two cores (client and registry together keep ~1.6 cores busy), and
ours already does the unpack within skopeo's CPU. For `many` at 0.8x (0.27 s) both processes' CPU would have to fit
in ~0.43 s: with the registry's 0.25 s, our client's in ~0.18 s, where the unpack alone (gunzip, the diff_id's
sha256, the files written and synced) takes 0.145 s of CPU (in-process, 12 pulls each alternating: 0.244 s, blobs
only 0.099 s). The same pull without the unpack (in-process, alternating, medians of 10): `many` 0.266 -> 0.163 s,
`mixed` 0.290 -> 0.157 s; with the unpack's writes left out but its gunzip, sha256 and tar parse kept, `many` 0.30
-> 0.26-0.30 s: what the unpack costs is its CPU, not its writes. Not kept (in-process, alternating): a child
forked ahead of the request, faulted in while idle (MADV_POPULATE_WRITE of its writable mappings), 0.325 -> 0.378
s; fewer streams, 1/2/3/4/6: 0.37/0.31/0.31/0.29/0.31 s. Where the resident path's ~30 ms go (timestamps in
client, server and child, `many`): interpreter start to the client's connect ~17 ms, server accept to fork 1 ms,
fork to the child running 2-3 ms, the child's exit to its reaping 3-4 ms, the status to the client's exit
~2.5 ms.
"""

from __future__ import annotations

import argparse
import compileall
import gzip
import io
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# The client tests' registry launchers (and the `support` helpers they use).
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "client")]

from installed import Installed, installed  # noqa: E402
from registries import start_distribution, start_dockyard_registry  # noqa: E402
from servers import process_cpu  # noqa: E402

from dockyard import mediatypes as mt  # noqa: E402
from dockyard.digest import Digest  # noqa: E402
from dockyard.image import Descriptor, canonical_json, empty_config, manifest_for  # noqa: E402
from dockyard.reference import parse  # noqa: E402
from dockyard.store import Store  # noqa: E402


@dataclass
class Run:
    """One tool's run: push and pull seconds, and the CPU seconds the pull took of the client and of the registry."""

    push: float
    pull: float
    client_cpu: float
    registry_cpu: float


def _text(size: int, seed: int) -> bytes:
    """Compressible text (log-like lines), `size` bytes."""
    rng = random.Random(seed)
    words = [f"word{i}" for i in range(500)]
    out = bytearray()
    while len(out) < size:
        out += (" ".join(rng.choices(words, k=12)) + "\n").encode()
    return bytes(out[:size])


def shape_files(shape: str, total_mb: int) -> list[bytes]:
    """One file's content per layer, for the issue's image shapes."""
    rng = random.Random(15)
    if shape == "mixed":  # bench/transfer.py's image: three incompressible layers, 50%, 30% and 20% of the total
        return [os.urandom(int(total_mb * share * (1 << 20))) for share in (0.5, 0.3, 0.2)]
    if shape == "big":  # one 64 MiB incompressible layer dominates, a 10 MB text layer, a 1 MB layer
        return [os.urandom(64 << 20), _text(10_000_000, 1), os.urandom(1 << 20)]
    # "many": 40 small layers of 100 KB-2 MB, half of them text (round trips dominate)
    return [(os.urandom if i % 2 else lambda n, i=i: _text(n, i))(rng.randint(100_000, 2_000_000)) for i in range(40)]


def make_image(store: Store, shape: str, total_mb: int) -> None:
    """bench:latest with one gzip layer per file of the shape."""
    layers, diff_ids = [], []
    with store.transaction() as added:
        for i, data in enumerate(shape_files(shape, total_mb)):
            raw = io.BytesIO()
            with tarfile.open(fileobj=raw, mode="w") as tf:
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


def timed(cmd: list[str], env: dict | None = None, resident: int | None = None) -> tuple[float, float]:
    """Wall seconds and CPU seconds of a command: its processes', and those of the `resident` server's child that
    ran it (reaped by the server before the command's client exits)."""
    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime + (process_cpu(resident, children=False, reaped=True) if resident else 0)

    before = cpu()
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - start
    return wall, cpu() - before


def fresh_registry(kind: str, workdir: Path):
    if kind == "dockyard":
        return start_dockyard_registry(workdir)
    return start_distribution(workdir)


def ingest_floor(kind: str, blob: Path, work: Path) -> float:
    """Seconds for `curl -T` to PUT one blob (monolithic upload) into a fresh registry: its ingest speed."""
    import http.client

    reg = fresh_registry(kind, work / "registry")
    try:
        conn = http.client.HTTPConnection(reg.host)
        conn.request("POST", "/v2/bench/floor/blobs/uploads/", headers={"Content-Length": "0"})
        location = conn.getresponse().headers["Location"]
        conn.close()
        url = location if location.startswith("http") else f"http://{reg.host}{location}"
        url += ("&" if "?" in url else "?") + f"digest=sha256:{blob.name}"
        return timed(["curl", "-sf", "-o", "/dev/null", "-T", str(blob), url])[0]
    finally:
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)


def one_run(kind: str, tool: str, src: Store, work: Path, ours: Installed, resident: int) -> Run:
    """Push to a fresh registry, then pull into a fresh store (dockyard through its `resident` server, and
    dockyard-cold without it), an OCI layout (skopeo) or a fresh containers-storage (skopeo-unpack: what `podman
    pull` does; skopeo's push stands for its push)."""
    skopeo = ["skopeo", "--insecure-policy"]
    reg = fresh_registry(kind, work / "registry")
    try:
        ref = f"{reg.host}/bench/img:1"
        if tool.startswith("dockyard"):
            dockyard, env = ours.command, ours.cold if tool == "dockyard-cold" else ours.warm
            subprocess.run([*dockyard, "tag", "bench:latest", ref], check=True, env={**env, "DOCKYARD_ROOT": src.root})
            server = None if tool == "dockyard-cold" else resident
            push, _ = timed([*dockyard, "push", "-q", ref], {**env, "DOCKYARD_ROOT": src.root})
            registry_cpu = process_cpu(reg.proc.pid)
            pull, cpu = timed([*dockyard, "pull", "-q", ref], {**env, "DOCKYARD_ROOT": str(work / "dst")}, server)
            subprocess.run([*dockyard, "rmi", ref], check=True, stdout=subprocess.DEVNULL,
                           env={**env, "DOCKYARD_ROOT": src.root})
        else:
            push, _ = timed([*skopeo, "copy", "-q", "--dest-tls-verify=false", f"oci:{src.layout}:bench:latest",
                             f"docker://{ref}"])
            dest = (f"oci:{work / 'dst'}:img" if tool == "skopeo" else
                    f"containers-storage:[overlay@{work / 'cs-root'}+{work / 'cs-run'}:overlay.skip_mount_home=true]"
                    "localhost/img:1")
            registry_cpu = process_cpu(reg.proc.pid)
            pull, cpu = timed([*skopeo, "copy", "-q", "--src-tls-verify=false", f"docker://{ref}", dest])
        registry_cpu = process_cpu(reg.proc.pid) - registry_cpu
    finally:
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)
    return Run(push, pull, cpu, registry_cpu)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--registry", choices=["distribution", "dockyard"], default="distribution")
    ap.add_argument("--shape", choices=["mixed", "big", "many"], default="mixed")
    ap.add_argument("--mb", type=int, default=100, help="total image size in MB (shape mixed)")
    ap.add_argument("--runs", type=int, default=5, help="alternate runs and compare medians (this box is noisy)")
    args = ap.parse_args()
    # Installed packages run from bytecode; with PYTHONDONTWRITEBYTECODE set every run would compile ~10 ms anew.
    for package in ("dockyard", "registry"):
        compileall.compile_dir(str(REPO / package), quiet=1)
    work = Path(tempfile.mkdtemp(prefix="dyk-bench-transfer-"))
    ours: Installed | None = None
    try:
        src = Store(str(work / "src"))
        make_image(src, args.shape, args.mb)
        layers = src.resolve("bench:latest").layers
        size = sum(d.size for d in layers)
        print(f"image {args.shape}: {len(layers)} layers, {size / 1e6:.1f} MB compressed; registry: {args.registry}; "
              f"runs: {args.runs}")
        biggest = max(layers, key=lambda d: d.size)
        floor = statistics.median(ingest_floor(args.registry, Path(src.blob_path(biggest.digest)), work / f"floor-{i}")
                                  for i in range(3))
        print(f"ingest floor: curl -T of the largest blob ({biggest.size / 1e6:.1f} MB): {floor:.3f} s")
        env = {"DOCKYARD_CONFIG": str(work / "daemon.json"), "DOCKER_CONFIG": str(work / "docker")}
        ours = installed(str(work), {**os.environ, **env})
        subprocess.run([*ours.command, "version"], check=True, stdout=subprocess.DEVNULL, env=ours.warm)
        resident = ours.server()  # (the first command ran directly and started it)
        times: dict[str, list[Run]] = {"dockyard": [], "dockyard-cold": [], "skopeo": [], "skopeo-unpack": []}
        for i in range(args.runs):
            # Each run starts with another tool: the first one meets the disk still writing back the last run's data.
            tools = list(times)[i % len(times):] + list(times)[:i % len(times)]
            for tool in tools:
                times[tool].append(one_run(args.registry, tool, src, work / f"{tool}-{i}", ours, resident))
            row = "   ".join(f"{tool} push {runs[-1].push:.3f} s pull {runs[-1].pull:.3f} s"
                               for tool, runs in times.items())
            print(f"run {i + 1}: {row}", flush=True)
        med = {tool: Run(*(statistics.median(getattr(r, f) for r in runs) for f in Run.__dataclass_fields__))
               for tool, runs in times.items()}
        # Who bounds a pull: both processes share this machine's cores, so their CPU together is what a pull
        # needs of them (ticks of 10 ms: compare medians, not runs).
        for tool, m in med.items():
            print(f"{tool:>8}: push {m.push:6.2f} s   pull {m.pull:6.2f} s   pull CPU: client {m.client_cpu:5.2f} s, "
                  f"registry {m.registry_cpu:5.2f} s")
        spush, spull, upull = med["skopeo"].push, med["skopeo"].pull, med["skopeo-unpack"].pull
        ratios = {}
        for tool in ("dockyard", "dockyard-cold"):
            dpush, dpull = med[tool].push, med[tool].pull
            print(f"ratio {tool}/skopeo: push {dpush / spush:.2f}x   pull {dpull / spull:.2f}x   (goal <= 0.80x)   "
                  f"pull vs skopeo into containers-storage (unpacked, as ours) {dpull / upull:.2f}x")
            ratios[tool] = {"push_ratio": round(dpush / spush, 3), "pull_ratio": round(dpull / spull, 3),
                            "pull_ratio_unpacked": round(dpull / upull, 3)}
        assert ours.served() >= 2 * args.runs, "the resident server did not serve the dockyard series"
        cpu = {tool: {"client_s": round(m.client_cpu, 3), "registry_s": round(m.registry_cpu, 3)}
               for tool, m in med.items()}
        print(json.dumps({"shape": args.shape, "registry": args.registry, **ratios, "ingest_floor_s": round(floor, 3),
                          "pull_cpu": cpu}))
    finally:
        if ours:
            ours.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
