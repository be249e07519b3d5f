"""Garbage collection: what is kept, what goes, and safety while pushes run."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from dockyard import mediatypes as mt
from registry.config import Config
from registry.gc import GcReport, collect, existing_storage, mark, sweep
from support import REPO
from regkit import layer_tar, make_image, push_image, sha256

HOURS_2 = 7200


def age_blobs(root: Path, older_than: float = 0.0) -> None:
    """Pretend two hours passed for every blob untouched for `older_than` seconds (the grace period's clock)."""
    now = time.time()
    for path in (root / "blobs").rglob("data"):
        try:
            st = path.stat()
            if now - st.st_mtime >= older_than:
                os.utime(path, (st.st_atime - HOURS_2, st.st_mtime - HOURS_2))
        except FileNotFoundError:
            continue


def blob_exists(root: Path, digest: str) -> bool:
    algo, hexpart = digest.split(":")
    return (root / "blobs" / algo / hexpart[:2] / hexpart / "data").exists()


def test_mark_and_sweep(server):
    keep = make_image([layer_tar({"keep": b"1"}), layer_tar({"shared": b"s"})])
    drop = make_image([layer_tar({"drop": b"2"}), layer_tar({"shared": b"s"})])
    push_image(server.url, "gc/a", keep, "v1")
    push_image(server.url, "gc/b", drop, "v1")
    orphan = b"orphan blob"
    requests.post(f"{server.url}/v2/gc/a/blobs/uploads/", params={"digest": sha256(orphan)}, data=orphan)
    assert requests.delete(f"{server.url}/v2/gc/b/manifests/{drop.digest}").status_code == 202
    # Within the grace period nothing goes.
    report = collect(existing_storage(Config(root=str(server.root))), grace=3600)
    assert report.blobs == [] and report.kept_recent >= 3
    age_blobs(server.root)
    dry = collect(existing_storage(Config(root=str(server.root))), dry_run=True, grace=3600)
    gone = {sha256(orphan), sha256(drop.layers[0]), sha256(drop.config), drop.digest}
    assert {str(d) for d in dry.blobs} == gone
    assert all(blob_exists(server.root, d) for d in gone)
    report = collect(existing_storage(Config(root=str(server.root))), grace=3600)
    assert {str(d) for d in report.blobs} == gone
    assert not any(blob_exists(server.root, d) for d in gone)
    assert requests.get(f"{server.url}/v2/gc/a/manifests/v1").content == keep.manifest
    for blob in [keep.config, *keep.layers]:
        assert requests.get(f"{server.url}/v2/gc/a/blobs/{sha256(blob)}").content == blob
    assert requests.get(f"{server.url}/v2/gc/b/blobs/{sha256(drop.layers[0])}").status_code == 404
    assert requests.get(f"{server.url}/v2/gc/b/blobs/{sha256(drop.layers[1])}").status_code == 200


def test_untagged_index_children_and_referrers(server):
    child = make_image([layer_tar({"child": b"c"})])
    push_image(server.url, "gc/idx", child, None)
    index = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [
        {"mediaType": mt.OCI_MANIFEST, "digest": child.digest, "size": len(child.manifest)}]}).encode()
    requests.put(f"{server.url}/v2/gc/idx/manifests/multi", data=index, headers={"Content-Type": mt.OCI_INDEX})
    sbom = make_image([layer_tar({"sbom": b"s"})], extra={
        "artifactType": "application/vnd.example.sbom",
        "subject": {"mediaType": mt.OCI_INDEX, "digest": sha256(index), "size": len(index)}})
    push_image(server.url, "gc/idx", sbom, None)
    loose = make_image([layer_tar({"loose": b"l"})])
    push_image(server.url, "gc/idx", loose, None)
    age_blobs(server.root)
    kept_untagged = collect(existing_storage(Config(root=str(server.root))), grace=3600)
    assert loose.digest not in {str(d) for d in kept_untagged.blobs}
    report = collect(existing_storage(Config(root=str(server.root))), grace=3600, delete_untagged=True)
    assert [(repo, str(d)) for repo, d in report.manifests] == [("gc/idx", loose.digest)]
    assert requests.get(f"{server.url}/v2/gc/idx/manifests/{loose.digest}").status_code == 404
    for image in (child, sbom):
        assert requests.get(f"{server.url}/v2/gc/idx/manifests/{image.digest}").content == image.manifest
        for blob in [image.config, *image.layers]:
            assert requests.get(f"{server.url}/v2/gc/idx/blobs/{sha256(blob)}").content == blob


def test_stale_uploads_and_cli(server, tmp_path):
    loc = requests.post(f"{server.url}/v2/gc/up/blobs/uploads/").headers["Location"]
    requests.patch(server.url + loc, data=b"partial")
    p = subprocess.run([sys.executable, "-m", "dockyard", "registry", "gc", "--root", str(server.root),
                        "--dry-run", "--upload-max-age", "0"], capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 0 and "would remove" in p.stdout
    assert requests.get(server.url + loc).status_code == 204
    time.sleep(0.01)
    p = subprocess.run([sys.executable, "-m", "dockyard", "registry", "gc", "--root", str(server.root),
                        "--upload-max-age", "0"], capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 0 and "removed" in p.stdout, p.stderr
    assert requests.get(server.url + loc).status_code == 404
    p = subprocess.run([sys.executable, "-m", "dockyard", "registry", "gc", "--root", str(tmp_path / "none")],
                       capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 1 and p.stderr.strip() == f"Error: no registry storage at {tmp_path / 'none'}"


def _push_skipping_existing(url: str, repo: str, img, tag: str) -> requests.Response:
    """Push like real clients: blobs the registry already has are not uploaded again."""
    for blob in [img.config, *img.layers]:
        if requests.head(f"{url}/v2/{repo}/blobs/{sha256(blob)}").status_code != 200:
            r = requests.post(f"{url}/v2/{repo}/blobs/uploads/", params={"digest": sha256(blob)}, data=blob)
            assert r.status_code == 201, r.text
    return requests.put(f"{url}/v2/{repo}/manifests/{tag}", data=img.manifest,
                        headers={"Content-Type": img.media_type})


def test_gc_during_pushes_loses_nothing_referenced(make_server):
    """distribution#3045: GC running while images are pushed must never delete a blob a stored manifest needs.

    Each pusher pushes, deletes and re-pushes images whose blobs are then already stored but unreferenced and
    (with the clock faked forward) past the grace period: exactly the blobs a concurrent GC wants to sweep."""
    server = make_server("--workers", "2", "--enable-delete")
    acknowledged: dict[str, object] = {}
    failures: list[str] = []
    stop = threading.Event()

    def pusher(n: int) -> None:
        images = [make_image([layer_tar({f"l{n}-{i}-{j}": os.urandom(5_000)}) for j in range(4)])
                  for i in range(3)]
        for round_ in range(3):
            for i, img in enumerate(images):
                ref = f"gcrace/p{n}:t{i}"
                if round_:
                    requests.delete(f"{server.url}/v2/gcrace/p{n}/manifests/{img.digest}")
                    acknowledged.pop(ref, None)
                    time.sleep(1.1)  # the unreferenced blobs age past the grace period meanwhile
                r = _push_skipping_existing(server.url, f"gcrace/p{n}", img, f"t{i}")
                if r.status_code == 201:
                    acknowledged[ref] = img
                elif r.json()["errors"][0]["code"] != "MANIFEST_BLOB_UNKNOWN":
                    failures.append(r.text)

    def collector() -> None:
        while not stop.is_set():
            # Longer than a GC pass takes, so a blob a push just touched is not faked old under a running pass.
            age_blobs(server.root, older_than=1.0)
            collect(existing_storage(Config(root=str(server.root))), grace=0)

    gc_thread = threading.Thread(target=collector)
    gc_thread.start()
    pushers = [threading.Thread(target=pusher, args=(n,)) for n in range(4)]
    for t in pushers:
        t.start()
    for t in pushers:
        t.join()
    stop.set()
    gc_thread.join()
    assert not failures
    assert len(acknowledged) >= 3
    for ref, img in acknowledged.items():
        repo, tag = ref.split(":")
        assert requests.get(f"{server.url}/v2/{repo}/manifests/{tag}").content == img.manifest
        for blob in [img.config, *img.layers]:
            r = requests.get(f"{server.url}/v2/{repo}/blobs/{sha256(blob)}")
            assert r.status_code == 200 and sha256(r.content) == sha256(blob), ref


def test_push_between_mark_and_sweep_is_kept(server):
    """The #3045 interleaving, made deterministic: GC marks, a push re-references unreferenced old blobs (already
    stored, so the client skips uploading them), then GC sweeps.  The push's link must protect them."""
    img = make_image([layer_tar({"between": os.urandom(1000)}), layer_tar({"phases": b"p"})])
    push_image(server.url, "gc/between", img, "v1")
    assert requests.delete(f"{server.url}/v2/gc/between/manifests/{img.digest}").status_code == 202
    age_blobs(server.root)
    storage = existing_storage(Config(root=str(server.root)))
    report = GcReport()
    cutoff = time.time() - 3600
    marked = mark(storage, report, cutoff)
    assert not {sha256(b) for b in img.layers} & {str(d) for d in marked}
    r = _push_skipping_existing(server.url, "gc/between", img, "v1")
    assert r.status_code == 201
    sweep(storage, marked, report, cutoff)
    assert requests.get(f"{server.url}/v2/gc/between/manifests/v1").content == img.manifest
    for blob in [img.config, *img.layers]:
        assert requests.get(f"{server.url}/v2/gc/between/blobs/{sha256(blob)}").content == blob


def _age(path: Path, seconds: float = 2 * 86400) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def _session_dir(root: Path, location: str) -> Path:
    return root / "uploads" / location.rstrip("/").rsplit("/", 1)[1]


def _age_session(root: Path, location: str) -> None:
    """Make every file of an upload session look untouched for two days."""
    for path in _session_dir(root, location).iterdir():
        _age(path)


def test_gc_removes_stale_leftovers_and_keeps_a_push_in_progress(make_server):
    """Temp files of killed writers and abandoned sessions go after the age limit; fresh ones stay, and so does an
    old session a request is writing to right now."""
    server = make_server("--workers", "2")
    root = server.root
    img = make_image([layer_tar({"leftovers": b"l"})])
    assert push_image(server.url, "gc/left", img, "v1").status_code == 201
    blob_dir = root / "blobs" / "sha256" / img.digest[7:9] / img.digest[7:]
    stale_tmp = [blob_dir / ".tmp-killed1", root / "repositories/gc/left/_manifests/tags/.tmp-killed2",
                 root / "metrics" / ".tmp-killed3"]
    fresh_tmp = blob_dir / ".tmp-writing"
    for path in [*stale_tmp, fresh_tmp]:
        path.write_bytes(b"partial")
    for path in stale_tmp:
        _age(path)

    def session(data: bytes) -> str:
        loc = requests.post(f"{server.url}/v2/gc/left/blobs/uploads/").headers["Location"]
        return requests.patch(server.url + loc, data=data).headers["Location"]

    abandoned, fresh = session(b"given up"), session(b"still coming")
    _age_session(root, abandoned)
    cut_short = root / "uploads" / ("0" * 32)  # a create killed before the session's info file was written
    cut_short.mkdir()
    (cut_short / "data").write_bytes(b"")
    _age(cut_short / "data")
    # A session paused for two days whose next chunk is arriving right now: the request holds its lock.
    busy = requests.post(f"{server.url}/v2/gc/left/blobs/uploads/").headers["Location"]
    body = os.urandom(10_000)
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(f"PATCH {busy} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:5000])
    lock = os.open(_session_dir(root, busy) / "lock", os.O_RDWR | os.O_CREAT)
    try:
        while True:  # until the server's request has taken the session's lock
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(lock, fcntl.LOCK_UN)
                time.sleep(0.05)
            except BlockingIOError:
                break
    finally:
        os.close(lock)
    _age_session(root, busy)

    p = subprocess.run([sys.executable, "-m", "dockyard", "registry", "gc", "--root", str(root)],
                       capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 0, p.stderr
    assert "2 stale upload sessions, 3 stale temp files" in p.stdout, p.stdout
    assert not any(path.exists() for path in stale_tmp) and fresh_tmp.exists()
    assert requests.get(server.url + abandoned).status_code == 404
    assert requests.get(server.url + fresh).status_code == 204
    assert not cut_short.exists()
    sock.sendall(body[5000:])
    with sock.makefile("rb") as answer:
        assert answer.readline().startswith(b"HTTP/1.1 202")
    sock.close()
    r = requests.put(server.url + busy, params={"digest": sha256(body)})
    assert r.status_code == 201, r.text
    assert requests.get(f"{server.url}/v2/gc/left/blobs/{sha256(body)}").content == body
