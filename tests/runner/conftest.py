"""Fixtures for the container tests."""

from __future__ import annotations

import os

import pytest

from ctrkit import _links
from runner.network import networks


@pytest.fixture
def ctr(dockyard, busybox_image, monkeypatch):
    """The CLI over a store with busybox whose networks use a test bridge (10.235/16) and NAT table; torn down after."""
    tag = os.urandom(3).hex()
    monkeypatch.setenv("DOCKYARD_BRIDGE", f"dyc{tag}")
    monkeypatch.setenv("DOCKYARD_BRIDGE_SUBNET", "10.235.0.0/16")
    monkeypatch.setenv("DOCKYARD_NETWORK_POOL", "10.241.0.0/16")
    monkeypatch.setenv("DOCKYARD_NAT_TABLE", f"dyc{tag}")
    yield dockyard
    ids = dockyard("ps", "-aq", "--no-trunc", check=False).out.split()
    if ids:
        dockyard("rm", "-f", *ids, check=False)
    networks.reset()
    assert not _links(f"dyc{tag}")
