"""Fixtures for build tests: the example context, a `build` runner and ways to look inside built images."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from dockyard.image import Image
from dockyard.inroot import layered_path
from dockyard.store import Store
from runner import sandbox
from runner.network import networks, store
from support import run_subnet

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "Dockerfiles"


@pytest.fixture(autouse=True)
def build_network(store_root, monkeypatch) -> str:
    """RUN steps join the default bridge: a test bridge, subnet and NAT table per test (never a real one), gone
    after; returns the bridge's name."""
    tag = os.urandom(3).hex()
    monkeypatch.setenv("DOCKYARD_BRIDGE", f"dyb{tag}")
    monkeypatch.setenv("DOCKYARD_BRIDGE_SUBNET", run_subnet(2))
    monkeypatch.setenv("DOCKYARD_NETWORK_POOL", run_subnet(6))
    monkeypatch.setenv("DOCKYARD_NAT_TABLE", f"dyb{tag}")
    yield f"dyb{tag}"
    state = store.read()
    assert state is None or state.attachments == {}, "a RUN stayed on the bridge"
    networks.reset()
    assert not os.path.exists(f"/sys/class/net/dyb{tag}")


@pytest.fixture
def examples(tmp_path) -> Path:
    """A private copy of examples/Dockerfiles (the build context of the examples)."""
    dest = tmp_path / "examples"
    shutil.copytree(EXAMPLES, dest, symlinks=True)
    return dest


@pytest.fixture
def context(tmp_path):
    """context(files) -> a build context directory (tmp_path/ctx) holding files: relative path -> text."""

    def make(files: dict[str, str]) -> Path:
        root = tmp_path / "ctx"
        root.mkdir(exist_ok=True)
        for rel, text in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_text(text)
        return root

    return make


@pytest.fixture
def build(dockyard, busybox_image):
    """build(context, *args, dockerfile=None, check=True) runs `dockyard build`; busybox:latest is present."""

    def run(context, *args: str, dockerfile: str | None = None, check: bool = True, **kw):
        extra = ["-f", str(dockerfile)] if dockerfile else []
        return dockyard("build", *extra, *args, str(context), check=check, **kw)

    return run


class Inspector:
    """Looks at a built image through the store: its config and its files as the overlay would show them."""

    def __init__(self, root: str):
        self.store = Store(root)

    def image(self, name: str) -> Image:
        return self.store.resolve(name)

    def path(self, name: str, rel: str) -> str | None:
        """Where `rel` lives in the image's unpacked layers (None: absent or whited out)."""
        return layered_path(self.store.lowerdirs(self.image(name)), rel)

    def read(self, name: str, rel: str) -> str:
        path = self.path(name, rel)
        assert path is not None, f"{rel} missing in {name}"
        with open(path) as f:
            return f.read()

    def run(self, name: str, script: str, tmp_path: Path) -> str:
        """Run a shell script in a sandbox over the image's layers; returns stdout (asserting exit 0)."""
        img = self.image(name)
        upper = tmp_path / f"run-{os.urandom(4).hex()}" / "upper"
        upper.mkdir(parents=True)
        out = upper.parent / "out"
        with open(out, "wb") as f:
            status = sandbox.run(sandbox.Sandbox(["/bin/sh", "-c", script], self.store.lowerdirs(img), str(upper),
                                                 env=img.config["config"].get("Env") or []),
                                 stdout=f.fileno(), stderr=f.fileno(), scratch=str(upper.parent))
        text = out.read_text()
        assert status.code == 0, text
        return text


@pytest.fixture
def inspect(store_root) -> Inspector:
    return Inspector(store_root)


@pytest.fixture
def store_mounts(store_root):
    """store_mounts() -> mount points under the store (a finished build must leave none)."""

    def mounts() -> list[str]:
        with open("/proc/self/mountinfo") as f:
            return [line.split()[4] for line in f if store_root in line.split()[4]]

    return mounts

