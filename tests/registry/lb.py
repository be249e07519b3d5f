"""Peers for the replica tests: a redis-server and HAProxy (examples/deploy/haproxy.cfg) on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from regkit import REPO, free_port, tool

HAPROXY_CFG = REPO / "examples" / "deploy" / "haproxy.cfg"


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@dataclass
class Redis:
    """A redis-server in `dir` on a free loopback port, keeping nothing on disk."""

    dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Redis:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "redis.log", "wb") as log:
            self.proc = subprocess.Popen(
                [tool("redis-server"), "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                 "--appendonly", "no", "--dir", str(self.dir), "--daemonize", "no"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.dir / "redis.log").read_text()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"redis-server did not answer: {(self.dir / 'redis.log').read_text()[-2000:]}")

    def stop(self) -> None:
        _stop(self.proc)


@dataclass
class HAProxy:
    """examples/deploy/haproxy.cfg run in the foreground with the replicas' addresses in its environment."""

    dir: Path
    replicas: list[str]
    port: int = field(default_factory=free_port)
    check_inter: str = "200ms"
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def socket_path(self) -> str:
        return str(self.dir / "admin.sock")

    def env(self) -> dict[str, str]:
        env = {"LB_ADDR": f"127.0.0.1:{self.port}", "CHECK_INTER": self.check_inter,
               "HAPROXY_STATS_SOCKET": self.socket_path}
        env.update({f"REPLICA{i}": addr for i, addr in enumerate(self.replicas, 1)})
        return env

    def start(self) -> HAProxy:
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "haproxy.log", "wb") as log:
            self.proc = subprocess.Popen([tool("haproxy"), "-db", "-f", str(HAPROXY_CFG)],
                                         env={**os.environ, **self.env()}, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.dir / "haproxy.log").read_text()
            if all(state == "UP" for state in self.states().values()) and len(self.states()) == len(self.replicas):
                with requests.get(f"{self.url}/healthz", timeout=2) as r:
                    if r.status_code == 200:
                        return self
            time.sleep(0.05)
        raise AssertionError(f"haproxy's replicas did not come up: {self.states()}")

    def states(self) -> dict[str, str]:
        """Each replica's state in HAProxy's eyes (UP, DOWN, ...), from its admin socket."""
        return {name: row["status"].split()[0] for name, row in self.stats().items()}

    def stats(self) -> dict[str, dict[str, str]]:
        """Each replica's row of HAProxy's statistics (status; scur: requests in flight there), from its admin
        socket; none when it does not answer."""
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(self.socket_path)
                s.sendall(b"show stat\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
        except OSError:
            return {}
        lines = data.decode().splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
        return {r["svname"]: r for r in rows
                if r["pxname"] == "replicas" and r["svname"] not in ("BACKEND", "FRONTEND")}

    def stop(self) -> None:
        _stop(self.proc)
