"""push/pull/login/search against Debian's CNCF distribution 2.8 on loopback, and interop with skopeo and podman."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import requests

from dockyard import mediatypes as mt
from dockyard.store import Store
from registries import Proxy, free_port, push_through_cut, start_distribution, store_snapshot
from support import tool


def manifest_digest(host: str, repo: str, tag: str) -> str:
    """What the registry itself says a tag's manifest digest is (a peer's view, not our client's)."""
    r = requests.head(f"http://{host}/v2/{repo}/manifests/{tag}",
                      headers={"Accept": f"{mt.OCI_MANIFEST}, {mt.DOCKER_MANIFEST}, {mt.OCI_INDEX}"})
    assert r.status_code == 200, r.status_code
    return r.headers["Docker-Content-Digest"]


def test_push_then_pull_keeps_digest(busybox_image, dockyard, store_root, other_store, distribution):
    host = distribution.host
    local = Store(store_root).resolve("busybox")
    dockyard("tag", "busybox", f"{host}/lib/busybox:1.0")
    out = dockyard("push", f"{host}/lib/busybox:1.0").out
    assert f"The push refers to repository [{host}/lib/busybox]" in out
    assert f"{local.layers[0].digest.short}: Pushed" in out
    assert f"1.0: digest: {local.manifest_digest} size:" in out
    assert manifest_digest(host, "lib/busybox", "1.0") == str(local.manifest_digest)

    again = dockyard("push", f"{host}/lib/busybox:1.0").out
    assert "Layer already exists" in again and "Pushed" not in again

    pulled = other_store("pull", f"{host}/lib/busybox:1.0").out
    assert f"{local.layers[0].digest.short}: Pull complete" in pulled
    assert f"Digest: {local.manifest_digest}" in pulled
    assert pulled.splitlines()[-1] == f"{host}/lib/busybox:1.0"
    theirs = Store(other_store.root).resolve(f"{host}/lib/busybox:1.0")
    assert theirs.manifest_digest == local.manifest_digest
    assert str(local.manifest_digest) in other_store("images", "--digests").out
    inspect = json.loads(other_store("inspect", f"{host}/lib/busybox:1.0").out)[0]
    assert inspect["RepoDigests"] == [f"{host}/lib/busybox@{local.manifest_digest}"]
    # Pull unpacks each layer (as docker does, so a layer that would not unpack is refused at pull): a run
    # then finds every layer ready.
    assert os.listdir(os.path.join(other_store.root, "layers")) == [c.hex for c in theirs.chain_ids]

    second = other_store("pull", f"{host}/lib/busybox:1.0").out
    assert "Already exists" in second and "Image is up to date" in second
    by_digest = other_store("pull", "-q", f"{host}/lib/busybox@{local.manifest_digest}").out
    assert by_digest == f"{host}/lib/busybox@{local.manifest_digest}\n"


def test_quiet_output_and_all_tags(busybox_image, dockyard, other_store, distribution):
    host = distribution.host
    for tag in ("a", "b"):
        dockyard("tag", "busybox", f"{host}/q/bb:{tag}")
    out = dockyard("push", "-q", "--all-tags", f"{host}/q/bb").out
    assert sorted(out.splitlines()) == [f"{host}/q/bb:a", f"{host}/q/bb:b"]
    pulled = other_store("pull", "-q", "-a", f"{host}/q/bb").out
    assert sorted(pulled.splitlines()) == [f"{host}/q/bb:a", f"{host}/q/bb:b"]
    refused = dockyard("push", "-a", f"{host}/q/bb:a", check=False)
    assert refused.code == 1 and "--all-tags" in refused.err


def test_cross_repository_mount(busybox_image, dockyard, distribution):
    host = distribution.host
    dockyard("tag", "busybox", f"{host}/one/bb:1")
    dockyard("push", f"{host}/one/bb:1")
    dockyard("tag", "busybox", f"{host}/two/bb:1")
    out = dockyard("push", f"{host}/two/bb:1").out
    assert "Mounted from one/bb" in out
    assert manifest_digest(host, "two/bb", "1") == manifest_digest(host, "one/bb", "1")


def test_not_found_and_unreachable_leave_store_unchanged(busybox_image, dockyard, store_root, distribution):
    before = store_snapshot(store_root)
    missing = dockyard("pull", f"{distribution.host}/no/such:tag", check=False)
    assert missing.code == 1 and f"not found: {distribution.host}/no/such:tag" in missing.err
    port = free_port()
    refused = dockyard("pull", f"127.0.0.1:{port}/x/y:1", check=False)
    assert refused.code == 1 and "connection refused" in refused.err
    dns = dockyard("pull", "no-such-host.invalid/x/y:1", check=False)
    assert dns.code == 1 and "cannot resolve registry host no-such-host.invalid" in dns.err
    dockyard("tag", "busybox", f"127.0.0.1:{port}/x/y:1")
    before = store_snapshot(store_root)
    push = dockyard("push", f"127.0.0.1:{port}/x/y:1", check=False)
    assert push.code == 1 and "connection refused" in push.err and "Traceback" not in push.err
    assert store_snapshot(store_root) == before


def test_unqualified_names_use_the_default_registry(busybox_image, dockyard, other_store, distribution):
    no_default = dockyard("push", "busybox", check=False)
    assert no_default.code == 1 and "no default registry" in no_default.err
    env = {"DOCKYARD_DEFAULT_REGISTRY": distribution.host}
    dockyard("push", "busybox", env=env)
    assert manifest_digest(distribution.host, "busybox", "latest")
    other_store("pull", "busybox", env=env)
    assert Store(other_store.root).resolve("busybox:latest")


def test_tampered_blob_is_rejected_and_store_unchanged(busybox_image, dockyard, other_store, distribution):
    host = distribution.host
    dockyard("tag", "busybox", f"{host}/t/bb:1")
    dockyard("push", f"{host}/t/bb:1")
    layer = Store(os.environ["DOCKYARD_ROOT"]).resolve("busybox").layers[0].digest
    data = distribution.root / "docker/registry/v2/blobs/sha256" / layer.hex[:2] / layer.hex / "data"
    content = bytearray(data.read_bytes())
    content[len(content) // 2] ^= 0xFF
    data.write_bytes(bytes(content))
    other_store("images")  # creates the empty store
    before = store_snapshot(other_store.root)
    bad = other_store("pull", f"{host}/t/bb:1", check=False)
    assert bad.code == 1 and f"digest mismatch for blob {layer}" in bad.err
    assert store_snapshot(other_store.root) == before


def _image_with_cmd(dockyard, busybox_tar, name: str, cmd: str) -> None:
    dockyard("import", "--change", f'CMD ["{cmd}"]', str(busybox_tar), name)


def test_index_resolves_to_platform(dockyard, busybox_tar, store_root, other_store, distribution):
    host = distribution.host
    _image_with_cmd(dockyard, busybox_tar, f"{host}/multi/bb:amd64", "amd64")
    _image_with_cmd(dockyard, busybox_tar, f"{host}/multi/bb:arm64", "arm64")
    dockyard("push", f"{host}/multi/bb:amd64")
    dockyard("push", f"{host}/multi/bb:arm64")
    store = Store(store_root)
    amd, arm = store.resolve(f"{host}/multi/bb:amd64"), store.resolve(f"{host}/multi/bb:arm64")
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [
        {"mediaType": mt.OCI_MANIFEST, "digest": str(d.manifest_digest),
         "size": len(store.read_blob(d.manifest_digest)), "platform": {"os": "linux", "architecture": a}}
        for d, a in ((arm, "arm64"), (amd, "amd64"))]}
    r = requests.put(f"http://{host}/v2/multi/bb/manifests/latest", data=json.dumps(index),
                     headers={"Content-Type": mt.OCI_INDEX})
    assert r.status_code == 201, r.text
    other_store("pull", f"{host}/multi/bb")
    other_store("pull", "--platform", "linux/arm64", f"{host}/multi/bb:latest")
    theirs = Store(other_store.root)
    assert theirs.resolve(f"{host}/multi/bb:latest").manifest_digest == arm.manifest_digest
    assert theirs.image(amd.manifest_digest).config["config"]["Cmd"] == ["amd64"]
    none = other_store("pull", "--platform", "linux/s390x", f"{host}/multi/bb", check=False)
    assert none.code == 1 and "no matching manifest for linux/s390x" in none.err
    bad = other_store("pull", "--platform", "linux", f"{host}/multi/bb", check=False)
    assert bad.code == 1 and "invalid platform" in bad.err


def test_search_lists_matching_repositories(busybox_image, dockyard, distribution):
    host = distribution.host
    for ref in ("apps/web:1", "apps/web:2", "apps/worker:1", "tools/debug:1"):
        dockyard("tag", "busybox", f"{host}/{ref}")
        dockyard("push", "-q", f"{host}/{ref}")
    out = dockyard("search", f"{host}/apps").out.splitlines()
    assert out[0].split() == ["NAME", "TAGS"]
    assert [line.split() for line in out[1:]] == [[f"{host}/apps/web", "2"], [f"{host}/apps/worker", "1"]]
    limited = dockyard("search", "--limit", "1", "--format", "{{.Name}}", f"{host}/apps").out
    assert limited == f"{host}/apps/web\n"
    assert dockyard("search", f"{host}/nothing").out.split() == ["NAME", "TAGS"]


def test_htpasswd_login_push_pull_logout(busybox_image, dockyard, other_store, tmp_path, htpasswd, client_env):
    server = start_distribution(tmp_path / "auth-registry", htpasswd=htpasswd)
    try:
        host = server.host
        dockyard("tag", "busybox", f"{host}/private/bb:1")
        denied = dockyard("push", f"{host}/private/bb:1", check=False)
        assert denied.code == 1 and "unauthorized" in denied.err
        wrong = dockyard("login", host, "-u", "alice", "--password-stdin", input=b"wrong\n", check=False)
        assert wrong.code == 1 and "incorrect username or password" in wrong.err
        assert not (client_env.docker_config / "config.json").exists()
        ok = dockyard("login", host, "-u", "alice", "--password-stdin", input=b"s3cret\n")
        assert "Login Succeeded" in ok.out and "s3cret" not in ok.out + ok.err
        config = json.loads((client_env.docker_config / "config.json").read_text())
        assert base64.b64decode(config["auths"][host]["auth"]) == b"alice:s3cret"
        assert oct((client_env.docker_config / "config.json").stat().st_mode & 0o777) == "0o600"
        out = dockyard("push", f"{host}/private/bb:1")
        assert "s3cret" not in out.out + out.err
        other_store("pull", f"{host}/private/bb:1")
        # skopeo reads the same docker-format credentials.
        inspect = subprocess.run([tool("skopeo"), "inspect", "--tls-verify=false",
                                  "--authfile", str(client_env.docker_config / "config.json"),
                                  f"docker://{host}/private/bb:1"], capture_output=True, text=True)
        assert inspect.returncode == 0, inspect.stderr
        assert dockyard("logout", host).out == f"Removing login credentials for {host}\n"
        assert host not in json.loads((client_env.docker_config / "config.json").read_text())["auths"]
        again = other_store("pull", f"{host}/private/bb:1", check=False)
        assert again.code == 1 and "unauthorized" in again.err
    finally:
        server.stop()


def test_skopeo_push_we_pull_we_push_podman_runs(busybox_image, dockyard, store_root, other_store, distribution,
                                                 tmp_path):
    host = distribution.host
    layout = os.path.join(store_root, "images")
    subprocess.run([tool("skopeo"), "copy", "--format", "v2s2", "--dest-tls-verify=false",
                    f"oci:{layout}:busybox:latest", f"docker://{host}/skopeo/bb:v2s2"], check=True,
                   capture_output=True)
    served = manifest_digest(host, "skopeo/bb", "v2s2")
    other_store("pull", f"{host}/skopeo/bb:v2s2")
    image = Store(other_store.root).resolve(f"{host}/skopeo/bb:v2s2")
    assert image.manifest["mediaType"] == mt.DOCKER_MANIFEST
    assert str(image.manifest_digest) == served
    other_store("tag", f"{host}/skopeo/bb:v2s2", f"{host}/ours/bb:1")
    other_store("push", f"{host}/ours/bb:1")
    assert manifest_digest(host, "ours/bb", "1") == served
    # podman refuses a runroot path longer than 50 characters, so it gets a short one of its own.
    runroot = tempfile.mkdtemp(prefix="dyk-podman-", dir="/tmp")
    podman = [tool("podman"), "--root", str(tmp_path / "podman"), "--runroot", runroot, "--storage-driver", "vfs"]
    try:
        run = subprocess.run([*podman, "run", "--rm", "--tls-verify=false", "--net=none", f"{host}/ours/bb:1",
                              "echo", "hello from dockyard"], capture_output=True, text=True, timeout=180,
                             env={k: v for k, v in os.environ.items() if k != "DOCKER_CONFIG"})
        assert run.returncode == 0, run.stderr
        assert run.stdout == "hello from dockyard\n"
    finally:
        subprocess.run([*podman, "rmi", "-af"], capture_output=True)
        shutil.rmtree(runroot, ignore_errors=True)


def test_registry_mirror_serves_docker_hub_names(busybox_image, dockyard, other_store, distribution, client_env):
    dockyard("tag", "busybox", f"{distribution.host}/library/busybox:1")
    dockyard("push", f"{distribution.host}/library/busybox:1")
    client_env.write_daemon(registry_mirrors=[f"http://{distribution.host}"])
    out = other_store("pull", "docker.io/busybox:1").out
    assert "Pull complete" in out
    assert Store(other_store.root).resolve("docker.io/busybox:1")
    info = dockyard("info", "--format", "json").out
    assert json.loads(info)["RegistryMirrors"] == [f"http://{distribution.host}"]


def test_info_and_bad_config(dockyard, client_env):
    client_env.write_daemon(insecure_registries=["myreg.example:5000", "10.9.0.0/16"])
    info = json.loads(dockyard("info", "--format", "json").out)
    assert info["InsecureRegistries"] == ["127.0.0.0/8", "::1/128", "myreg.example:5000", "10.9.0.0/16"]
    client_env.write_daemon(insecure_registries=["10.9.0.0/99"])
    bad = dockyard("pull", "10.9.0.1:5000/x:1", check=False)
    assert bad.code == 1 and "invalid CIDR in insecure-registries: '10.9.0.0/99'" in bad.err


def test_dropped_upload_restarts(big_image, dockyard, store_root, other_store, distribution, client_env):
    # distribution 2.8 cannot resume an upload whose PATCH was cut, so the client starts that blob over.
    up = push_through_cut(dockyard, "big", distribution.host, client_env)
    local = Store(store_root).resolve("big")
    assert up.bytes_up > 1_500_000 + local.layers[0].size
    assert manifest_digest(distribution.host, "big/img", "1") == str(local.manifest_digest)
    other_store("pull", f"{distribution.host}/big/img:1")  # every digest verified on the way in
    assert Store(other_store.root).has_blob(local.layers[0].digest)


def test_dropped_download_resumes_or_fails_cleanly(big_image, dockyard, other_store, distribution, client_env):
    host = distribution.host
    dockyard("tag", "big", f"{host}/big/img:1")
    dockyard("push", f"{host}/big/img:1")
    once = Proxy(host, cut_after=1_000_000, direction="down", cuts=1)
    try:
        other_store("pull", f"{once.host}/big/img:1")
        assert once.cuts_done == 1
    finally:
        once.close()
    store = Store(other_store.root)
    img = store.resolve(f"{once.host}/big/img:1")
    # The layer cut mid-download was unpacked on the way, across the resumed request.
    assert not store.unpacks or all(os.path.isdir(store.layer_dir(c)) for c in img.chain_ids)

    client_env.write_daemon(max_download_attempts=2)
    fresh = os.path.join(os.path.dirname(other_store.root), "store3")
    always = Proxy(host, cut_after=1_000_000, direction="down", cuts=None)
    try:
        dockyard("images", env={"DOCKYARD_ROOT": fresh})
        before = store_snapshot(fresh)
        failed = dockyard("pull", f"{always.host}/big/img:1", env={"DOCKYARD_ROOT": fresh}, check=False)
        assert failed.code == 1 and "failed after 2 attempts" in failed.err
        assert store_snapshot(fresh) == before
    finally:
        always.close()


def test_dropped_upload_fails_cleanly(big_image, dockyard, store_root, distribution, client_env):
    client_env.write_daemon(max_download_attempts=2)
    proxy = Proxy(distribution.host, cut_after=500_000, direction="up", cuts=None)
    try:
        dockyard("tag", "big", f"{proxy.host}/big/img:1")
        before = store_snapshot(store_root)
        failed = dockyard("push", f"{proxy.host}/big/img:1", check=False)
        assert failed.code == 1 and "failed after 2 attempts" in failed.err
        assert store_snapshot(store_root) == before
    finally:
        proxy.close()


def test_429_retry_after_is_honoured(busybox_image, dockyard, other_store, distribution):
    dockyard("tag", "busybox", f"{distribution.host}/rl/bb:1")
    dockyard("push", f"{distribution.host}/rl/bb:1")
    proxy = Proxy(distribution.host, rate_limit_first=1)
    try:
        other_store("pull", f"{proxy.host}/rl/bb:1")
    finally:
        proxy.close()
    kinds = [k for k, _ in proxy.events]
    assert kinds.count("429") == 1 and kinds[-1] == "connect"
    limited = kinds.index("429")
    t0, t1 = proxy.events[limited][1], proxy.events[limited + 1][1]
    assert t1 - t0 >= 0.9  # the client waited the Retry-After second before coming back


def test_tty_shows_per_layer_bars(big_image, dockyard, store_root, distribution):
    """On a terminal the push draws rich bars (bytes, rate) and leaves each layer's final status."""
    import pty

    dockyard("tag", "big", f"{distribution.host}/tty/big:1")
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "dockyard", "push", f"{distribution.host}/tty/big:1"],
                            stdin=slave, stdout=slave, stderr=slave, env={**os.environ, "COLUMNS": "120"})
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(60) == 0
    screen = b"".join(chunks).decode(errors="replace")
    layer = Store(store_root).resolve("big").layers[0]
    assert "\x1b[" in screen  # drawn, not printed
    assert f"{layer.digest.short}: Pushed" in screen
    assert f"{layer.size / 1e6:.1f}/{layer.size / 1e6:.1f} MB" in screen
    assert re.search(r"[\d.]+ [kMG]?B/s", screen)
    assert f"1: digest: {Store(store_root).resolve('big').manifest_digest}" in screen
