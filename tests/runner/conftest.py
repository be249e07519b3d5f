"""Fixtures for the container tests."""

from __future__ import annotations

import os

import pytest

from ctrkit import _links
from runner.network import networks
from support import run_subnet


@pytest.fixture
def ctr(dockyard, busybox_image, monkeypatch):
    """The CLI over a store with busybox whose networks use a test bridge (this run's subnet 0) and NAT table; torn
    down after."""
    tag = os.urandom(3).hex()
    monkeypatch.setenv("DOCKYARD_BRIDGE", f"dyc{tag}")
    monkeypatch.setenv("DOCKYARD_BRIDGE_SUBNET", run_subnet(0))
    monkeypatch.setenv("DOCKYARD_NETWORK_POOL", run_subnet(4))
    monkeypatch.setenv("DOCKYARD_NAT_TABLE", f"dyc{tag}")
    yield dockyard
    ids = dockyard("ps", "-aq", "--no-trunc", check=False).out.split()
    if ids:
        dockyard("rm", "-f", *ids, check=False)
    networks.reset()
    assert not _links(f"dyc{tag}")
