"""ADD <url> from a server that means harm: a huge promised size, a body cut short, a stall, a header flood. Each
build fails with one error line naming the URL, and nothing is built."""

from __future__ import annotations

import json

import pytest

from hostile import Conn, Hostile, Request


def huge_length(conn: Conn, req: Request) -> None:
    conn.head(200, length=1 << 50)
    conn.stall()


def cut_short(conn: Conn, req: Request) -> None:
    conn.head(200, {"Connection": "close"}, length=1000)
    conn.send(b"x" * 10)
    conn.sock.shutdown(2)


def stall(conn: Conn, req: Request) -> None:
    conn.head(200, length=1000)
    conn.stall()


def header_flood(conn: Conn, req: Request) -> None:
    conn.send(b"HTTP/1.1 200 OK\r\n")
    while not conn.server.stopped.is_set():
        conn.send(b"X-Flood: a\r\n" * 4096)


CASES = {"huge Content-Length": (huge_length, "larger than"), "body cut short": (cut_short, "closed"),
         "stall": (stall, "timed out"), "header flood": (header_flood, "more than 100 headers")}


@pytest.mark.parametrize("case", list(CASES))
def test_add_url_from_hostile_server(case, dockyard, store_root, tmp_path, monkeypatch):
    scenario, words = CASES[case]
    config = tmp_path / "daemon.json"
    config.write_text(json.dumps({"read-timeout": 1}))
    monkeypatch.setenv("DOCKYARD_CONFIG", str(config))
    server = Hostile(scenario)
    try:
        ctx = tmp_path / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(f"FROM scratch\nADD http://{server.host}/file /file\n")
        # A stall is noticed after the 1 s read timeout; the old 60 s one would outlast this.
        res = dockyard("build", "-t", "hostile", str(ctx), check=False, timeout=50)
    finally:
        server.close()
    assert res.code == 1 and "Traceback" not in res.err, res.err
    last = res.err.strip().splitlines()[-1]
    assert last.startswith("Error: ") and f"ADD http://{server.host}/file" in last and words in last, res.err
    assert dockyard("images", "-q").out == ""
