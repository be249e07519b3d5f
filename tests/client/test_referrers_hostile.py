"""Referrers from a hostile registry without the referrers API: the tag schema's index (`sha256-<hex>`) lists a
referrer of gigabytes, an honest-sized one served as an endless manifest, or one about another image. Listing or
pulling ends in one error line, in bounded memory, and the store keeps none of it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from crafted import OCI_MANIFEST, image, sha, tar_of
from hostile import Conn, Hostile, Request
from support import tool

from dockyard.digest import Digest
from dockyard.store import Store

ADDRESS_SPACE = 1 << 30  # an unbounded read dies here (MemoryError) instead of taking the machine's memory
INDEX = "application/vnd.oci.image.index.v1+json"
IMAGE = image([tar_of(("hello.txt", b"hi\n"))])
OTHER = image([tar_of(("other.txt", b"other\n"))])
SUBJECT = sha(IMAGE.manifest)


def _artifact(subject: bytes) -> bytes:
    """An SBOM artifact manifest about `subject` (a manifest's bytes); its blobs are never served."""
    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/spdx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha(b"{}"), "size": 2},
        "layers": [{"mediaType": "application/spdx+json", "digest": sha(b"x"), "size": 1}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": sha(subject), "size": len(subject)}}).encode()


ELSEWHERE = _artifact(OTHER.manifest)
HUGE_BLOB = json.dumps({**json.loads(_artifact(IMAGE.manifest)), "layers": [
    {"mediaType": "application/spdx+json", "digest": sha(b"x"), "size": 1 << 40}]}).encode()
ENDLESS = "sha256:" + "e" * 64
CASES = {  # what the tag index lists -> what the registry serves for it (None: an endless manifest)
    "gigabytes": ({"digest": "sha256:" + "b" * 64, "size": 5 << 30}, None),
    "endless manifest": ({"digest": ENDLESS, "size": 1000}, None),
    "about another image": ({"digest": sha(ELSEWHERE), "size": len(ELSEWHERE)}, ELSEWHERE),
    "a terabyte blob": ({"digest": sha(HUGE_BLOB), "size": len(HUGE_BLOB)}, HUGE_BLOB),
}
WORDS = {"gigabytes": "is 5368709120 bytes, not a manifest of at most 4194304",
         "endless manifest": "answered GET", "about another image": f"its subject is {sha(OTHER.manifest)}",
         "a terabyte blob": "is 1099511627776 bytes, more than the 67108864"}


def scenario(case: str):
    listed, served = CASES[case]
    index = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "artifactType": "application/spdx+json", **listed}]}).encode()

    def run(conn: Conn, req: Request) -> None:
        path = req.path
        if path == "/v2/":
            conn.answer(200, b"{}", {"Docker-Distribution-Api-Version": "registry/2.0"})
        elif path.endswith(("/manifests/1", f"/manifests/{SUBJECT}")):
            conn.answer(200, IMAGE.manifest, {"Content-Type": OCI_MANIFEST, "Docker-Content-Digest": SUBJECT})
        elif path.endswith(f"/manifests/sha256-{SUBJECT[7:]}"):
            conn.answer(200, index, {"Content-Type": INDEX, "Docker-Content-Digest": sha(index)})
        elif path.endswith(f"/manifests/{listed['digest']}"):
            if served is None:
                conn.endless(200, {"Content-Type": OCI_MANIFEST}, prefix=b'{"schemaVersion": 2, "x": "')
            else:
                conn.answer(200, served, {"Content-Type": OCI_MANIFEST})
        elif path.endswith(sha(IMAGE.config)):
            conn.answer(200, IMAGE.config)
        elif path.endswith(sha(IMAGE.layers[0])):
            conn.answer(200, IMAGE.layers[0])
        else:  # the referrers API among them: this registry has none
            conn.answer(404, b"404 page not found\n", {"Content-Type": "text/plain"})
    return run


def run_bounded(store_root: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [tool("prlimit"), f"--as={ADDRESS_SPACE}", "--", sys.executable, "-m", "dockyard", *args]
    return subprocess.run(cmd, capture_output=True, timeout=120, check=False,
                          env={**os.environ, "DOCKYARD_ROOT": store_root})


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_referrers(case, store_root, client_env):
    client_env.write_daemon(read_timeout=1, max_download_attempts=2)
    server = Hostile(scenario(case))
    try:
        name = f"{server.host}/hostile/img:1"
        listing = run_bounded(store_root, "inspect", "--referrers", name)
        pulled = run_bounded(store_root, "pull", name)
    finally:
        server.close()
    # Listing reads the tag index only: a referrer it lists is checked by its size, not fetched.
    failing = [listing, pulled] if case == "gigabytes" else [pulled]
    if case != "gigabytes":
        assert listing.returncode == 0, listing.stderr
        assert [r["digest"] for r in json.loads(listing.stdout)[0]["Referrers"]] == [CASES[case][0]["digest"]]
    for p in failing:
        err = p.stderr.decode(errors="replace")
        assert p.returncode == 1 and "Traceback" not in err and "MemoryError" not in err, err
        lines = [line for line in err.splitlines() if line.startswith("Error:")]
        assert len(lines) == 1 and len(lines[0]) < 500 and WORDS[case] in lines[0], err
    store = Store(store_root)
    assert store.referrers(store.resolve(name).manifest_digest) == []  # the image came, none of its referrers
    assert not store.has_blob(Digest.parse(sha(b"{}")))
