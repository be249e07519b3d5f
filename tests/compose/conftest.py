"""Compose tests: the loader and `compose config` are pure Python; the engine and CLI tests run containers. Fixtures:
projects in the canonical model's shape, an engine over the test's store, examples/compose run by the CLI."""

from __future__ import annotations

import pytest
from composekit import APP, ComposeCli, make_project
from support import free_port

from compose.engine import Compose
from dockyard.api import Client


@pytest.fixture
def engine(store_root, busybox_image, test_networks, tmp_path):
    """make(services, ...) -> a Compose over the test's store; every project made is taken down at the end."""
    made: list[Compose] = []

    def make(services: dict, **kwargs) -> Compose:
        compose = Compose(Client(store_root), make_project(tmp_path, services, **kwargs))
        made.append(compose)
        return compose

    yield make
    for compose in made:
        compose.down(remove_orphans=True, volumes=True, timeout=1)


@pytest.fixture
def app(test_networks, busybox_image, dockyard):
    """examples/compose as project t<tag>, its proxy published on a free port (PROXY_PORT); `down -v` after, and
    any container left removed (test_networks then takes the networks down)."""
    project = ComposeCli(f"t{test_networks[3:]}", [APP / "compose.yaml"], dockyard, {"PROXY_PORT": str(free_port())})
    yield project
    project("down", "-v", "--remove-orphans", check=False)
    ids = dockyard("ps", "-aq", "--no-trunc", check=False).out.split()
    if ids:
        dockyard("rm", "-f", "-v", *ids, check=False)
