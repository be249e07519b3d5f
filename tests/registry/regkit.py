"""Registry test kit: a server process on loopback and hand-made OCI images (imported as `regkit`)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests
from support import free_port, tool  # noqa: F401 (free_port re-exported for the registry tests)

from dockyard import mediatypes as mt

if TYPE_CHECKING:
    from registry.config import Config
    from registry.storage import Layout

REPO = Path(__file__).resolve().parents[2]
LONG = "p" * 100  # a password over bcrypt's 72-byte input limit


@dataclass
class Server:
    """A running `python -m registry` process."""

    root: Path
    port: int
    args: list[str]
    scheme: str = "http"
    proc: subprocess.Popen | None = None
    log: Path | None = None
    verify: str | bool = False
    env: dict = field(default_factory=dict)
    entry: tuple[str, ...] = ("registry",)  # what `python -m` runs, e.g. ("dockyard", "registry", "serve")
    # distribution's storage.s3 settings when the content lives in S3 (`root` then keeps the local state alone);
    # None: the filesystem driver under `root`.
    s3: dict | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, probe: bool = True) -> "Server":
        """Start it and wait until /healthz answers; probe=False: only until the port accepts connections, so the
        test's own request is the first any worker serves."""
        self.log = self.root.parent / f"server-{self.port}.log"
        cmd = [sys.executable, "-m", *self.entry, "--addr", self.host, "--root", str(self.root), *self._args()]
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen(cmd, stdout=logf, stderr=logf, cwd=REPO, start_new_session=True,
                                         env={**os.environ, **self.env})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"registry exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if not probe:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                    return self
                if requests.get(f"{self.url}/healthz", timeout=1, verify=self.verify).status_code == 200:
                    return self
            except (OSError, requests.RequestException):
                time.sleep(0.1)
        raise AssertionError(f"registry did not come up: {self.log.read_text()[-2000:]}")

    def _args(self) -> list[str]:
        """The flags, a `--config` file given among them extended with the [storage.s3] section if on S3."""
        if self.s3 is None:
            return self.args
        args = list(self.args)
        given = Path(args.pop(args.index("--config") + 1)) if "--config" in args else None
        if given is not None:
            args.remove("--config")
            assert given.suffix == ".toml", f"only a TOML config takes the S3 section: {given}"
        path = self.root.parent / f"server-{self.port}.toml"
        path.write_text((given.read_text() if given else "") + "\n" + s3_section(self.s3))
        return ["--config", str(path), *args]

    @property
    def driver(self) -> str:
        return "filesystem" if self.s3 is None else "s3"

    def config(self) -> Config:
        """The registry configuration of this server's storage, for GC and storage checks run in the test."""
        from registry.config import Config

        if self.s3 is None:
            return Config(root=str(self.root))
        return Config(root=str(self.root), storage_driver="s3", storage_params=dict(self.s3))

    def storage(self) -> Layout:
        """This server's storage, opened in the test's process."""
        from registry.storage import open_storage

        return open_storage(*self.config().storage())

    def gc_flags(self) -> list[str]:
        """`dockyard registry gc` flags naming this server's storage (the config file it was started with)."""
        return ["--root", str(self.root), *(["--config", str(self.root.parent / f"server-{self.port}.toml")]
                                            if self.s3 is not None else [])]

    def assert_clean_log(self) -> None:
        """No request ended in an internal error (500s are logged with their traceback, never sent)."""
        text = self.log.read_text()
        assert "internal error" not in text and "Traceback" not in text, text[-3000:]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def s3_section(params: dict) -> str:
    """distribution's `storage.s3` settings as a TOML section."""
    lines = ["[storage.s3]"]
    for key, value in params.items():
        lines.append(f"{key} = {str(value).lower() if isinstance(value, bool) else json.dumps(value)}")
    return "\n".join(lines) + "\n"


def chunked_push_blob(url: str, repo: str, blob: bytes, chunk: int) -> None:
    """Push a blob as a POST, one PATCH per `chunk` bytes (with Content-Range) and the closing PUT."""
    r = requests.post(f"{url}/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    loc = r.headers["Location"]
    for start in range(0, len(blob), chunk):
        part = blob[start:start + chunk]
        r = requests.patch(url + loc, data=part,
                           headers={"Content-Range": f"{start}-{start + len(part) - 1}"})
        assert r.status_code == 202, r.text
        loc = r.headers["Location"]
    r = requests.put(url + loc, params={"digest": sha256(blob)})
    assert r.status_code == 201, r.text


def htpasswd_file(path: Path, users: dict[str, str], cost: int = 5) -> Path:
    """An `htpasswd -B` file for `users` (name -> password), made by Apache's own htpasswd tool."""
    lines = [subprocess.run([tool("htpasswd"), "-Bbn", "-C", str(cost), user, password], capture_output=True,
                            text=True, check=True).stdout.strip() for user, password in users.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class Image:
    """An image as bytes: config, layers and a manifest referencing them."""

    config: bytes
    layers: list[bytes]
    manifest: bytes
    media_type: str = mt.OCI_MANIFEST

    @property
    def digest(self) -> str:
        return sha256(self.manifest)


def layer_tar(files: dict[str, bytes], compress: bool = True) -> bytes:
    """A (gzipped) tar layer holding `files`."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tf.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    return gzip.compress(raw, compresslevel=1, mtime=0) if compress else raw


def make_image(layers: list[bytes], docker: bool = False, extra: dict | None = None) -> Image:
    """An image manifest (OCI or Docker schema2) over gzip layers `layers`."""
    diff_ids = [sha256(gzip.decompress(layer)) for layer in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest_type = mt.DOCKER_MANIFEST if docker else mt.OCI_MANIFEST
    doc = {"schemaVersion": 2, "mediaType": manifest_type,
           "config": {"mediaType": mt.DOCKER_CONFIG if docker else mt.OCI_CONFIG,
                      "digest": sha256(config), "size": len(config)},
           "layers": [{"mediaType": mt.DOCKER_LAYER_GZIP if docker else mt.OCI_LAYER_GZIP,
                       "digest": sha256(layer), "size": len(layer)} for layer in layers]}
    doc.update(extra or {})
    return Image(config, layers, json.dumps(doc, indent=2).encode(), manifest_type)


def write_layout(path: Path, image: Image, tag: str = "latest") -> Path:
    """Write `image` as an OCI image layout directory."""
    blobs = path / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for data in [image.config, *image.layers, image.manifest]:
        (blobs / sha256(data).split(":")[1]).write_bytes(data)
    index = {"schemaVersion": 2, "manifests": [{"mediaType": image.media_type, "digest": image.digest,
                                                "size": len(image.manifest),
                                                "annotations": {mt.REF_NAME: tag}}]}
    (path / "index.json").write_text(json.dumps(index))
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return path


def push_image(url: str, repo: str, image: Image, tag: str | None = "latest", auth=None) -> requests.Response:
    """Push an image with plain monolithic uploads; returns the manifest PUT response."""
    for blob in [image.config, *image.layers]:
        r = requests.post(f"{url}/v2/{repo}/blobs/uploads/", params={"digest": sha256(blob)}, data=blob,
                          auth=auth, verify=False)
        assert r.status_code == 201, r.text
    return requests.put(f"{url}/v2/{repo}/manifests/{tag or image.digest}", data=image.manifest,
                        headers={"Content-Type": image.media_type}, auth=auth, verify=False)


@pytest.fixture(autouse=True)  # imported by the conftest of tests/registry and of tests/product
def background_loops():
    """Stop the registry's background loops (webhook sender, event and metrics flushers, ...) an in-process test
    started: a later test that forks must find no thread of ours in pytest's process."""
    yield
    from registry import background
    assert background.stop_all() == []
