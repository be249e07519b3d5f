"""Registries and misbehaving proxies for the client tests: real processes on loopback or in a netns."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from support import free_port, run_subnet, tool

NETNS_HOST_IP = run_subnet(3, "77.1")
NETNS_IP = run_subnet(3, "77.2")


def wait_for_port(host: str, port: int, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    """Block until something accepts connections on host:port; fail with the server's log if it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"server on {host}:{port} did not start: {log.read_text()[-2000:]}")


@dataclass
class Server:
    """A registry process started by a test."""

    host: str  # host:port as clients dial it
    root: Path
    proc: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_distribution(workdir: Path, ip: str = "127.0.0.1", port: int | None = None, htpasswd: Path | None = None,
                       tls: tuple[Path, Path] | None = None, netns: str | None = None, log_level: str = "error",
                       access_log: bool = True, storage: list[str] | None = None,
                       env: dict[str, str] | None = None) -> Server:
    """Debian's `docker-registry` (CNCF distribution 2.8) with a YAML config written for the test (or a bench).

    `log_level` "info" logs every request once (with the access log off); `storage`: YAML lines of a driver
    section under `storage:` (default: the filesystem under `workdir`)."""
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    root = workdir / "data"
    lines = ["version: 0.1", "log:", f"  level: {log_level}"]
    if not access_log:
        lines += ["  accesslog:", "    disabled: true"]
    lines += ["storage:", *(storage or ["  filesystem:", f"    rootdirectory: {root}"]),
              "  delete:", "    enabled: true", "http:", f"  addr: {ip}:{port}", "  secret: test"]
    if tls:
        lines += ["  tls:", f"    certificate: {tls[0]}", f"    key: {tls[1]}"]
    if htpasswd:
        lines += ["auth:", "  htpasswd:", "    realm: test", f"    path: {htpasswd}"]
    config = workdir / "config.yml"
    config.write_text("\n".join(lines) + "\n")
    log = workdir / "registry.log"
    cmd = [tool("docker-registry"), "serve", str(config)]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    # Its own session: benches count the CPU time of a server's session and stop it with killpg.
    proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    wait_for_port(ip, port, proc, log)
    return Server(f"{ip}:{port}", root, proc, log)


def start_dockyard_registry(workdir: Path, *extra: str) -> Server:
    """Our registry (`python -m dockyard registry serve`) on a loopback port."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    root = workdir / "data"
    log = workdir / "registry.log"
    proc = subprocess.Popen([sys.executable, "-m", "dockyard", "registry", "serve", "--addr", f"127.0.0.1:{port}",
                             "--root", str(root), "--workers", "1", *extra],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    wait_for_port("127.0.0.1", port, proc, log)
    return Server(f"127.0.0.1:{port}", root, proc, log)


def store_snapshot(root: str) -> dict[str, bytes | int]:
    """Every file under a store's image layout and tmp dir, with sizes (index.json by content)."""
    out: dict[str, bytes | int] = {}
    for sub in ("images", "tmp"):
        base = os.path.join(root, sub)
        for dirpath, _, files in os.walk(base):
            for name in files:
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, root)
                out[rel] = Path(path).read_bytes() if name == "index.json" else os.path.getsize(path)
    return out


# ---- a TCP proxy that fails on purpose -------------------------------------------------------------


class Proxy:
    """Relays 127.0.0.1:port to an upstream; can cut connections after N bytes, or answer 429 first."""

    def __init__(self, upstream: str, cut_after: int | None = None, direction: str = "up", cuts: int | None = 1,
                 rate_limit_first: int = 0):
        host, _, port = upstream.rpartition(":")
        self.upstream = (host, int(port))
        self.cut_after, self.direction, self.cuts_left = cut_after, direction, cuts
        self.rate_limit_left = rate_limit_first
        self.cuts_done = 0
        self.bytes_up = 0  # client-to-server bytes relayed, over all connections
        self.events: list[tuple[str, float]] = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.host = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        # Rate-limit plain HTTP requests only; a TLS probe (first byte 0x16) is relayed as it is.
        is_http = client.recv(1, socket.MSG_PEEK) != b"\x16"
        with self.lock:
            limited = self.rate_limit_left > 0 and is_http
            self.rate_limit_left -= 1 if limited else 0
            self.events.append(("429" if limited else "connect", time.monotonic()))
        if limited:
            client.recv(65536)
            client.sendall(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\n"
                           b"Connection: close\r\n\r\n")
            client.close()
            return
        try:
            upstream = socket.create_connection(self.upstream)
        except OSError:
            client.close()
            return
        sent = [0]
        done = threading.Event()

        def cut_now(n: int) -> bool:
            """Whether this connection dies now: it has carried more than cut_after bytes and cuts remain."""
            with self.lock:
                if self.cut_after is None or sent[0] + n <= self.cut_after or self.cuts_left == 0:
                    return False
                if self.cuts_left is not None:
                    self.cuts_left -= 1
                self.cuts_done += 1
                return True

        def pump(src: socket.socket, dst: socket.socket, counted: bool) -> None:
            try:
                while data := src.recv(65536):
                    if counted:
                        if cut_now(len(data)):
                            dst.sendall(data[:max(self.cut_after - sent[0], 0)])
                            with self.lock:
                                self.bytes_up += max(self.cut_after - sent[0], 0) if src is client else 0
                            break
                        sent[0] += len(data)
                    if src is client:
                        with self.lock:
                            self.bytes_up += len(data)
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                done.set()

        threading.Thread(target=pump, args=(client, upstream, self.direction == "up"), daemon=True).start()
        threading.Thread(target=pump, args=(upstream, client, self.direction == "down"), daemon=True).start()
        done.wait()
        for s in (client, upstream):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.closed = True
        # close() alone leaves the accept thread blocked (Linux): shutdown wakes it, so it ends.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def push_through_cut(dockyard, image: str, upstream: str, client_env) -> Proxy:
    """Push `image` in 1 MiB chunks through a proxy that cuts the first connection to pass 1.5 MB upstream."""
    client_env.write_daemon(upload_chunk_size=1 << 20)
    proxy = Proxy(upstream, cut_after=1_500_000, direction="up", cuts=1)
    try:
        dockyard("tag", image, f"{proxy.host}/big/img:1")
        dockyard("push", f"{proxy.host}/big/img:1")
    finally:
        proxy.close()
    assert proxy.cuts_done == 1
    return proxy
