"""Fixtures for the distribution client: real registries (Debian's distribution 2.8, ours) on loopback or in a
network namespace, client config dirs, a TLS CA, and a TCP proxy that misbehaves on purpose."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from typing import Callable
from pathlib import Path

import pytest

from registries import NETNS_HOST_IP, NETNS_IP, start_distribution
from support import tool


@pytest.fixture
def distribution(tmp_path):
    """A plain-HTTP distribution 2.8 on loopback (insecure by default, like Docker's 127.0.0.0/8 rule)."""
    server = start_distribution(tmp_path / "distribution")
    yield server
    server.stop()


@pytest.fixture
def htpasswd(tmp_path) -> Path:
    """A bcrypt htpasswd file with user `alice`, password `s3cret`."""
    out = subprocess.run([tool("htpasswd"), "-Bbn", "alice", "s3cret"], check=True, capture_output=True).stdout
    path = tmp_path / "htpasswd"
    path.write_bytes(out)
    return path


@dataclass
class ClientEnv:
    """The client's config locations, all inside the test's tmp dir."""

    daemon_json: Path
    docker_config: Path
    certs_d: Path

    def write_daemon(self, **settings) -> None:
        self.daemon_json.write_text(json.dumps({k.replace("_", "-"): v for k, v in settings.items()}))


@pytest.fixture(autouse=True)
def client_env(tmp_path, monkeypatch) -> ClientEnv:
    """Point daemon.json, the docker config dir and certs.d at empty test dirs (never the host's)."""
    env = ClientEnv(tmp_path / "daemon.json", tmp_path / "docker", tmp_path / "certs.d")
    env.certs_d.mkdir()
    monkeypatch.setenv("DOCKYARD_CONFIG", str(env.daemon_json))
    monkeypatch.setenv("DOCKER_CONFIG", str(env.docker_config))
    monkeypatch.setenv("DOCKYARD_CERTS_D", str(env.certs_d))
    monkeypatch.delenv("DOCKYARD_DEFAULT_REGISTRY", raising=False)
    return env


@dataclass
class OtherStore:
    """The CLI run against a second store root."""

    root: str
    run: Callable

    def __call__(self, *args: str, **kw):
        return self.run(*args, env={"DOCKYARD_ROOT": self.root, **kw.pop("env", {})}, **kw)


@pytest.fixture
def other_store(tmp_path, dockyard) -> OtherStore:
    """A second, empty store: `other_store('pull', …)` runs the CLI against it."""
    return OtherStore(str(tmp_path / "store2"), dockyard)


@pytest.fixture(scope="session")
def big_layer_tar(tmp_path_factory) -> Path:
    """A tarball holding 3 MiB of random bytes: a layer big enough to be chunked and cut mid-way."""
    import tarfile

    d = tmp_path_factory.mktemp("big")
    data = d / "random.bin"
    data.write_bytes(os.urandom(3 << 20))
    path = d / "big.tar"
    with tarfile.open(path, "w") as tf:
        tf.add(data, arcname="random.bin")
    return path


@pytest.fixture
def big_image(dockyard, big_layer_tar) -> str:
    """An image with one ~3 MiB incompressible layer."""
    dockyard("import", str(big_layer_tar), "big:latest")
    return "big:latest"


# ---- TLS -------------------------------------------------------------------------------------------


@dataclass
class CA:
    """A throw-away CA and a server certificate it signed."""

    ca_crt: Path
    cert: Path
    key: Path


@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory) -> CA:
    """A self-signed CA and a server certificate for the netns address and loopback."""
    d = tmp_path_factory.mktemp("tls")
    openssl = tool("openssl")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, cwd=d)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
        "-subj", "/CN=dockyard test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=registry")
    (d / "ext.cnf").write_text(f"subjectAltName=IP:{NETNS_IP},IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf")
    return CA(d / "ca.crt", d / "server.crt", d / "server.key")


# ---- a network namespace: an address that is not loopback, so not insecure by default ---------------

@dataclass
class Netns:
    """A namespace whose address the host reaches over a veth pair."""

    name: str
    ip: str


@pytest.fixture(scope="module")
def netns():
    """A network namespace joined to the host by a veth pair (NETNS_HOST_IP/30 <-> NETNS_IP/30, this run's)."""
    name = f"dyk-client-{os.getpid()}"
    veth = f"dyk{os.getpid() % 100000}"
    ip = tool("ip")

    def run(*args: str) -> None:
        subprocess.run([ip, *args], check=True, capture_output=True)

    run("netns", "add", name)
    try:
        run("link", "add", veth, "type", "veth", "peer", "name", veth + "n")
        run("link", "set", veth + "n", "netns", name)
        run("addr", "add", f"{NETNS_HOST_IP}/30", "dev", veth)
        run("link", "set", veth, "up")
        run("-n", name, "addr", "add", f"{NETNS_IP}/30", "dev", veth + "n")
        run("-n", name, "link", "set", veth + "n", "up")
        run("-n", name, "link", "set", "lo", "up")
        yield Netns(name, NETNS_IP)
    finally:
        subprocess.run([ip, "link", "del", veth], capture_output=True)
        subprocess.run([ip, "netns", "del", name], capture_output=True)


