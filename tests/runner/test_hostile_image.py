"""A hostile image (tar-slip names, symlinks out, hard links out) loaded and run cannot write outside its rootfs."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile

import pytest


def _layer(entries: list[tarfile.TarInfo], payload: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for info in entries:
            tf.addfile(info, io.BytesIO(payload) if info.isfile() else None)
    return buf.getvalue()


def _entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size, info.mode = kind, link, size, 0o644
    return info


def _archive(path, name: str, layers: list[bytes]) -> None:
    """A docker-archive with the given (uncompressed) layers on top of each other."""
    diff_ids = [f"sha256:{hashlib.sha256(l).hexdigest()}" for l in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/true"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    cfg_name = f"{hashlib.sha256(config).hexdigest()}.json"
    with tarfile.open(path, "w") as tf:
        files = {cfg_name: config, **{f"l{i}/layer.tar": l for i, l in enumerate(layers)},
                 "manifest.json": json.dumps([{"Config": cfg_name, "RepoTags": [name],
                                               "Layers": [f"l{i}/layer.tar" for i in range(len(layers))]}]).encode()}
        for n, data in files.items():
            info = tarfile.TarInfo(n)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("case", ["dotdot", "symlink-then-write", "symlink-in-lower-layer", "hardlink-out"])
def test_hostile_layers_never_write_outside(ctr, tmp_path, case):
    sentinel = tmp_path / "host"
    sentinel.mkdir()
    target = sentinel / "pwned"
    payload = b"pwned\n"
    upper: list[tarfile.TarInfo]
    lower: list[tarfile.TarInfo] = []
    if case == "dotdot":
        upper = [_entry(f"../../../../../../..{target}", size=len(payload))]
    elif case == "symlink-then-write":
        upper = [_entry("out", tarfile.SYMTYPE, str(sentinel)), _entry("out/pwned", size=len(payload))]
    elif case == "symlink-in-lower-layer":
        lower = [_entry("out", tarfile.SYMTYPE, str(sentinel))]
        upper = [_entry("out/pwned", size=len(payload))]
    else:
        upper = [_entry("stolen", tarfile.LNKTYPE, f"../../../../..{target}")]
        target.write_bytes(b"host secret\n")
    layers = ([_layer(lower, payload)] if lower else []) + [_layer(upper, payload)]
    archive = tmp_path / "hostile.tar"
    _archive(archive, f"hostile-{case}:1", layers)
    before = sorted(os.listdir(sentinel))
    loaded = ctr("load", "-i", str(archive), check=False)
    if case.startswith("symlink"):
        # Neutralised inside the rootfs: the image loads, and the container fails only for lack of /bin/true.
        assert loaded.code == 0, loaded.err
        r = ctr("run", "--rm", "--network", "none", f"hostile-{case}:1", check=False)
        assert r.code == 127 and "/bin/true" in r.err and len(r.err.strip().splitlines()) == 1, r.err
    else:
        # An entry leaving the root is refused at load (as docker does), with one line and nothing stored.
        assert loaded.code == 1 and "points outside the root" in loaded.err, loaded.err
        assert len(loaded.err.strip().splitlines()) == 1 and "Traceback" not in loaded.err, loaded.err
        assert f"hostile-{case}" not in ctr("images").out
    assert sorted(os.listdir(sentinel)) == before
    if case == "hardlink-out":
        assert target.read_bytes() == b"host secret\n"
