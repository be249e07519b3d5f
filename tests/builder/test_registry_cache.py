"""A build cache shared through a registry (ours and distribution 2.8), an OCI layout directory and an image's own
manifest: runner A builds and exports, runner B (another, empty store) imports and must reuse every step, lazily."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from support import run_cli
from test_build_cache import steps

from dockyard.digest import Digest
from dockyard.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "client"))
from registries import start_distribution, start_dockyard_registry

DOCKERFILE = """\
FROM {reg}/base/busybox AS builder
ARG JUNK=/dev/urandom
RUN head -c 200000 $JUNK > /junk && echo built > /out
RUN cat /out > /out2
FROM {reg}/base/busybox
COPY a.txt /a.txt
COPY --from=builder /out2 /out2
RUN cat /a.txt /out2 > /both
ENV DONE=1
"""
BUILDER_RUNS = ("RUN head -c 200000 $JUNK > /junk && echo built > /out", "RUN cat /out > /out2")
FINAL_STEPS = ("COPY a.txt /a.txt", "COPY --from=builder /out2 /out2", "RUN cat /a.txt /out2 > /both", "ENV DONE=1")


@pytest.fixture(scope="module")
def registries(tmp_path_factory, busybox_store):
    """Our registry and distribution 2.8 on loopback, each holding base/busybox (pushed from a copy of the
    busybox store); the client's config dirs in a temp dir."""
    tmp = tmp_path_factory.mktemp("regcache")
    saved = {k: os.environ.get(k) for k in ("DOCKYARD_CONFIG", "DOCKER_CONFIG", "DOCKYARD_CERTS_D",
                                            "DOCKYARD_DEFAULT_REGISTRY")}
    os.environ.update(DOCKYARD_CONFIG=str(tmp / "daemon.json"), DOCKER_CONFIG=str(tmp / "docker"),
                      DOCKYARD_CERTS_D=str(tmp / "certs.d"))
    os.environ.pop("DOCKYARD_DEFAULT_REGISTRY", None)
    servers = {"ours": start_dockyard_registry(tmp / "ours"), "distribution": start_distribution(tmp / "dist")}
    try:
        seed = str(tmp / "seed")
        shutil.copytree(busybox_store, seed, symlinks=True)
        for server in servers.values():
            run_cli(seed, "tag", "busybox:latest", f"{server.host}/base/busybox:latest")
            run_cli(seed, "push", "-q", f"{server.host}/base/busybox:latest")
        yield {name: s.host for name, s in servers.items()}
    finally:
        for server in servers.values():
            server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class Runner:
    """A CI runner: its own store, empty at first."""

    def __init__(self, root: Path):
        self.root = str(root)

    def build(self, ctx: Path, *args: str, check: bool = True, env: dict | None = None):
        iid = Path(self.root + ".iid")
        res = run_cli(self.root, "build", "--network", "none", "--metadata-file", str(iid), *args, str(ctx),
                      check=check, env=env)
        res.digest = json.loads(iid.read_text())["containerimage.digest"] if check else None
        res.steps = {k: v for k, v in steps(res.err).items() if k.split()[0] not in ("FROM", "ARG")}
        return res

    def blobs(self) -> set[str]:
        base = os.path.join(self.root, "images", "blobs", "sha256")
        return {f"sha256:{n}" for n in os.listdir(base)}

    def image_layers(self, digest: str) -> list[str]:
        return [str(d.digest) for d in Store(self.root).image(Digest.parse(digest)).layers]


@pytest.fixture
def runners(tmp_path):
    return Runner(tmp_path / "a"), Runner(tmp_path / "b")


def context(tmp_path: Path, reg: str, text: str = "v1\n") -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(DOCKERFILE.format(reg=reg))
    (ctx / "a.txt").write_text(text)
    return ctx


def cache_layers(a: Runner, ref: str) -> list[str]:
    """The layer digests of the build cache manifest at `ref` (as pulled raw through the registry API)."""
    import requests

    host, _, rest = ref.partition("/")
    repo, _, tag = rest.partition(":")
    r = requests.get(f"http://{host}/v2/{repo}/manifests/{tag}",
                     headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}, timeout=10)
    r.raise_for_status()
    manifest = r.json()
    assert manifest["config"]["mediaType"] == "application/vnd.dockyard.buildcache.config.v1+json"
    assert manifest["artifactType"] == "application/vnd.dockyard.buildcache.v1"
    return manifest["layers"]


@pytest.mark.parametrize("which", ["ours", "distribution"])
def test_runner_b_reuses_every_step_and_fetches_only_the_final_layers(registries, runners, tmp_path, which):
    reg = registries[which]
    a, b = runners
    ref = f"{reg}/cache/app:buildcache"
    ctx = context(tmp_path, reg)
    built = a.build(ctx, "--cache-to", f"type=registry,ref={ref},mode=max")
    assert set(built.steps.values()) == {"DONE"}, built.err
    b_first = b.build(ctx, "--cache-from", f"type=registry,ref={ref}")
    assert b_first.steps == dict.fromkeys((*BUILDER_RUNS, *FINAL_STEPS), "CACHED"), b_first.err
    assert b_first.digest == built.digest
    # B fetched the final image's layers and nothing of the builder stage (the cache holds its layers).
    final = b.image_layers(b_first.digest)
    builder_only = {d["digest"] for d in cache_layers(a, ref)} - set(final)
    assert builder_only and not builder_only & b.blobs()
    # One file changes: the steps before its COPY still hit, the ones after run.
    (ctx / "a.txt").write_text("v2\n")
    again = b.build(ctx, "--cache-from", f"type=registry,ref={ref}")
    assert [again.steps[s] for s in BUILDER_RUNS] == ["CACHED", "CACHED"], again.err
    assert [again.steps[s] for s in FINAL_STEPS] == ["DONE"] * 4, again.err


def test_mode_min_exports_only_the_final_image_steps(registries, runners, tmp_path):
    reg = registries["ours"]
    a, b = runners
    ref = f"{reg}/cache/app:min"
    ctx = context(tmp_path, reg)
    a.build(ctx, "--cache-to", f"type=registry,ref={ref},mode=min,compression=zstd")
    # The builder stage's layers are not in a min cache; the final image's four are, recompressed.
    assert [d["mediaType"] for d in cache_layers(a, ref)] == ["application/vnd.oci.image.layer.v1.tar+zstd"] * 4
    got = b.build(ctx, "--cache-from", f"type=registry,ref={ref}")
    assert [got.steps[s] for s in BUILDER_RUNS] == ["DONE", "DONE"], got.err
    assert got.steps["COPY a.txt /a.txt"] == "CACHED"


def test_local_directory_cache(registries, runners, tmp_path):
    a, b = runners
    ctx = context(tmp_path, registries["ours"])
    cache = tmp_path / "cache"
    built = a.build(ctx, "--cache-to", f"type=local,dest={cache},mode=max")
    assert (cache / "index.json").is_file() and (cache / "oci-layout").is_file()
    got = b.build(ctx, "--cache-from", f"type=local,src={cache}")
    assert set(got.steps.values()) == {"CACHED"}, got.err
    assert got.digest == built.digest


def test_inline_cache_in_a_pushed_image(registries, runners, tmp_path):
    reg = registries["distribution"]
    a, b = runners
    ctx = context(tmp_path, reg)
    image = f"{reg}/app/inline:1"
    # Reproducible: the builder stage, not in the image, runs again on B to the very same result.
    same = ("--build-arg", "JUNK=/dev/zero")
    epoch = {"SOURCE_DATE_EPOCH": "1700000000"}
    built = a.build(ctx, *same, "-t", image, "--cache-to", "type=inline", "--push", env=epoch)
    got = b.build(ctx, *same, "--cache-from", image, env=epoch)
    assert [got.steps[s] for s in FINAL_STEPS] == ["CACHED"] * 4, got.err
    assert [got.steps[s] for s in BUILDER_RUNS] == ["DONE", "DONE"], got.err
    assert Store(b.root).image(Digest.parse(got.digest)).id == Store(a.root).image(Digest.parse(built.digest)).id


def _rewrite(cache: Path, edit) -> None:
    """Change the records of a local cache: edit(document) in place, new config and manifest blobs written."""
    index = json.loads((cache / "index.json").read_text())
    blob = lambda d: cache / "blobs" / "sha256" / d.split(":")[1]  # noqa: E731
    manifest = json.loads(blob(index["manifests"][0]["digest"]).read_bytes())
    doc = blob(manifest["config"]["digest"]).read_bytes()
    data = edit(doc)
    import hashlib

    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blob(digest).write_bytes(data)
    manifest["config"].update(digest=digest, size=len(data))
    body = json.dumps(manifest).encode()
    mdigest = "sha256:" + hashlib.sha256(body).hexdigest()
    blob(mdigest).write_bytes(body)
    index["manifests"][0].update(digest=mdigest, size=len(body))
    (cache / "index.json").write_text(json.dumps(index))


def test_hostile_caches_are_ignored_cleanly(registries, runners, tmp_path):
    a, b = runners
    ctx = context(tmp_path, registries["ours"])
    cache = tmp_path / "cache"
    a.build(ctx, "--cache-to", f"type=local,dest={cache},mode=max")
    pristine = tmp_path / "pristine"
    shutil.copytree(cache, pristine)

    # Garbage records: a warning, every step runs.
    _rewrite(cache, lambda doc: b"\x00not json")
    got = b.build(ctx, "--cache-from", f"type=local,src={cache}")
    assert "malformed records ignored" in got.err and "Traceback" not in got.err
    assert "CACHED" not in got.steps.values()

    # A record whose layer is another blob of the cache (its digest checks out, its content is not the diff_id
    # the record's config gives): the build starts again without that record and succeeds.
    shutil.rmtree(cache)
    shutil.copytree(pristine, cache)

    def swap(doc: bytes) -> bytes:
        obj = json.loads(doc)
        count = 1 + max(i for r in obj["records"] for i in r["layers"])
        for r in obj["records"]:
            r["layers"][-1] = (r["layers"][-1] + 1) % count
        return json.dumps(obj).encode()

    c = Runner(tmp_path / "c")
    _rewrite(cache, swap)
    got = c.build(ctx, "--cache-from", f"type=local,src={cache}")
    assert "building again" in got.err and "Traceback" not in got.err, got.err

    # A blob replaced by a link to a file outside the cache directory holding its very bytes: never followed.
    shutil.rmtree(cache)
    shutil.copytree(pristine, cache)
    doc = json.loads(next(p for p in (cache / "blobs" / "sha256").iterdir() if b'"records"' in p.read_bytes())
                     .read_bytes())
    manifest = json.loads((cache / "blobs" / "sha256" / json.loads((cache / "index.json").read_text())
                           ["manifests"][0]["digest"].split(":")[1]).read_bytes())
    assert doc["records"]
    layer = cache / "blobs" / "sha256" / manifest["layers"][-1]["digest"].split(":")[1]
    outside = tmp_path / "outside"
    shutil.copyfile(layer, outside)
    layer.unlink()
    layer.symlink_to(outside)
    d = Runner(tmp_path / "d")
    got = d.build(ctx, "--cache-from", f"type=local,src={cache}")
    assert "building again" in got.err and "Traceback" not in got.err, got.err

    # The same blob with other bytes (a cache served by a hostile peer): refused by its digest, not used.
    layer.unlink()
    layer.write_bytes(bytes(outside.stat().st_size))
    e = Runner(tmp_path / "e")
    got = e.build(ctx, "--cache-from", f"type=local,src={cache}")
    assert "building again" in got.err and "Traceback" not in got.err, got.err
    assert manifest["layers"][-1]["digest"] not in e.blobs()


@pytest.mark.parametrize("flag,value,part", [
    ("--cache-to", "type=gha", "type=gha"),
    ("--cache-to", "type=registry,ref=x/y,mode=all", "mode=all"),
    ("--cache-to", "type=registry", "ref=REF"),
    ("--cache-to", "type=local,dest=/tmp/x,color=red", "color=red"),
    ("--cache-from", "type=registry,ref=BAD REF", "ref=BAD REF"),
    ("--cache-from", "type=inline", "type=inline"),
    ("--cache-to", "type=registry,ref=x/y,compression=lz4", "compression=lz4"),
])
def test_bad_cache_flags_fail_in_one_line(dockyard, tmp_path, flag, value, part):
    res = dockyard("build", flag, value, str(tmp_path), check=False)
    assert res.code != 0 and part in res.err and len(res.err.strip().splitlines()) == 1, res.err
