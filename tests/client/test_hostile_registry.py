"""A hostile registry on loopback: endless, stalled, flooding and looping answers. Every client command that meets
one ends in one error line and exit 1, within bounded memory, with the store and credentials as they were."""

from __future__ import annotations

import functools
import json
import os
import random
import subprocess
import sys
import zlib

import pytest

from crafted import Crafted, image, sha, tar_of
from hostile import PIECE, Conn, Hostile, Request, Scenario
from registries import store_snapshot
from support import tool

# An unbounded read dies here (MemoryError) instead of taking the machine's memory.
ADDRESS_SPACE = 1 << 30


# A small valid image, for the scenarios that serve one.
IMAGE = image([tar_of(("hello.txt", b"hi\n"))])


# ---- scenarios -------------------------------------------------------------------------------------

NOT_FOUND = json.dumps({"errors": [{"code": "NAME_UNKNOWN", "message": "no such repository"}]}).encode()


def registry_ok(conn: Conn, req: Request) -> bool:
    """Answer /v2/ as a plain registry does; True when it was answered."""
    if req.path == "/v2/":
        conn.answer(200, b"{}", {"Docker-Distribution-Api-Version": "registry/2.0"})
        return True
    return False


def endless_v2(chunked: bool) -> Scenario:
    def run(conn: Conn, req: Request) -> None:
        if req.path == "/v2/":
            conn.endless(200, {"Docker-Distribution-Api-Version": "registry/2.0"}, chunked)
        else:
            conn.answer(404, NOT_FOUND)
    return run


def endless_token(chunked: bool) -> Scenario:
    def run(conn: Conn, req: Request) -> None:
        if req.path == "/token":
            conn.endless(200, chunked=chunked, prefix=b'{"token": "')
        else:
            realm = f"http://{conn.server.host}/token"
            conn.answer(401, b"{}", {"WWW-Authenticate": f'Bearer realm="{realm}",service="hostile"'})
    return run


def endless_error(status: int, chunked: bool = False) -> Scenario:
    def run(conn: Conn, req: Request) -> None:
        conn.endless(status, chunked=chunked, prefix=b'{"errors": [{"code": "X", "message": "')
    return run


def endless_manifest(chunked: bool) -> Scenario:
    def run(conn: Conn, req: Request) -> None:
        if not registry_ok(conn, req):
            conn.endless(200, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, chunked,
                         prefix=b'{"schemaVersion": 2, "x": "')
    return run


def endless_list(conn: Conn, req: Request) -> None:
    if not registry_ok(conn, req):
        conn.endless(200, {"Content-Type": "application/json"}, prefix=b'{"repositories": ["')


def endless_pages(conn: Conn, req: Request) -> None:
    """A catalog that never ends: each page names one repository and links to a next one."""
    if not registry_ok(conn, req):
        n = len(conn.server.requests)
        conn.answer(200, json.dumps({"repositories": [f"r{n}"], "tags": [f"t{n}"]}).encode(),
                    {"Link": f'</v2/_catalog?last=r{n}&n=1000>; rel="next"'})


def stall(conn: Conn, req: Request) -> None:
    conn.stall()


def huge_length(conn: Conn, req: Request) -> None:
    """Promise a body of a terabyte, send a little, then nothing."""
    conn.head(200 if req.path == "/v2/" else 404, {"Docker-Distribution-Api-Version": "registry/2.0"}, 1 << 40)
    conn.send(b"{")
    conn.stall()


def trickled_body(conn: Conn, req: Request) -> None:
    """Every answer's body comes a byte at a time, never quite stalling."""
    conn.head(200 if req.path == "/v2/" else 404, {"Docker-Distribution-Api-Version": "registry/2.0"}, 1 << 20)
    conn.trickle()


def trickled_headers(conn: Conn, req: Request) -> None:
    conn.send(b"HTTP/1.1 200 OK\r\n")
    conn.trickle(b"X-Slow: a\r\n")


def trickled_manifest(conn: Conn, req: Request) -> None:
    if not registry_ok(conn, req):
        conn.head(200, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, 1 << 20)
        conn.trickle()


def serving(img: Crafted, layer: Scenario) -> Scenario:
    """A registry of one real image, `img`, whose layer blob is answered by `layer`."""
    def run(conn: Conn, req: Request) -> None:
        if registry_ok(conn, req):
            return
        if "/manifests/" in req.path:
            conn.answer(200, img.manifest, {"Content-Type": "application/vnd.oci.image.manifest.v1+json",
                                            "Docker-Content-Digest": sha(img.manifest)})
        elif req.path.endswith(sha(img.config)):
            conn.answer(200, img.config)
        else:
            layer(conn, req)
    return run


def stalled_blob(conn: Conn, req: Request) -> None:
    """The layer blob never arrives (its headers do)."""
    conn.head(200, length=len(IMAGE.layers[0]))
    conn.stall()


# A layer big enough to be unpacked on a thread of its own (store.UNPACK_THREAD_SIZE), its blob read in pieces.
BIG_IMAGE = image([tar_of(("big.bin", random.Random(15).randbytes(9 << 20)))])


def overlong_blob(img: Crafted) -> Scenario:
    """The layer blob's true bytes, then more without end: a blob longer than the manifest says is not it."""
    return serving(img, lambda conn, req: conn.endless(200, prefix=img.layers[0]))


@functools.cache
def _bomb() -> bytes:
    """A GiB of JSON string gzipped to about a MiB."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"0" * (1 << 20)
    return z.compress(b'{"schemaVersion": 2, "x": "') + b"".join(z.compress(zeros) for _ in range(1024)) + z.flush()


@functools.cache
def _huge_config() -> tuple[bytes, bytes]:
    """A config of 64 MiB of valid JSON, and a manifest naming it by its true digest and size."""
    config = b'{"x": "' + b"a" * (64 << 20) + b'"}'
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config),
                   "size": len(config)},
        "layers": []}).encode()
    return config, manifest


def huge_config(conn: Conn, req: Request) -> None:
    """An image whose config is far bigger than any real one (a client reads a config whole)."""
    config, manifest = _huge_config()
    if registry_ok(conn, req):
        return
    if "/manifests/" in req.path:
        conn.answer(200, manifest, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    else:
        conn.answer(200, config)


huge_config.prepare = _huge_config


def gzip_bomb(conn: Conn, req: Request) -> None:
    """A manifest sent gzip-encoded: only a client that inflated it would be hurt."""
    if not registry_ok(conn, req):
        conn.answer(200, _bomb(), {"Content-Encoding": "gzip",
                                   "Content-Type": "application/vnd.oci.image.manifest.v1+json"})


gzip_bomb.prepare = _bomb  # made before the client starts: making it takes longer than the client waits


def header_flood(conn: Conn, req: Request) -> None:
    conn.send(b"HTTP/1.1 200 OK\r\n")
    while not conn.server.stopped.is_set():
        conn.send(b"X-Flood: a\r\n" * 4096)


def endless_header_line(conn: Conn, req: Request) -> None:
    conn.send(b"HTTP/1.1 200 OK\r\nX-Long: ")
    while not conn.server.stopped.is_set():
        conn.send(PIECE)


def redirect_loop(conn: Conn, req: Request) -> None:
    conn.answer(307, b"", {"Location": req.path})


# Which commands each scenario is met by (what a command never asks for, it cannot be hurt by).
ALL = ("pull", "push", "login", "search")
CASES: list[tuple[str, Scenario, tuple[str, ...]]] = [
    ("endless /v2/ body", endless_v2(False), ALL),
    ("endless chunked /v2/ body", endless_v2(True), ALL),
    ("endless token body", endless_token(False), ALL),
    ("endless chunked token body", endless_token(True), ALL),
    ("endless 401 body", endless_error(401), ALL),
    ("endless 404 body", endless_error(404), ALL),
    ("endless chunked 500 body", endless_error(500, chunked=True), ALL),
    ("endless manifest", endless_manifest(False), ("pull",)),
    ("endless chunked manifest", endless_manifest(True), ("pull",)),
    ("endless catalog", endless_list, ("search", "pull -a")),
    ("endless pagination", endless_pages, ("search", "pull -a")),
    ("stall", stall, ALL),
    ("huge Content-Length never sent", huge_length, ALL),
    ("trickled body", trickled_body, ALL),
    ("trickled headers", trickled_headers, ALL),
    ("trickled manifest", trickled_manifest, ("pull",)),
    ("stalled layer blob", serving(IMAGE, stalled_blob), ("pull",)),
    ("layer blob longer than its size", overlong_blob(IMAGE), ("pull",)),
    ("big layer blob longer than its size", overlong_blob(BIG_IMAGE), ("pull",)),
    ("huge config", huge_config, ("pull",)),
    ("gzip bomb manifest", gzip_bomb, ("pull",)),
    ("header flood", header_flood, ALL),
    ("endless header line", endless_header_line, ALL),
    ("redirect loop", redirect_loop, ALL),
]
# What the refusal must name, where the reason is the scenario's point (and not, say, a timeout).
REASONS = {"layer blob longer than its size": "size mismatch", "big layer blob longer than its size": "size mismatch"}
# A login needs only the status of GET /v2/: its endless body is never read, and the login succeeds.
SUCCEEDS = {("endless /v2/ body", "login"), ("endless chunked /v2/ body", "login")}


@pytest.fixture(scope="module")
def small_tar(tmp_path_factory):
    path = tmp_path_factory.mktemp("small") / "rootfs.tar"
    path.write_bytes(IMAGE.tars[0])
    return path


def run_bounded(store_root: str, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """The real CLI under an address-space limit, so an unbounded read fails loudly instead of swapping."""
    cmd = [tool("prlimit"), f"--as={ADDRESS_SPACE}", "--", sys.executable, "-m", "dockyard", *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, timeout=240, check=False,
                          env={**os.environ, "DOCKYARD_ROOT": store_root})


@pytest.mark.parametrize("name,scenario,command", [(n, s, c) for n, s, cs in CASES for c in cs],
                         ids=[f"{n}-{c}".replace(" ", "_") for n, _, cs in CASES for c in cs])
def test_hostile_registry(name, scenario, command, dockyard, store_root, small_tar, client_env):
    # Stalls are noticed after a second, and each request is tried twice (one retry after a stall).
    client_env.write_daemon(read_timeout=1, max_download_attempts=2)
    getattr(scenario, "prepare", lambda: None)()
    server = Hostile(scenario)
    try:
        host = server.host
        dockyard("import", str(small_tar), f"{host}/hostile/img:1")  # something in the store, to push
        before = store_snapshot(store_root)
        args = {"pull": ("pull", f"{host}/hostile/img:1"),
                "pull -a": ("pull", "-a", f"{host}/hostile/img"),
                "push": ("push", f"{host}/hostile/img:1"),
                "login": ("login", host, "-u", "alice", "--password-stdin"),
                "search": ("search", f"{host}/img")}[command]
        p = run_bounded(store_root, *args, stdin=b"s3cret")
    finally:
        server.close()
    err = p.stderr.decode(errors="replace")
    assert "Traceback" not in err and "MemoryError" not in err, err
    if (name, command) in SUCCEEDS:
        assert p.returncode == 0 and b"Login Succeeded" in p.stdout, err
        return
    assert p.returncode == 1, (p.returncode, err)
    lines = [l for l in err.splitlines() if l.startswith("Error:")]
    assert len(lines) == 1 and len(lines[0]) < 500, err
    assert REASONS.get(name, "") in lines[0], err
    assert store_snapshot(store_root) == before
    assert not os.listdir(os.path.join(store_root, "layers"))
    assert not client_env.docker_config.exists()  # a failed login saves nothing
