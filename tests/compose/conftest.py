"""Fixtures for the compose tests: examples/compose as a project on the test networks, taken down after."""

from __future__ import annotations

import pytest
from composekit import APP, Project
from support import free_port


@pytest.fixture
def app(test_networks, busybox_image, dockyard):
    """examples/compose as project t<tag>, its proxy published on a free port (PROXY_PORT); `down -v` after, and
    any container left removed (test_networks then takes the networks down)."""
    project = Project(f"t{test_networks[3:]}", [APP / "compose.yaml"], dockyard, {"PROXY_PORT": str(free_port())})
    yield project
    project("down", "-v", "--remove-orphans", check=False)
    ids = dockyard("ps", "-aq", "--no-trunc", check=False).out.split()
    if ids:
        dockyard("rm", "-f", "-v", *ids, check=False)
