"""Build attestations: `--sbom` (SPDX 2.3 from the image's dpkg/apk databases and files) and `--provenance` (SLSA v1)
stored as OCI referrers of the image, kept and dropped with it, pushed after it to our registry, found there through
the referrers API and pulled with oras and with the image; on distribution 2.8 (no referrers API) through the
spec's tag schema; reproducible with SOURCE_DATE_EPOCH; hostile package databases."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import requests
from support import run_cli

from dockyard.digest import Digest
from dockyard.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "client"))
from registries import start_distribution, start_dockyard_registry

SPDX_JSON = "application/spdx+json"
IN_TOTO_JSON = "application/vnd.in-toto+json"
STATUS = """\
Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.36-9+deb12u4
Description: GNU C Library
 continued description line

Package: gone
Status: deinstall ok config-files
Version: 1.0

Package: BAD NAME!
Version: 1
"""
APK = "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\n\nP:busybox\nV:1:bad version\n\n"
DOCKERFILE = """\
FROM busybox:latest
ARG FLAVOUR=plain
COPY status /var/lib/dpkg/status
COPY installed /lib/apk/db/installed
COPY os-release /etc/os-release
RUN mkdir -p /var/lib/dpkg/status.d && printf 'Package: base-files\\nVersion: 1:12.4\\n' \
    > /var/lib/dpkg/status.d/base-files && echo "$FLAVOUR" > /hello.txt
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Our registry on loopback (plain HTTP), the client's config dirs in a temp dir."""
    tmp = tmp_path_factory.mktemp("attest-registry")
    saved = {k: os.environ.get(k) for k in ("DOCKYARD_CONFIG", "DOCKER_CONFIG", "DOCKYARD_CERTS_D")}
    os.environ.update(DOCKYARD_CONFIG=str(tmp / "daemon.json"), DOCKER_CONFIG=str(tmp / "docker"),
                      DOCKYARD_CERTS_D=str(tmp / "certs.d"))
    srv = start_dockyard_registry(tmp / "ours")
    try:
        yield srv
    finally:
        srv.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def app(context):
    return context({"Dockerfile": DOCKERFILE, "status": STATUS, "installed": APK, "os-release": 'ID="debian"\n'})


def documents(root: str, name: str) -> dict[str, tuple[Digest, dict, bytes]]:
    """The image's referrers by artifact type: (manifest digest, manifest, document bytes)."""
    store = Store(root)
    image = store.resolve(name)
    out = {}
    for r in store.referrers(image.manifest_digest):
        manifest = json.loads(store.read_blob(r.digest))
        assert manifest["subject"]["digest"] == str(image.manifest_digest)
        assert manifest["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
        assert manifest["artifactType"] == r.artifact_type not in out
        out[r.artifact_type] = (r.digest, manifest, store.read_blob(Digest.parse(manifest["layers"][0]["digest"])))
    return out


def spdx(doc: bytes) -> dict:
    """The SPDX document, its shape checked against SPDX 2.3's required fields."""
    d = json.loads(doc)
    assert d["spdxVersion"] == "SPDX-2.3" and d["dataLicense"] == "CC0-1.0" and d["SPDXID"] == "SPDXRef-DOCUMENT"
    assert d["name"] and d["documentNamespace"].startswith("https://")
    assert d["creationInfo"]["created"].endswith("Z") and d["creationInfo"]["creators"][0].startswith("Tool: ")
    ids = set()
    for p in d["packages"]:
        assert {"SPDXID", "name", "downloadLocation"} <= set(p) and p["SPDXID"] not in ids
        ids.add(p["SPDXID"])
    for f in d["files"]:
        assert {"SPDXID", "fileName", "checksums"} <= set(f) and f["SPDXID"] not in ids
        assert {c["algorithm"] for c in f["checksums"]} == {"SHA1", "SHA256"}
        ids.add(f["SPDXID"])
    for rel in d["relationships"]:
        assert rel["spdxElementId"] in ids | {"SPDXRef-DOCUMENT"} and rel["relatedSpdxElement"] in ids
    return d


def purls(d: dict) -> set[str]:
    return {ref["referenceLocator"] for p in d["packages"] for ref in p.get("externalRefs") or []}


def test_sbom_and_provenance_kept_with_the_image(build, dockyard, store_root, app, busybox_rootfs):
    r = build(app, "--network", "none", "-t", "app:1", "--sbom", "--provenance", "mode=max",
              "--build-arg", "FLAVOUR=spicy")
    assert "1 malformed dpkg entries skipped" in r.err and "1 malformed apk entries skipped" in r.err
    store = Store(store_root)
    image = store.resolve("app:1")
    docs = documents(store_root, "app:1")
    assert set(docs) == {SPDX_JSON, IN_TOTO_JSON}

    d = spdx(docs[SPDX_JSON][2])
    assert purls(d) == {"pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64", "pkg:deb/debian/base-files@1%3A12.4",
                        "pkg:apk/debian/musl@1.2.4-r2?arch=x86_64"}
    files = {f["fileName"]: {c["algorithm"]: c["checksumValue"] for c in f["checksums"]} for f in d["files"]}
    assert files["/hello.txt"] == {"SHA1": hashlib.sha1(b"spicy\n").hexdigest(),
                                   "SHA256": hashlib.sha256(b"spicy\n").hexdigest()}
    busybox = (busybox_rootfs / "bin" / "busybox").read_bytes()
    assert files["/bin/busybox"]["SHA256"] == hashlib.sha256(busybox).hexdigest()
    assert "/bin/sh" not in files  # a symlink: not a file with content

    p = json.loads(docs[IN_TOTO_JSON][2])
    assert p["_type"] == "https://in-toto.io/Statement/v1" and p["predicateType"] == "https://slsa.dev/provenance/v1"
    assert p["subject"] == [{"name": "pkg:docker/app@1?platform=linux%2Famd64",
                             "digest": {"sha256": image.manifest_digest.hex}}]
    definition = p["predicate"]["buildDefinition"]
    assert definition["externalParameters"]["configSource"] == {
        "path": "Dockerfile", "digest": {"sha256": hashlib.sha256(DOCKERFILE.encode()).hexdigest()}}
    assert definition["externalParameters"]["request"]["args"] == {"build-arg:FLAVOUR": "spicy"}
    base = store.resolve("busybox:latest").manifest_digest
    assert definition["resolvedDependencies"] == [{"uri": "pkg:docker/busybox@latest?platform=linux%2Famd64",
                                                   "digest": {"sha256": base.hex}}]
    details = p["predicate"]["runDetails"]
    assert details["builder"]["version"] == {"dockyard": "0.1.0"}
    assert details["metadata"]["invocationId"] and details["metadata"]["startedOn"] <= details["metadata"]["finishedOn"]

    # Built again (every step cached) with min provenance: it replaces the max one; no build-arg values in it.
    build(app, "--network", "none", "-t", "app:1", "--provenance=true", "--build-arg", "FLAVOUR=spicy")
    again = documents(store_root, "app:1")
    assert again[SPDX_JSON] == docs[SPDX_JSON] and again[IN_TOTO_JSON][0] != docs[IN_TOTO_JSON][0]
    assert "spicy" not in again[IN_TOTO_JSON][2].decode()
    listed = json.loads(dockyard("inspect", "--referrers", "app:1").out)
    assert listed[0]["Subject"] == str(image.manifest_digest)
    assert {(x["artifactType"], x["digest"]) for x in listed[0]["Referrers"]} == {
        (t, str(d)) for t, (d, _, _) in again.items()}

    # Untagged, they live as long as their subject: a prune keeps them, removing the image drops them.
    blobs = [d for d, _, _ in again.values()]
    dockyard("builder", "prune", "-f")
    assert all(store.has_blob(b) for b in blobs)
    dockyard("rmi", "app:1")
    assert not any(store.has_blob(b) for b in blobs)
    assert not os.listdir(os.path.join(store_root, "referrers"))


def test_reproducible_with_source_date_epoch(build, store_root, app, busybox_store, tmp_path):
    """Two stores, two builds: byte-identical image and attestation manifests."""
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    args = ("build", "--network", "none", "-t", "app:1", "--sbom", "--provenance", "mode=max", str(app))
    build(app, *args[1:-1], env=env)
    other = str(tmp_path / "other")
    shutil.copytree(busybox_store, other, symlinks=True)
    run_cli(other, *args, env=env)
    first, second = documents(store_root, "app:1"), documents(other, "app:1")
    assert first == second and set(first) == {SPDX_JSON, IN_TOTO_JSON}
    assert Store(store_root).resolve("app:1").manifest_digest == Store(other).resolve("app:1").manifest_digest
    assert json.loads(first[SPDX_JSON][2])["creationInfo"]["created"] == "2023-11-14T22:13:20Z"


def listed_and_pulled(tmp_path: Path, name: str, subject: Digest, local: dict) -> str:
    """`name`'s referrers as a store without the image lists them from the registry, then as a store that pulled the
    image keeps them (the same documents); returns that store's root."""
    remote = json.loads(run_cli(str(tmp_path / "empty"), "inspect", "--referrers", name).out)
    assert remote[0]["Subject"] == str(subject)
    assert {x["digest"] for x in remote[0]["Referrers"]} == {str(d) for d, _, _ in local.values()}
    pulled = str(tmp_path / "pulled-store")
    run_cli(pulled, "pull", name)
    assert documents(pulled, name) == local
    return pulled


def test_pushed_as_referrers_and_pulled_with_oras(build, dockyard, store_root, app, server, tmp_path):
    import oras.client

    name = f"{server.host}/attest/app:1"
    build(app, "--network", "none", "-t", name, "--attest", "type=sbom", "--attest", "type=provenance,mode=max")
    local = documents(store_root, name)
    pushed = dockyard("push", name)
    assert f"{SPDX_JSON}: digest: {local[SPDX_JSON][0]}" in pushed.out + pushed.err
    subject = Store(store_root).resolve(name).manifest_digest

    # What `oras discover` asks: the referrers API, filtered by artifact type.
    found = requests.get(f"http://{server.host}/v2/attest/app/referrers/{subject}", timeout=10).json()["manifests"]
    assert {(m["artifactType"], m["digest"]) for m in found} == {(t, str(d)) for t, (d, _, _) in local.items()}
    only = requests.get(f"http://{server.host}/v2/attest/app/referrers/{subject}",
                        params={"artifactType": SPDX_JSON}, timeout=10).json()["manifests"]
    assert [m["digest"] for m in only] == [str(local[SPDX_JSON][0])]

    client = oras.client.OrasClient(hostname=server.host, insecure=True)
    out = tmp_path / "pulled"
    got = client.pull(target=f"{server.host}/attest/app@{local[SPDX_JSON][0]}", outdir=str(out))
    assert [Path(g).name for g in got] == ["sbom.spdx.json"]
    assert (out / "sbom.spdx.json").read_bytes() == local[SPDX_JSON][2]

    listed_and_pulled(tmp_path, name, subject, local)


def test_tag_schema_fallback_on_distribution(build, dockyard, store_root, app, server, tmp_path):
    """distribution 2.8 has no referrers API: push keeps the spec's `sha256-<hex>` tag index of the referrers
    (once: a second push of the same leaves it as it is), `inspect --referrers` reads it, pull keeps the referrers
    it lists."""
    dist = start_distribution(tmp_path / "distribution")
    try:
        name = f"{dist.host}/attest/app:1"
        build(app, "--network", "none", "-t", name, "--sbom", "--provenance=true")
        local = documents(store_root, name)
        subject = Store(store_root).resolve(name).manifest_digest
        dockyard("push", name)
        base = f"http://{dist.host}/v2/attest/app"
        assert requests.get(f"{base}/referrers/{subject}", timeout=10).status_code == 404
        tag = requests.get(f"{base}/manifests/sha256-{subject.hex}", timeout=10,
                           headers={"Accept": "application/vnd.oci.image.index.v1+json"})
        listed = tag.json()["manifests"]
        assert {(m["artifactType"], m["digest"]) for m in listed} == {(t, str(d)) for t, (d, _, _) in local.items()}
        sizes = {str(d): len(Store(store_root).read_blob(d)) for d, _, _ in local.values()}
        assert {m["digest"]: m["size"] for m in listed} == sizes

        pulled = listed_and_pulled(tmp_path, name, subject, local)
        listed_local = json.loads(run_cli(pulled, "inspect", "--referrers", name).out)
        assert {x["digest"] for x in listed_local[0]["Referrers"]} == {str(d) for d, _, _ in local.values()}

        # Pushed again from the other store (nothing new): the tag index stays as it was.
        run_cli(pulled, "push", name)
        again = requests.get(f"{base}/manifests/sha256-{subject.hex}", timeout=10,
                             headers={"Accept": "application/vnd.oci.image.index.v1+json"})
        assert again.headers["Docker-Content-Digest"] == tag.headers["Docker-Content-Digest"]
    finally:
        dist.stop()


def test_hostile_package_databases(build, store_root, context):
    """Symlinks out of the root resolve inside it, a 65 MB status and a FIFO are skipped with a warning, binary
    junk is skipped, an undecodable file name is kept (made valid UTF-8): the build succeeds."""
    ctx = context({"Dockerfile": """\
FROM busybox:latest
RUN mkdir -p /var/lib/dpkg/status.d /lib/apk/db \
 && printf 'Package: inimage\\nVersion: 1.0\\nStatus: install ok installed\\n' > /etc/shadow \
 && ln -s /etc/shadow /var/lib/dpkg/status \
 && ln -s /../../../../var/lib/dpkg/status /var/lib/dpkg/status.d/host \
 && ln -s ../../../../../../../etc/passwd /var/lib/dpkg/status.d/up \
 && truncate -s 65M /var/lib/dpkg/status.d/huge \
 && mkfifo /var/lib/dpkg/status.d/fifo \
 && head -c 65536 /dev/urandom > /lib/apk/db/installed \
 && touch "$(printf '/bad\\377name')"
"""})
    r = build(ctx, "--network", "none", "-t", "hostile:1", "--sbom")
    assert "Traceback" not in r.err
    assert "/var/lib/dpkg/status.d/huge: 68157440 bytes, more than the 67108864 allowed: skipped" in r.err
    assert "/var/lib/dpkg/status.d/fifo: not a regular file: skipped" in r.err
    d = spdx(documents(store_root, "hostile:1")[SPDX_JSON][2])
    # The image's own /etc/shadow, never the host's files or packages (the host's dpkg knows `dpkg`).
    assert purls(d) == {"pkg:deb/debian/inimage@1.0"}
    assert "/bad\ufffdname" in {f["fileName"] for f in d["files"]}


@pytest.mark.parametrize(("flag", "words"), [
    (("--provenance", "mode=mid"), "--provenance mode=mid: mode='mid': expected min or max"),
    (("--attest", "type=signature"), "--attest type=signature: expected type=sbom or type=provenance"),
    (("--sbom=generator=docker/buildkit-syft-scanner",), "generator is not supported for type=sbom"),
    (("--attest", "type=provenance,version=v0.2"), "only SLSA provenance v1"),
    (("--provenance=disabled=maybe",), "disabled='maybe' is not a boolean"),
])
def test_bad_attest_flags(dockyard, busybox_image, tmp_path, flag, words):
    (tmp_path / "Dockerfile").write_text("FROM busybox:latest\n")
    r = dockyard("build", *flag, str(tmp_path), check=False)
    assert r.code != 0 and words in r.err and "Traceback" not in r.err
    assert len(r.err.strip().splitlines()) == 1
