"""Build context: COPY source resolution that never leaves the context, and cache digests of sources."""

from __future__ import annotations

import os

import pytest

from builder.context import BuildContext, ContextError, Held
from builder.ignore import Ignore
from dockyard.errors import NotFound


@pytest.fixture
def ctx_dir(tmp_path):
    """A context with files, a nested tree, and symlinks pointing inside and outside."""
    root = tmp_path / "ctx"
    (root / "src" / "sub").mkdir(parents=True)
    (root / "src" / "a.txt").write_text("a")
    (root / "src" / "b.txt").write_text("b")
    (root / "src" / "sub" / "c.txt").write_text("c")
    (root / "src" / "sub" / "d.go").write_text("d")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("secret")
    os.symlink("a.txt", root / "src" / "link-in")
    os.symlink("../../outside/secret", root / "src" / "link-out")
    os.symlink("/etc/passwd", root / "src" / "link-abs")
    os.symlink("../outside", root / "dir-out")
    os.symlink("src/sub", root / "dir-in")
    os.symlink("/", root / "rootlink")
    return root


def rels(ctx: BuildContext, patterns: list[str]) -> list[tuple[str, str, str]]:
    return [(s.rel, s.entry.kind, s.entry.path) for s in ctx.sources(patterns)]


SOURCE_CASES = [
    (["src/a.txt"], [("src/a.txt", "file", "a.txt")]),
    (["/src/a.txt"], [("src/a.txt", "file", "a.txt")]),
    (["./src//sub/../a.txt"], [("src/a.txt", "file", "a.txt")]),
    (["src"], [("src", "dir", ".")]),
    (["."], [("", "dir", ".")]),
    (["/"], [("", "dir", ".")]),
    (["src/*.txt"], [("src/a.txt", "file", "a.txt"), ("src/b.txt", "file", "b.txt")]),
    (["src/?.txt", "src/sub/[cd].*"], [("src/a.txt", "file", "a.txt"), ("src/b.txt", "file", "b.txt"),
                                       ("src/sub/c.txt", "file", "c.txt"), ("src/sub/d.go", "file", "d.go")]),
    (["*/*.go"], [("src/sub/d.go", "file", "d.go")]),  # only through dir-in: `*` does not cross `/`
    (["*/*.md"], []),
    (["*/*/*.go"], [("src/sub/d.go", "file", "d.go")]),
    (["src/[!a].txt"], [("src/a.txt", "file", "a.txt")]),  # Go globs negate with ^; `!` is a literal here
    (["src/[^a].txt"], [("src/b.txt", "file", "b.txt")]),
    (["src/link-in"], [("src/a.txt", "file", "link-in")]),  # a link that stays inside is followed
    (["src/link-out"], [("src/link-out", "symlink", "link-out")]),  # one that leaves is kept as a link
    (["src/link-abs"], [("src/link-abs", "symlink", "link-abs")]),
    (["dir-in/c.txt"], [("src/sub/c.txt", "file", "c.txt")]),
    (["dir-in"], [("src/sub", "dir", ".")]),
    (["dir-out"], [("dir-out", "symlink", "dir-out")]),
    (["rootlink"], [("rootlink", "symlink", "rootlink")]),
]


@pytest.mark.parametrize("patterns,expected", SOURCE_CASES)
def test_sources(ctx_dir, patterns, expected):
    ctx = BuildContext(str(ctx_dir))
    if expected:
        assert rels(ctx, patterns) == expected
    else:
        with pytest.raises(NotFound, match="no source files were specified"):
            ctx.sources(patterns)


@pytest.mark.parametrize("pattern,message", [
    ("../outside/secret", "path is outside the build context"),
    ("src/../../outside/secret", "path is outside the build context"),
    ("..", "path is outside the build context"),
    ("dir-out/secret", "symlink on the way leads outside the build context"),
    ("rootlink/etc/passwd", "symlink rootlink -> / leads outside the build context"),
    ("rootlink/*", "symlink rootlink -> / leads outside the build context"),
    ("dir-out/*", "leads outside the build context"),
])
def test_escapes_are_refused(ctx_dir, pattern, message):
    with pytest.raises(ContextError, match=message):
        BuildContext(str(ctx_dir)).sources([pattern])


def test_absolute_source_is_relative_to_the_context(ctx_dir):
    with pytest.raises(NotFound, match="not found in the build context"):
        BuildContext(str(ctx_dir)).sources(["/etc/passwd"])


def test_walk_keeps_symlinks_as_links(ctx_dir):
    ctx = BuildContext(str(ctx_dir))
    entries = {e.path: (e.kind, e.link) for e in ctx.walk(ctx.sources(["src"])[0])}
    assert entries == {".": ("dir", None), "a.txt": ("file", None), "b.txt": ("file", None),
                       "link-in": ("symlink", "a.txt"), "link-out": ("symlink", "../../outside/secret"),
                       "link-abs": ("symlink", "/etc/passwd"), "sub": ("dir", None), "sub/c.txt": ("file", None),
                       "sub/d.go": ("file", None)}


def test_walk_with_copy_exclude(ctx_dir):
    ctx = BuildContext(str(ctx_dir))
    paths = [e.path for e in ctx.walk(ctx.sources(["src"])[0], Ignore(["*.txt", "link-*", "!b.txt"]))]
    assert paths == [".", "b.txt", "sub", "sub/c.txt", "sub/d.go"]  # `*` stays at the top level


def test_dockerignore_hides_sources(ctx_dir):
    (ctx_dir / ".dockerignore").write_text("src/sub\nsrc/a.txt\n")
    ctx = BuildContext(str(ctx_dir))
    with pytest.raises(NotFound, match="excluded by .dockerignore"):
        ctx.sources(["src/sub/c.txt"])
    with pytest.raises(NotFound):
        ctx.sources(["src/link-in"])  # its target is excluded
    assert rels(ctx, ["src/*.txt"]) == [("src/b.txt", "file", "b.txt")]


def test_open_refuses_a_parent_swapped_for_a_symlink(ctx_dir, tmp_path):
    ctx = BuildContext(str(ctx_dir))
    (src,) = ctx.sources(["src/sub/c.txt"])
    os.rename(ctx_dir / "src" / "sub", ctx_dir / "src" / "sub.old")
    os.symlink(str(tmp_path / "outside"), ctx_dir / "src" / "sub")
    (tmp_path / "outside" / "c.txt").write_text("outside")
    with pytest.raises(ContextError, match="changed into a symlink"):
        ctx.content_hash(src.entry)


def test_read_file_refuses_fifo_and_escape(ctx_dir):
    os.mkfifo(ctx_dir / "fifo")
    ctx = BuildContext(str(ctx_dir))
    with pytest.raises(ContextError, match="not a regular file"):
        ctx.read_file("fifo")
    with pytest.raises(ContextError):
        ctx.read_file("src/link-out")
    assert ctx.read_file("src/link-in") == b"a"


def test_missing_context_and_dockerignore_symlinked_out(tmp_path, ctx_dir):
    with pytest.raises(NotFound, match="build context is not a directory"):
        BuildContext(str(tmp_path / "nope"))
    os.symlink("../outside/secret", ctx_dir / ".dockerignore")
    with pytest.raises(ContextError):
        BuildContext(str(ctx_dir))


def digest(root, patterns=("src",)):
    ctx = BuildContext(str(root))
    return ctx.digest(ctx.sources(list(patterns)))


def test_digest_ignores_times_but_not_content_mode_owner_or_links(ctx_dir):
    first = digest(ctx_dir)
    assert digest(ctx_dir) == first
    os.utime(ctx_dir / "src" / "a.txt", ns=(1, 1))
    os.utime(ctx_dir / "src" / "sub", ns=(2, 2))
    assert digest(ctx_dir) == first

    changes = [
        lambda: (ctx_dir / "src" / "a.txt").write_text("A"),
        lambda: os.chmod(ctx_dir / "src" / "b.txt", 0o600),
        lambda: os.chmod(ctx_dir / "src" / "sub", 0o700),
        lambda: os.lchown(ctx_dir / "src" / "sub" / "c.txt", 1234, 0),
        lambda: os.lchown(ctx_dir / "src" / "sub" / "c.txt", 1234, 99),
        lambda: (os.unlink(ctx_dir / "src" / "link-in"), os.symlink("b.txt", ctx_dir / "src" / "link-in")),
        lambda: (ctx_dir / "src" / "new").write_text(""),
        lambda: os.rename(ctx_dir / "src" / "new", ctx_dir / "src" / "renamed"),
        lambda: (ctx_dir / "src" / "empty-dir").mkdir(),
    ]
    seen = {first}
    for change in changes:
        change()
        d = digest(ctx_dir)
        assert d not in seen
        seen.add(d)


def test_digest_within_one_build_sees_same_size_rewrite(ctx_dir):
    """The per-build hash cache is keyed by inode, size and times, so a same-size rewrite with the old
    mtime restored (ctime still moves) is hashed again rather than served stale."""
    ctx = BuildContext(str(ctx_dir))
    srcs = ctx.sources(["src/a.txt"])
    before = ctx.digest(srcs)
    st = os.stat(ctx_dir / "src" / "a.txt")
    (ctx_dir / "src" / "a.txt").write_text("z")
    os.utime(ctx_dir / "src" / "a.txt", ns=(st.st_atime_ns, st.st_mtime_ns))
    assert ctx.digest(ctx.sources(["src/a.txt"])) != before


def test_digest_without_owners_for_chown(ctx_dir):
    ctx = BuildContext(str(ctx_dir))
    srcs = ctx.sources(["src"])
    with_owners, without = ctx.digest(srcs), ctx.digest(srcs, owners=False)
    os.lchown(ctx_dir / "src" / "a.txt", 4321, 4321)
    assert ctx.digest(srcs, owners=False) == without and ctx.digest(srcs) != with_owners


def test_digest_of_ignored_files_does_not_matter(ctx_dir):
    (ctx_dir / ".dockerignore").write_text("src/sub/*.go\n")
    first = digest(ctx_dir)
    (ctx_dir / "src" / "sub" / "d.go").write_text("changed")
    assert digest(ctx_dir) == first
    (ctx_dir / "src" / "sub" / "c.txt").write_text("changed")
    assert digest(ctx_dir) != first


def test_digest_depends_on_source_location(ctx_dir):
    (ctx_dir / "copy").mkdir()
    (ctx_dir / "copy" / "a.txt").write_text("a")
    (ctx_dir / "copy2").mkdir()
    (ctx_dir / "copy2" / "a.txt").write_text("a")
    assert digest(ctx_dir, ["copy/a.txt"]) != digest(ctx_dir, ["copy2/a.txt"])
    assert digest(ctx_dir, ["copy/a.txt", "src"]) != digest(ctx_dir, ["src", "copy/a.txt"])


class _Holder:
    """Something that holds files' bytes (a context, a copy) and can be collected."""


def _fill(held: Held) -> int:
    """Take all that is left of the budget into `held`; returns how much that was."""
    taken, n = 0, Held.FILE
    while n:
        if held.take(n):
            taken += n
        else:
            n //= 2
    return taken


def test_small_files_held_by_the_context_and_copies_share_one_budget(ctx_dir):
    """What hashing keeps and what a copy holds count once against one budget, given back when let go."""
    ctx = BuildContext(str(ctx_dir))
    entry = ctx.sources(["src/a.txt"])[0].entry
    prober = _Holder()
    probe = Held(prober)
    free = _fill(probe)
    probe.drop()
    ctx.digest(ctx.sources(["src/a.txt"]))  # keeps a.txt's one byte
    assert _fill(probe) == free - 1
    probe.drop()
    copy = _Holder()
    held = Held(copy)
    assert ctx.content(entry, held) == b"a"  # the kept bytes, now the copy's: counted once
    assert held.size == 1 and _fill(probe) == free - 1
    assert ctx.content(entry, probe) is None  # no room left: the file is to be streamed
    probe.drop()
    del copy  # the copy is done: its bytes go back
    assert _fill(probe) == free
    probe.drop()
    assert ctx.content(entry, probe) == b"a" and probe.size == 1  # read now, within the budget
    assert not probe.take(Held.FILE + 1)  # too big to hold, whatever is left
