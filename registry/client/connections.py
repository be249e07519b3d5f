"""HTTP/1.1 on http.client: keep-alive connections pooled per origin, streamed responses, zero-copy file bodies.

The client needs little of a general HTTP library, and `requests` costs ~40 ms to import on every push and pull.
"""

from __future__ import annotations

import _thread
import heapq
import http.client
import json
import os
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from dockyard.forks import joined_threads_gone

REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 10
# Bytes per sendfile(2) call: big enough to be cheap, small enough for progress and cancellation.
SEND_SECTION = 1 << 20
# An error body is a few hundred bytes; never buffer more of one than this.
ERROR_BODY_LIMIT = 64 << 10
# A server trickling a byte now and then never trips the read timeout: an answer's headers, and a body read into
# memory, must be complete within this many read timeouts.
ANSWER_READS = 4


def proxy_for(scheme: str, netloc: str) -> str | None:
    """The proxy URL that HTTP_PROXY/HTTPS_PROXY name for an origin, unless NO_PROXY exempts it.

    As in Go (and so Docker), loopback hosts are never proxied.
    """
    proxy = os.environ.get(f"{scheme}_proxy") or os.environ.get(f"{scheme.upper()}_PROXY")
    if not proxy:
        return None
    import ipaddress
    import urllib.request  # ~10 ms to import: only when a proxy is configured

    host = urlsplit(f"//{netloc}").hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback or urllib.request.proxy_bypass(netloc):  # on Linux: the NO_PROXY check
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def _proxy_auth(proxy: str) -> dict[str, str]:
    """A Proxy-Authorization header for credentials in the proxy URL, if it has any."""
    import base64
    from urllib.parse import unquote

    u = urlsplit(proxy)
    if u.username is None:
        return {}
    token = base64.b64encode(f"{unquote(u.username)}:{unquote(u.password or '')}".encode()).decode()
    return {"Proxy-Authorization": f"Basic {token}"}


class TransportError(Exception):
    """A request failed below HTTP (DNS, connect, TLS, reset, timeout); `cause` is the underlying error."""

    def __init__(self, cause: BaseException, connecting: bool):
        super().__init__(str(cause) or type(cause).__name__)
        self.cause, self.connecting = cause, connecting


class BodyTooLarge(Exception):
    """A response body went past the bytes the client holds in memory for it."""

    def __init__(self, limit: int):
        super().__init__(f"more than {limit} bytes")
        self.limit = limit


class FileBody:
    """A byte range of a file as a request body: sent with sendfile(2) on plain sockets, counted as it goes."""

    def __init__(self, path: str, offset: int, length: int, on_sent: Callable[[int], None] = lambda n: None,
                 stop: Callable[[], None] = lambda: None):
        self.path, self.offset, self.length = path, offset, length
        # `stop` raises to abandon the transfer (a sibling failed); called between sections.
        self.on_sent, self.stop = on_sent, stop

    def __len__(self) -> int:
        return self.length

    def send(self, sock: socket.socket) -> None:
        """Write the range to the socket: zero-copy when plain, in big pieces through TLS."""
        with open(self.path, "rb", buffering=0) as f:
            done = 0
            while done < self.length:
                self.stop()
                size = min(SEND_SECTION, self.length - done)
                if isinstance(sock, ssl.SSLSocket):
                    # SSLSocket.sendfile would fall back to 8 KiB sends.
                    f.seek(self.offset + done)
                    piece = f.read(size)
                    sock.sendall(piece)
                    n = len(piece)
                else:
                    n = sock.sendfile(f, self.offset + done, size)
                if not n:
                    raise OSError(f"{self.path} shrank while it was being sent")
                done += n
                self.on_sent(n)


Body = bytes | FileBody | None


class TooSlow(TimeoutError):
    """An answer took longer than its deadline, though bytes kept coming."""


class Watchdog:
    """Cuts a connection whose answer is not in by a deadline; `fired` tells a failure it caused from others."""

    def __init__(self, sock: socket.socket, seconds: float):
        self.sock, self.seconds, self.fired = sock, seconds, False
        self.deadline = time.monotonic() + seconds
        self.cancelled = False
        _DEADLINES.add(self)

    def fire(self) -> None:
        self.fired = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # a blocked read returns at once
        except OSError:
            pass

    def cancel(self) -> None:
        self.cancelled = True

    def error(self, e: BaseException) -> TransportError:
        """The TransportError for a failure while armed: a timeout when the deadline caused it."""
        if self.fired:
            return TransportError(TooSlow(f"no complete answer within {self.seconds:g} s"), connecting=False)
        return TransportError(e, connecting=False)

    def check(self) -> None:
        """Raise when the deadline passed: what was read since may look whole (the cut reads as a clean end)."""
        if self.fired:
            raise self.error(TimeoutError())


class _Deadlines:
    """One thread firing every armed Watchdog at its deadline: a timer thread per request cost a thread start each
    (a pull of 40 small layers made ~45 of them).

    Its condition is made at the first use in each process, so a gevent worker (the pull-through cache) gets
    gevent's, patched in after the fork: a real lock there would block the worker's hub in wait(), and a greenlet
    switch inside it would let another greenlet of the same thread enter. An idle thread ends before a fork (a
    pull then a container start): a fork copying threads is unsafe, and Python 3.12 warns of it.
    """

    def __init__(self) -> None:
        self._made = _thread.allocate_lock()  # guards the making and ending of the thread
        self._forked()
        os.register_at_fork(before=self._end_idle, after_in_child=self._forked)

    def _forked(self) -> None:
        self._cond: threading.Condition | None = None
        self._thread: threading.Thread | None = None
        self._heap: list[tuple[float, int, Watchdog]] = []
        self._count = 0  # ties on the deadline never compare watchdogs

    def _condition(self) -> threading.Condition:
        with self._made:
            if self._cond is None:
                self._cond = threading.Condition()
                self._thread = threading.Thread(target=self._run, args=(self._cond,), name="http-deadlines",
                                                daemon=True)
                self._thread.start()
            return self._cond

    def _end_idle(self) -> None:
        """End the thread when no watchdog is armed; the next add() starts another."""
        with self._made:
            cond, thread = self._cond, self._thread
            if cond is None or thread is None:
                return
            with cond:
                if not all(w.cancelled for _, _, w in self._heap):
                    return  # a request in another thread: the fork copies threads anyway
                self._heap.clear()
                self._cond = self._thread = None
                cond.notify()
            thread.join()
        joined_threads_gone()

    def add(self, w: Watchdog) -> None:
        while True:
            cond = self._cond or self._condition()
            with cond:
                if self._cond is not cond:
                    continue  # its thread ended meanwhile
                while self._heap and self._heap[0][2].cancelled:  # answered: drop them here, not on a wake-up
                    heapq.heappop(self._heap)
                self._count += 1
                heapq.heappush(self._heap, (w.deadline, self._count, w))
                if self._heap[0][2] is w:  # earlier than what the thread sleeps until
                    cond.notify()
                return

    def _run(self, cond: threading.Condition) -> None:
        while True:
            with cond:
                if self._cond is not cond:
                    return  # ended before a fork
                due: list[Watchdog] = []
                now = time.monotonic()
                while self._heap and (self._heap[0][2].cancelled or self._heap[0][0] <= now):
                    w = heapq.heappop(self._heap)[2]
                    if not w.cancelled:
                        due.append(w)
                if not due:
                    cond.wait(self._heap[0][0] - now if self._heap else None)
            for w in due:
                w.fire()


_DEADLINES = _Deadlines()


class Response:
    """A status, headers and a body to read (all at once, or streamed with read/readinto); close() when done.

    Until the body is buffered or disarm() is called, a watchdog bounds how long the answer may take.
    """

    def __init__(self, pool: Pool, origin: tuple[str, str], conn: http.client.HTTPConnection,
                 resp: http.client.HTTPResponse, url: str, watchdog: Watchdog):
        self.status_code = resp.status
        self.headers = resp.headers
        self.url = url
        self._pool, self._origin, self._resp = pool, origin, resp
        self._conn: http.client.HTTPConnection | None = conn  # None once closed
        self._watchdog = watchdog

    def disarm(self) -> None:
        """Let the body take its time (a blob streamed to disk; each read is still bounded by the read timeout)."""
        self._watchdog.cancel()

    def read(self, n: int = -1) -> bytes:
        return self._resp.read(None if n is None or n < 0 else n)

    def readinto(self, buf) -> int:
        return self._resp.readinto(buf)

    def buffer(self, limit: int, truncate: bool = False) -> None:
        """Read the body now and give the connection back; read() then serves the copy.

        A body longer than `limit` raises BodyTooLarge, or with `truncate` is cut there (and its connection
        dropped): a registry decides how much it sends, so nothing is read without a bound.
        """
        import io

        try:
            data = self._resp.read(limit + (not truncate))
            self._watchdog.check()
        except (OSError, http.client.HTTPException) as e:
            raise self._watchdog.error(e) from None
        finally:
            self.close()
        if len(data) > limit:
            raise BodyTooLarge(limit)
        self._resp = io.BytesIO(data)  # type: ignore[assignment]

    def json(self) -> Any:
        """The body parsed as JSON (ValueError when it is not, or nests too deep to parse)."""
        try:
            return json.loads(self.read())
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None

    def close(self) -> None:
        """Give the connection back when the body was read to its end; otherwise drop it."""
        self._watchdog.cancel()
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._resp.isclosed() and not self._resp.will_close and not self._watchdog.fired:
            self._pool.put(self._origin, conn)
        else:
            self._resp.close()
            conn.close()

    def __enter__(self) -> Response:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Pool:
    """Idle keep-alive connections per (scheme, host:port), safe to use from many threads."""

    def __init__(self, context: Callable[[], ssl.SSLContext], user_agent: str, connect_timeout: float):
        # The TLS context is made on first HTTPS use: loading CA certificates costs ~20 ms.
        self._context_factory = context
        self._context: ssl.SSLContext | None = None
        self.user_agent, self.connect_timeout = user_agent, connect_timeout
        self._idle: dict[tuple[str, str], list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def put(self, origin: tuple[str, str], conn: http.client.HTTPConnection) -> None:
        with self._lock:
            self._idle.setdefault(origin, []).append(conn)

    def _get(self, origin: tuple[str, str]) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection still open (a peer may have closed it meanwhile), else a new unconnected one."""
        while True:
            with self._lock:
                conn = self._idle.get(origin, []).pop() if self._idle.get(origin) else None
            if conn is None:
                break
            if conn.sock is not None and not select.select([conn.sock], [], [], 0)[0]:
                return conn, True
            # Readable while idle means closed (or garbage): not reusable.
            conn.close()
        scheme, netloc = origin
        if scheme not in ("http", "https"):
            raise http.client.InvalidURL(f"unsupported URL scheme {scheme!r}")
        proxy = proxy_for(scheme, netloc)
        address = urlsplit(proxy).netloc.rpartition("@")[2] if proxy else netloc
        if scheme == "http":
            return http.client.HTTPConnection(address, timeout=self.connect_timeout), False
        with self._lock:
            if self._context is None:
                self._context = self._context_factory()
        conn = http.client.HTTPSConnection(address, timeout=self.connect_timeout, context=self._context)
        if proxy:
            # CONNECT through the proxy; TLS (and its name check) is then with the registry itself.
            conn.set_tunnel(netloc, headers=_proxy_auth(proxy))
        return conn, False

    def request(self, method: str, url: str, headers: dict[str, str] | None = None,
                params: dict | Sequence[tuple[str, str]] | None = None, body: Body = None,
                read_timeout: float = 300, follow: bool = False) -> Response:
        """Send one request and return its response with headers read; the body is left to the caller."""
        if params:
            url += ("&" if urlsplit(url).query else "?") + urlencode(params, doseq=True)
        headers = dict(headers or {})
        for _ in range(MAX_REDIRECTS + 1):
            r = self._send(method, url, headers, body, read_timeout)
            location = r.headers.get("Location")
            if not (follow and r.status_code in REDIRECTS and location):
                return r
            r.buffer(ERROR_BODY_LIMIT, truncate=True)
            target = urljoin(url, location)
            if urlsplit(target).netloc != urlsplit(url).netloc:
                # Credentials are for the registry, not for wherever it sends us (e.g. a storage bucket).
                headers.pop("Authorization", None)
            url = target
        raise TransportError(OSError(f"more than {MAX_REDIRECTS} redirects"), False)

    def _send(self, method: str, url: str, headers: dict[str, str], body: Body, read_timeout: float) -> Response:
        u = urlsplit(url)
        origin = (u.scheme, u.netloc)
        target = (u.path or "/") + (f"?{u.query}" if u.query else "")
        plain_proxy = proxy_for(u.scheme, u.netloc) if u.scheme == "http" else None
        if plain_proxy:
            # A plain-HTTP proxy takes the absolute URL (http.client then sends Host for the registry).
            target = f"http://{u.netloc}{target}"
            headers = {**headers, **_proxy_auth(plain_proxy)}
        conn = None
        try:
            conn, reused = self._get(origin)
            if not reused:
                conn.connect()
        except (OSError, http.client.HTTPException) as e:
            if conn is not None:
                conn.close()  # a failed TLS handshake leaves the TCP socket open
            raise TransportError(e, connecting=True) from None
        try:
            conn.sock.settimeout(read_timeout)
            conn.putrequest(method, target, skip_accept_encoding=True)
            conn.putheader("User-Agent", self.user_agent)
            # Blobs are hashed as sent: no transfer compression.
            conn.putheader("Accept-Encoding", "identity")
            for k, v in headers.items():
                conn.putheader(k, v)
            if body is not None or method in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(body) if body is not None else 0))
            conn.endheaders(body if isinstance(body, bytes) else None)
            if isinstance(body, FileBody):
                body.send(conn.sock)
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise TransportError(e, connecting=False) from None
        except BaseException:
            conn.close()
            raise
        # Sent: from here the answer runs against the watchdog.
        watchdog = Watchdog(conn.sock, read_timeout * ANSWER_READS)
        try:
            resp = conn.getresponse()
            watchdog.check()
        except (OSError, http.client.HTTPException) as e:
            watchdog.cancel()
            conn.close()
            raise watchdog.error(e) from None
        except BaseException:
            watchdog.cancel()
            conn.close()
            raise
        return Response(self, origin, conn, resp, url, watchdog)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for c in conns:
                c.close()
