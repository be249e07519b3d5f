"""The pull-through cache (`proxy.remoteurl`): our registry in front of a real upstream (Debian's distribution 2.8,
or our own registry with token auth), pulled through with dockyard, skopeo and podman; the upstream stopped; tags
revalidated after the TTL; and hostile upstreams (huge manifest, long or wrong blob, stalls) that must store nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
import requests
from hostile import Conn, Hostile, Request
from regkit import Image, Server, free_port, htpasswd_file, layer_tar, make_image, sha256, write_layout
from support import tool

from dockyard import mediatypes as mt

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "client"))  # the client tests' registry launchers
from registries import start_distribution, start_dockyard_registry

DAY = "168h"


def push(url: str, repo: str, image: Image, tag: str, auth=None) -> str:
    """Push `image` as distribution 2.8 takes it (POST, then PUT with the body); the manifest's digest."""
    for blob in [image.config, *image.layers]:
        r = requests.post(f"{url}/v2/{repo}/blobs/uploads/", auth=auth)
        assert r.status_code == 202, r.text
        location = r.headers["Location"]
        r = requests.put(location if "://" in location else url + location, params={"digest": sha256(blob)},
                         data=blob, auth=auth)
        assert r.status_code == 201, r.text
    r = requests.put(f"{url}/v2/{repo}/manifests/{tag}", data=image.manifest, auth=auth,
                     headers={"Content-Type": image.media_type})
    assert r.status_code == 201, r.text
    return image.digest


def image(size: int = 1000) -> Image:
    """A one-layer image of `size` random bytes (so every image is new to every registry)."""
    return make_image([layer_tar({"data": os.urandom(size)})])


def cache_server(root: Path, upstream: str, ttl: str = DAY, extra: str = "") -> Server:
    """Our registry as a pull-through cache of `upstream`, configured by file as distribution's would be."""
    root.parent.mkdir(parents=True, exist_ok=True)
    config = root.parent / f"{root.name}.toml"
    config.write_text(f'[proxy]\nremoteurl = "{upstream}"\nttl = "{ttl}"\n{extra}')
    return Server(root, free_port(), ["--config", str(config), "--workers", "2"]).start()


def stored(server: Server, digest: str) -> bool:
    """Whether the cache's store holds the blob."""
    hexpart = digest.split(":")[1]
    return (server.root / "blobs" / "sha256" / hexpart[:2] / hexpart / "data").exists()


def open_uploads(server: Server) -> list[str]:
    return os.listdir(server.root / "uploads")


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    server = start_distribution(tmp_path_factory.mktemp("upstream"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cache(tmp_path_factory, upstream):
    """The cache with distribution's default TTL: a tag, once cached, is not asked about again for a week."""
    server = cache_server(tmp_path_factory.mktemp("cache") / "root", f"http://{upstream.host}")
    yield server
    server.stop()
    server.assert_clean_log()


@pytest.fixture(scope="module")
def eager(tmp_path_factory, upstream):
    """A cache with TTL 0: every pull by tag asks the upstream."""
    server = cache_server(tmp_path_factory.mktemp("eager") / "root", f"http://{upstream.host}", ttl="0")
    yield server
    server.stop()
    server.assert_clean_log()


@pytest.fixture
def client_env(tmp_path, monkeypatch) -> Path:
    """The client's daemon.json, docker config and certs.d in the test's tmp dir; returns daemon.json's path."""
    monkeypatch.setenv("DOCKYARD_CONFIG", str(tmp_path / "daemon.json"))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))
    monkeypatch.setenv("DOCKYARD_CERTS_D", str(tmp_path / "certs.d"))
    monkeypatch.delenv("DOCKYARD_DEFAULT_REGISTRY", raising=False)
    return tmp_path / "daemon.json"


def _run(*cmd: str, env: dict | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=180, env=env)
    assert p.returncode == 0, f"{' '.join(cmd)}: {p.stderr[-2000:]}"
    return p


# ---- configuration --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("setting, error", [
    ('remoteurl = "ftp://x"', 'proxy.remoteurl: not an http(s) URL "ftp://x"'),
    ('remoteurl = "http://"', 'proxy.remoteurl: not an http(s) URL "http://"'),
    ('remoteurl = "https://h/some/path"', 'proxy.remoteurl: not an http(s) URL "https://h/some/path"'),
    ('remoteurl = "https://bob:hunter2@h"', "proxy.remoteurl: credentials go in proxy.username and proxy.password, "
                                           "not in the URL"),
    ('remoteurl = "https://h"\nttl = "soon"', 'proxy.ttl: not a duration "soon"; use e.g. 168h, 15m or 0'),
    ('remoteurl = "https://h"\nusername = "bob"', "proxy.username and proxy.password go together"),
    ('username = "bob"\npassword = "pw"', "proxy.username and proxy.password need proxy.remoteurl"),
])
def test_bad_proxy_settings_are_one_line_errors(dockyard, tmp_path, setting, error):
    config = tmp_path / "registry.toml"
    config.write_text(f"[proxy]\n{setting}\n")
    res = dockyard("registry", "serve", "--root", str(tmp_path / "r"), "--config", str(config), check=False)
    assert (res.code, res.err) == (1, f"Error: {error}\n")
    assert "hunter2" not in res.err


def test_bad_remote_url_flag(dockyard, tmp_path):
    res = dockyard("registry", "serve", "--root", str(tmp_path / "r"), "--proxy-remote-url", "ftp://x", check=False)
    assert (res.code, res.err) == (1, 'Error: proxy.remoteurl: not an http(s) URL "ftp://x"\n')
    assert not (tmp_path / "r").exists()


# ---- pulling through it ---------------------------------------------------------------------------------------


def test_pull_through_with_dockyard_skopeo_and_podman(busybox_image, dockyard, tmp_path, upstream, cache,
                                                       client_env):
    dockyard("tag", busybox_image, f"{upstream.host}/lib/busybox:1")
    dockyard("push", f"{upstream.host}/lib/busybox:1")
    digest = requests.head(f"http://{upstream.host}/v2/lib/busybox/manifests/1",
                           headers={"Accept": mt.OCI_MANIFEST}).headers["Docker-Content-Digest"]
    assert not (cache.root / "repositories" / "lib" / "busybox").exists()
    ours = str(tmp_path / "ours")
    dockyard("pull", f"{cache.host}/lib/busybox:1", env={"DOCKYARD_ROOT": ours})
    pulled = json.loads(dockyard("images", "--format", "json", env={"DOCKYARD_ROOT": ours}).out.splitlines()[0])
    assert pulled["Digest"] == digest
    manifest = json.loads(requests.get(f"{cache.url}/v2/lib/busybox/manifests/{digest}",
                                       headers={"Accept": mt.OCI_MANIFEST + "," + mt.DOCKER_MANIFEST}).content)
    for desc in [manifest["config"], *manifest["layers"]]:
        assert stored(cache, desc["digest"])
    _run(tool("skopeo"), "copy", "--src-tls-verify=false", f"docker://{cache.host}/lib/busybox:1",
         f"dir:{tmp_path / 'skopeo'}")
    assert (tmp_path / "skopeo" / manifest["layers"][0]["digest"].split(":")[1]).exists()
    short = tempfile.mkdtemp(prefix="pd", dir="/tmp")  # podman limits the runroot path to 50 characters
    podman = [tool("podman"), "--root", f"{short}/s", "--runroot", f"{short}/r", "--storage-driver", "vfs"]
    try:
        _run(*podman, "pull", "-q", "--tls-verify=false", f"{cache.host}/lib/busybox:1",
             env={k: v for k, v in os.environ.items() if k != "DOCKER_CONFIG"})
        inspected = _run(*podman, "image", "inspect", "--format", "{{.Digest}}", f"{cache.host}/lib/busybox:1")
        assert inspected.stdout.strip() == digest
    finally:
        subprocess.run([*podman, "rmi", "-af"], capture_output=True)
        shutil.rmtree(short, ignore_errors=True)
    # The catalog and the tags list show what the cache holds.
    assert "lib/busybox" in requests.get(f"{cache.url}/v2/_catalog").json()["repositories"]
    assert requests.get(f"{cache.url}/v2/lib/busybox/tags/list").json()["tags"] == ["1"]
    assert not open_uploads(cache)


def test_client_mirrors_try_the_cache_then_the_origin(dockyard, tmp_path, upstream, cache, client_env):
    img = image()
    push(f"http://{upstream.host}", "lib/mirrored", img, "1")
    client_env.write_text(json.dumps({"mirrors": {upstream.host: [f"http://{cache.host}"]}}))
    dockyard("pull", f"{upstream.host}/lib/mirrored:1", env={"DOCKYARD_ROOT": str(tmp_path / "a")})
    assert stored(cache, sha256(img.layers[0]))  # it came through the cache
    # Docker Hub's names go to the "docker.io" entry (the cache's upstream stands in for the Hub here).
    client_env.write_text(json.dumps({"mirrors": {"docker.io": [f"http://{cache.host}"]}}))
    dockyard("pull", "docker.io/lib/mirrored:1", env={"DOCKYARD_ROOT": str(tmp_path / "b")})
    # A mirror that is down is passed over for the origin.
    client_env.write_text(json.dumps({"mirrors": {upstream.host: [f"http://127.0.0.1:{free_port()}"]},
                                      "max-download-attempts": 1}))
    dockyard("pull", f"{upstream.host}/lib/mirrored:1", env={"DOCKYARD_ROOT": str(tmp_path / "c")})
    client_env.write_text(json.dumps({"mirrors": {upstream.host: "http://x"}}))
    bad = dockyard("pull", f"{upstream.host}/lib/mirrored:1", check=False)
    assert bad.code == 1 and bad.err.strip().endswith("mirrors must map a registry host to a list of mirror URLs")


def test_pushes_and_deletes_are_refused(cache, upstream):
    digest = push(f"http://{upstream.host}", "lib/refused", image(), "1")
    assert requests.get(f"{cache.url}/v2/lib/refused/manifests/1").status_code == 200
    refused = [requests.post(f"{cache.url}/v2/lib/refused/blobs/uploads/"),
               requests.put(f"{cache.url}/v2/lib/refused/manifests/2", data=b"{}"),
               requests.delete(f"{cache.url}/v2/lib/refused/manifests/{digest}")]
    for r in refused:
        assert r.status_code == 405
        assert r.json()["errors"][0]["code"] == "UNSUPPORTED"
    assert requests.get(f"{cache.url}/v2/lib/refused/manifests/{digest}").status_code == 200


def test_tags_are_revalidated_after_the_ttl(upstream, cache, eager):
    first, second = image(), image()
    push(f"http://{upstream.host}", "lib/moving", first, "1")
    for server in (cache, eager):
        assert requests.get(f"{server.url}/v2/lib/moving/manifests/1").headers["Docker-Content-Digest"] \
            == first.digest
    push(f"http://{upstream.host}", "lib/moving", second, "1")
    assert requests.get(f"{cache.url}/v2/lib/moving/manifests/1").headers["Docker-Content-Digest"] == first.digest
    r = requests.get(f"{eager.url}/v2/lib/moving/manifests/1")
    assert (r.headers["Docker-Content-Digest"], r.content) == (second.digest, second.manifest)
    assert requests.get(f"{eager.url}/v2/lib/moving/blobs/{sha256(second.layers[0])}").content == second.layers[0]
    # The first manifest stays cached by digest.
    assert requests.get(f"{eager.url}/v2/lib/moving/manifests/{first.digest}").content == first.manifest


def test_one_blob_pulled_by_many_clients_at_once(upstream, cache):
    img = image(6 << 20)
    push(f"http://{upstream.host}", "lib/popular", img, "1")
    assert requests.get(f"{cache.url}/v2/lib/popular/manifests/1").status_code == 200
    layer = sha256(img.layers[0])
    bodies: list[bytes] = []
    start = threading.Barrier(4)

    def pull() -> None:
        start.wait()
        bodies.append(requests.get(f"{cache.url}/v2/lib/popular/blobs/{layer}", timeout=60).content)

    threads = [threading.Thread(target=pull) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert bodies == [img.layers[0]] * 4
    assert stored(cache, layer) and not open_uploads(cache)
    # A range of a blob not yet cached: stored first, then served from the store.
    r = requests.get(f"{cache.url}/v2/lib/popular/blobs/{sha256(img.config)}", headers={"Range": "bytes=2-9"})
    assert (r.status_code, r.content) == (206, img.config[2:10])
    # A blob no cached manifest of the repository declares is not fetched at all.
    assert requests.get(f"{cache.url}/v2/lib/popular/blobs/{sha256(b'other')}").status_code == 404


def test_upstream_down_serves_the_cache(dockyard, tmp_path, client_env):
    client_env.write_text('{"max-download-attempts": 1}')  # the client would retry a 503 with backoff
    upstream = start_distribution(tmp_path / "upstream")
    cache = None
    try:
        cache = cache_server(tmp_path / "cache" / "root", f"http://{upstream.host}", ttl="0")
        pulled, unpulled, half = image(), image(), image()
        for repo, img in (("lib/pulled", pulled), ("lib/unpulled", unpulled), ("lib/half", half)):
            push(f"http://{upstream.host}", repo, img, "1")
        dockyard("pull", f"{cache.host}/lib/pulled:1", env={"DOCKYARD_ROOT": str(tmp_path / "a")})
        assert requests.get(f"{cache.url}/v2/lib/half/manifests/1").status_code == 200  # its blobs not fetched
        upstream.stop()
        for ref in (f"{cache.host}/lib/pulled:1", f"{cache.host}/lib/pulled@{pulled.digest}"):
            dockyard("pull", ref, env={"DOCKYARD_ROOT": str(tmp_path / "b")})
        failed = dockyard("pull", f"{cache.host}/lib/unpulled:1", env={"DOCKYARD_ROOT": str(tmp_path / "c")},
                          check=False)
        assert failed.code == 1 and len(failed.err.strip().splitlines()) == 1 and "unavailable" in failed.err
        for path in ("lib/unpulled/manifests/1", f"lib/half/blobs/{sha256(half.layers[0])}"):
            r = requests.get(f"{cache.url}/v2/{path}")
            assert r.status_code == 503
            assert r.json()["errors"][0]["message"].startswith(f"upstream registry {upstream.host} unavailable")
        assert not open_uploads(cache)
    finally:
        upstream.stop()
        if cache is not None:
            cache.stop()
            cache.assert_clean_log()


def test_upstream_with_basic_auth(tmp_path, upstream):
    users = htpasswd_file(tmp_path / "htpasswd", {"alice": "alice-pw"})
    locked = start_distribution(tmp_path / "locked", htpasswd=users)
    servers = []
    try:
        img = image()
        push(f"http://{locked.host}", "team/app", img, "1", auth=("alice", "alice-pw"))
        good = cache_server(tmp_path / "good" / "root", f"http://{locked.host}",
                            extra='username = "alice"\npassword = "alice-pw"\n')
        servers.append(good)
        assert requests.get(f"{good.url}/v2/team/app/manifests/1").content == img.manifest
        assert requests.get(f"{good.url}/v2/team/app/blobs/{sha256(img.layers[0])}").content == img.layers[0]
        anonymous = cache_server(tmp_path / "anon" / "root", f"http://{locked.host}")
        servers.append(anonymous)
        r = requests.get(f"{anonymous.url}/v2/team/app/manifests/1")
        assert r.status_code == 503 and "unauthorized" in r.json()["errors"][0]["message"]
        assert "alice-pw" not in good.log.read_text()
    finally:
        locked.stop()
        for s in servers:
            s.stop()
            s.assert_clean_log()


def test_upstream_with_token_auth(dockyard, tmp_path, client_env):
    users = htpasswd_file(tmp_path / "htpasswd", {"alice": "alice-pw"})
    origin = start_dockyard_registry(tmp_path / "origin", "--htpasswd", str(users), "--token")
    cache = None
    try:
        dockyard("login", origin.host, "-u", "alice", "--password-stdin", input=b"alice-pw\n")
        img = image()
        (tmp_path / "layout").mkdir()
        write_layout(tmp_path / "layout" / "img", img)
        _run(tool("skopeo"), "copy", "--dest-tls-verify=false", "--dest-creds", "alice:alice-pw",
             f"oci:{tmp_path / 'layout' / 'img'}:latest", f"docker://{origin.host}/team/app:1")
        cache = cache_server(tmp_path / "cache" / "root", f"http://{origin.host}",
                             extra='username = "alice"\npassword = "alice-pw"\n')
        assert requests.get(f"{cache.url}/v2/team/app/manifests/1").content == img.manifest
        assert requests.get(f"{cache.url}/v2/team/app/blobs/{sha256(img.layers[0])}").content == img.layers[0]
    finally:
        origin.stop()
        if cache is not None:
            cache.stop()
            cache.assert_clean_log()


# ---- hostile upstreams ----------------------------------------------------------------------------------------

GOOD = make_image([layer_tar({"data": os.urandom(300_000)})])
LAYER = GOOD.layers[0]
BIG = make_image([layer_tar({"data": os.urandom(3 << 20)})])


def _scenario(conn: Conn, req: Request) -> None:
    """One upstream, a misdeed per repository: `huge` manifest, `long` / `wrong` / `cut` / `slow` blob, `stall`."""
    if req.path == "/v2/":
        conn.answer(200, b"{}", {"Content-Type": "application/json"})
        return
    parts = req.path.split("/")  # /v2/<repo>/app/<kind>/<reference>
    repo, kind = parts[2], parts[-2]
    if kind == "manifests":
        if repo == "stall":
            conn.stall()
        elif repo == "huge":
            if req.method == "HEAD":
                conn.head(200, {"Content-Type": mt.OCI_MANIFEST}, 0)
            else:
                conn.endless(200, {"Content-Type": mt.OCI_MANIFEST}, prefix=b'{"schemaVersion": 2, "x": "')
        else:
            served = BIG if repo == "slow" else GOOD
            headers = {"Content-Type": served.media_type, "Docker-Content-Digest": served.digest}
            if req.method == "HEAD":
                conn.head(200, headers, len(served.manifest))
            else:
                conn.answer(200, served.manifest, headers)
        return
    headers = {"Content-Type": "application/octet-stream"}
    if repo == "long":
        conn.answer(200, LAYER + b"and then some", headers)
    elif repo == "wrong":
        conn.answer(200, bytes(len(LAYER)), headers)
    elif repo == "cut":
        conn.head(200, headers, len(LAYER))
        conn.send(LAYER[:100_000])
        conn.stall()
    elif repo == "slow" and req.path.endswith(sha256(BIG.layers[0])):
        conn.head(200, headers, len(BIG.layers[0]))
        conn.send(BIG.layers[0][:(5 << 20) // 2])
        conn.stall()
    else:
        conn.answer(200, LAYER if req.path.endswith(sha256(LAYER)) else GOOD.config, headers)


def test_blob_streams_to_the_client_while_it_downloads(hostile_cache):
    """The upstream sends 2.5 of 3 MiB and stalls: the client has had the first MiB meanwhile, then is cut off."""
    assert requests.get(f"{hostile_cache.url}/v2/slow/app/manifests/1", timeout=30).content == BIG.manifest
    layer = BIG.layers[0]
    received = b""
    url = f"{hostile_cache.url}/v2/slow/app/blobs/{sha256(layer)}"
    with pytest.raises(requests.exceptions.RequestException), requests.get(url, stream=True, timeout=30) as r:
        assert r.headers["Content-Length"] == str(len(layer))
        for piece in r.iter_content(1 << 16):
            received += piece
    assert len(received) >= 1 << 20 and layer.startswith(received) and len(received) < len(layer)
    assert not stored(hostile_cache, sha256(layer)) and not open_uploads(hostile_cache)


@pytest.fixture(scope="module")
def hostile_cache(tmp_path_factory):
    upstream = Hostile(_scenario)
    cache = cache_server(tmp_path_factory.mktemp("hostile") / "root", f"http://{upstream.host}",
                         extra="timeout = 1\n")
    yield cache
    cache.stop()
    upstream.close()
    cache.assert_clean_log()


@pytest.mark.parametrize("repo", ["huge", "stall"])
def test_hostile_upstream_manifest(hostile_cache, repo):
    r = requests.get(f"{hostile_cache.url}/v2/{repo}/app/manifests/1", timeout=30)
    assert r.status_code == 503 and r.json()["errors"][0]["code"] == "UNKNOWN"
    assert not (hostile_cache.root / "repositories" / repo).exists()


@pytest.mark.parametrize("repo", ["long", "wrong", "cut"])
def test_hostile_upstream_blob_stores_nothing(hostile_cache, repo):
    r = requests.get(f"{hostile_cache.url}/v2/{repo}/app/manifests/1", timeout=30)
    assert r.content == GOOD.manifest
    url = f"{hostile_cache.url}/v2/{repo}/app/blobs/{sha256(LAYER)}"
    try:
        got = requests.get(url, timeout=30).content
    except requests.exceptions.RequestException:
        got = b""  # cut short: the client sees less than Content-Length promised
    assert got != LAYER and len(got) < len(LAYER)
    assert not stored(hostile_cache, sha256(LAYER)) and not open_uploads(hostile_cache)
    assert requests.head(url, timeout=30).status_code == 503  # fetched whole before answering: a clean error
    assert not stored(hostile_cache, sha256(LAYER)) and not open_uploads(hostile_cache)
    assert requests.get(f"{hostile_cache.url}/v2/").status_code == 200
