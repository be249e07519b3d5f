"""The server's housekeeping: metrics that outlive a full disk, no state shared with other registries, and a
SIGTERM that stops it at once but lets uploads in flight finish."""

from __future__ import annotations

import errno
import http.client
import json
import os
import select
import signal
import subprocess
import threading
import time
from pathlib import Path

import requests

from regkit import Server, free_port, sha256
from support import wait_for

PATIENCE = 60  # generous bound for "eventually"


def _counted(metrics: Path, route: str) -> int:
    """GET requests to `route` recorded in the metrics files."""
    total = 0
    for path in metrics.glob("*.json"):
        for r, method, _, count in json.loads(path.read_text())["requests"]:
            total += count if (r, method) == (route, "GET") else 0
    return total


def test_metrics_flush_survives_a_full_disk(make_server, tmp_path):
    root = tmp_path / "root"
    metrics = root / "metrics"
    metrics.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(metrics)], check=True)
    try:
        server = make_server("--workers", "1", root=root)
        assert requests.get(f"{server.url}/v2/").status_code == 200
        wait_for(lambda: _counted(metrics, "/v2/") == 1, PATIENCE, "the first request flushed")
        filler = metrics / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError as e:
            assert e.errno == errno.ENOSPC
        finally:
            os.close(fd)
        for _ in range(5):
            assert requests.get(f"{server.url}/v2/").status_code == 200
        wait_for(lambda: "cannot write metrics" in server.log.read_text() or "Traceback" in server.log.read_text(),
                 PATIENCE, "a flush failed on the full disk")
        filler.unlink()
        wait_for(lambda: _counted(metrics, "/v2/") == 6, PATIENCE, "the counts written once space is back")
        assert not [p for p in metrics.iterdir() if p.name.startswith(".tmp-")], "a failed flush left a temp file"
    finally:
        subprocess.run(["umount", "-l", str(metrics)], check=True)


def test_registries_share_no_gunicorn_control_socket(tmp_path, monkeypatch):
    """gunicorn's default control socket is $XDG_RUNTIME_DIR/gunicorn.ctl or $HOME/.gunicorn/gunicorn.ctl: one
    path for every registry on the host, so a second one would take over the first one's control."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    servers = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        servers.append(Server(tmp_path / name / "root", free_port(), [], env={"HOME": str(home)}))
    try:
        for server in servers:
            server.start()
            assert requests.get(f"{server.url}/v2/").status_code == 200
    finally:
        for server in servers:
            server.stop()
    assert list(home.iterdir()) == []
    for server in servers:
        assert not list(server.root.rglob("*.ctl"))
        server.assert_clean_log()


def test_sigterm_closes_idle_connections_and_lets_uploads_finish(make_server):
    """On SIGTERM each worker closes its kept-alive connections at once, finishes the upload in flight, and the
    server exits as soon as it is done, not after gunicorn's graceful timeout (10 s)."""
    server = make_server("--workers", "2")
    idle = []
    for _ in range(8):  # kept-alive connections, spread over both workers
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=PATIENCE)
        conn.request("GET", "/v2/")
        assert conn.getresponse().read() == b"{}"
        idle.append(conn.sock)
    blob = os.urandom(1 << 20)
    upload = http.client.HTTPConnection("127.0.0.1", server.port, timeout=PATIENCE)
    upload.putrequest("POST", f"/v2/slow/blobs/uploads/?digest={sha256(blob)}")
    upload.putheader("Content-Length", str(len(blob)))
    upload.endheaders()
    upload.send(blob[:1000])  # the request is in flight: the server reads its body
    time.sleep(0.5)
    release, answered = threading.Event(), []

    def finish_upload() -> None:
        release.wait(PATIENCE)
        upload.send(blob[1000:])
        answered.append(upload.getresponse().status)

    finisher = threading.Thread(target=finish_upload)
    finisher.start()
    start = time.monotonic()
    os.killpg(server.proc.pid, signal.SIGTERM)
    try:
        for sock in idle:  # each is closed by the server (EOF), while the upload still waits for its body
            assert select.select([sock], [], [], 5)[0], "an idle connection was kept open after SIGTERM"
            assert sock.recv(1) == b""
        assert server.proc.poll() is None and not answered
    finally:
        release.set()
        finisher.join()
    assert answered == [201]
    server.proc.wait(timeout=PATIENCE)
    assert time.monotonic() - start < 5, "the server waited for idle connections"
    server.assert_clean_log()
    restarted = make_server(root=server.root)
    head = requests.head(f"{restarted.url}/v2/slow/blobs/{sha256(blob)}")
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(blob))
