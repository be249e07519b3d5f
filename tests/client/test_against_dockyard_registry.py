"""The client against our own registry server (`dockyard registry serve`): plain, htpasswd and token auth."""

from __future__ import annotations

import json

import pytest
import requests

from dockyard.store import Store
from registries import Proxy, push_through_cut, start_dockyard_registry


@pytest.fixture
def ours(tmp_path):
    server = start_dockyard_registry(tmp_path / "ours")
    yield server
    server.stop()


def test_push_pull_mount_search(busybox_image, dockyard, store_root, other_store, ours):
    host = ours.host
    local = Store(store_root).resolve("busybox")
    dockyard("tag", "busybox", f"{host}/a/bb:1")
    assert "Pushed" in dockyard("push", f"{host}/a/bb:1").out
    r = requests.head(f"http://{host}/v2/a/bb/manifests/1", headers={"Accept": local.manifest["mediaType"]})
    assert r.headers["Docker-Content-Digest"] == str(local.manifest_digest)
    dockyard("tag", "busybox", f"{host}/b/bb:1")
    assert "Mounted from a/bb" in dockyard("push", f"{host}/b/bb:1").out
    other_store("pull", f"{host}/b/bb:1")
    assert Store(other_store.root).resolve(f"{host}/b/bb:1").manifest_digest == local.manifest_digest
    rows = dockyard("search", "--format", "json", f"{host}/bb").out.splitlines()
    assert [json.loads(r) for r in rows] == [{"Name": f"{host}/a/bb", "Tags": 1}, {"Name": f"{host}/b/bb", "Tags": 1}]


def test_dropped_upload_resumes_and_download_resumes(big_image, dockyard, store_root, other_store, ours,
                                                     client_env):
    up = push_through_cut(dockyard, "big", ours.host, client_env)
    layer = Store(store_root).resolve("big").layers[0].size
    # Resumed from the server's offset, so less than the cut-off part plus the whole layer went up again.
    assert up.bytes_up < 1_500_000 + layer, (up.bytes_up, layer)
    down = Proxy(ours.host, cut_after=1_000_000, direction="down", cuts=1)
    try:
        other_store("pull", f"{down.host}/big/img:1")
        assert down.cuts_done == 1
    finally:
        down.close()
    assert Store(other_store.root).resolve(f"{down.host}/big/img:1").manifest_digest == \
        Store(store_root).resolve("big").manifest_digest


def test_htpasswd_basic_auth(busybox_image, dockyard, other_store, tmp_path, htpasswd, client_env):
    server = start_dockyard_registry(tmp_path / "basic", "--htpasswd", str(htpasswd))
    try:
        host = server.host
        dockyard("tag", "busybox", f"{host}/p/bb:1")
        assert "unauthorized" in dockyard("push", f"{host}/p/bb:1", check=False).err
        bad = dockyard("login", host, "-u", "alice", "-p", "nope", check=False)
        assert bad.code == 1 and "incorrect username or password" in bad.err
        dockyard("login", host, "-u", "alice", "--password-stdin", input=b"s3cret")
        dockyard("push", f"{host}/p/bb:1")
        other_store("pull", f"{host}/p/bb:1")
    finally:
        server.stop()


def test_token_auth(busybox_image, dockyard, other_store, tmp_path, htpasswd, client_env):
    server = start_dockyard_registry(tmp_path / "token", "--htpasswd", str(htpasswd), "--token")
    try:
        host = server.host
        challenge = requests.get(f"http://{host}/v2/").headers["WWW-Authenticate"]
        assert challenge.startswith("Bearer ")
        dockyard("tag", "busybox", f"{host}/t/bb:1")
        denied = dockyard("push", f"{host}/t/bb:1", check=False)
        assert denied.code == 1 and "unauthorized" in denied.err
        bad = dockyard("login", host, "-u", "alice", "--password-stdin", input=b"wrong", check=False)
        assert bad.code == 1 and "incorrect username or password" in bad.err
        dockyard("login", host, "-u", "alice", "--password-stdin", input=b"s3cret")
        out = dockyard("push", f"{host}/t/bb:1")
        assert "Pushed" in out.out and "s3cret" not in out.out + out.err
        dockyard("tag", "busybox", f"{host}/t2/bb:1")
        assert "Mounted from t/bb" in dockyard("push", f"{host}/t2/bb:1").out
        other_store("pull", f"{host}/t/bb:1")
        assert dockyard("search", f"{host}/bb").out.count(host) == 2
    finally:
        server.stop()


def test_bearer_token_refreshed_after_expiry(tmp_path, htpasswd, client_env, busybox_image, dockyard):
    """In one process: a token outlives its ttl, and the next request still succeeds with a fresh one."""
    import time

    from registry.client.auth import Credentials, save_credentials
    from registry.client.transport import Transport, check

    config = tmp_path / "registry.toml"
    config.write_text("[auth.token]\nttl = 2\n")
    server = start_dockyard_registry(tmp_path / "short", "--config", str(config), "--htpasswd", str(htpasswd),
                                     "--token")
    try:
        host = server.host
        dockyard("tag", "busybox", f"{host}/exp/bb:1")
        save_credentials(host, Credentials("alice", "s3cret"))
        dockyard("push", f"{host}/exp/bb:1")
        t = Transport(host)
        scope = ("repository:exp/bb:pull",)
        check(t.request("GET", "/v2/exp/bb/tags/list", scope), "tags").close()
        first = t.auth.header(scope)
        time.sleep(2.5)  # past the token's 2 s lifetime
        r = check(t.request("GET", "/v2/exp/bb/tags/list", scope), "tags")
        assert r.json()["tags"] == ["1"]
        assert t.auth.header(scope) not in (None, first)
        # A token the server no longer accepts (as after a key rotation) is replaced on the 401.
        t.auth._tokens[scope].value = "not-a-valid-token"
        r = check(t.request("GET", "/v2/exp/bb/tags/list", scope), "tags")
        assert r.json()["tags"] == ["1"]
        t.close()
    finally:
        server.stop()
