"""The build cache: which changes reuse a step and which do not, and how cache and gc get along."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time

import pytest

DOCKERFILE = """\
FROM busybox
RUN echo first > /first
ARG MODE=a
COPY app/ /app/
ENV LEVEL=1
RUN echo "$LEVEL $MODE" > /level && cat /app/main.txt > /copied
CMD ["cat", "/level"]
"""


def steps(err: str) -> dict[str, str]:
    """Each step's instruction text -> CACHED or DONE, from the progress output."""
    names, state = {}, {}
    for line in err.splitlines():
        m = re.match(r"#(\d+) \[(?:\S+ )?\d+/\d+\] (.*)", line)
        if m:
            names[m.group(1)] = m.group(2)
            continue
        m = re.match(r"#(\d+) (CACHED|DONE)", line)
        if m and m.group(1) in names:
            state[names[m.group(1)]] = m.group(2)
    return state


def cached(err: str) -> list[str]:
    return [name for name, s in steps(err).items() if s == "CACHED"]


RUN_FIRST = "RUN echo first > /first"
COPY = "COPY app/ /app/"
RUN_LAST = 'RUN echo "$LEVEL $MODE" > /level && cat /app/main.txt > /copied'


@pytest.fixture
def ctx(tmp_path):
    root = tmp_path / "ctx"
    (root / "app").mkdir(parents=True)
    (root / "app" / "main.txt").write_text("v1\n")
    (root / "Dockerfile").write_text(DOCKERFILE)
    return root


def test_noop_rebuild_reuses_every_step_and_gives_the_same_image(build, ctx):
    first = build(ctx, "-q", "-t", "c:1")
    second = build(ctx, "-t", "c:1")
    assert sorted(cached(second.err)) == sorted([RUN_FIRST, COPY, "ENV LEVEL=1", RUN_LAST, 'CMD ["cat", "/level"]'])
    third = build(ctx, "-q", "-t", "c:1")
    assert first.out == third.out  # same image ID


def test_touch_hits_content_change_misses(build, ctx, inspect):
    build(ctx, "-t", "c")
    os.utime(ctx / "app" / "main.txt", (1, 1))
    assert COPY in cached(build(ctx, "-t", "c").err)
    (ctx / "app" / "main.txt").write_text("v2\n")
    res = build(ctx, "-t", "c")
    assert cached(res.err) == [RUN_FIRST]
    assert inspect.read("c", "copied") == "v2\n"
    os.chmod(ctx / "app" / "main.txt", 0o600)  # modes are content too
    assert cached(build(ctx, "-t", "c").err) == [RUN_FIRST]


def test_kept_content_hashes_stand_for_unchanged_files_only(build, ctx, inspect, store_root):
    # A build keeps its context's content hashes by stat data (device, inode, size, mtime, ctime) for the next one,
    # but not of files changed in the two seconds before it started: a change within the same clock tick as the
    # kept state would leave the stat as it was.
    contexts = os.path.join(store_root, "buildcache", "contexts")
    build(ctx, "-t", "c")
    assert not os.path.exists(contexts)  # every file was just written: nothing kept
    time.sleep(2.1)
    assert cached(build(ctx, "-t", "c").err) == [RUN_FIRST, COPY, "ENV LEVEL=1", RUN_LAST, 'CMD ["cat", "/level"]']
    [name] = os.listdir(contexts)
    with open(os.path.join(contexts, name)) as f:
        rows = json.load(f)
    main = ctx / "app" / "main.txt"
    st = os.stat(main)
    row = [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, hashlib.sha256(b"v1\n").hexdigest()]
    assert row in rows and len(rows) == 1
    # The kept hash is what the next build goes by, without reading the file: another one makes the COPY miss.
    with open(os.path.join(contexts, name), "w") as f:
        json.dump([[*row[:5], hashlib.sha256(b"v9\n").hexdigest()]], f)
    assert cached(build(ctx, "-t", "c").err) == [RUN_FIRST]
    # The attack on a stat cache: the same size, in place (the same inode), the old mtime put back.
    with open(main, "r+") as f:
        f.write("v2\n")
    os.utime(main, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(main).st_mtime_ns == st.st_mtime_ns and os.stat(main).st_ino == st.st_ino
    assert cached(build(ctx, "-t", "c").err) == [RUN_FIRST]
    assert inspect.read("c", "copied") == "v2\n"


def test_dockerignored_files_do_not_matter(build, ctx):
    (ctx / ".dockerignore").write_text("app/*.log\n")
    build(ctx, "-t", "c")
    (ctx / "app" / "debug.log").write_text("noise")
    assert COPY in cached(build(ctx, "-t", "c").err)


def test_env_and_build_arg_changes_miss_later_runs(build, ctx, inspect):
    build(ctx, "-t", "c")
    (ctx / "Dockerfile").write_text(DOCKERFILE.replace("LEVEL=1", "LEVEL=2"))
    res = build(ctx, "-t", "c")
    assert cached(res.err) == [RUN_FIRST, COPY]
    assert inspect.read("c", "level") == "2 a\n"
    res = build(ctx, "-t", "c", "--build-arg", "MODE=b")
    # ARG values are not in the config, but RUN sees them: the RUN after the ARG runs again.
    assert RUN_FIRST in cached(res.err) and RUN_LAST not in cached(res.err)
    assert inspect.read("c", "level") == "2 b\n"


def test_no_cache_runs_everything(build, ctx):
    build(ctx, "-t", "c")
    assert cached(build(ctx, "-t", "c", "--no-cache").err) == []


def test_failed_build_keeps_earlier_steps_cached(build, ctx):
    (ctx / "Dockerfile").write_text(DOCKERFILE + "RUN exit 1\n")
    assert build(ctx, "-t", "c", check=False).code == 1
    (ctx / "Dockerfile").write_text(DOCKERFILE + "RUN true\n")
    assert RUN_LAST in cached(build(ctx, "-t", "c").err)


def test_cache_survives_rmi_and_gc_until_pruned(build, ctx, dockyard, store_root):
    build(ctx, "-t", "c")
    assert "Deleted:" in dockyard("rmi", "c").out  # the cache's holds never block removing an image
    assert RUN_LAST in cached(build(ctx, "-t", "c").err)
    out = dockyard("builder", "prune", "-f").out
    assert re.search(r"Deleted [1-9]\d* build cache entries", out)
    assert os.listdir(os.path.join(store_root, "buildcache", "entries")) == []
    assert not os.path.exists(os.path.join(store_root, "buildcache", "contexts"))
    res = build(ctx, "-t", "c2")
    assert cached(res.err) == []
