"""A throw-away PostgreSQL cluster for a test module: Debian's initdb/pg_ctl, a unix socket dir of its own,
listening on 127.0.0.1 only, torn down after the module (a daemon living longer would be counted as a leak)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from regkit import free_port

BIN = Path("/usr/lib/postgresql/15/bin")
# initdb refuses to run as root, so the cluster belongs to Debian's postgres user. Its directory is not under
# pytest's tmp_path: that lives in root's 0700 directory, which the postgres user cannot enter.
USER = "postgres"


def _as_user(*cmd: str, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", USER, "--", *cmd], capture_output=True, text=True, timeout=timeout,
                          check=False)


@pytest.fixture(scope="module")
def postgres() -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty databases on one cluster: each call returns a new `postgresql+psycopg://` URL."""
    if not (BIN / "initdb").exists():
        pytest.skip("Debian's postgresql 15 is not installed")
    base = Path(tempfile.mkdtemp(prefix="dockyard-pg-"))
    data, sockets, log = base / "data", base / "run", base / "server.log"
    sockets.mkdir()
    shutil.chown(base, USER)
    shutil.chown(sockets, USER)
    os.chmod(base, 0o700)
    port = free_port()
    try:
        done = _as_user(str(BIN / "initdb"), "-D", str(data), "--auth=trust", "--username=postgres",
                        "--encoding=UTF8", "--no-sync")
        assert done.returncode == 0, done.stderr
        options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={sockets} -c fsync=off"
        done = _as_user(str(BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "start")
        assert done.returncode == 0, done.stderr + (log.read_text() if log.exists() else "")

        def new_database() -> str:
            import psycopg

            name = "dockyard_" + uuid.uuid4().hex[:12]
            with psycopg.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres",
                                 autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            return f"postgresql+psycopg://postgres@127.0.0.1:{port}/{name}"

        yield new_database
    finally:
        if (data / "postmaster.pid").exists():
            _as_user(str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_database_server(request, product_server):
    """conftest's `product_server` factory, once on SQLite and once on a fresh PostgreSQL database (the server's
    `database_url` says which)."""
    url = request.getfixturevalue("postgres")() if request.param == "postgresql" else None

    def _make(*args: str, **kw):
        server = product_server(*args, "--database-url", url, **kw) if url else product_server(*args, **kw)
        server.database_url = url or f"sqlite:///{server.root}/registry.db"
        return server
    return _make
