"""Helpers shared by the test modules (imported as `support`; conftest.py puts tests/ on sys.path)."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import ipaddress
import os
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Test runs sharing a host reserve their ports and subnets with a lock file each, held until the run ends.
LOCK_DIR = "/run/dockyard-tests"
# Test networks: each run takes one /13 of 10.160.0.0-10.255.255.255 (eight /16s, see run_subnet), never
# podman's 10.88/16 nor anything a route already uses.
_FIRST_BLOCK, _BLOCKS, _BLOCK_SIZE = 160, 12, 8
_held: list[int] = []  # lock descriptors, open (not inherited) as long as the run


def _reserve(name: str) -> bool:
    """Take /run/dockyard-tests/<name>.lock for the rest of this run; False when another run holds it."""
    os.makedirs(LOCK_DIR, exist_ok=True)
    fd = os.open(os.path.join(LOCK_DIR, f"{name}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    _held.append(fd)
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on, reserved for this run: another run's free_port() skips it."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if _reserve(f"port-{port}"):
            return port


@functools.cache
def _subnet_block() -> int:
    """The second octet of this run's first 10.x.0.0/16: a block of eight no route uses, locked for the run."""
    from runner.network.ipam import routed_subnets

    routed = routed_subnets()
    for i in range(_BLOCKS):
        first = _FIRST_BLOCK + i * _BLOCK_SIZE
        block = ipaddress.IPv4Network(f"10.{first}.0.0/13")
        if not any(block.overlaps(r) for r in routed if r.prefixlen >= 13) and _reserve(f"subnet-10.{first}"):
            return first
    raise AssertionError("no free 10.x/13 test block: other test runs hold them all, or routes cover them")


def run_subnet(index: int, sub: str = "0.0/16") -> str:
    """Subnet `index` (0-7) of this run's block: run_subnet(2) is 10.<b+2>.0.0/16, run_subnet(2, "7.0/24")
    10.<b+2>.7.0/24 (an address too: run_subnet(2, "0.1") is 10.<b+2>.0.1).

    0-3 are bridges' and fixed subnets, 4-7 the pools networks are allocated from (upwards, so within the block)."""
    assert 0 <= index < _BLOCK_SIZE
    return f"10.{_subnet_block() + index}.{sub}"


@dataclass
class Result:
    """A finished CLI run."""

    code: int
    out: str
    err: str


def run_cli(root: str, *args: str, input: bytes | None = None, check: bool = True, env: dict | None = None,
            timeout: float = 300) -> Result:
    """Run the real `dockyard` command against a store root."""
    full_env = {**os.environ, "DOCKYARD_ROOT": root, **(env or {})}
    p = subprocess.run([sys.executable, "-m", "dockyard", *args], input=input, capture_output=True,
                       env=full_env, timeout=timeout)
    res = Result(p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"))
    if check and res.code != 0:
        raise AssertionError(f"dockyard {' '.join(args)} exited {res.code}: {res.err}")
    return res


def tool(name: str) -> str:
    """Path of a peer tool; the test fails (not skips) when CI forgot to install it."""
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    assert path, f"{name} is not installed (scripts/install.sh installs it)"
    return path


def strace_python(root: str, syscalls: str, *args: str, env: dict | None = None, fd_paths: bool = False) -> str:
    """Run `python ARGS` against a store root under `strace -f -e trace=SYSCALLS`; the trace's text (fd_paths: -y,
    each fd shown with its path). Its log goes beside the root."""
    log = os.path.join(os.path.dirname(root), f"strace-{os.urandom(3).hex()}.log")
    try:
        subprocess.run([tool("strace"), "-f", "-qq", *(["-y"] if fd_paths else []), "--seccomp-bpf", "-s", "4096",
                        "-e", f"trace={syscalls}", "-o", log, sys.executable, *args],
                       env={**os.environ, "DOCKYARD_ROOT": root, **(env or {})}, check=True, capture_output=True)
        with open(log) as f:
            return f.read()
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(log)


# Inside a container on a bridge: find the gateway's MAC as any attacker would (ARP), then aim a handshake at
# 127.0.0.1 through it with /x/rawtcp (raw_client). `$1` is the port.
RAW_ATTACK = ("gw=$(ip route | awk '/^default/ {print $3}'); ping -c1 -W2 $gw >/dev/null; "
              "mac=$(awk -v gw=$gw '$1 == gw {print $4}' /proc/net/arp); exec /x/rawtcp eth0 $mac 127.0.0.1 $1 hello")


def raw_client(directory: Path) -> str:
    """tests/rawtcp.c built static into `directory`: the raw-socket attacker the loopback tests run in containers."""
    path = str(directory / "rawtcp")
    subprocess.run([tool("gcc"), "-static", "-O2", "-o", path, str(REPO / "tests" / "rawtcp.c")], check=True)
    return path


class LoopbackServer:
    """A TCP server on the host's 127.0.0.1 only (what a container must not reach); records what clients send."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port: int = self.sock.getsockname()[1]
        self.received: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            with conn:
                conn.settimeout(5)
                data = b""
                try:
                    while chunk := conn.recv(4096):
                        data += chunk
                except OSError:
                    pass
                self.received.append(data)

    def wait_for_message(self, timeout: float = 10) -> bytes:
        """The first message a client sent (waiting for the server thread to record it), or b"" if none came."""
        deadline = time.monotonic() + timeout
        while not self.received and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.received[0] if self.received else b""

    def __enter__(self) -> "LoopbackServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        import socket

        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join()


# PYTHONWARNINGS for a CLI run that must not fork with threads alive: every DeprecationWarning is an error but
# Python 3.12's fork-with-threads one, which os.fork() swallows when it is an error: that one is printed.
FORK_WARNINGS = "error::DeprecationWarning,always:This process:DeprecationWarning"


def read_for(fd: int, seconds: float) -> bytes:
    """What `fd` gives until it has been silent for `seconds` (or its terminal's other side closed: EIO)."""
    seen = b""
    try:
        while select.select([fd], [], [], seconds)[0]:
            seen += os.read(fd, 4096)
    except OSError:
        pass
    return seen


def process_state(pid: int) -> str | None:
    """Process `pid`'s state letter from /proc (R, S, T, Z...); None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return None


def process_children() -> dict[int, list[int]]:
    """Every process's children, live or zombie, by parent pid."""
    children: dict[int, list[int]] = {}
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/stat") as f:
                parent = int(f.read().rpartition(")")[2].split()[1])
        except FileNotFoundError:
            continue
        children.setdefault(parent, []).append(int(name))
    return children


def descendants(pid: int) -> set[int]:
    """The processes under `pid`, at any depth."""
    children, found, todo = process_children(), set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def wait_for(check: Callable[[], object], timeout: float = 20, what: str = "condition") -> object:
    """Poll `check()` every 50 ms until it returns something truthy, and return that; fail after `timeout` seconds
    (a hung server or process)."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value
