"""The gunicorn worker: gevent greenlets, so an idle or slow client costs a greenlet and a socket, never a request
handler, with read timeouts that close such clients, and blob bodies still sent by sendfile(2). On SIGTERM it stops at
once when no request is in flight: connections idle between requests are closed, requests in flight finish.

gevent makes sockets cooperative but not file locks, fsync or sendfile; this worker makes those three cooperative
too, so no greenlet stalls the others: a second request on a locked upload session, or a slow disk, must not freeze
every connection of the worker."""

from __future__ import annotations

import fcntl
import functools
import gc
import os
import signal
import socket
import ssl
import struct
import warnings
from typing import BinaryIO

import gevent
from gevent import socket as gsocket
from gevent.event import Event
from gevent.hub import get_hub
from gevent.monkey import MonkeyPatchWarning
from gevent.pool import Pool
from gevent.server import StreamServer
from gunicorn.sock import ssl_context
from gunicorn.workers.ggevent import GeventWorker

from registry import background
from registry.context import ResponseAborted

# Longest pause between tries of a contended lock: short against the time locks are held (one request).
_LOCK_POLL_MAX = 0.05
# Linux's struct tcp_info up to tcpi_unacked, which for a listening socket is the length of its accept queue.
_TCP_INFO_ACCEPT_QUEUE = struct.Struct("=24xI")
# Bytes one response may send before other connections get a turn (a few ms on loopback).
_SENDFILE_SLICE = 16 << 20


class RegistryWorker(GeventWorker):
    """gunicorn's gevent worker with the registry's header and body timeouts."""

    def patch(self) -> None:
        with warnings.catch_warnings():
            # It warns that ssl was imported before patching (the master loads the app); the server's TLS goes
            # through ssl.SSLContext, which the patch does replace.
            warnings.simplefilter("ignore", MonkeyPatchWarning)
            super().patch()
        _make_cooperative()

    def init_process(self) -> None:
        # Set on SIGTERM; wakes run()'s loop.
        self.stopping = Event()
        # The greenlets of connections waiting for their next request (see timeout_ctx).
        self.idle: set[gevent.Greenlet] = set()
        # gunicorn installs the worker's handlers only after patching (slow on a busy machine); until then the
        # master's handler, inherited through fork, would swallow a SIGTERM and the worker would serve on until
        # the master's graceful timeout ran out.
        signal.signal(signal.SIGTERM, self.handle_exit)
        super().init_process()

    def handle_exit(self, sig, frame) -> None:
        super().handle_exit(sig, frame)
        self.stopping.set()

    def run(self) -> None:
        """gunicorn's gevent worker loop, but its graceful stop waits for requests in flight only, and no longer
        than they take (gunicorn's polls each second, and waits out every idle kept-alive connection)."""
        # What loading made (the app, its modules, with --projects SQLAlchemy and the migrations' tooling) lives as
        # long as the worker: out of the collector's generations, a full collection no longer walks it each time.
        gc.collect()
        gc.freeze()
        # The pool runs the fsyncs (see _make_cooperative); its size bounds how many go on at once.
        get_hub().threadpool.maxsize = self.app.registry_config.threads
        ssl_args = {"ssl_context": ssl_context(self.cfg)} if self.cfg.is_ssl else {}
        servers = []
        for s in self.sockets:
            s.setblocking(1)
            server = _SharedListenerServer(s, self.cfg.workers, handle=functools.partial(self.handle, s),
                                           spawn=Pool(self.worker_connections), **ssl_args)
            server.start()
            servers.append(server)
        while self.alive:
            self.notify()  # the arbiter's heartbeat
            self.stopping.wait(1.0)
        for server in servers:
            server.close()  # accept no more
        for greenlet in list(self.idle):
            greenlet.kill(_Stopping, block=False)
        try:
            with gevent.Timeout(self.cfg.graceful_timeout, False):  # False: ends the block quietly when it fires
                for server in servers:
                    server.pool.join()
                return
            self.log.warning("Worker graceful timeout (pid:%s)", self.pid)
            for server in servers:
                server.stop(timeout=1)
        finally:
            background.stop_all()  # the last pulls' events and metrics written, while the hub still runs

    def timeout_ctx(self) -> _WaitForRequest:
        """The wait for a request's line and headers, on a new or a kept-alive connection: bounded by gunicorn's
        keep-alive timer (set to the header timeout in serve.py), and ended when the worker stops."""
        return _WaitForRequest(self, super().timeout_ctx())

    def handle(self, listener, client, addr) -> None:
        """Serve one connection, closing it if its TLS handshake does not finish within the header timeout."""
        if isinstance(client, ssl.SSLSocket):
            try:
                with gevent.Timeout(self.app.registry_config.header_timeout):
                    client.do_handshake()
            except (gevent.Timeout, OSError) as e:
                self.log.debug("TLS handshake with %s failed: %s", addr, e or "timed out")
                client.close()
                return
        super().handle(listener, client, addr)

    def handle_request(self, listener_name, req, sock, addr) -> None:
        """Serve one request with every body read and response write bounded by the body (idle) timeout."""
        sock.settimeout(self.app.registry_config.body_timeout)
        try:
            super().handle_request(listener_name, req, sock, addr)
        except TimeoutError:
            # The client stopped reading the response: drop the connection (a body read that timed out became an
            # error answer in the app instead, and gunicorn closes the connection after it).
            self.log.debug("closing %s: response write timed out", addr)
            raise StopIteration() from None
        except ResponseAborted as e:
            # A streamed answer's source failed (the app logged why): the client must see it cut short.
            self.log.debug("closing %s: %s", addr, e)
            raise StopIteration() from None
        finally:
            sock.settimeout(None)


class _SharedListenerServer(StreamServer):
    """A StreamServer on a listening socket that `workers` processes share, taking its share of each burst (see
    accept_share)."""

    def __init__(self, listener, workers: int, **kwargs):
        self._listener, self._workers = listener, workers  # first: the base class reads max_accept
        super().__init__(listener, **kwargs)

    @property
    def max_accept(self) -> int:
        """How many connections to accept now; gevent reads it each time the listening socket is readable."""
        return accept_share(self._listener, self._workers)


def accept_share(listener: socket.socket, workers: int) -> int:
    """How many of the connections waiting on a TCP listening socket shared by `workers` processes one of them takes
    when it wakes: its share, rounded up (a last odd one is taken, not left waiting), and at least one."""
    # One a wake (gunicorn's choice) left a burst of new connections in the backlog for a loop pass each, and a pass
    # serves a request on every busy connection of the worker: with 64 connections the last ones waited 0.6 s for
    # their first answer. All of them (gevent's default) lets the worker that wakes first take the whole burst, and a
    # kept-alive connection stays with its worker while the other one idles.
    info = listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_ACCEPT_QUEUE.size)
    waiting = _TCP_INFO_ACCEPT_QUEUE.unpack(info)[0]
    return max(1, -(-waiting // workers))


class _Stopping(Exception):
    """Thrown into a connection's greenlet that waits for a request when the worker stops."""


class _WaitForRequest:
    """A connection's wait for its next request, during which the worker's stop may close it; the connection ends
    (StopIteration, which gunicorn's keep-alive loop takes as the end of the connection) if the worker is stopping,
    so one that finished a request in flight closes too."""

    def __init__(self, worker: RegistryWorker, timer: gevent.Timeout):
        self.worker, self.timer = worker, timer

    def __enter__(self) -> None:
        # A yield to the loop before each request: a client that sends its next request before we read (any busy
        # keep-alive client on a fast link) never makes gevent's recv wait, so its greenlet would hold the loop, its
        # worker's other connections and the accept of new ones for seconds (p99 of 1 s at 64 connections).
        gevent.sleep(0)
        if not self.worker.alive:
            raise StopIteration("the worker is stopping")
        self.timer.__enter__()
        self.worker.idle.add(gevent.getcurrent())

    def __exit__(self, kind, value, traceback) -> bool:
        self.worker.idle.discard(gevent.getcurrent())
        swallowed = self.timer.__exit__(kind, value, traceback)  # cancels the timer; True if it fired
        if isinstance(value, _Stopping):
            raise StopIteration("the worker is stopping") from None
        return bool(swallowed)


def deferred_handshake_context(conf, default_factory) -> ssl.SSLContext:
    """gunicorn's TLS context, but its sockets leave the handshake to RegistryWorker.handle, which bounds it (gevent's
    server would otherwise do it on accept, with no timeout and a traceback for every client that gives up)."""
    context = default_factory()
    context.wrap_socket = functools.partial(context.wrap_socket, do_handshake_on_connect=False)
    return context


def _make_cooperative() -> None:
    """Swap in flock, fsync and socket.sendfile versions that wait in the event loop instead of blocking it."""
    blocking_flock, blocking_fsync = fcntl.flock, os.fsync

    def flock(fd, operation: int) -> None:
        """fcntl.flock that polls a contended lock, letting the holder (maybe another greenlet) finish."""
        if operation & (fcntl.LOCK_NB | fcntl.LOCK_UN):
            return blocking_flock(fd, operation)
        delay = 0.001
        while True:
            try:
                return blocking_flock(fd, operation | fcntl.LOCK_NB)
            except BlockingIOError:
                gevent.sleep(delay)
                delay = min(delay * 2, _LOCK_POLL_MAX)

    def fsync(fd) -> None:
        """os.fsync in gevent's thread pool: a slow disk delays this request only."""
        get_hub().threadpool.apply(blocking_fsync, (fd,))

    fcntl.flock = flock
    os.fsync = fsync
    # gevent's own sendfile copies through Python 8 KiB at a time.
    gsocket.socket.sendfile = _sendfile


def _sendfile(sock: gsocket.socket, file: BinaryIO, offset: int = 0, count: int | None = None) -> int:
    """socket.sendfile by sendfile(2) on the non-blocking socket, waiting for room in the event loop."""
    out, src = sock.fileno(), file.fileno()
    if count is None:
        count = os.fstat(src).st_size - offset
    sent = since_yield = 0
    while sent < count:
        try:
            n = os.sendfile(out, src, offset + sent, count - sent)
        except BlockingIOError:
            gsocket.wait_write(out, timeout=sock.gettimeout(), timeout_exc=TimeoutError("timed out"))
            continue
        if n == 0:  # the file is shorter than promised
            break
        sent += n
        since_yield += n
        if since_yield >= _SENDFILE_SLICE:  # a fast reader never makes us wait: let other connections run
            since_yield = 0
            gevent.sleep(0)
    file.seek(offset + sent)
    return sent
