"""The gunicorn worker: gevent greenlets, so an idle or slow client costs a greenlet and a socket, never a request
handler, with read timeouts that close such clients, and blob bodies still sent by sendfile(2).

gevent makes sockets cooperative but not file locks, fsync or sendfile; this worker makes those three cooperative
too, so no greenlet stalls the others: a second request on a locked upload session, or a slow disk, must not freeze
every connection of the worker."""

from __future__ import annotations

import fcntl
import functools
import os
import ssl
import warnings
from typing import BinaryIO

import gevent
from gevent import socket as gsocket
from gevent.hub import get_hub
from gevent.monkey import MonkeyPatchWarning
from gunicorn.workers.ggevent import GeventWorker

# Longest pause between tries of a contended lock: short against the time locks are held (one request).
_LOCK_POLL_MAX = 0.05
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

    def run(self) -> None:
        # The pool runs the fsyncs (see _make_cooperative); its size bounds how many go on at once.
        get_hub().threadpool.maxsize = self.app.registry_config.threads
        super().run()

    # The wait for a request's line and headers, on a new or a kept-alive connection, is bounded by gunicorn's
    # keep-alive timer (set to the header timeout in serve.py), which closes the connection when it fires.

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
        finally:
            sock.settimeout(None)


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
