"""Idle and trickling clients must not starve everyone else, and the server must close them after its timeouts."""

from __future__ import annotations

import os
import selectors
import socket
import subprocess
import sys
import threading
import time

import requests

from regkit import REPO, layer_tar, make_image, push_image, sha256

IDLE = 300  # far more than a thread-per-connection server has handlers (2 workers x 8 threads)
TRICKLING = 30
TIMEOUT = 2  # the server's header and body timeouts in this test, in seconds
PATIENCE = 60  # generous bound for "eventually": a loaded 2-core machine may be slow, never this slow


class IdleFlood:
    """Keeps `n` connections open that send the start of a request (half of them nothing at all) and stop; reopens
    each one the server closes, so the load lasts while the timeouts keep closing them."""

    def __init__(self, port: int, n: int, partial: bytes = b"GET /v2/ HTTP/1.1\r\nHost: x\r\nUser-Agent: slow"):
        self.port, self.n, self.partial = port, n, partial
        self.sel = selectors.DefaultSelector()
        self.closed_by_server = 0
        self.answers: list[bytes] = []
        self.reopen = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _open(self, i: int) -> None:
        s = socket.create_connection(("127.0.0.1", self.port))
        if i % 2:
            s.sendall(self.partial)
        self.sel.register(s, selectors.EVENT_READ, i)

    def __enter__(self) -> "IdleFlood":
        for i in range(self.n):
            self._open(i)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self.sel.select(0.1):
                try:
                    data = key.fileobj.recv(4096)
                except ConnectionResetError:
                    data = b""
                if data:  # it should be closed without one
                    self.answers.append(data)
                self.sel.unregister(key.fileobj)
                key.fileobj.close()
                self.closed_by_server += 1
                if self.reopen:
                    self._open(key.data)

    def open_count(self) -> int:
        return len(self.sel.get_map())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()
        self.sel.close()


class Trickler(threading.Thread):
    """A chunk upload whose body arrives a byte at a time (well within the body timeout) until told to stop,
    then stalls; afterwards it holds what the server answered."""

    def __init__(self, url: str, port: int, repo: str):
        super().__init__(daemon=True)
        r = requests.post(f"{url}/v2/{repo}/blobs/uploads/", timeout=PATIENCE)
        assert r.status_code == 202, r.text
        self.location = r.headers["Location"]
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(f"PATCH {self.location} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                          "Content-Type: application/octet-stream\r\n\r\n".encode())
        self.stall = threading.Event()
        self.sent = 0
        self.answer = b""

    def run(self) -> None:
        while not self.stall.wait(0.3):
            self.sock.sendall(b"x")
            self.sent += 1
        self.sock.settimeout(PATIENCE)
        while chunk := self.sock.recv(4096):
            self.answer += chunk
        self.sock.close()


def _config(tmp_path) -> list[str]:
    path = tmp_path / "registry.toml"
    path.write_text(f"[timeouts]\nheader = {TIMEOUT}\nbody = {TIMEOUT}\n")
    return ["--config", str(path)]


def test_idle_and_trickling_clients_do_not_starve_others(make_server, tmp_path):
    server = make_server("--workers", "2", *_config(tmp_path))
    img = make_image([layer_tar({"base": os.urandom(200_000)})])
    assert push_image(server.url, "slow/app", img, "v1").status_code == 201
    tricklers = [Trickler(server.url, server.port, "slow/up") for _ in range(TRICKLING)]
    for t in tricklers:
        t.start()
    with IdleFlood(server.port, IDLE) as flood:
        with requests.Session() as client:
            for i in range(300):
                r = client.get(f"{server.url}/v2/slow/app/manifests/v1", timeout=PATIENCE,
                               headers={"Accept": img.media_type})
                assert r.status_code == 200 and r.content == img.manifest
                if i % 50 == 0:
                    r = client.get(f"{server.url}/v2/slow/app/blobs/{sha256(img.layers[0])}", timeout=PATIENCE)
                    assert r.status_code == 200 and r.content == img.layers[0]
            # A whole push goes through too, with fresh connections each request.
            other = make_image([layer_tar({"other": os.urandom(100_000)})])
            assert push_image(server.url, "slow/other", other, "v1").status_code == 201
        assert all(t.is_alive() for t in tricklers), "a trickling upload was cut off while it kept sending"
        _wait_closed(flood)

    # Stalled bodies end after the body timeout with an error answer; each session stays resumable.
    for t in tricklers:
        t.stall.set()
    for t in tricklers:
        t.join(PATIENCE)
        assert not t.is_alive(), "a stalled upload was never closed by the server"
        assert t.sent > 0 and t.answer.startswith(b"HTTP/1.1 400"), t.answer[:300]
        assert b"BLOB_UPLOAD_INVALID" in t.answer
    t = tricklers[0]
    status = requests.get(server.url + t.location, timeout=PATIENCE)
    assert status.status_code == 204
    stored = (server.root / "uploads" / t.location.rsplit("/", 1)[1] / "data").stat().st_size
    assert stored <= t.sent and status.headers["Range"] == f"0-{max(stored - 1, 0)}"
    blob = b"x" * stored + b"the rest"
    r = requests.patch(server.url + t.location, data=blob[stored:], timeout=PATIENCE,
                       headers={"Content-Range": f"{stored}-{len(blob) - 1}"})
    assert r.status_code == 202, r.text
    r = requests.put(server.url + r.headers["Location"], params={"digest": sha256(blob)}, timeout=PATIENCE)
    assert r.status_code == 201, r.text
    assert requests.get(f"{server.url}/v2/slow/up/blobs/{sha256(blob)}", timeout=PATIENCE).content == blob


def _wait_closed(flood: IdleFlood) -> None:
    """Stop replacing closed connections; the server must close every one still open after its header timeout."""
    flood.reopen = False
    deadline = time.monotonic() + PATIENCE
    while flood.open_count() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert flood.open_count() == 0, f"{flood.open_count()} idle connections still open"
    assert flood.closed_by_server >= flood.n and not flood.answers, flood.answers[:3]


def test_stalled_tls_handshakes_are_closed(make_server, tmp_path):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run([sys.executable, "-m", "dockyard", "registry", "cert", "127.0.0.1", "--cert", str(cert),
                    "--key", str(key)], check=True, capture_output=True, cwd=REPO)
    server = make_server("--tls-cert", str(cert), "--tls-key", str(key), *_config(tmp_path), scheme="https",
                         verify=str(cert))
    # Half send nothing, half the first bytes of a TLS record, then stall mid-handshake.
    with IdleFlood(server.port, IDLE, partial=b"\x16\x03\x01") as flood:
        for _ in range(100):  # each on a new connection, so each has a handshake of its own
            assert requests.get(f"{server.url}/v2/", verify=str(cert), timeout=PATIENCE).status_code == 200
        _wait_closed(flood)
