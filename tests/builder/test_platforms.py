"""Multi-platform images: an arm64 base from Debian's arm64 busybox-static, a `--platform linux/amd64,linux/arm64`
build whose arm64 RUN runs under qemu-user-static, the index it makes (run, images, push to our registry and
podman pulling each platform, save/load, gc) and hostile platform strings and archives.

scripts/install.sh downloads busybox-static:arm64 into /var/cache/dockyard-tests, so no test needs the internet."""

from __future__ import annotations

import glob
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest
from support import REPO, run_cli, tool

import dockyard.api
from dockyard.digest import Digest
from dockyard.image import Platform
from dockyard.inroot import layered_path
from dockyard.store import Store
from runner import binfmt

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "client"))
from registries import start_dockyard_registry

DEB_CACHE = "/var/cache/dockyard-tests"
DOCKERFILE = """\
FROM --platform=$BUILDPLATFORM base-amd64 AS cross
RUN uname -m > /built-on
ARG TARGETARCH
FROM base-${TARGETARCH}
ARG TARGETPLATFORM
ARG TARGETARCH
ARG TARGETVARIANT
ARG BUILDPLATFORM
ARG BUILDARCH
RUN uname -m > /arch && echo "$TARGETPLATFORM $TARGETARCH [$TARGETVARIANT] $BUILDPLATFORM $BUILDARCH" > /args \\
    && cp /bin/busybox /bb-copy
COPY --from=cross /built-on /built-on
COPY hello.txt /hello.txt
"""


def _rootfs_tar(tmp: Path, name: str, busybox: str) -> Path:
    """A busybox rootfs (examples/busybox-rootfs.sh) around the given busybox binary, as a tarball."""
    root = tmp / name
    subprocess.run(["bash", str(REPO / "examples" / "busybox-rootfs.sh"), str(root)], check=True,
                   env={**os.environ, "BUSYBOX": busybox})
    tar = tmp / f"{name}.tar"
    with tarfile.open(tar, "w", format=tarfile.PAX_FORMAT) as tf:
        for entry in sorted(os.listdir(root)):
            tf.add(root / entry, arcname=entry)
    return tar


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A store with base-amd64 and base-arm64 (imported with --platform) and multi:1 built for both."""
    debs = glob.glob(f"{DEB_CACHE}/busybox-static_*_arm64.deb")
    assert debs, f"no busybox-static arm64 .deb in {DEB_CACHE} (scripts/install.sh downloads it)"
    tmp = tmp_path_factory.mktemp("platforms")
    subprocess.run(["dpkg-deb", "-x", debs[0], str(tmp / "deb")], check=True)
    # The arm64 busybox lists its applets on this host, under qemu: its handler registered as dockyard does it
    # (on a machine just booted, qemu-user-static may be installed with none registered).
    binfmt.ensure(Platform(architecture="arm64"))
    root = str(tmp / "store")
    run_cli(root, "import", "--platform", "linux/arm64",
            str(_rootfs_tar(tmp, "arm64", str(tmp / "deb" / "bin" / "busybox"))), "base-arm64")
    run_cli(root, "import", str(_rootfs_tar(tmp, "amd64", "/bin/busybox")), "base-amd64")
    ctx = tmp / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "hello.txt").write_text("hello\n")
    res = run_cli(root, "build", "--progress", "plain", "--network", "none", "--platform",
                  "linux/amd64,linux/arm64", "-t", "multi:1", "--iidfile", str(tmp / "iid"), str(ctx))
    yield {"root": root, "tmp": tmp, "ctx": ctx, "log": res.err, "iid": (tmp / "iid").read_text()}


def _index(root: str, name: str) -> dict:
    store = Store(root)
    digest = next(e.digest for e in store.entries() if e.name == f"docker.io/library/{name}" or e.name == name)
    return json.loads(store.read_blob(digest))


def _file(root: str, image: str, platform: str, path: str) -> tuple[str, str]:
    """A file of one platform's image: its content and what `file` says of it."""
    store = Store(root)
    found = layered_path(store.lowerdirs(store.resolve(image, Platform.parse(platform))), path)
    assert found is not None, f"{path} not in {image} for {platform}"
    what = subprocess.run([tool("file"), "-b", found], capture_output=True, text=True, check=True).stdout
    return Path(found).read_bytes().decode(errors="replace"), what


def test_import_platform_sets_the_config(built):
    image = Store(built["root"]).resolve("base-arm64")
    assert (image.config["os"], image.config["architecture"]) == ("linux", "arm64")
    assert "ARM aarch64" in _file(built["root"], "base-arm64", "linux/arm64", "/bin/busybox")[1]


def test_build_makes_an_index_of_both_platforms(built):
    index = _index(built["root"], "multi:1")
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert [m["platform"] for m in index["manifests"]] == [{"os": "linux", "architecture": "amd64"},
                                                            {"os": "linux", "architecture": "arm64"}]
    assert built["iid"] == next(str(e.digest) for e in Store(built["root"]).entries() if e.name and "multi" in e.name)
    arm = _file(built["root"], "multi:1", "linux/arm64", "/bb-copy")[1]
    amd = _file(built["root"], "multi:1", "linux/amd64", "/bb-copy")[1]
    assert "ARM aarch64" in arm and "x86-64" in amd  # the RUN copied each platform's own binary
    assert _file(built["root"], "multi:1", "linux/arm64", "/arch")[0] == "aarch64\n"  # RUN ran under qemu
    assert _file(built["root"], "multi:1", "linux/arm64", "/args")[0] == "linux/arm64 arm64 [] linux/amd64 amd64\n"
    assert _file(built["root"], "multi:1", "linux/amd64", "/args")[0] == "linux/amd64 amd64 [] linux/amd64 amd64\n"
    # FROM --platform=$BUILDPLATFORM: the cross stage ran natively, once (the second platform's is cached).
    assert _file(built["root"], "multi:1", "linux/arm64", "/built-on")[0] == "x86_64\n"
    assert built["log"].count("RUN uname -m > /built-on\n#") == 2 and "CACHED" in built["log"]
    configs = {p: Store(built["root"]).resolve("multi:1", Platform.parse(p)).config["architecture"]
               for p in ("linux/amd64", "linux/arm64")}
    assert configs == {"linux/amd64": "amd64", "linux/arm64": "arm64"}


def test_run_picks_the_platform(built):
    root = built["root"]
    assert run_cli(root, "run", "--rm", "--network", "none", "--platform", "linux/arm64", "multi:1",
                   "uname", "-m").out == "aarch64\n"
    assert run_cli(root, "run", "--rm", "--network", "none", "multi:1", "uname", "-m").out == "x86_64\n"
    res = run_cli(root, "run", "--rm", "--network", "none", "--platform", "linux/arm/v7", "multi:1", "true",
                  check=False)
    assert res.code != 0 and res.err.count("\n") == 1 and "Traceback" not in res.err
    assert "no linux/arm/v7 image" in res.err and "(it has linux/amd64, linux/arm64)" in res.err
    res = run_cli(root, "run", "--rm", "--network", "none", "--platform", "linux/amd64", "base-arm64", "true",
                  check=False)
    assert res.code != 0 and "is linux/arm64, not linux/amd64" in res.err
    client = dockyard.api.Client(root)  # docker-py's platform= too
    assert client.containers.run("multi:1", ["uname", "-m"], platform="linux/arm64", network_mode="none",
                                 remove=True) == b"aarch64\n"
    attrs = client.images.get("multi:1").attrs
    assert attrs["RepoTags"] == ["multi:1"] and attrs["Architecture"] == "amd64"


def test_images_shows_the_platforms(built):
    out = run_cli(built["root"], "images", "--format", "{{.Repository}}:{{.Tag}} {{.Platforms}}").out
    assert "multi:1 linux/amd64,linux/arm64\n" in out
    rows = [r for r in out.splitlines() if r.startswith("multi")]
    assert len(rows) == 1  # one row per tag, as docker's containerd image store


def test_gc_keeps_the_children_of_a_tagged_index(built):
    Store(built["root"]).gc(drop_unpacked=True)
    for platform in ("linux/amd64", "linux/arm64"):
        assert _file(built["root"], "multi:1", platform, "/hello.txt")[0] == "hello\n"


def test_push_and_podman_pulls_each_platform(built, tmp_path):
    server = start_dockyard_registry(tmp_path / "reg")
    short = tempfile.mkdtemp(prefix="pd", dir="/tmp")  # podman limits the runroot path to 50 characters
    podman = [tool("podman"), "--root", f"{short}/s", "--runroot", f"{short}/r", "--storage-driver", "vfs"]
    try:
        name = f"{server.host}/multi/app:1"
        run_cli(built["root"], "tag", "multi:1", name)
        run_cli(built["root"], "push", "-q", name)
        index = _index(built["root"], name)
        store = Store(built["root"])
        configs = {m["platform"]["architecture"]: store.image(Digest.parse(m["digest"])).id.hex
                   for m in index["manifests"]}
        for arch in ("arm64", "amd64"):
            subprocess.run([*podman, "pull", "-q", "--tls-verify=false", "--arch", arch, name], check=True,
                           capture_output=True)
            got = subprocess.run([*podman, "image", "inspect", "--format", "{{.Architecture}} {{.ID}}", name],
                                 check=True, capture_output=True, text=True).stdout.split()
            assert got == [arch, configs[arch]]  # podman chose that platform's image from the index
        # The build's --push: the index again (nothing new), from a fresh tag.
        res = run_cli(built["root"], "build", "-q", "--network", "none", "--platform", "linux/amd64,linux/arm64",
                      "-t", f"{server.host}/multi/app:2", "--push", str(built["ctx"]))
        assert res.out.strip() == built["iid"]
        raw = subprocess.run([tool("skopeo"), "inspect", "--raw", "--tls-verify=false",
                              f"docker://{server.host}/multi/app:2"], check=True, capture_output=True).stdout
        assert json.loads(raw) == index
    finally:
        subprocess.run([*podman, "rmi", "-a", "-f"], capture_output=True)
        shutil.rmtree(short, ignore_errors=True)
        server.stop()


def test_save_load_keeps_every_platform(built, tmp_path):
    archive = tmp_path / "multi.tar"
    run_cli(built["root"], "save", "--format", "oci-archive", "-o", str(archive), "multi:1")
    other = str(tmp_path / "other")
    assert run_cli(other, "load", "-i", str(archive)).out == "Loaded image: multi:1\n"
    assert _index(other, "multi:1") == _index(built["root"], "multi:1")
    for platform, arch in (("linux/arm64", "aarch64\n"), ("linux/amd64", "x86_64\n")):
        assert _file(other, "multi:1", platform, "/arch")[0] == arch
    run_cli(other, "rmi", "multi:1")  # the index and, at gc, every platform's blobs go
    assert run_cli(other, "images", "-q").out == ""
    Store(other).gc()
    assert os.listdir(os.path.join(other, "images", "blobs", "sha256")) == []


def _archive_with_index(path: Path, index: dict, blobs: dict[str, bytes]) -> None:
    """An oci-archive whose index.json names one image index (and the given blobs)."""
    data = json.dumps(index).encode()
    import hashlib

    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with tarfile.open(path, "w") as tf:
        for name, content in {**blobs, f"blobs/sha256/{digest[7:]}": data,
                              "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
                              "index.json": json.dumps({"schemaVersion": 2, "manifests": [
                                  {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest,
                                   "size": len(data), "annotations": {
                                       "io.containerd.image.name": "docker.io/library/evil:1"}}]}).encode()}.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tf.addfile(info, io.BytesIO(content))


def test_hostile_platforms_and_indexes(built, tmp_path):
    root = built["root"]
    for bad in ("garbage", "linux/../../etc", "linux/amd64,", "linux/amd64/v1/x", "../x/y", "linux/" + "a" * 200):
        res = run_cli(root, "build", "--platform", bad, str(built["ctx"]), check=False)
        assert res.code != 0 and res.err.count("\n") == 1 and "Traceback" not in res.err, res.err
        assert res.err.startswith("Error: invalid platform"), res.err
        res = run_cli(root, "import", "--platform", bad, "/dev/null", check=False)
        assert res.code != 0 and res.err.startswith("Error: invalid platform"), res.err
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM --platform=linux/../x base-amd64\n")
    res = run_cli(root, "build", str(ctx), check=False)
    assert res.code != 0 and "Dockerfile:1" in res.err and "invalid platform" in res.err
    missing = "sha256:" + "ab" * 32
    _archive_with_index(tmp_path / "missing.tar", {"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": missing, "size": 300,
         "platform": {"os": "linux", "architecture": "arm64"}}]}, {})
    res = run_cli(root, "load", "-i", str(tmp_path / "missing.tar"), check=False)
    assert res.code != 0 and res.err.count("\n") == 1 and f"missing file 'blobs/sha256/{missing[7:]}'" in res.err
    huge = b"{" + b" " * (5 << 20) + b"}"
    import hashlib

    huge_digest = "sha256:" + hashlib.sha256(huge).hexdigest()
    _archive_with_index(tmp_path / "huge.tar", {"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": huge_digest, "size": len(huge),
         "platform": {"os": "linux", "architecture": "arm64"}}]}, {f"blobs/sha256/{huge_digest[7:]}": huge})
    res = run_cli(root, "load", "-i", str(tmp_path / "huge.tar"), check=False)
    assert res.code != 0 and res.err.count("\n") == 1 and "too large" in res.err
    assert "evil" not in run_cli(root, "images").out


def test_one_cache_for_every_platform(built, tmp_path):
    """--cache-to of a multi-platform build holds every platform's steps; a build with an empty local cache
    takes them all from it and makes the same index."""
    root, cache = built["root"], tmp_path / "cache"
    multi = ("build", "--progress", "plain", "--network", "none", "--platform", "linux/amd64,linux/arm64")
    run_cli(root, *multi, "-t", "multi:1", "--cache-to", f"type=local,dest={cache},mode=max", str(built["ctx"]))
    run_cli(root, "builder", "prune")
    res = run_cli(root, *multi, "-t", "multi:1", "--cache-from", f"type=local,src={cache}",
                  "--iidfile", str(tmp_path / "iid"), str(built["ctx"]))
    ran = {m.group(1): m.group(2) for m in re.finditer(r"^#(\d+) \[[^\]]*\] ((?:RUN|COPY) .*)$", res.err, re.M)}
    assert len(ran) == 8, res.err  # the cross stage's RUN and the final stage's RUN and two COPYs, per platform
    statuses = {n: re.search(rf"^#{n} (CACHED|DONE)", res.err, re.M).group(1) for n in ran}
    assert set(statuses.values()) == {"CACHED"}, res.err
    assert (tmp_path / "iid").read_text() == built["iid"]


def _members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tf:
        return {m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}


def test_docker_archive_keeps_every_platform(built, tmp_path):
    """The default `save` (docker-archive) of a multi-platform image, as docker's containerd store writes it: the
    index and every platform's blobs in the OCI layout, manifest.json naming the host's image; `load` restores
    the index, skopeo reads the host's image; an index missing a platform's manifest fails in one line."""
    root, archive = built["root"], tmp_path / "multi.tar"
    run_cli(root, "save", "-o", str(archive), "multi:1")
    files = _members(archive)
    top = json.loads(files["index.json"])["manifests"]
    assert [(m["mediaType"], m["digest"]) for m in top] == [("application/vnd.oci.image.index.v1+json", built["iid"])]
    index = json.loads(files[f"blobs/sha256/{built['iid'][7:]}"])
    assert index == _index(root, "multi:1")
    host = Store(root).resolve("multi:1")
    [entry] = json.loads(files["manifest.json"])
    assert entry["Config"] == f"blobs/sha256/{host.id.hex}" and entry["RepoTags"] == ["multi:1"]
    assert all(layer in files for layer in entry["Layers"])
    config = json.loads(subprocess.run([tool("skopeo"), "inspect", "--config", f"docker-archive:{archive}"],
                                       check=True, capture_output=True).stdout)
    assert config["architecture"] == "amd64" and config["rootfs"]["diff_ids"] == [str(d) for d in host.diff_ids]

    other = str(tmp_path / "other")
    assert run_cli(other, "load", "-i", str(archive)).out == "Loaded image: multi:1\n"
    assert _index(other, "multi:1") == index
    assert _file(other, "multi:1", "linux/arm64", "/arch")[0] == "aarch64\n"

    arm = next(m["digest"] for m in index["manifests"] if m["platform"]["architecture"] == "arm64")
    broken = tmp_path / "broken.tar"
    with tarfile.open(broken, "w") as tf:
        for name, data in files.items():
            if name != f"blobs/sha256/{arm[7:]}":
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    res = run_cli(str(tmp_path / "third"), "load", "-i", str(broken), check=False)
    assert res.code != 0 and res.err.count("\n") == 1 and "Traceback" not in res.err, res.err
    assert f"missing file 'blobs/sha256/{arm[7:]}'" in res.err
    assert run_cli(str(tmp_path / "third"), "images", "-q").out == ""


def test_build_outputs_every_platform(built, tmp_path):
    """--output of a multi-platform build: local writes a directory per platform (as BuildKit), oci and docker
    archives carry the whole index."""
    root, out = built["root"], tmp_path / "out"
    run_cli(root, "build", "-q", "--network", "none", "--platform", "linux/amd64,linux/arm64",
            "--iidfile", str(tmp_path / "iid"), "--output", f"type=local,dest={out / 'rootfs'}",
            "--output", f"type=oci,dest={out / 'oci.tar'}", "--output", f"type=docker,dest={out / 'docker.tar'}",
            str(built["ctx"]))
    iid = (tmp_path / "iid").read_text()
    assert len(json.loads(Store(root).read_blob(Digest.parse(iid)))["manifests"]) == 2
    assert sorted(os.listdir(out / "rootfs")) == ["linux_amd64", "linux_arm64"]
    assert (out / "rootfs" / "linux_arm64" / "arch").read_text() == "aarch64\n"
    assert (out / "rootfs" / "linux_amd64" / "arch").read_text() == "x86_64\n"
    assert (out / "rootfs" / "linux_arm64" / "hello.txt").read_text() == "hello\n"
    for kind in ("oci", "docker"):
        files = _members(out / f"{kind}.tar")
        [top] = json.loads(files["index.json"])["manifests"]
        assert top["digest"] == iid, kind
        other = str(tmp_path / kind)
        run_cli(other, "load", "-i", str(out / f"{kind}.tar"))
        assert [str(e.digest) for e in Store(other).entries()] == [iid], kind


def test_a_missing_emulator_is_named(built, tmp_path):
    """No qemu for the platform, or no handler and no qemu-user-static config for it: `run` and a RUN step say
    exactly what is missing, in one line, and leave no container and no image behind."""
    root = built["root"]
    rootfs = _rootfs_tar(tmp_path, "any", "/bin/busybox")
    for platform in ("linux/s390x", "linux/sparc64"):
        run_cli(root, "import", "--platform", platform, str(rootfs), f"base-{platform[6:]}")
    handler = "/proc/sys/fs/binfmt_misc/qemu-s390x"
    if os.path.exists(handler):  # registered by an earlier run: unregister it (dockyard registers it when needed)
        Path(handler).write_text("-1")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM base-s390x\nRUN true\n")
    # qemu-user-static's handler files hidden as on a host without the package: an empty tmpfs over their dirs.
    hide = "mount -t tmpfs none /usr/lib/binfmt.d && { [ ! -d /etc/binfmt.d ] || mount -t tmpfs none /etc/binfmt.d; }"
    missing = ("cannot run linux/s390x binaries: no binfmt_misc handler qemu-s390x and no "
               "/usr/lib/binfmt.d/qemu-s390x.conf (install qemu-user-static)")
    images = run_cli(root, "images", "-q").out
    for where, args in (("", ["run", "--rm", "--network", "none", "base-s390x", "true"]),
                        ("Dockerfile:2: ", ["build", "--network", "none", "--platform", "linux/s390x", "-t", "never",
                                            str(ctx)])):
        p = subprocess.run([tool("unshare"), "-m", "--propagation", "private", "sh", "-c",
                            f'{hide} && exec "$@"', "sh", sys.executable, "-m", "dockyard", *args],
                           capture_output=True, text=True, env={**os.environ, "DOCKYARD_ROOT": root})
        assert p.returncode != 0 and p.stderr.splitlines()[-1] == f"Error: {where}{missing}", p.stderr
        assert "Traceback" not in p.stderr
    assert not os.path.exists(handler)
    res = run_cli(root, "run", "--rm", "--network", "none", "base-sparc64", "true", check=False)
    assert res.code != 0 and res.err == "Error: cannot run linux/sparc64 binaries: no qemu emulator is known for " \
        "sparc64\n", res.err
    assert run_cli(root, "ps", "-aq").out == "" and run_cli(root, "images", "-q").out == images
