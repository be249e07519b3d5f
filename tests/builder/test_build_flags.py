"""The `docker buildx build` flags CI files pass, each checked by its effect on a real build."""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

from support import free_port, run_cli, tool

from dockyard.digest import Digest
from dockyard.store import Store


def _cached_steps(err: str) -> set[int]:
    return {int(line.split()[0][1:]) for line in err.splitlines() if line.endswith(" CACHED")}


def test_add_host_ulimit_and_shm_size_reach_run(context, build, inspect):
    ctx = context({"Dockerfile": "FROM busybox\nRUN grep myhost /etc/hosts > /hosts; ulimit -n > /nofile; "
                                 "ulimit -Hn >> /nofile; df -k /dev/shm | tail -n1 > /shm\n"})
    build(ctx, "-t", "limits", "--add-host", "myhost:10.1.2.3", "--add-host", "other=fd00::5",
          "--ulimit", "nofile=1234:2345", "--shm-size", "96m")
    assert inspect.read("limits", "hosts").split() == ["10.1.2.3", "myhost"]
    assert inspect.read("limits", "nofile").split() == ["1234", "2345"]
    assert inspect.read("limits", "shm").split()[1] == str(96 * 1024)


def test_bad_flag_values_fail_in_one_line(context, build):
    ctx = context({"Dockerfile": "FROM busybox\n"})
    for flag, value, message in (("--ulimit", "nofile=9:1", "soft limit must not exceed"),
                                 ("--ulimit", "bogus=1", "--ulimit bogus=1"),
                                 ("--add-host", "nohost", "invalid --add-host"),
                                 ("--shm-size", "lots", "--shm-size lots"),
                                 ("--secret", "id=x,env=DY_UNSET_VAR", "DY_UNSET_VAR is not set"),
                                 ("--build-context", "x=/nonexistent", "is not a directory"),
                                 ("--annotation", "index:k=v", "index annotations not supported")):
        res = build(ctx, flag, value, check=False)
        assert res.code == 1 and message in res.err.splitlines()[-1], (flag, res.err)
        assert "Traceback" not in res.err


def test_compatibility_flags_are_accepted(context, build):
    ctx = context({"Dockerfile": "FROM busybox\nRUN true\n"})
    build(ctx, "--load", "--rm", "--force-rm", "--compress", "-t", "compat")


def test_secret_from_an_environment_variable(context, build, inspect):
    ctx = context({"Dockerfile": "FROM busybox\n"
                                 "RUN --mount=type=secret,id=tok cat /run/secrets/tok > /file\n"
                                 "RUN --mount=type=secret,id=tok,env=TOK echo \"$TOK\" > /env\n"})
    build(ctx, "-t", "sec", "--secret", "id=tok,env=DY_TEST_TOKEN", env={"DY_TEST_TOKEN": "s3cr3t"})
    assert inspect.read("sec", "file") == "s3cr3t"
    assert inspect.read("sec", "env") == "s3cr3t\n"


def test_metadata_file_matches_inspect(context, build, dockyard, tmp_path, store_root):
    ctx = context({"Dockerfile": "FROM busybox\nRUN echo hi > /hi\n"})
    meta = tmp_path / "meta.json"
    build(ctx, "-t", "meta:1", "-t", "meta:2", "--metadata-file", str(meta), "--annotation", "org.example.k=v")
    data = json.loads(meta.read_text())
    attrs = json.loads(dockyard("inspect", "meta:1").out)[0]
    assert data["containerimage.digest"] == attrs["Manifest"]["Digest"]
    assert data["containerimage.config.digest"] == attrs["Id"]
    assert data["image.name"] == "meta:1,meta:2"
    desc = data["containerimage.descriptor"]
    assert desc["digest"] == attrs["Manifest"]["Digest"] and desc["annotations"] == {"org.example.k": "v"}
    store_blob = Path(Store(store_root).blob_path(Digest.parse(desc["digest"])))
    manifest = json.loads(store_blob.read_bytes())
    assert desc["size"] == store_blob.stat().st_size and manifest["annotations"] == {"org.example.k": "v"}


def test_dockerfile_on_stdin_has_an_empty_context(build, inspect, tmp_path):
    res = build("-", "-t", "stdin", input=b"FROM busybox\nRUN ls / > /listing\n")
    assert "bin" in inspect.read("stdin", "listing").split()
    res = build("-", input=b"FROM busybox\nCOPY anything /x\n", check=False)
    assert res.code == 1 and "anything: not found in the build context" in res.err


def _tar(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
    return buf.getvalue()


def test_tar_context_on_stdin(build, inspect, tmp_path):
    files = {"Dockerfile": b"FROM busybox\nCOPY f /f\n", "other.Dockerfile": b"FROM busybox\nCOPY f /g\n",
             "f": b"from the tar\n"}
    build("-", "-t", "plain", input=_tar(files))
    assert inspect.read("plain", "f") == "from the tar\n"
    build("-", "-t", "gz", "-f", "other.Dockerfile", input=gzip.compress(_tar(files)))
    assert inspect.read("gz", "g") == "from the tar\n"


def test_hostile_tar_context_writes_nothing_outside(build, tmp_path, store_root):
    victim = tmp_path / "victim"
    for files, links in (({"../../victim": b"x"}, None), ({"Dockerfile": b"FROM busybox\n"}, {"out": str(tmp_path)}),
                         ({"Dockerfile": b"FROM busybox\n"}, {"out": "../../.."})):
        res = build("-", input=_tar(files, links), check=False)
        assert res.code == 1 and "build context from stdin" in res.err.splitlines()[-1], res.err
    res = build("-", input=_tar({f"/{victim}": b"x", "Dockerfile": b"FROM busybox\n"}))  # made relative
    assert not victim.exists()
    assert not list((Path(store_root) / "tmp").glob("stdin-context-*"))


def test_progress_rawjson_and_tty(context, build):
    ctx = context({"Dockerfile": "FROM busybox\nRUN echo hello-progress\n"})
    res = build(ctx, "--progress", "rawjson", "--no-cache")
    statuses = [json.loads(line) for line in res.err.splitlines()]
    names = {v["name"] for s in statuses for v in s.get("vertexes", [])}
    assert "[2/2] RUN echo hello-progress" in names
    logs = b"".join(base64.b64decode(log["data"]) for s in statuses for log in s.get("logs", []))
    assert b"hello-progress\n" in logs
    done = [v for s in statuses for v in s.get("vertexes", []) if v.get("completed")]
    assert {v["name"] for v in done} >= names
    res = build(ctx, "--progress", "tty")
    assert "[+] Building" in res.err and "FINISHED" in res.err and "\x1b[" in res.err
    assert " => CACHED [2/2] RUN echo hello-progress" in res.err


def test_no_cache_filter_reruns_only_that_stage(context, build):
    ctx = context({"Dockerfile": "FROM busybox AS one\nRUN echo one > /one\n"
                                 "FROM busybox AS two\nCOPY --from=one /one /one\nRUN echo two > /two\n"})
    build(ctx)
    assert _cached_steps(build(ctx).err) == {2, 4, 5}
    assert _cached_steps(build(ctx, "--no-cache-filter", "two").err) == {2}


def test_cache_from_a_loaded_image_in_a_fresh_store(context, build, dockyard, busybox_tar, tmp_path):
    ctx = context({"f": "data\n", "Dockerfile": "FROM busybox\nENV A=1\nCOPY f /f\nRUN echo one > /one\n"
                                                "WORKDIR /\nRUN echo two > /two\n"})
    build(ctx, "-t", "app:1")
    archive = tmp_path / "app.tar"
    dockyard("save", "-o", str(archive), "app:1")
    fresh = str(tmp_path / "fresh")
    run_cli(fresh, "import", "--change", 'CMD ["/bin/sh"]', "--change", "ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin",
            str(busybox_tar), "busybox:latest")
    run_cli(fresh, "load", "-i", str(archive))
    res = run_cli(fresh, "build", "--cache-from", "app:1", "-t", "app:2", str(ctx))
    assert _cached_steps(res.err) == {4, 6}, res.err
    assert json.loads(run_cli(fresh, "inspect", "app:2").out)[0]["RootFS"] == \
        json.loads(dockyard("inspect", "app:1").out)[0]["RootFS"]
    (ctx / "Dockerfile").write_text("FROM busybox\nENV A=2\nCOPY f /f\nRUN echo one > /one\n")
    res = run_cli(fresh, "build", "--cache-from", "app:1", str(ctx))
    assert _cached_steps(res.err) == set(), res.err


def test_build_contexts_directory_image_and_oci_layout(context, build, dockyard, inspect, tmp_path):
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "note").write_text("from a named context\n")
    (extra / "hidden").write_text("ignored\n")
    (extra / ".dockerignore").write_text("hidden\n")
    layout_tar = tmp_path / "layout.tar"
    dockyard("save", "--format", "oci-archive", "-o", str(layout_tar), "busybox:latest")
    layout = tmp_path / "layout"
    with tarfile.open(layout_tar) as tf:
        tf.extractall(layout, filter="data")
    ctx = context({"Dockerfile": "FROM base AS b\nRUN echo b > /b\n"
                                 "FROM laid\nCOPY --from=extra / /extra/\nCOPY --from=b /b /b\n"
                                 "RUN --mount=from=extra,target=/m cat /m/note > /mounted\n"})
    build(ctx, "-t", "named", "--build-context", f"extra={extra}", "--build-context",
          "base=docker-image://busybox:latest", "--build-context", f"laid=oci-layout://{layout}")
    assert inspect.read("named", "extra/note") == "from a named context\n"
    assert inspect.path("named", "extra/hidden") is None
    assert inspect.read("named", "mounted") == "from a named context\n"
    assert inspect.read("named", "b") == "b\n"
    # A named context overrides a stage of the same name, as in BuildKit.
    ctx2 = context({"Dockerfile": "FROM busybox AS extra\nRUN echo stage > /note\n"
                                  "FROM busybox\nCOPY --from=extra /note /note\n"})
    build(ctx2, "-t", "override", "--build-context", f"extra={extra}")
    assert inspect.read("override", "note") == "from a named context\n"


def _ssh_add_dir(dest: Path) -> None:
    """The host's ssh-add with its libraries and loader, to run in busybox as `/opt/ssh/ld.so ... ssh-add`."""
    ssh_add = tool("ssh-add")
    dest.mkdir()
    shutil.copy(ssh_add, dest / "ssh-add")
    for line in subprocess.run(["ldd", ssh_add], capture_output=True, text=True, check=True).stdout.splitlines():
        path = next((w for w in line.split() if w.startswith("/")), None)
        if path:
            shutil.copy(path, dest / ("ld.so" if "ld-linux" in path else os.path.basename(path)))


def test_ssh_agent_with_a_key_file_lists_the_key(context, build, inspect, tmp_path):
    key = tmp_path / "id_test"
    subprocess.run([tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", "dockyard-test", "-f", str(key)],
                   check=True)
    ctx = context({"Dockerfile": "FROM busybox\nCOPY ssh /opt/ssh\n"
                                 "RUN --mount=type=ssh echo $SSH_AUTH_SOCK > /sock; "
                                 "/opt/ssh/ld.so --library-path /opt/ssh /opt/ssh/ssh-add -l > /keys\n"
                                 "RUN --mount=type=ssh,id=other,required=false test ! -e /run/buildkit/ssh_agent.0\n"})
    _ssh_add_dir(ctx / "ssh")
    build(ctx, "-t", "ssh", "--ssh", f"default={key}")
    assert inspect.read("ssh", "sock") == "/run/buildkit/ssh_agent.0\n"
    fingerprint = subprocess.run([tool("ssh-keygen"), "-lf", f"{key}.pub"], capture_output=True, text=True,
                                 check=True).stdout.split()[1]
    assert fingerprint in inspect.read("ssh", "keys") and "dockyard-test" in inspect.read("ssh", "keys")
    assert not list(Path("/tmp").glob("dy-ssh-*"))
    required = context({"Dockerfile": "FROM busybox\nRUN --mount=type=ssh,required=true true\n"})
    res = build(required, check=False)
    assert res.code == 1 and "ssh agent default not provided" in res.err.splitlines()[-1], res.err


def test_ssh_default_forwards_ssh_auth_sock(context, build, inspect, tmp_path):
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen([tool("ssh-agent"), "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        ctx = context({"Dockerfile": "FROM busybox\nRUN --mount=type=ssh test -S $SSH_AUTH_SOCK && echo ok > /ok\n"})
        build(ctx, "-t", "fwd", "--ssh", "default", env={"SSH_AUTH_SOCK": str(sock)})
        assert inspect.read("fwd", "ok") == "ok\n"
    finally:
        agent.terminate()
        agent.wait()


def test_onbuild_copy_from_a_stage_of_the_child(context, build, inspect, tmp_path):
    base = context({"Dockerfile": "FROM busybox\nONBUILD COPY --from=builder /out /from-builder\n"})
    build(base, "-t", "onbase")
    child = tmp_path / "child"
    child.mkdir()
    (child / "Dockerfile").write_text("FROM busybox AS builder\nRUN echo built > /out\nFROM onbase\nRUN true\n")
    build(child, "-t", "child")
    assert inspect.read("child", "from-builder") == "built\n"


def test_pull_looks_for_a_newer_base(context, build, dockyard, registry, inspect, tmp_path):
    repo = f"{registry.host}/lib/base:1"
    dockyard("tag", "busybox:latest", repo)
    dockyard("push", repo)
    ctx = context({"Dockerfile": f"FROM {repo}\nRUN cat /version > /seen 2>/dev/null || echo none > /seen\n"})
    build(ctx, "-t", "first")
    assert inspect.read("first", "seen") == "none\n"
    newer = tmp_path / "newer"
    newer.mkdir()
    (newer / "Dockerfile").write_text("FROM busybox\nRUN echo 2 > /version\n")
    build(newer, "-t", repo)
    dockyard("push", repo)
    dockyard("tag", "busybox:latest", repo)  # the store's copy is the old one again: only --pull finds the newer
    build(ctx, "-t", "stale")
    assert inspect.read("stale", "seen") == "none\n"
    build(ctx, "-t", "fresh", "--pull")
    assert inspect.read("fresh", "seen") == "2\n"
    gone = f"127.0.0.1:{free_port()}/lib/base:1"
    dockyard("tag", "busybox:latest", gone)
    res = build(context({"Dockerfile": f"FROM {gone}\n"}), "--pull", check=False)
    assert res.code != 0 and f"--pull: cannot look for a newer {gone}" in res.err.splitlines()[-1]
