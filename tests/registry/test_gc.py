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

import pytest
import requests

from dockyard import mediatypes as mt
from dockyard.digest import Digest
from registry.gc import CLOCK_SLACK, GcReport, collect, existing_storage, mark, sweep
from support import REPO
from regkit import Server, layer_tar, make_image, push_image, sha256

pytestmark = pytest.mark.drivers("fs", "s3")

HOURS_2 = 7200
GRACE = 3600


def age_blobs(server: Server) -> int:
    """Age every blob stored so far past a grace period that any later write is within; returns that grace.

    On the filesystem two hours pass for the blobs (their mtimes move back) and the grace is an hour. S3 cannot
    backdate an object (LastModified is the server's, in whole seconds), so there the test waits out GC's clock
    slack and a second more, and the grace is 0."""
    if server.s3 is not None:
        time.sleep(CLOCK_SLACK + 1.1)
        return 0
    for path in (server.root / "blobs").rglob("data"):
        st = path.stat()
        os.utime(path, (st.st_atime - HOURS_2, st.st_mtime - HOURS_2))
    return GRACE


def blob_exists(server: Server, digest: str) -> bool:
    return server.storage().blob_info(Digest.parse(digest)) is not None


def test_mark_and_sweep(server):
    keep = make_image([layer_tar({"keep": b"1"}), layer_tar({"shared": b"s"})])
    drop = make_image([layer_tar({"drop": b"2"}), layer_tar({"shared": b"s"})])
    push_image(server.url, "gc/a", keep, "v1")
    push_image(server.url, "gc/b", drop, "v1")
    orphan = b"orphan blob"
    requests.post(f"{server.url}/v2/gc/a/blobs/uploads/", params={"digest": sha256(orphan)}, data=orphan)
    assert requests.delete(f"{server.url}/v2/gc/b/manifests/{drop.digest}").status_code == 202
    # Within the grace period nothing goes.
    report = collect(existing_storage(server.config()), grace=GRACE)
    assert report.blobs == [] and report.kept_recent >= 3
    grace = age_blobs(server)
    dry = collect(existing_storage(server.config()), dry_run=True, grace=grace)
    gone = {sha256(orphan), sha256(drop.layers[0]), sha256(drop.config), drop.digest}
    assert {str(d) for d in dry.blobs} == gone
    assert all(blob_exists(server, d) for d in gone)
    report = collect(existing_storage(server.config()), grace=grace)
    assert {str(d) for d in report.blobs} == gone
    assert not any(blob_exists(server, d) for d in gone)
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
    grace = age_blobs(server)
    kept_untagged = collect(existing_storage(server.config()), grace=grace)
    assert loose.digest not in {str(d) for d in kept_untagged.blobs}
    report = collect(existing_storage(server.config()), grace=grace, delete_untagged=True)
    assert [(repo, str(d)) for repo, d in report.manifests] == [("gc/idx", loose.digest)]
    assert requests.get(f"{server.url}/v2/gc/idx/manifests/{loose.digest}").status_code == 404
    for image in (child, sbom):
        assert requests.get(f"{server.url}/v2/gc/idx/manifests/{image.digest}").content == image.manifest
        for blob in [image.config, *image.layers]:
            assert requests.get(f"{server.url}/v2/gc/idx/blobs/{sha256(blob)}").content == blob


def test_stale_uploads_and_cli(server, tmp_path):
    loc = requests.post(f"{server.url}/v2/gc/up/blobs/uploads/").headers["Location"]
    requests.patch(server.url + loc, data=b"partial")
    p = subprocess.run([sys.executable, "-m", "dockyard", "registry", "gc", *server.gc_flags(),
                        "--dry-run", "--upload-max-age", "0"], capture_output=True, text=True, cwd=REPO)
    assert p.returncode == 0 and "would remove" in p.stdout
    assert requests.get(server.url + loc).status_code == 204
    time.sleep(1.1)  # on S3 the session's time and gc's clock are whole seconds: equal ones would keep it
    p = subprocess.run([sys.executable, "-m", "dockyard", "registry", "gc", *server.gc_flags(),
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
        storage = server.storage()  # nothing is stored yet, on S3 not even the layout's root
        while not stop.is_set():
            # A grace of -1: a blob untouched for a second is past it (the cutoff, a second back, lies before the
            # pass begins, so a blob a push touches under a running pass is newer; S3's whole-second mtimes too).
            collect(storage, grace=-1)

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
    grace = age_blobs(server)
    storage = existing_storage(server.config())
    report = GcReport()
    cutoff = time.time() - grace - CLOCK_SLACK  # as collect() computes it
    marked = mark(storage, report, cutoff)
    assert not {sha256(b) for b in img.layers} & {str(d) for d in marked}
    r = _push_skipping_existing(server.url, "gc/between", img, "v1")
    assert r.status_code == 201
    sweep(storage, marked, report, cutoff)
    assert requests.get(f"{server.url}/v2/gc/between/manifests/v1").content == img.manifest
    for blob in [img.config, *img.layers]:
        assert requests.get(f"{server.url}/v2/gc/between/blobs/{sha256(blob)}").content == blob


def test_blob_uploaded_again_between_mark_and_sweep_is_kept(server):
    """A blob stored, unreferenced and past the grace period is uploaded again after GC marked (into another
    repository, so the client does not skip it): the upload is acknowledged before any manifest refers to it, so
    the write onto the stored blob must protect it from the sweep."""
    blob = os.urandom(1000)
    r = requests.post(f"{server.url}/v2/gc/first/blobs/uploads/", params={"digest": sha256(blob)}, data=blob)
    assert r.status_code == 201
    grace = age_blobs(server)
    storage = existing_storage(server.config())
    report = GcReport()
    cutoff = time.time() - grace - CLOCK_SLACK  # as collect() computes it
    marked = mark(storage, report, cutoff)
    r = requests.post(f"{server.url}/v2/gc/second/blobs/uploads/", params={"digest": sha256(blob)}, data=blob)
    assert r.status_code == 201
    sweep(storage, marked, report, cutoff)
    assert sha256(blob) not in {str(d) for d in report.blobs}
    assert requests.get(f"{server.url}/v2/gc/second/blobs/{sha256(blob)}").content == blob


def _age(path: Path, seconds: float = 2 * 86400) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def _session_dir(root: Path, location: str) -> Path:
    return root / "uploads" / location.rstrip("/").rsplit("/", 1)[1]


def _age_session(root: Path, location: str) -> None:
    """Make every file of an upload session look untouched for two days."""
    for path in _session_dir(root, location).iterdir():
        _age(path)


# The filesystem driver's leftovers (temp files, session directories, their flock); S3's (multipart uploads and
# tails) are tests/registry/test_storage_driver.py's test_purge_partial_writes.
@pytest.mark.drivers("fs")
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
