"""Build-time paths never leave their root: RUN --mount sources and targets, COPY --from and ADD, attacked with
symlinks that point at a host directory holding a marker file (the "secret")."""

from __future__ import annotations

import io
import os
import tarfile

import pytest

SECRET = "host-secret-marker\n"


@pytest.fixture
def host(tmp_path):
    """A host directory outside every context and image, holding the secret marker."""
    d = tmp_path / "host"
    d.mkdir()
    (d / "marker").write_text(SECRET)
    return d


def _untouched(host) -> None:
    assert sorted(os.listdir(host)) == ["marker"]
    assert (host / "marker").read_text() == SECRET


def _no_secret(inspect, name: str) -> None:
    """No layer of the image holds the host's marker."""
    from dockyard.compression import decompressed

    for d in inspect.image(name).layers:
        with inspect.store.open_blob(d.digest) as f:
            assert SECRET.encode() not in decompressed(f).read()


def _links(ctx, host, kind: str) -> str:
    """Make ctx/innocent lead to the host dir the way `kind` says; return where it lands inside the context."""
    if kind == "absolute":
        os.symlink(str(host), ctx / "innocent")
        return str(host).lstrip("/")
    if kind == "dotdot":
        os.symlink("../host", ctx / "innocent")  # ctx/../host is the host dir; `..` stops at the context root
        return "host"
    os.symlink("a/b", ctx / "innocent")  # chain: innocent -> a/b -> ../c -> <host>
    (ctx / "a").mkdir()
    os.symlink("../c", ctx / "a" / "b")
    os.symlink(str(host), ctx / "c")
    return str(host).lstrip("/")


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "chain"])
def test_bind_source_symlink_resolves_inside_the_context(context, build, inspect, host, kind):
    ctx = context({"Dockerfile": "FROM busybox\n"
                   "RUN --mount=type=bind,source=innocent,target=/m cat /m/marker > /stolen\n"
                   "RUN --mount=type=bind,source=innocent,target=/w,rw "
                   "echo pwned > /w/marker && echo pwned > /w/new\n"})
    landing = _links(ctx, host, kind)
    # Nothing at the clamped place: the source is missing, the build fails and nothing leaks.
    res = build(ctx, "-t", "esc", check=False)
    assert res.code == 1 and "innocent" in res.err.splitlines()[-1] and "Traceback" not in res.err
    assert "Error: Dockerfile:2: " in res.err and SECRET.strip() not in res.err
    _untouched(host)
    # A decoy at the clamped place inside the context is what gets mounted, as RESOLVE_IN_ROOT (and BuildKit) do.
    (ctx / landing).mkdir(parents=True, exist_ok=True)
    (ctx / landing / "marker").write_text("decoy\n")
    build(ctx, "-t", "esc")
    assert inspect.read("esc", "stolen") == "decoy\n"
    _no_secret(inspect, "esc")
    _untouched(host)
    assert (ctx / landing / "marker").read_text() == "decoy\n" and not (ctx / landing / "new").exists()


def test_bind_source_dotdot_is_refused_or_clamped(context, build, host):
    ctx = context({"Dockerfile": "FROM busybox\nRUN --mount=type=bind,source=../host,target=/m cat /m/marker\n"})
    res = build(ctx, check=False)
    assert res.code == 1 and "outside the build context" in res.err.splitlines()[-1]
    (ctx / "Dockerfile").write_text("FROM busybox AS s\nRUN mkdir /d\n"
                                    "FROM busybox\nRUN --mount=type=bind,from=s,source=/d/../../../../host,target=/m "
                                    "cat /m/marker\n")
    res = build(ctx, check=False)
    assert res.code == 1 and "not found" in res.err.splitlines()[-1] and SECRET.strip() not in res.err
    _untouched(host)


def test_stage_and_image_symlinks_resolve_inside_them(context, build, inspect, host):
    ctx = context({"Dockerfile": f"FROM busybox\nRUN ln -s {host} /evil && ln -s ../../../../..{host} /rel\n"})
    build(ctx, "-t", "evil-img")
    for source in ("evil-img", "s"):
        for use in (f"COPY --from={source} /evil/marker /got\n", f"COPY --from={source} /rel/marker /got\n",
                    f"RUN --mount=type=bind,from={source},source=/evil,target=/m cat /m/marker > /stolen\n",
                    (f"RUN --mount=type=bind,from={source},source=/rel/marker,target=/m,rw "
                     "cat /m > /stolen; echo pwned > /m\n")):
            (ctx / "Dockerfile").write_text(f"FROM evil-img AS s\nFROM busybox\n{use}")
            res = build(ctx, "-t", "thief", check=False)
            assert res.code == 1 and "not found" in res.err.splitlines()[-1], (use, res.err)
            assert SECRET.strip() not in res.err
            _untouched(host)
    # With the path present inside the stage, that copy is what COPY and the mount see.
    (ctx / "Dockerfile").write_text(f"FROM evil-img AS s\nRUN mkdir -p {host} && echo decoy > {host}/marker\n"
                                    "FROM busybox\nCOPY --from=s /evil/marker /got\n"
                                    "RUN --mount=type=bind,from=s,source=/rel,target=/m cat /m/marker > /stolen\n")
    build(ctx, "-t", "thief")
    assert inspect.read("thief", "got") == "decoy\n" and inspect.read("thief", "stolen") == "decoy\n"
    _no_secret(inspect, "thief")
    _untouched(host)


def test_cache_source_symlink_planted_by_a_run_stays_in_the_cache(context, build, inspect, host):
    ctx = context({"Dockerfile": "FROM busybox\n"
                   f"RUN --mount=type=cache,id=c,target=/c ln -sfn {host} /c/evil && ln -sfn /c/../.. /c/up\n"
                   "RUN --mount=type=cache,id=c,target=/c,source=evil ls -a /c > /listing && echo pwned > /c/new\n"
                   "RUN --mount=type=cache,id=c,target=/c,source=up/evil test ! -e /c/marker && echo ok > /up\n"})
    build(ctx, "-t", "cache-esc")
    assert inspect.read("cache-esc", "listing") == ".\n..\n"  # an empty directory made inside the cache
    assert inspect.read("cache-esc", "up") == "ok\n"
    _untouched(host)


def test_mount_targets_through_image_symlinks_stay_in_the_rootfs(context, build, inspect, host, tmp_path):
    token = tmp_path / "token"
    token.write_text("tok\n")
    ctx = context({"f": "file\n", "Dockerfile":
                   f"FROM busybox\nRUN ln -s {host} /m && ln -s ../../../../..{host} /r\n"
                   "RUN --mount=type=secret,id=tok,target=/m/tok --mount=type=tmpfs,target=/m/t "
                   "--mount=type=bind,source=f,target=/r/b --mount=type=cache,target=/r/c "
                   "--mount=type=bind,source=.,target=/m/ctx "
                   "cat /m/tok /r/b > /seen && echo w > /m/t/w && echo w > /r/c/w\n"})
    build(ctx, "-t", "targets", "--secret", f"id=tok,src={token}")
    assert inspect.read("targets", "seen") == "tok\nfile\n"
    _untouched(host)
    _no_secret(inspect, "targets")


def test_add_and_copy_never_follow_links_out(context, build, inspect, host):
    ctx = context({})
    os.symlink(str(host / "marker"), ctx / "link")
    os.symlink(str(host), ctx / "dirlink")
    arch = io.BytesIO()
    with tarfile.open(fileobj=arch, mode="w") as tf:
        for name, target in (("evil", str(host)), ("up", "../../../../../..")):
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tf.addfile(info)
        for name in ("evil/pwned", f"up{host}/pwned"):
            info = tarfile.TarInfo(name)
            info.size = 6
            tf.addfile(info, io.BytesIO(b"pwned\n"))
    (ctx / "a.tar").write_bytes(arch.getvalue())
    # /hostdir and /gone lead to the host's directory; inside the image they mean the image's own copy of that
    # path (made by COPY when missing, as Docker does).
    (ctx / "Dockerfile").write_text(f"FROM busybox\nRUN mkdir -p {host} && ln -s {host} /hostdir && "
                                    f"ln -s {host}/new/deep /gone\n"
                                    "ADD link /x/\nADD a.tar /x/\nADD a.tar /hostdir/\nCOPY link /hostdir/\n"
                                    "COPY link /gone/\n")
    build(ctx, "-t", "adds")
    _untouched(host)
    _no_secret(inspect, "adds")
    assert inspect.read("adds", f"x{host}/pwned") == "pwned\n"  # both archive links clamp at /x
    assert inspect.read("adds", f"{host}{host}/pwned".lstrip("/")) == "pwned\n"
    top = inspect.store.lowerdirs(inspect.image("adds"))
    # A link leading out of the context is copied as the link itself (never followed).
    assert os.readlink(os.path.join(top[0], str(host).lstrip("/"), "new", "deep", "link")) == str(host / "marker")
    assert os.readlink(os.path.join(top[1], str(host).lstrip("/"), "link")) == str(host / "marker")
    assert os.readlink(os.path.join(top[4], "x", "link")) == str(host / "marker")
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY dirlink/marker /got\n")
    res = build(ctx, check=False)
    assert res.code == 1 and "outside the build context" in res.err.splitlines()[-1]
    _untouched(host)


def test_read_write_bind_copies_device_nodes_not_their_data(context, build, inspect):
    ctx = context({"Dockerfile": "FROM busybox AS s\nRUN mkdir /d && mknod /d/zero c 1 5 && mknod /z c 1 5 && "
                   "mkfifo /d/fifo && echo x > /d/f\n"
                   "FROM busybox\n"
                   "RUN --mount=type=bind,from=s,source=/d,target=/m,rw ls -l /m | sed 1d | cut -c1 | sort | tr -d '\\n' > /a\n"
                   "RUN --mount=type=bind,from=s,source=/z,target=/z,rw test -c /z && echo ok > /b\n"})
    build(ctx, "-t", "nodes")  # before: the copy read /dev/zero until the disk was full
    assert inspect.read("nodes", "a") == "-cp" and inspect.read("nodes", "b") == "ok\n"


def test_in_context_symlinks_work_as_in_docker(context, build, inspect):
    ctx = context({"data/real/f.txt": "inside\n", "Dockerfile":
                   "FROM busybox\n"
                   "RUN --mount=type=bind,source=rel,target=/m cat /m/f.txt > /a\n"
                   "RUN --mount=type=bind,source=abs/f.txt,target=/f cat /f > /b\n"
                   "RUN --mount=type=bind,source=via/real,target=/m,rw cat /m/f.txt > /c && echo x > /m/f.txt\n"
                   "COPY rel/f.txt /d\n"})
    os.symlink("data/real", ctx / "rel")
    os.symlink("/data/real", ctx / "abs")  # absolute: the context is its root
    os.symlink("./data/../data", ctx / "via")
    build(ctx, "-t", "fine")
    for name in "abcd":
        assert inspect.read("fine", name) == "inside\n", name
    assert (ctx / "data/real/f.txt").read_text() == "inside\n"


@pytest.mark.parametrize("runtime_name", ["dockyard", "runc"])
def test_mount_by_descriptor_survives_a_swap_after_the_lookup(busybox_rootfs, tmp_path, host, runtime_name):
    """What RUN resolved is what gets mounted: swapping the path for a link to the host afterwards changes nothing
    (runc takes paths: it gets the path the pinned directory has now)."""
    from dockyard.inroot import open_beneath
    from runner import sandbox
    from runner.spec import Mount

    ctx = tmp_path / "ctx"
    (ctx / "sub").mkdir(parents=True)
    (ctx / "sub" / "f").write_text("pinned\n")
    fd = open_beneath(str(ctx), "sub")
    try:
        os.rename(ctx / "sub", ctx / "moved")
        os.symlink(str(host), ctx / "sub")
        upper = tmp_path / "run" / "upper"
        upper.mkdir(parents=True)
        out = tmp_path / "out"
        with open(out, "wb") as f:
            status = sandbox.run(sandbox.Sandbox(["/bin/sh", "-c", "ls /m; cat /m/*"], [str(busybox_rootfs)],
                                                 str(upper), mounts=[Mount("/m", readonly=True, fd=fd)]),
                                 stdout=f.fileno(), stderr=f.fileno(), scratch=str(tmp_path / "run"),
                                 runtime_name=runtime_name)
    finally:
        os.close(fd)
    assert (status.code, out.read_text()) == (0, "f\npinned\n")
    _untouched(host)
