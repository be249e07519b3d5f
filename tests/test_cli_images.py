"""The image commands as a user runs them: output formats, import variants, docker-style errors."""

from __future__ import annotations

import bz2
import json
import lzma
import re
import subprocess
import sys

import pytest
import zstandard

from dockyard.store import Store


def test_images_table_and_formats(busybox_image, dockyard, store_root):
    img = Store(store_root).resolve("busybox")
    lines = dockyard("images").out.splitlines()
    assert re.split(r"\s{3,}", lines[0]) == ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    cols = re.split(r"\s{3,}", lines[1])
    assert cols[:3] == ["busybox", "latest", img.id.short]
    assert cols[3].endswith("ago") and re.fullmatch(r"[\d.]+[kMG]?B", cols[4])
    assert dockyard("images", "-q").out == img.id.short + "\n"
    assert str(img.manifest_digest) in dockyard("images", "--digests").out
    row = json.loads(dockyard("images", "--format", "json").out)
    assert row["Repository"] == "busybox" and row["ID"] == img.id.short
    assert dockyard("images", "--format", "{{.Repository}}:{{.Tag}}").out == "busybox:latest\n"
    assert dockyard("images", "--no-trunc", "-q").out.strip() == str(img.id)
    assert dockyard("images", "nothere").out.splitlines()[1:] == []
    assert dockyard("image", "ls", "busybox:latest").out.count("busybox") == 1


def test_inspect_and_history(busybox_image, dockyard, store_root):
    img = Store(store_root).resolve("busybox")
    [obj] = json.loads(dockyard("inspect", "busybox").out)
    assert obj["Id"] == str(img.id) and obj["RepoTags"] == ["busybox:latest"]
    assert obj["Config"]["Cmd"] == ["/bin/sh"] and obj["RootFS"]["Layers"] == [str(d) for d in img.diff_ids]
    assert dockyard("inspect", "-f", "{{.Config.Cmd}} {{json .Config.Cmd}} {{.Os}}", "busybox").out == \
        '[/bin/sh] ["/bin/sh"] linux\n'
    hist = dockyard("history", "busybox").out.splitlines()
    assert re.split(r"\s{3,}", hist[0]) == ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
    assert hist[1].startswith(img.id.short) and "dockyard import" in hist[1]


@pytest.mark.parametrize("compress", ["gzip", "zstd", "xz", "bzip2"])
def test_import_compressed_from_stdin(busybox_tar, dockyard, store_root, compress):
    import gzip

    raw = busybox_tar.read_bytes()
    data = {"gzip": lambda b: gzip.compress(b, 1), "zstd": zstandard.compress, "xz": lzma.compress,
            "bzip2": bz2.compress}[compress](raw)
    out = dockyard("import", "-m", "from stdin", "-", f"bb-{compress}", input=data).out.strip()
    img = Store(store_root).resolve(f"bb-{compress}")
    assert out == str(img.id)
    assert img.config["history"][0]["comment"] == "from stdin"
    plain = Store(store_root)
    # The same rootfs gives the same diffID however it was compressed on the way in.
    if compress != "gzip":
        dockyard("import", str(busybox_tar), "bb-plain")
        assert plain.resolve("bb-plain").diff_ids == img.diff_ids


def test_import_changes(busybox_tar, dockyard, store_root):
    dockyard("import", "-c", "ENTRYPOINT [\"/bin/echo\"]", "-c", "ENV A=1 B=\"two words\"", "-c", "WORKDIR /srv",
             "-c", "EXPOSE 8080 53/udp", "-c", "USER nobody", "-c", "LABEL org.x=y", "-c", "VOLUME /data",
             "-c", "STOPSIGNAL SIGINT", "-c", "HEALTHCHECK --interval=5s CMD true", "--compression", "zstd",
             str(busybox_tar), "changed")
    img = Store(store_root).resolve("changed")
    c = img.config["config"]
    assert c["Entrypoint"] == ["/bin/echo"] and c["Env"] == ["A=1", "B=two words"]
    assert c["WorkingDir"] == "/srv" and c["ExposedPorts"] == {"8080/tcp": {}, "53/udp": {}}
    assert c["User"] == "nobody" and c["Labels"] == {"org.x": "y"} and c["Volumes"] == {"/data": {}}
    assert c["StopSignal"] == "SIGINT"
    assert c["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000}
    assert img.layers[0].media_type == "application/vnd.oci.image.layer.v1.tar+zstd"


@pytest.mark.parametrize("args, message", [
    (["tag", "nothere", "x"], "Error: No such image: nothere:latest"),
    (["tag", "busybox", "Bad:Name"], "invalid reference format"),
    (["rmi", "nothere"], "Error: No such image: nothere:latest"),
    (["history", "UPPER"], "Error: No such image: UPPER"),
    (["import", "-c", "FROM x", "/dev/null", "x"], "not a config instruction"),
    (["import", "-c", "EXPOSE abc", "/dev/null", "x"], "invalid port"),
    *[(["import", "-c", ins, "/dev/null", "x"], f"{ins} requires an argument")
      for ins in ("ONBUILD", "EXPOSE", "VOLUME", "USER", "WORKDIR", "STOPSIGNAL", "MAINTAINER")],
    (["import", "-c", "ONBUILD FROM x", "/dev/null", "x"], "FROM isn't allowed as an ONBUILD trigger"),
    (["save", "-o", "/nonexistent-dir/x.tar", "busybox"], "No such file or directory"),
])
def test_errors_are_one_line(busybox_image, dockyard, args, message):
    r = dockyard(*args, check=False)
    assert r.code == 1, r
    assert message in r.err and len(r.err.strip().splitlines()) == 1 and "Traceback" not in r.err, r.err


def test_import_garbage_leaves_store_unchanged(busybox_image, dockyard, store_root, tmp_path):
    before = open(Store(store_root).layout + "/index.json").read()
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"\x1f\x8b\x08\x00" + b"garbage" * 100)
    r = dockyard("import", str(bad), "bad", check=False)
    assert r.code == 1 and "Traceback" not in r.err and len(r.err.strip().splitlines()) == 1, r.err
    r = dockyard("import", "/etc/passwd", "bad", check=False)
    assert r.code == 1 and "not a valid tar" in r.err, r.err
    assert open(Store(store_root).layout + "/index.json").read() == before
    assert dockyard("images", "-q").out.count("\n") == 1


def test_usage_error_exit_code(dockyard):
    r = dockyard("images", "--bogus", check=False)
    assert r.code == 125 and "unrecognized arguments" in r.err


def test_version_info_df(busybox_image, dockyard, store_root):
    assert "Version:" in dockyard("version").out
    info = json.loads(dockyard("info", "--format", "json").out)
    assert info["DockyardRootDir"] == store_root and info["Images"] == 1
    df = dockyard("system", "df").out.splitlines()
    assert df[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"] and df[1].split()[:3] == ["Images", "1", "0"]


def test_cli_starts_without_heavy_imports():
    """`dockyard --help` must not import flask, requests, rich or cryptography."""
    code = ("import sys; from dockyard.cli.main import build_parser; build_parser(); "
            "print(sorted(m for m in ('flask','requests','rich','cryptography','jwt','gunicorn') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
