"""Helpers of the UI tests: a product server per module, sign-in over HTTP, forms' CSRF tokens, raw pushes."""

from __future__ import annotations

import gzip
import json
import os
import re
from pathlib import Path

import requests
from productkit import ADMIN
from regkit import Image, Server, free_port, layer_tar, sha256

_CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')


def start_server(root: Path, *args: str) -> Server:
    """`dockyard registry serve --projects` on a free loopback port, admin's password set."""
    root.mkdir(parents=True)
    return Server(root, free_port(), ["--projects", "--enable-delete", *args],
                  env={"DOCKYARD_REGISTRY_ADMIN_PASSWORD": ADMIN[1]}, entry=("dockyard", "registry", "serve")).start()


class Browserless:
    """A signed-in session over plain HTTP. `requests` never sends Secure cookies over http://, as the RFC says,
    so the session cookie is sent by hand (a browser sends it to 127.0.0.1, a potentially trustworthy origin)."""

    def __init__(self, url: str, username: str, password: str):
        self.url = url
        page = requests.get(f"{url}/login")
        token = csrf_of(page.text)
        r = requests.post(f"{url}/login", data={"username": username, "password": password, "csrf_token": token},
                          headers={"Cookie": f"login_csrf={page.cookies['login_csrf']}"}, allow_redirects=False)
        assert r.status_code == 303, r.text
        self.set_cookie = r.headers["Set-Cookie"]
        self.sid = re.search(r"\bsid=([^;]+)", self.set_cookie).group(1)
        self.csrf = csrf_of(self.get("/projects").text)

    def get(self, path: str, **kw) -> requests.Response:
        return requests.get(self.url + path, headers={"Cookie": f"sid={self.sid}", **kw.pop("headers", {})},
                            allow_redirects=False, **kw)

    def post(self, path: str, data: dict | None = None, csrf: bool = True, **kw) -> requests.Response:
        form = {**(data or {}), **({"csrf_token": self.csrf} if csrf else {})}
        return requests.post(self.url + path, data=form, headers={"Cookie": f"sid={self.sid}",
                                                                  **kw.pop("headers", {})},
                             allow_redirects=False, **kw)


def csrf_of(html: str) -> str:
    m = _CSRF.search(html)
    assert m, "no CSRF token in the page"
    return m.group(1)


def image(labels: dict | None = None, history: list | None = None, payload: bytes = b"hello") -> Image:
    """An OCI image of one layer whose config carries labels and build history (as `docker build` writes them)."""
    layer = layer_tar({"hello.txt": payload})
    config = json.dumps({"architecture": "arm64", "os": "linux", "config": {"Labels": labels or {}},
                         "history": history or [{"created_by": "/bin/sh -c #(nop) ADD file:hello.txt in /"}],
                         "rootfs": {"type": "layers", "diff_ids": [sha256(gzip.decompress(layer))]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": sha256(config), "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                       "digest": sha256(layer), "size": len(layer)}]}).encode()
    return Image(config, [layer], manifest, "application/vnd.oci.image.manifest.v1+json")


def push(url: str, repo: str, img: Image, tag: str, auth=ADMIN) -> requests.Response:
    """Push with monolithic uploads; the first refused request's response, else the manifest PUT's."""
    for blob in [img.config, *img.layers]:
        r = requests.post(f"{url}/v2/{repo}/blobs/uploads/", params={"digest": sha256(blob)}, data=blob, auth=auth)
        if r.status_code != 201:
            return r
    return requests.put(f"{url}/v2/{repo}/manifests/{tag}", data=img.manifest,
                        headers={"Content-Type": img.media_type}, auth=auth)


def screenshots_dir(default: Path) -> Path:
    """Where screenshots go: $DOCKYARD_TEST_ARTIFACTS (CI keeps it), else the test's temp dir."""
    path = Path(os.environ.get("DOCKYARD_TEST_ARTIFACTS") or default)
    path.mkdir(parents=True, exist_ok=True)
    return path
