"""A raw HTTP server on 127.0.0.1 that answers each request as a test scenario says: endless bodies, stalls,
floods. For tests of clients (registry client, ADD <url>) against servers that mean harm."""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field
from typing import Callable

PIECE = b"a" * (1 << 20)


@dataclass
class Request:
    method: str
    path: str


class Conn:
    """One client connection as the scenario sees it: raw writes, and helpers for the usual bad answers."""

    def __init__(self, sock: socket.socket, server: "Hostile"):
        self.sock, self.server = sock, server

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def head(self, status: int, headers: dict[str, str] | None = None, length: int | None = None) -> None:
        lines = [f"HTTP/1.1 {status} X"] + [f"{k}: {v}" for k, v in (headers or {}).items()]
        if length is not None:
            lines.append(f"Content-Length: {length}")
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode())

    def answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.head(status, headers, len(body))
        self.send(body)

    def endless(self, status: int, headers: dict[str, str] | None = None, chunked: bool = False,
                prefix: bytes = b"") -> None:
        """A body that never ends (sent as fast as the client takes it), plain until close or chunked."""
        if chunked:
            self.head(status, {**(headers or {}), "Transfer-Encoding": "chunked"})
            piece = b"%x\r\n%s\r\n" % (len(PIECE), PIECE)
            self.send(b"%x\r\n%s\r\n" % (len(prefix), prefix) if prefix else b"")
        else:
            self.head(status, {**(headers or {}), "Connection": "close"})
            piece = PIECE
            self.send(prefix)
        while not self.server.stopped.is_set():
            self.send(piece)

    def trickle(self, data: bytes = b"a") -> None:
        """Send a byte now and then, each soon enough to keep a read timeout from firing, forever."""
        while not self.server.stopped.is_set():
            self.send(data[:1])
            data = data[1:] or data
            self.server.stopped.wait(0.3)

    def stall(self) -> None:
        """Say nothing more, ever (until the test ends)."""
        self.server.stopped.wait()


Scenario = Callable[[Conn, Request], None]


@dataclass
class Hostile:
    """A TCP server on 127.0.0.1 that answers each HTTP request with a scenario; TLS probes are hung up on."""

    scenario: Scenario
    stopped: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.host = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests: list[Request] = []
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.sock.accept()
            except OSError:
                return
            # Each answer's head and body go out in separate writes: without this, Nagle's algorithm holds the body
            # until the client's delayed ACK (40 ms), which a thousand-page catalog turns into most of a minute.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.conns.append(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            if sock.recv(1, socket.MSG_PEEK) in (b"\x16", b""):
                return  # the client tries TLS first; a plain registry drops it
            buf = b""
            while not self.stopped.is_set():
                while b"\r\n\r\n" not in buf:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target = lines[0].split(" ")[:2]
                length = next((int(l.split(":", 1)[1]) for l in lines[1:] if l.lower().startswith("content-length:")), 0)
                while len(buf) < length:  # an upload's body: taken and dropped
                    data = sock.recv(65536)
                    if not data:
                        return
                    buf += data
                buf = buf[length:]
                req = Request(method, target.split("?")[0])
                self.requests.append(req)
                self.scenario(Conn(sock, self), req)
        except OSError:
            pass  # the client gave up on us: as it should
        finally:
            sock.close()

    def close(self) -> None:
        self.stopped.set()
        # close() alone leaves the accept thread blocked (Linux): shutdown wakes it, so it ends.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for s in self.conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
