"""Shared fixtures: a fresh store per test, a busybox rootfs and tarball, and the real `dockyard` CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from support import REPO, run_cli, tool  # noqa: F401 (re-exported for `from tests.conftest import …`)

# The resident server (dockyard.resident) off for every CLI a test starts: tests strace and measure the CLI's own
# process, and must not leave servers behind. tests/test_resident.py turns it on, with socket directories of its own.
os.environ["DOCKYARD_RESIDENT"] = "0"


@pytest.fixture
def store_root(tmp_path, monkeypatch) -> str:
    """An empty store root, also set as DOCKYARD_ROOT for in-process calls."""
    root = str(tmp_path / "store")
    monkeypatch.setenv("DOCKYARD_ROOT", root)
    return root


@pytest.fixture
def dockyard(store_root):
    """Call the real CLI: dockyard('images', '-q') -> Result; raises on non-zero unless check=False."""
    return lambda *args, **kw: run_cli(store_root, *args, **kw)


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory) -> Path:
    """A busybox root filesystem made by the project's own script from Debian's busybox-static."""
    d = tmp_path_factory.mktemp("busybox") / "rootfs"
    subprocess.run(["bash", str(REPO / "examples" / "busybox-rootfs.sh"), str(d)], check=True)
    return d


@pytest.fixture(scope="session")
def busybox_tar(busybox_rootfs, tmp_path_factory) -> Path:
    """The busybox rootfs as a plain tarball."""
    path = tmp_path_factory.mktemp("busybox-tar") / "rootfs.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for entry in sorted(os.listdir(busybox_rootfs)):
            tf.add(busybox_rootfs / entry, arcname=entry)
    return path


_BUSYBOX_IMPORT = ("import", "--change", 'CMD ["/bin/sh"]', "--change", "ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin")


@pytest.fixture(scope="session")
def busybox_store(busybox_tar, tmp_path_factory) -> Path:
    """A store holding busybox:latest alone, imported once by the real CLI: busybox_image copies it."""
    root = tmp_path_factory.mktemp("busybox-store") / "store"
    run_cli(str(root), *_BUSYBOX_IMPORT, str(busybox_tar), "busybox:latest")
    return root


@pytest.fixture
def busybox_image(dockyard, store_root, busybox_store, busybox_tar) -> str:
    """busybox:latest imported into the test's store; returns its name. A test's store is still its own, but a
    fresh one gets a copy of busybox_store: the same files an import makes, for a fraction of its 0.4 s."""
    if os.path.exists(store_root):  # something is in it already: import alongside
        dockyard(*_BUSYBOX_IMPORT, str(busybox_tar), "busybox:latest")
    else:
        shutil.copytree(busybox_store, store_root, symlinks=True)
    return "busybox:latest"


@pytest.fixture
def test_networks(store_root, monkeypatch):
    """Networks (and containers run here or in a child) use a test bridge, subnet pool and NAT table; torn down."""
    from runner.network import networks

    tag = os.urandom(3).hex()
    monkeypatch.setenv("DOCKYARD_BRIDGE", f"dya{tag}")
    monkeypatch.setenv("DOCKYARD_BRIDGE_SUBNET", "10.243.0.0/16")
    monkeypatch.setenv("DOCKYARD_NETWORK_POOL", "10.244.0.0/16")
    monkeypatch.setenv("DOCKYARD_NAT_TABLE", f"dya{tag}")
    yield f"dya{tag}"
    networks.reset()
    assert not os.path.exists(f"/sys/class/net/dya{tag}")


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A plain-HTTP distribution 2.8 on loopback, with the client's config dirs inside the test's tmp dir."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent / "client"))  # the client tests' registry launchers
    from registries import start_distribution

    monkeypatch.setenv("DOCKYARD_CONFIG", str(tmp_path / "daemon.json"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("DOCKYARD_CERTS_D", str(tmp_path / "certs.d"))
    monkeypatch.delenv("DOCKYARD_DEFAULT_REGISTRY", raising=False)
    server = start_distribution(tmp_path / "distribution")
    yield server
    server.stop()
