"""Built images against the peers: podman runs them, and buildah builds the same Dockerfiles to the same result."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from support import tool
from dockyard.layers import apply_layer

# buildah-only artefacts of its RUN mount points; not part of what the Dockerfile builds.
BUILDAH_EXTRAS = {"etc/hostname", "run"}
CONFIG_FIELDS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes", "Labels", "StopSignal")


def _podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([tool("podman"), *args], capture_output=True, text=True, check=check, timeout=300)


def _buildah(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run([tool("buildah"), *args], capture_output=True, text=True, timeout=300, cwd=cwd)
    assert p.returncode == 0, p.stderr
    return p


@pytest.fixture
def podman_base(dockyard, busybox_image, tmp_path):
    """busybox:latest loaded into podman's storage under a name private to this test; yields that name."""
    name = f"localhost/dockyard-build-base-{os.getpid()}:latest"
    dockyard("tag", busybox_image, name)
    archive = tmp_path / "base.tar"
    dockyard("save", "-o", str(archive), name)
    _podman("load", "-i", str(archive))
    yield name
    _podman("rmi", "-f", name, check=False)


def test_built_image_runs_in_podman(build, examples, dockyard, tmp_path, podman_base):
    name = f"localhost/dockyard-built-{os.getpid()}:latest"
    build(examples, "-t", name, "--build-arg", f"BASE={podman_base}", dockerfile=examples / "basics.Dockerfile")
    archive = tmp_path / "built.tar"
    dockyard("save", "-o", str(archive), name)
    try:
        _podman("load", "-i", str(archive))
        run = _podman("run", "--rm", "--network", "none", name)
        assert run.stdout == "hello from /srv/app\n"
        who = _podman("run", "--rm", "--network", "none", name, "id -un; pwd; cat /tmp/id.txt")
        assert who.stdout == "app\n/srv/app\napp:app\n"
    finally:
        _podman("rmi", "-f", name, check=False)


def _tree(root: Path) -> dict[str, tuple]:
    """path -> (mode, uid, gid, link target or content hash) for everything under root."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                extra = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    extra = hashlib.sha256(f.read()).hexdigest()
            else:
                extra = ""
            out[os.path.relpath(p, root)] = (oct(st.st_mode), st.st_uid, st.st_gid, extra)
    return out


def _buildah_result(image: str, tmp_path: Path) -> tuple[dict, Path]:
    """buildah's image pushed to an OCI layout and unpacked: (its config, its root filesystem)."""
    layout, rootfs = tmp_path / "buildah-oci", tmp_path / "buildah-rootfs"
    _buildah("push", "--quiet", image, f"oci:{layout}")
    blob = lambda d: layout / "blobs" / "sha256" / d.split(":")[1]  # noqa: E731
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads(blob(index["manifests"][0]["digest"]).read_text())
    config = json.loads(blob(manifest["config"]["digest"]).read_text())
    rootfs.mkdir()
    for layer in manifest["layers"]:
        with open(blob(layer["digest"]), "rb") as f:
            apply_layer(f, str(rootfs))
    return config, rootfs


@pytest.mark.parametrize("example", ["basics", "copy"])
def test_same_result_as_buildah(example, build, examples, inspect, tmp_path, podman_base):
    text = (examples / f"{example}.Dockerfile").read_text()
    # buildah lacks COPY --link/--exclude/--parents: compare on the instructions both know.
    lines = [line for line in text.splitlines() if not any(f in line for f in ("--link", "--exclude", "--parents"))]
    text = "\n".join(lines).replace(" && test ! -e /app/excluded/notes.md", "") + "\n"
    text = text.replace("FROM busybox\n", f"FROM {podman_base}\n").replace("BASE=busybox:latest", f"BASE={podman_base}")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(text)
    name = f"localhost/dockyard-cmp-{example}-{os.getpid()}:latest"
    ours = tmp_path / "ours"
    build(examples, "-t", "ours", "-o", f"type=local,dest={ours}", dockerfile=dockerfile)
    _buildah("build", "--pull=never", "--format", "docker", "-f", str(dockerfile), "-t", name, str(examples))
    try:
        theirs_config, theirs = _buildah_result(name, tmp_path)
    finally:
        _buildah("rmi", "-f", name)
    mine = inspect.image("ours").config["config"]
    theirs_cfg = dict(theirs_config["config"])
    theirs_cfg["Labels"] = {k: v for k, v in (theirs_cfg.get("Labels") or {}).items() if k != "io.buildah.version"}
    for key in CONFIG_FIELDS:
        assert (mine.get(key) or None) == (theirs_cfg.get(key) or None), key
    theirs_tree = {k: v for k, v in _tree(theirs).items() if k not in BUILDAH_EXTRAS}
    assert _tree(ours) == theirs_tree


def test_push_to_distribution(build, tmp_path, inspect):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "client"))
    from registries import start_distribution

    server = start_distribution(tmp_path / "registry")
    env = {"DOCKYARD_CONFIG": str(tmp_path / "daemon.json"), "DOCKER_CONFIG": str(tmp_path / "docker"),
           "DOCKYARD_CERTS_D": str(tmp_path / "certs.d")}
    try:
        ctx = tmp_path / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo pushed > /pushed\n")
        name = f"{server.host}/built/app:1"
        build(ctx, "-t", name, "--push", env=env)
        remote = json.loads(subprocess.run([tool("skopeo"), "inspect", "--tls-verify=false", "--raw",
                                            f"docker://{name}"], capture_output=True, check=True).stdout)
        image = inspect.image(name)
        assert [l["digest"] for l in remote["layers"]] == [str(d.digest) for d in image.layers]
        assert remote["config"]["digest"] == str(image.id)
    finally:
        server.stop()
