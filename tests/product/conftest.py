"""Fixtures for the registry product (`--projects`): a server with its admin, on SQLite by default."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "registry"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "client"))  # the client tests' registry launchers

from productkit import ADMIN_PASSWORD
from regkit import Server, background_loops, free_port  # noqa: F401 (an autouse fixture)


@pytest.fixture
def product_server(tmp_path):
    """A factory: start `dockyard registry serve --projects` (extra args appended) with admin/ADMIN_PASSWORD."""
    servers: list[Server] = []

    def _make(*args: str, env: dict | None = None) -> Server:
        root = tmp_path / f"registry-{len(servers)}"
        root.mkdir()
        server = Server(root, free_port(), ["--projects", "--enable-delete", *args],
                        env={"DOCKYARD_REGISTRY_ADMIN_PASSWORD": ADMIN_PASSWORD, **(env or {})},
                        entry=("dockyard", "registry", "serve"))
        servers.append(server)
        return server.start()

    yield _make
    for server in servers:
        server.stop()
        server.assert_clean_log()
