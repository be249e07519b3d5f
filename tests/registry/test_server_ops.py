"""The server's housekeeping: metrics that outlive a full disk, and no state shared with other registries."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import time
from pathlib import Path

import requests

from regkit import Server, free_port

PATIENCE = 60  # generous bound for "eventually"


def _counted(metrics: Path, route: str) -> int:
    """GET requests to `route` recorded in the metrics files."""
    total = 0
    for path in metrics.glob("*.json"):
        for r, method, _, count in json.loads(path.read_text())["requests"]:
            total += count if (r, method) == (route, "GET") else 0
    return total


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.1)


def test_metrics_flush_survives_a_full_disk(make_server, tmp_path):
    root = tmp_path / "root"
    metrics = root / "metrics"
    metrics.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(metrics)], check=True)
    try:
        server = make_server("--workers", "1", root=root)
        assert requests.get(f"{server.url}/v2/").status_code == 200
        _wait_for(lambda: _counted(metrics, "/v2/") == 1, "the first request flushed")
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
        _wait_for(lambda: "cannot write metrics" in server.log.read_text() or "Traceback" in server.log.read_text(),
                  "a flush failed on the full disk")
        filler.unlink()
        _wait_for(lambda: _counted(metrics, "/v2/") == 6, "the counts written once space is back")
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
