"""Fixtures for the Python API: a client over the test's store, a registry on loopback, test-only networks."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "client"))  # the client tests' registry launchers

from registries import start_distribution  # noqa: E402
from runner.network import networks  # noqa: E402

import dockyard.api  # noqa: E402


@pytest.fixture
def client(store_root) -> dockyard.api.Client:
    """A client over the test's (empty) store."""
    return dockyard.api.Client(store_root)


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A plain-HTTP distribution 2.8 on loopback, with the client's config dirs inside the test's tmp dir."""
    monkeypatch.setenv("DOCKYARD_CONFIG", str(tmp_path / "daemon.json"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("DOCKYARD_CERTS_D", str(tmp_path / "certs.d"))
    monkeypatch.delenv("DOCKYARD_DEFAULT_REGISTRY", raising=False)
    server = start_distribution(tmp_path / "distribution")
    yield server
    server.stop()


@pytest.fixture
def test_networks(store_root, monkeypatch):
    """Networks (and containers run here or in a child) use a test bridge, subnet pool and NAT table; torn down."""
    tag = os.urandom(3).hex()
    monkeypatch.setenv("DOCKYARD_BRIDGE", f"dya{tag}")
    monkeypatch.setenv("DOCKYARD_BRIDGE_SUBNET", "10.243.0.0/16")
    monkeypatch.setenv("DOCKYARD_NETWORK_POOL", "10.244.0.0/16")
    monkeypatch.setenv("DOCKYARD_NAT_TABLE", f"dya{tag}")
    yield f"dya{tag}"
    networks.reset()
    assert not os.path.exists(f"/sys/class/net/dya{tag}")
