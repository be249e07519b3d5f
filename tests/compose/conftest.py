"""Compose tests: the loader and `compose config` are pure Python; the engine tests run containers (fixtures here)."""

from __future__ import annotations

import pytest
from composekit import make_project

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
