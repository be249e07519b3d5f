"""`dockyard build` end to end: each instruction's effect on the image, run through the real sandbox and overlay."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import signal
import stat
import subprocess
import sys
import tarfile
import threading

import pytest


def _config(inspect, name: str) -> dict:
    return inspect.image(name).config["config"]


def test_basics_config_and_files(build, examples, inspect, tmp_path):
    build(examples, "-t", "basics", "--build-arg", "VERSION=1.2", dockerfile=examples / "basics.Dockerfile")
    img = inspect.image("basics")
    cfg = img.config["config"]
    assert cfg["Env"] == ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "APP_HOME=/srv/app", "GREETING=hello"]
    assert cfg["Labels"] == {"org.opencontainers.image.title": "basics", "version": "1.2"}
    assert cfg["WorkingDir"] == "/srv/app"
    assert cfg["User"] == "app"
    assert cfg["ExposedPorts"] == {"8080/tcp": {}, "9090/udp": {}}
    assert cfg["Volumes"] == {"/srv/data": {}}
    assert cfg["StopSignal"] == "SIGINT"
    assert cfg["Shell"] == ["/bin/sh", "-e", "-c"]
    assert cfg["Healthcheck"] == {"Test": ["CMD", "cat", "/srv/app/greeting.txt"], "Interval": 30_000_000_000,
                                  "Timeout": 3_000_000_000, "StartPeriod": 5_000_000_000, "Retries": 3}
    assert cfg["Entrypoint"] == ["/bin/sh", "-c"] and cfg["Cmd"] == ["cat greeting.txt"]
    assert img.config["author"] == "dockyard example <dockyard@example.invalid>"
    assert "OnBuild" not in cfg
    # USER was resolved against the image's own /etc/passwd when the RUN ran.
    assert inspect.read("basics", "tmp/id.txt") == "app:app\n"
    assert inspect.read("basics", "srv/app/greeting.txt") == "hello from /srv/app\n"
    # Config instructions leave empty-layer history entries; every layer has a non-empty one.
    history = img.config["history"]
    assert len([h for h in history if not h.get("empty_layer")]) == len(img.layers)
    assert any(h["created_by"] == "ENV APP_HOME=/srv/app GREETING=hello" and h["empty_layer"] for h in history)
    assert any(h["created_by"].startswith('RUN /bin/sh -c echo "$(id -un)') for h in history)
    out = inspect.run("basics", "cat /srv/app/greeting.txt; ls -ld /srv/app | cut -c1-10", tmp_path)
    assert out == "hello from /srv/app\ndrwxr-xr-x\n"


def test_heredocs(build, examples, inspect):
    build(examples, "-t", "docs", "--build-arg", "NAME=dockyard", dockerfile=examples / "heredocs.Dockerfile")
    assert inspect.read("docs", "doc/one.txt") == "one\n"
    assert inspect.read("docs", "doc/script.txt") == "from a #! script: /dev/pipes/SCRIPT\n"
    assert inspect.read("docs", "doc/a.txt") == "first\n"
    assert inspect.read("docs", "doc/b.txt") == "second\n"
    assert inspect.read("docs", "doc/hello.txt") == "hello dockyard\n"
    assert inspect.read("docs", "doc/literal.txt") == "hello ${NAME}\n"
    assert inspect.path("docs", "dev/pipes") is None  # the script mount left nothing behind


def test_whiteouts_visible_in_final_image(build, examples, inspect, tmp_path):
    build(examples, "-t", "wh", dockerfile=examples / "whiteouts.Dockerfile")
    assert inspect.path("wh", "data/gone") is None
    assert inspect.read("wh", "data/old/new") == "new\n"
    assert inspect.path("wh", "home") is None
    # Through the real overlay: the re-created directory is opaque, so the old /data/old/a stays hidden.
    assert inspect.run("wh", "ls /data/old; ls /data; test -e /home || echo no-home", tmp_path) == \
        "new\nkeep\nold\nno-home\n"


def test_copy_rules_and_flags(build, examples, inspect):
    build(examples, "-t", "cp", dockerfile=examples / "copy.Dockerfile")

    def meta(rel):
        st = os.lstat(inspect.path("cp", rel))
        return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid

    assert inspect.read("cp", "app/files/hello.txt") == "hello from the build context\n"
    assert inspect.path("cp", "app/files/files") is None  # contents copied, not the directory
    assert inspect.path("cp", "app/files/ignored.txt") is None  # .dockerignore
    assert sorted(os.listdir(inspect.path("cp", "app/many"))) == ["hello.txt", "one.txt", "two.txt"]
    assert meta("app/owned.txt") == (0o640, 1, 1)  # daemon:daemon from the image's passwd/group
    assert meta("app/chowned/one.txt") == (0o644, 1, 1) and meta("app/chowned/deeper")[1:] == (1, 1)
    assert meta("app/files/hello.txt") == (0o644, 0, 0)
    assert inspect.read("cp", "linked/hello.txt").startswith("hello")
    assert inspect.path("cp", "app/excluded/notes.md") is None and inspect.path("cp", "app/excluded/one.txt")
    assert inspect.read("cp", "app/parents/files/sub/deeper/leaf.txt") == "leaf\n"
    assert inspect.read("cp", "app/unpacked/pkg/packed.txt") == "packed\n"  # ADD unpacked the .tar.gz
    assert meta("app/added.sh") == (0o755, 0, 0)
    assert meta("app/added-sub/one.txt") == (0o644, 1, 1)  # --chown=daemon: uid 1, and gid = uid
    assert inspect.path("cp", "app/added-sub/notes.md") is None
    # --link made a layer independent of the ones below: it holds only its own files.
    img = inspect.image("cp")
    link_layer = next(d for d, h in zip(img.layers, [h for h in img.config["history"] if not h.get("empty_layer")])
                      if "--link" in h["created_by"])
    with inspect.store.open_blob(link_layer.digest) as f, tarfile.open(fileobj=f, mode="r|*") as tf:
        assert [(m.name, m.mode) for m in tf] == [("linked", 0o755), ("linked/hello.txt", 0o644)]


@pytest.mark.parametrize("compression", ["bz2", "xz", "zstd", "plain"])
def test_add_unpacks_archives_sniffed_by_content(build, tmp_path, inspect, compression):
    ctx = tmp_path / "ctx"
    (ctx / "payload").mkdir(parents=True)
    (ctx / "payload" / "f.txt").write_text("payload\n")
    plain = tmp_path / "a.tar"
    with tarfile.open(plain, "w") as tf:
        tf.add(ctx / "payload", arcname="payload")
    data = plain.read_bytes()
    if compression == "bz2":
        import bz2
        data = bz2.compress(data)
    elif compression == "xz":
        import lzma
        data = lzma.compress(data)
    elif compression == "zstd":
        import zstandard
        data = zstandard.ZstdCompressor().compress(data)
    (ctx / "archive.bin").write_bytes(data)  # no telling extension: the content decides
    (ctx / "Dockerfile").write_text("FROM busybox\nADD archive.bin /x/\nCOPY archive.bin /copied/\n")
    build(ctx, "-t", "arch")
    assert inspect.read("arch", "x/payload/f.txt") == "payload\n"
    assert inspect.path("arch", "copied/archive.bin")  # COPY never unpacks


def test_workdir_relative_destinations_and_multi_source_rule(context, build, inspect):
    ctx = context({"a": "a", "b": "b",
                   "Dockerfile": "FROM busybox\nWORKDIR /w\nCOPY a rel\nCOPY a b sub/\nWORKDIR sub2\nCOPY b .\n"})
    build(ctx, "-t", "wd")
    assert inspect.read("wd", "w/rel") == "a"
    assert inspect.read("wd", "w/sub/a") == "a" and inspect.read("wd", "w/sub/b") == "b"
    assert inspect.read("wd", "w/sub2/b") == "b"
    assert _config(inspect, "wd")["WorkingDir"] == "/w/sub2"
    assert os.stat(inspect.path("wd", "w")).st_uid == 0
    (ctx / "Dockerfile").write_text("FROM busybox\nUSER daemon\nWORKDIR /d/e\nRUN touch mine\n")
    build(ctx, "-t", "wd-user")  # the directories WORKDIR makes belong to the USER, who can write there
    assert os.stat(inspect.path("wd-user", "d/e/mine")).st_uid == 1
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY a b /nodir\n")
    res = build(ctx, "-t", "bad", check=False)
    assert res.code == 1 and "destination must be a directory and end with a /" in res.err


def test_multistage_builds_only_needed_stages(build, examples, inspect):
    res = build(examples, "-t", "ms", dockerfile=examples / "multistage.Dockerfile")
    assert "[unused" not in res.err  # its RUN exit 1 would have failed the build
    for name, text in (("left.txt", "left\n"), ("right.txt", "right\n"), ("via-mount.txt", "right\n")):
        assert inspect.read("ms", f"result/{name}") == text
    assert os.path.getsize(inspect.path("ms", "result/busybox-copy")) == \
        os.path.getsize(inspect.path("busybox:latest", "bin/busybox"))
    build(examples, "-t", "left-only", "--target", "left", dockerfile=examples / "multistage.Dockerfile")
    assert inspect.read("left-only", "left.txt") == "left\n" and inspect.path("left-only", "result") is None


def test_onbuild_triggers_run_in_child(build, examples, inspect):
    build(examples, "-t", "onbuild-parent", dockerfile=examples / "onbuild.Dockerfile")
    parent = _config(inspect, "onbuild-parent")
    assert len(parent["OnBuild"]) == 2
    assert parent["Healthcheck"] == {"Test": ["CMD", "true"], "StartInterval": 2_000_000_000,
                                     "Interval": 60_000_000_000}
    build(examples, "-t", "child", dockerfile=examples / "onbuild-child.Dockerfile")
    assert inspect.read("child", "onbuild/ran.txt") == "triggered\n"
    assert "OnBuild" not in _config(inspect, "child")


def test_run_mounts_cache_secret_tmpfs_bind_network(build, examples, inspect, tmp_path):
    secret = tmp_path / "token"
    secret.write_text("s3cret-value")
    dockerfile = examples / "mounts.Dockerfile"
    secret_args = ("--secret", f"id=token,src={secret}")
    build(examples, "-t", "m1", *secret_args, dockerfile=dockerfile)
    assert inspect.read("m1", "cache-count.txt").strip() == "1"
    assert inspect.read("m1", "secret-size.txt").strip() == "12"
    assert inspect.read("m1", "from-bind.txt").startswith("hello")
    assert inspect.read("m1", "net.txt") == "lo\n"
    for absent in ("cache", "scratch", "run/secrets", "ctx"):
        assert inspect.path("m1", absent) is None
    img = inspect.image("m1")
    for d in img.layers:  # the secret never lands in a layer
        assert b"s3cret-value" not in _plain_layer(inspect, d.digest)
    build(examples, "-t", "m2", "--no-cache", *secret_args, dockerfile=dockerfile)
    assert inspect.read("m2", "cache-count.txt").strip() == "2"  # the cache mount persisted
    res = build(examples, "-t", "m3", "--no-cache", dockerfile=dockerfile, check=False)
    assert res.code == 1 and "secret token not provided" in res.err


def _plain_layer(inspect, digest) -> bytes:
    from dockyard.compression import decompressed

    with inspect.store.open_blob(digest) as f:
        return decompressed(f).read()


def test_failing_run_leaves_no_tag_mounts_or_temp_dirs(context, build, inspect, store_root, dockyard, store_mounts):
    ctx = context({"f": "x", "Dockerfile": "FROM busybox\nRUN echo ok > /x\nCOPY f /f\nRUN echo failing >&2; exit 3\n"})
    res = build(ctx, "-t", "broken", check=False)
    assert res.code == 1
    assert res.err.strip().splitlines()[-1] == \
        "Error: Dockerfile:4: step 4/4: RUN echo failing >&2; exit 3: exit code 3"
    assert "#4 failing" in res.err
    assert "broken" not in dockyard("images").out
    assert store_mounts() == []
    assert os.listdir(os.path.join(store_root, "tmp")) == []
    # Quiet builds still show what the failing step printed.
    res = build(ctx, "-q", "-t", "broken", check=False)
    assert res.code == 1 and res.out == "" and "failing" in res.err


def test_config_errors_name_the_line(context, build):
    ctx = context({"Dockerfile": "FROM busybox\nUSER nosuchuser\nRUN true\n"})
    res = build(ctx, check=False)
    assert res.code == 1 and res.err.strip().splitlines()[-1] == \
        "Error: Dockerfile:3: unable to find user nosuchuser: no matching entries in passwd file"
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY missing.txt /\n")
    res = build(ctx, check=False)
    assert res.code == 1 and "Dockerfile:2:" in res.err and "missing.txt" in res.err


def test_context_escapes_refused(context, build, tmp_path, inspect):
    ctx = context({})
    (tmp_path / "secret").write_text("outside")
    os.symlink("../secret", ctx / "link-out")
    os.symlink("..", ctx / "up")
    for src in ("../secret", "up/secret"):
        (ctx / "Dockerfile").write_text(f"FROM busybox\nCOPY {src} /got\n")
        res = build(ctx, "-t", "esc", check=False)
        assert res.code == 1, res.err
        assert res.err.splitlines()[-1].startswith("Error: Dockerfile:2: ") and "outside the build context" in res.err
    assert inspect.path("busybox:latest", "got") is None
    # A symlink that leaves the context is copied as the link itself, never followed.
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY link-out /got\n")
    build(ctx, "-t", "esc")
    top_layer = inspect.store.lowerdirs(inspect.image("esc"))[0]
    assert os.readlink(os.path.join(top_layer, "got")) == "../secret"


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_files(tmp_path):
    """A static file server on 127.0.0.1 serving tmp_path/www; yields (base URL, dir)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = lambda *a, **kw: _Files(*a, directory=str(www), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", www
    server.shutdown()


def test_add_url_with_checksum(build, examples, inspect, http_files):
    url, www = http_files
    (www / "hello.txt").write_bytes(b"downloaded\n")
    sha = "sha256:" + hashlib.sha256(b"downloaded\n").hexdigest()
    df = examples / "add-url.Dockerfile"
    build(examples, "-t", "url", "--build-arg", f"URL={url}/hello.txt", "--build-arg", f"SHA={sha}", dockerfile=df)
    assert inspect.read("url", "downloads/hello.txt") == "downloaded\n"
    assert stat.S_IMODE(os.lstat(inspect.path("url", "downloads/renamed.txt")).st_mode) == 0o600
    res = build(examples, "-t", "url", "--build-arg", f"URL={url}/hello.txt", "--build-arg",
                "SHA=sha256:" + "0" * 64, dockerfile=df, check=False)
    assert res.code == 1 and "digest mismatch" in res.err


def test_outputs_quiet_iidfile_and_reproducible(context, build, tmp_path, inspect, dockyard):
    ctx = context({"f": "content\n", "Dockerfile": "FROM busybox\nCOPY f /f\nRUN echo made > /made\nLABEL a=b\n"})
    env = {"SOURCE_DATE_EPOCH": "1700000000"}
    iid = tmp_path / "iid"
    oci, docker_tar, local = tmp_path / "img.oci.tar", tmp_path / "img.docker.tar", tmp_path / "rootfs"
    first = build(ctx, "-q", "--no-cache", "-t", "repro:1", "--iidfile", str(iid), "--output",
                  f"type=oci,dest={oci}", "-o", f"type=docker,dest={docker_tar}", "-o", f"type=local,dest={local}",
                  env=env)
    image_id = first.out.strip()
    assert image_id.startswith("sha256:") and first.out.count("\n") == 1
    assert iid.read_text() == image_id
    second = build(ctx, "-q", "--no-cache", "-t", "repro:2", env=env)
    assert second.out.strip() == image_id  # same inputs and epoch: same image, bit for bit
    cfg = inspect.image("repro:1").config
    assert cfg["created"] == "2023-11-14T22:13:20Z" and {h["created"] for h in cfg["history"][1:]} == {cfg["created"]}
    assert (local / "made").read_text() == "made\n" and (local / "bin" / "busybox").exists()
    with tarfile.open(oci) as tf:
        assert json.load(tf.extractfile("index.json"))["manifests"][0]["annotations"][
            "org.opencontainers.image.ref.name"] == "repro:1"
    with tarfile.open(docker_tar) as tf:
        assert json.load(tf.extractfile("manifest.json"))[0]["RepoTags"] == ["repro:1"]


def test_dockerfile_from_stdin_and_labels(context, build, inspect):
    ctx = context({})
    build(ctx, "-t", "stdin", "--label", "x=1", "--label", "y=two words", "-f", "-",
          input=b"FROM busybox\nLABEL z=3\n")
    assert _config(inspect, "stdin")["Labels"] == {"x": "1", "y": "two words", "z": "3"}


def test_scratch_gets_default_path_and_user_named_in_passwd(context, build, inspect):
    ctx = context({"f": "x", "Dockerfile": "FROM scratch\nCOPY f /f\n"})
    build(ctx, "-t", "scr")
    img = inspect.image("scr")
    assert img.config["config"]["Env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
    assert len(img.layers) == 1 and inspect.read("scr", "f") == "x"


@pytest.fixture
def interrupt(busybox_image, store_root, context, dockyard, store_mounts):
    """interrupt(dockerfile, markers, sig): build, signal once each marker was printed by a RUN, check the
    clean-up."""

    def run(dockerfile: str, markers: set[bytes], sig: int) -> str:
        ctx = context({"Dockerfile": dockerfile})
        proc = subprocess.Popen([sys.executable, "-m", "dockyard", "build", "-t", "interrupted", str(ctx)],
                                stderr=subprocess.PIPE, env={**os.environ, "DOCKYARD_ROOT": store_root})
        seen: set[bytes] = set()
        lines: list[bytes] = []
        watchdog = threading.Timer(120, proc.kill)  # the RUNs sleep 600 s: never wait that long for a marker
        watchdog.start()
        try:
            for line in proc.stderr:
                lines.append(line)
                seen.update(m for m in markers if line.split()[1:2] == [m])  # an output line, not the step's
                if seen == markers:
                    break
        finally:
            watchdog.cancel()
        assert seen == markers, b"".join(lines).decode(errors="replace")
        proc.send_signal(sig)
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=120) != 0  # a hang guard: the RUNs sleep 600 s
        assert "interrupted" not in dockyard("images").out
        assert store_mounts() == []
        assert os.listdir(os.path.join(store_root, "tmp")) == []
        return err

    return run


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_run_cleans_up(interrupt, sig):
    err = interrupt("FROM busybox\nRUN echo started; sleep 600\n", {b"started"}, sig)
    assert "Error:" in err


def test_interrupt_stops_parallel_stages(interrupt):
    # Only the main thread receives signals: the RUN in the other stage's thread is stopped by the builder.
    interrupt("FROM busybox AS a\nRUN echo started-a; sleep 600\n"
              "FROM busybox AS b\nRUN echo started-b; sleep 600\n"
              "FROM busybox\nCOPY --from=a /etc/passwd /a\nCOPY --from=b /etc/passwd /b\n",
              {b"started-a", b"started-b"}, signal.SIGINT)


def test_copy_from_stage_follows_its_absolute_symlinks_inside_it(context, build, inspect):
    ctx = context({"Dockerfile":
        "FROM busybox AS src\nRUN mkdir -p /real/dir && echo x > /real/dir/f && ln -s /real /abs && ln -s /etc /l\n"
        "FROM scratch\nCOPY --from=src /abs/dir/f /got\nCOPY --from=src /abs/../../../l/passwd /passwd\n"})
    build(ctx, "-t", "fromlinks")
    assert inspect.read("fromlinks", "got") == "x\n"
    # `..` and absolute links resolve inside the stage: its /etc/passwd, never the host's.
    assert inspect.read("fromlinks", "passwd") == inspect.read("busybox:latest", "etc/passwd")


def test_read_write_bind_mounts_discard_writes(context, build, inspect):
    ctx = context({"src/keep.txt": "keep", "Dockerfile":
                   "FROM busybox AS s\nRUN echo layer > /only.txt\n"
                   "FROM busybox\n"
                   "RUN --mount=type=bind,source=src,target=/m,rw rm /m/keep.txt && echo new > /m/new.txt\n"
                   "RUN --mount=type=bind,from=s,target=/s,rw rm /s/only.txt\n"
                   "RUN --mount=type=bind,source=src,target=/ro ! touch /ro/x 2>/dev/null\n"})
    build(ctx, "-t", "binds")
    assert sorted(os.listdir(ctx / "src")) == ["keep.txt"]
    build(ctx, "-t", "stage-s", "--target", "s")
    assert inspect.read("stage-s", "only.txt") == "layer\n"


def test_cli_usage_errors_are_one_line(context, build, tmp_path):
    ctx = context({"Dockerfile": "FROM busybox\n"})
    for args, message in ((["-t", "Bad:Name:x"], "invalid reference"),
                          (["-f", str(tmp_path / "nope")], "Dockerfile not found"),
                          (["--platform", "linux/amd64/x/y"], "invalid platform"),
                          (["--output", "type=zip,dest=x"], "unsupported type"),
                          (["--push"], "--push needs at least one -t"),
                          (["--target", "nosuch"], "target stage 'nosuch' could not be found")):
        res = build(ctx, *args, check=False)
        assert res.code == 1, args
        lines = res.err.strip().splitlines()
        assert lines[-1].startswith("Error: ") and message.lower() in lines[-1].lower(), (args, res.err)
        assert "Traceback" not in res.err


def test_dockerfile_specific_ignore_file_wins(context, build, inspect):
    ctx = context({"a.txt": "a", "b.txt": "b", ".dockerignore": "a.txt\n",
                   "app.Dockerfile": "FROM busybox\nCOPY *.txt /in/\n", "app.Dockerfile.dockerignore": "b.txt\n"})
    build(ctx, "-t", "ign", dockerfile=ctx / "app.Dockerfile")
    assert sorted(os.listdir(inspect.path("ign", "in"))) == ["a.txt"]
    (ctx / "app.Dockerfile.dockerignore").unlink()
    build(ctx, "-t", "ign", dockerfile=ctx / "app.Dockerfile")
    assert sorted(os.listdir(inspect.path("ign", "in"))) == ["b.txt"]
