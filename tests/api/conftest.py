"""Fixtures for the Python API: a client over the test's store, a registry on loopback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "client"))  # the client tests' registry launchers

from registries import start_distribution

import dockyard.api


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
