"""The client's HTTP layer against real loopback servers: redirects, keep-alive reuse, file bodies."""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from registry.client.connections import FileBody, Pool, TransportError


class Recorder(BaseHTTPRequestHandler):
    """Answers by path; records each request's headers, body and client port on the server."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _answer(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.seen.append((self.path, dict(self.headers), self.client_address[1], b""))
        if self.path.startswith("/redirect?"):
            self._answer(307, headers={"Location": self.path.split("?to=", 1)[1]})
        elif self.path == "/drop":
            # Closes the connection after answering without saying so, as at a keep-alive timeout.
            self.close_connection = True
            self._answer(200, b"bye")
        else:
            self._answer(200, f"hello from {self.path}".encode())

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append((self.path, dict(self.headers), self.client_address[1], body))
        self._answer(201)


class Server(ThreadingHTTPServer):
    """Signals each connection it has closed."""

    def shutdown_request(self, request) -> None:
        super().shutdown_request(request)
        self.closed.set()


@pytest.fixture
def servers():
    """Two recording HTTP servers, on 127.0.0.1 and 127.0.0.2 (different hosts to the client)."""
    out = []
    for ip in ("127.0.0.1", "127.0.0.2"):
        srv = Server((ip, 0), Recorder)
        srv.seen, srv.closed = [], threading.Event()
        threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
        out.append(srv)
    yield out
    for srv in out:
        srv.shutdown()
        srv.server_close()


def _url(srv: ThreadingHTTPServer, path: str) -> str:
    return f"http://{srv.server_address[0]}:{srv.server_address[1]}{path}"


def _pool() -> Pool:
    return Pool(ssl.create_default_context, "dockyard-test", 5)


def test_redirect_keeps_credentials_only_on_the_same_host(servers):
    a, b = servers
    pool = _pool()
    secret = {"Authorization": "Basic c2VjcmV0"}
    r = pool.request("GET", _url(a, "/redirect?to=" + _url(b, "/blob")), secret, follow=True)
    assert (r.status_code, r.read()) == (200, b"hello from /blob")
    r.close()
    assert a.seen[-1][1].get("Authorization") == secret["Authorization"]
    assert "Authorization" not in b.seen[-1][1]
    r = pool.request("GET", _url(a, "/redirect?to=/same"), secret, follow=True)
    assert r.read() == b"hello from /same"
    r.close()
    assert a.seen[-1][0] == "/same" and a.seen[-1][1].get("Authorization") == secret["Authorization"]
    # Without follow, the redirect itself is the answer.
    r = pool.request("GET", _url(a, "/redirect?to=/same"), secret)
    assert r.status_code == 307
    r.close()
    pool.close()


def test_connections_are_reused_and_a_closed_one_replaced(servers):
    a, _ = servers
    pool = _pool()
    for path in ("/one", "/two", "/drop", "/three"):
        r = pool.request("GET", _url(a, path))
        r.read()
        r.close()
        if path == "/drop":
            assert a.closed.wait(10)
    ports = [port for _, _, port, _ in a.seen]
    assert ports[0] == ports[1] == ports[2]  # one keep-alive connection
    assert ports[3] != ports[2]  # the server closed it while idle; a new one was made, without an error
    # A body left unread makes its connection unusable: it is dropped, not handed to the next request.
    r = pool.request("GET", _url(a, "/four"))
    r.close()
    r = pool.request("GET", _url(a, "/five"))
    assert r.read() == b"hello from /five"
    r.close()
    assert a.seen[-1][2] != a.seen[-2][2]
    pool.close()


def test_file_body_sends_exactly_its_range(servers, tmp_path):
    a, _ = servers
    data = bytes(range(256)) * 20000  # ~5 MB: several sendfile sections
    path = tmp_path / "blob"
    path.write_bytes(data)
    sent = []
    pool = _pool()
    r = pool.request("PUT", _url(a, "/upload"), body=FileBody(str(path), 1000, len(data) - 3000, sent.append))
    assert r.status_code == 201
    r.close()
    assert a.seen[-1][3] == data[1000:-2000]
    assert sum(sent) == len(data) - 3000 and len(sent) > 1
    pool.close()


def test_http_proxy_from_the_environment(servers, monkeypatch):
    """HTTP_PROXY gets absolute-form requests (with its credentials); NO_PROXY and loopback hosts go direct."""
    proxy, direct = servers
    monkeypatch.setenv("HTTP_PROXY", "http://bob:p%40ss@" + _url(proxy, "").split("://", 1)[1])
    monkeypatch.setenv("NO_PROXY", "skip.example")
    pool = _pool()
    r = pool.request("GET", "http://registry.example:5000/v2/")
    assert r.read() == b"hello from http://registry.example:5000/v2/"
    r.close()
    path, headers, _, _ = proxy.seen[-1]
    assert headers["Host"] == "registry.example:5000"
    assert headers["Proxy-Authorization"] == "Basic Ym9iOnBAc3M="  # bob:p@ss
    with pytest.raises(TransportError):  # not proxied, so the name must resolve (it does not)
        pool.request("GET", "http://skip.example:5000/v2/")
    r = pool.request("GET", _url(direct, "/v2/"))
    assert r.read() == b"hello from /v2/"
    r.close()
    assert len(proxy.seen) == 1 and direct.seen[-1][0] == "/v2/"
    pool.close()


_FORK_AFTER_A_REQUEST = """
import os, ssl, sys, threading
from registry.client.connections import Pool
pool = Pool(ssl.create_default_context, "dockyard-test", 5)
r = pool.request("GET", sys.argv[1])
r.read()
r.close()
threads = threading.active_count()
pid = os.fork()
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
print(threads, threading.active_count())
# The deadline thread comes back with the next armed watchdog, and fires it.
import socket, time
from registry.client.connections import Watchdog
a, b = socket.socketpair()
w = Watchdog(a, 0.2)
time.sleep(1)
print("fired" if w.fired else "not fired", threading.active_count())
a.close()
b.close()
"""


def test_the_deadline_thread_ends_before_a_fork(servers):
    """A pull then a fork (a container start) copies no idle thread; Python 3.12 would warn of one."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-W", "error", "-c", _FORK_AFTER_A_REQUEST, _url(servers[0], "/x")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["2 1", "fired 2"]  # it ran for the request, was gone at the fork, came back
