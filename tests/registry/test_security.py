"""TLS with the generated certificate, htpasswd basic auth with per-user rights, token auth, read-only, deletes."""

from __future__ import annotations

import base64
import re
import subprocess
import sys

import jwt
import pytest
import requests

from support import REPO, tool
from regkit import layer_tar, make_image, push_image, sha256, write_layout


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dockyard", *args], capture_output=True, text=True, cwd=cwd or REPO,
                          timeout=60)


def test_cert_and_tls(make_server, tmp_path):
    r = _cli("registry", "cert", "127.0.0.1", "localhost", "--cert", str(tmp_path / "c.pem"),
             "--key", str(tmp_path / "k.pem"))
    assert r.returncode == 0, r.stderr
    assert oct((tmp_path / "k.pem").stat().st_mode & 0o777) == "0o600"
    server = make_server("--tls-cert", str(tmp_path / "c.pem"), "--tls-key", str(tmp_path / "k.pem"),
                         scheme="https", verify=str(tmp_path / "c.pem"))
    r = requests.get(f"{server.url}/v2/", verify=str(tmp_path / "c.pem"))
    assert r.status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{server.url}/v2/", verify=True)
    # skopeo trusts it through --dest-cert-dir.
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "ca.crt").write_bytes((tmp_path / "c.pem").read_bytes())
    img = make_image([layer_tar({"tls": b"secure"})])
    write_layout(tmp_path / "layout", img)
    p = subprocess.run([tool("skopeo"), "copy", "--dest-cert-dir", str(certs), f"oci:{tmp_path}/layout:latest",
                        f"docker://{server.host}/tls/img:v1"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert requests.get(f"{server.url}/v2/tls/img/manifests/v1", verify=str(tmp_path / "c.pem")).content == \
        img.manifest
    assert _cli("registry", "cert", "bad host!").returncode == 1


def test_htpasswd_rights(make_server, htpasswd, access_config):
    server = make_server("--htpasswd", str(htpasswd), "--config", str(access_config))
    r = requests.get(f"{server.url}/v2/")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert requests.get(f"{server.url}/v2/", auth=("alice", "wrong")).status_code == 401
    assert requests.get(f"{server.url}/v2/", auth=("nobody", "x")).status_code == 401
    assert requests.get(f"{server.url}/v2/", auth=("alice", "alice-pw")).status_code == 200
    img = make_image([layer_tar({"a": b"auth"})])
    assert push_image(server.url, "auth/img", img, auth=("alice", "alice-pw")).status_code == 201
    # bob: pull yes, push 403 DENIED.
    assert requests.get(f"{server.url}/v2/auth/img/manifests/latest", auth=("bob", "bob-pw")).content == img.manifest
    r = requests.post(f"{server.url}/v2/auth/img/blobs/uploads/", auth=("bob", "bob-pw"))
    assert r.status_code == 403 and r.json()["errors"][0]["code"] == "DENIED"
    # carol: rights on team/* only.
    assert requests.get(f"{server.url}/v2/auth/img/tags/list", auth=("carol", "carol-pw")).status_code == 403
    assert push_image(server.url, "team/app", img, auth=("carol", "carol-pw")).status_code == 201
    assert requests.post(f"{server.url}/v2/auth/img/blobs/uploads/", auth=("carol", "carol-pw")).status_code == 403
    assert requests.get(f"{server.url}/v2/auth/img/tags/list").status_code == 401
    # Credentials never reach the log.
    log = server.log.read_text()
    assert "alice-pw" not in log and "bob-pw" not in log and "alice" in log
    # skopeo with credentials.
    p = subprocess.run([tool("skopeo"), "inspect", "--tls-verify=false", "--creds", "bob:bob-pw",
                        f"docker://{server.host}/auth/img:latest"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_anonymous_pull(make_server, htpasswd):
    server = make_server("--htpasswd", str(htpasswd), "--anonymous-pull")
    img = make_image([layer_tar({"anon": b"x"})])
    assert push_image(server.url, "anon", img, auth=("carol", "carol-pw")).status_code == 201
    assert requests.get(f"{server.url}/v2/anon/manifests/latest").content == img.manifest
    assert requests.post(f"{server.url}/v2/anon/blobs/uploads/").status_code == 401


def _token(server, scope: str, auth=None) -> str:
    r = requests.get(f"{server.url}/token", params={"service": "dockyard-registry", "scope": scope}, auth=auth)
    assert r.status_code == 200, r.text
    return r.json()["token"]


def test_token_auth(make_server, htpasswd, access_config):
    server = make_server("--htpasswd", str(htpasswd), "--config", str(access_config), "--token")
    r = requests.get(f"{server.url}/v2/tok/img/tags/list")
    assert r.status_code == 401
    challenge = r.headers["WWW-Authenticate"]
    assert challenge == (f'Bearer realm="{server.url}/token",service="dockyard-registry",'
                         f'scope="repository:tok/img:pull"')
    assert requests.get(f"{server.url}/token", auth=("alice", "bad")).status_code == 401
    token = _token(server, "repository:tok/img:pull,push", ("alice", "alice-pw"))
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert header["alg"] == "ES256" and claims["aud"] == "dockyard-registry" and claims["sub"] == "alice"
    # The docker token spec's claims and header, the token ID short (96 random bits) but unique.
    assert set(claims) == {"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "access"} and header["kid"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{16}", claims["jti"])
    assert jwt.decode(_token(server, "repository:tok/img:pull", ("alice", "alice-pw")),
                      options={"verify_signature": False})["jti"] != claims["jti"]
    assert claims["access"] == [{"type": "repository", "name": "tok/img", "actions": ["pull", "push"]}]
    img = make_image([layer_tar({"t": b"token"})])
    bearer = {"Authorization": f"Bearer {token}"}
    for blob in [img.config, *img.layers]:
        r = requests.post(f"{server.url}/v2/tok/img/blobs/uploads/", params={"digest": sha256(blob)}, data=blob,
                          headers=bearer)
        assert r.status_code == 201
    r = requests.put(f"{server.url}/v2/tok/img/manifests/v1", data=img.manifest,
                     headers={**bearer, "Content-Type": img.media_type})
    assert r.status_code == 201
    # The token is scoped to tok/img only.
    r = requests.get(f"{server.url}/v2/other/tags/list", headers=bearer)
    assert r.status_code == 401 and 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]
    # bob asks for push but gets only pull.
    bob = _token(server, "repository:tok/img:pull,push", ("bob", "bob-pw"))
    assert jwt.decode(bob, options={"verify_signature": False})["access"][0]["actions"] == ["pull"]
    assert requests.get(f"{server.url}/v2/tok/img/manifests/v1", headers={"Authorization": f"Bearer {bob}"}) \
        .content == img.manifest
    assert requests.post(f"{server.url}/v2/tok/img/blobs/uploads/",
                         headers={"Authorization": f"Bearer {bob}"}).status_code == 401
    # carol holds rights on team/* only.
    carol = requests.get(f"{server.url}/token", auth=("carol", "carol-pw"), params=[
        ("scope", "repository:team/x:pull,push"), ("scope", "repository:tok/img:pull")]).json()["token"]
    assert jwt.decode(carol, options={"verify_signature": False})["access"] == [
        {"type": "repository", "name": "team/x", "actions": ["pull", "push"]}]
    # A forged token (signed by another key) and a garbage token are refused.
    from cryptography.hazmat.primitives.asymmetric import ec
    forged = jwt.encode({**claims, "sub": "mallory"}, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256")
    for bad in (forged, "garbage", base64.b64encode(b"x").decode()):
        r = requests.get(f"{server.url}/v2/tok/img/tags/list", headers={"Authorization": f"Bearer {bad}"})
        assert r.status_code == 401
    # skopeo goes through the token flow itself.
    p = subprocess.run([tool("skopeo"), "inspect", "--raw", "--tls-verify=false", "--creds", "bob:bob-pw",
                        f"docker://{server.host}/tok/img:v1"], capture_output=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout == img.manifest
    assert "bob-pw" not in server.log.read_text()


def test_read_only_and_delete_switch(make_server, tmp_path):
    root = tmp_path / "ro-root"
    server = make_server(root=root)
    img = make_image([layer_tar({"ro": b"x"})])
    assert push_image(server.url, "ro", img).status_code == 201
    r = requests.delete(f"{server.url}/v2/ro/manifests/{img.digest}")
    assert r.status_code == 405 and r.json()["errors"][0]["code"] == "UNSUPPORTED"
    server.stop()
    server = make_server("--read-only", "--enable-delete", root=root)
    assert requests.get(f"{server.url}/v2/ro/manifests/latest").content == img.manifest
    for method, path in (("POST", "/v2/ro/blobs/uploads/"), ("PUT", "/v2/ro/manifests/x"),
                         ("DELETE", f"/v2/ro/manifests/{img.digest}")):
        r = requests.request(method, server.url + path)
        assert r.status_code == 405 and r.json()["errors"][0]["code"] == "UNSUPPORTED", (method, path)


def test_config_files(make_server, tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('read_only = true\n[gc]\ngrace = 10\n')
    server = make_server("--config", str(toml))
    assert requests.post(f"{server.url}/v2/x/blobs/uploads/").status_code == 405
    server.stop()
    limited = tmp_path / "limited.toml"
    limited.write_text("[uploads]\nmax = 2\n")
    server = make_server("--config", str(limited), root=tmp_path / "limited-root")
    sessions = [requests.post(f"{server.url}/v2/x/blobs/uploads/") for _ in range(2)]
    assert [r.status_code for r in sessions] == [202, 202]
    r = requests.post(f"{server.url}/v2/x/blobs/uploads/")
    assert r.status_code == 429 and r.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert requests.delete(server.url + sessions[0].headers["Location"]).status_code == 204
    assert requests.post(f"{server.url}/v2/x/blobs/uploads/").status_code == 202
    server.stop()
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("delete_enabled: true\nauth:\n  anonymous: [pull]\n")
    server = make_server("--config", str(yaml_file))
    assert requests.delete(f"{server.url}/v2/x/blobs/sha256:{'0' * 64}").json()["errors"][0]["code"] == \
        "BLOB_UNKNOWN"
    bad = tmp_path / "bad.toml"
    bad.write_text("no_such_setting = 1\n")
    r = _cli("registry", "serve", "--config", str(bad), "--root", str(tmp_path / "r"))
    assert r.returncode == 1 and "unknown setting 'no_such_setting'" in r.stderr and "Traceback" not in r.stderr
    r = _cli("registry", "serve", "--tls-cert", str(toml), "--root", str(tmp_path / "r"))
    assert r.returncode == 1 and "Error:" in r.stderr


def test_token_rs256_with_given_key(make_server, htpasswd, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_path = tmp_path / "token.pem"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    server = make_server("--htpasswd", str(htpasswd), "--token", "--token-key", str(key_path))
    token = _token(server, "repository:rs/img:pull", ("bob", "bob-pw"))
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    jwt.decode(token, key.public_key(), algorithms=["RS256"], audience="dockyard-registry")
    r = requests.get(f"{server.url}/v2/rs/img/tags/list", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 404 and r.json()["errors"][0]["code"] == "NAME_UNKNOWN"
