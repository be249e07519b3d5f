"""Fixtures for the Python API: a client over the test's store (the registry fixture is in tests/conftest.py)."""

from __future__ import annotations

import pytest

import dockyard.api


@pytest.fixture
def client(store_root) -> dockyard.api.Client:
    """A client over the test's (empty) store."""
    return dockyard.api.Client(store_root)
