"""`attach`: a monitor-run container's stdin fed by clients of <container dir>/attach.sock, its live output sent back.

Client to monitor: one byte (b"1": close the container's stdin at my EOF, docker's StdinOnce; b"0": keep it
open), then raw stdin bytes; a half-close is EOF. Monitor to client: the raw pty output for a -t container,
else docker's multiplexed stream (8-byte header: stream 1 or 2, three zero bytes, big-endian length).
"""

from __future__ import annotations

import os
import socket
import struct
import threading

from dockyard.errors import DockyardError

SOCKET = "attach.sock"
STREAMS = {"stdout": 1, "stderr": 2}
_HEADER = struct.Struct(">BxxxI")
_CHUNK = 16 * 1024


def _address(cdir: str) -> tuple[int, str]:
    """(dir fd, socket address through /proc/self/fd): a store path can exceed sun_path's 108 bytes."""
    dirfd = os.open(cdir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return dirfd, f"/proc/self/fd/{dirfd}/{SOCKET}"


class Hub:
    """(in the monitor) the attached clients: their bytes go to the container's stdin, its output to all of them."""

    def __init__(self, stdin: int, tty: bool):
        self.stdin = stdin  # our end of the container's stdin: a pipe's write end, or the pty master
        self.tty = tty
        self.clients: list[socket.socket] = []
        self.lock = threading.Lock()
        self.listener: socket.socket | None = None
        self.path = ""

    def serve(self, cdir: str) -> None:
        """Listen on <cdir>/attach.sock; each client that connects is added."""
        self.path = os.path.join(cdir, SOCKET)
        dirfd, address = _address(cdir)
        try:
            try:
                os.unlink(address)  # a left-over of a crashed monitor
            except FileNotFoundError:
                pass
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            self.listener.bind(address)
            self.listener.listen(8)
        finally:
            os.close(dirfd)
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # closed
                return
            self.add(conn)

    def add(self, conn: socket.socket) -> None:
        """Send the container's output to `conn` from now on and feed its bytes to the container's stdin."""
        with self.lock:
            self.clients.append(conn)
        threading.Thread(target=self._feed, args=(conn,), daemon=True).start()

    def _feed(self, conn: socket.socket) -> None:
        try:
            once = conn.recv(1) == b"1"
            while data := conn.recv(_CHUNK):
                os.write(self.stdin, data)
        except OSError:  # the client went away, or the container's stdin is closed
            return
        if once and not self.tty:
            with self.lock:
                fd, self.stdin = self.stdin, -1
            if fd >= 0:
                os.close(fd)

    def send(self, stream: str, data: bytes) -> None:
        """Give every client a chunk of the container's output (framed unless it has a tty)."""
        message = data if self.tty else _HEADER.pack(STREAMS[stream], len(data)) + data
        with self.lock:
            for conn in list(self.clients):
                try:
                    conn.sendall(message)
                except OSError:
                    self.clients.remove(conn)

    def close(self) -> None:
        """The container is gone for good: the clients get EOF, the socket goes."""
        if self.listener is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.listener.close()
        with self.lock:
            for conn in self.clients:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()
            self.clients = []


def connect(cdir: str) -> socket.socket | None:
    """A connection to the container's attach.sock; None when its monitor serves none (no -i, or not detached)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    dirfd, address = _address(cdir)
    try:
        sock.connect(address)
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    finally:
        os.close(dirfd)
    return sock


def relay(sock: socket.socket, tty: bool, stdin: bool, stdin_once: bool) -> None:
    """(in the CLI) our stdin to the container (if `stdin`), its output to our stdout/stderr, until the monitor ends."""
    from runner.terminal import raw_stdin

    sock.sendall(b"1" if stdin_once else b"0")
    if stdin:
        threading.Thread(target=_send_stdin, args=(sock,), daemon=True).start()
    else:
        sock.shutdown(socket.SHUT_WR)
    try:
        with raw_stdin(tty and stdin):
            _receive(sock, tty)
    finally:
        sock.close()


def _receive(sock: socket.socket, tty: bool) -> None:
    """Write the container's output to our stdout (and stderr, from a framed stream) until EOF."""
    if tty:
        while data := sock.recv(_CHUNK):
            os.write(1, data)
        return
    while header := _recv_exact(sock, _HEADER.size):
        if len(header) < _HEADER.size:
            raise DockyardError("attach: the container's output stream ended mid-frame")
        stream, size = _HEADER.unpack(header)
        data = _recv_exact(sock, size)
        if len(data) < size:
            raise DockyardError("attach: the container's output stream ended mid-frame")
        os.write(2 if stream == 2 else 1, data)


def _send_stdin(sock: socket.socket) -> None:
    try:
        while data := os.read(0, _CHUNK):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
    except OSError:  # the monitor is gone: the output side notices and ends
        pass


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    """n bytes, fewer only at EOF."""
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(n - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)
