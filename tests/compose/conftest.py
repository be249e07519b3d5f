"""Fixtures for the compose tests: examples/compose as a project on a test bridge and subnet pool, taken down after."""

from __future__ import annotations

import os

import pytest
from composekit import APP, Project
from ctrkit import _links
from support import free_port, run_subnet

from runner.network import networks


@pytest.fixture
def compose_net(store_root, busybox_image, monkeypatch):
    """Networks on a test bridge, pool (this run's subnets 3 and 7) and NAT table; everything torn down after."""
    tag = os.urandom(3).hex()
    monkeypatch.setenv("DOCKYARD_BRIDGE", f"dyo{tag}")
    monkeypatch.setenv("DOCKYARD_BRIDGE_SUBNET", run_subnet(3))
    monkeypatch.setenv("DOCKYARD_NETWORK_POOL", run_subnet(7))
    monkeypatch.setenv("DOCKYARD_NAT_TABLE", f"dyo{tag}")
    yield tag
    networks.reset()
    assert not _links(f"dyo{tag}")


@pytest.fixture
def app(compose_net, dockyard):
    """examples/compose as project t<tag>, its proxy published on a free port (PROXY_PORT); `down -v` after, and
    any container left removed."""
    project = Project(f"t{compose_net}", [APP / "compose.yaml"], dockyard, {"PROXY_PORT": str(free_port())})
    yield project
    project("down", "-v", "--remove-orphans", check=False)
    ids = dockyard("ps", "-aq", "--no-trunc", check=False).out.split()
    if ids:
        dockyard("rm", "-f", "-v", *ids, check=False)
