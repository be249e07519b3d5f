""".dockerignore matching, checked against moby/patternmatcher's own test table and real context walks."""

from __future__ import annotations

import os

import pytest

from builder.context import BuildContext
from builder.ignore import Ignore, IgnoreError

# (pattern, path, excluded) — the MatchesOrParentMatches expectations of moby/patternmatcher's tests.
SINGLE = [
    ("**", "file", True), ("**", "file/", True), ("**/", "file", True), ("**/", "file/", True),
    ("**", "dir/file", True), ("**/", "dir/file", True),
    ("**/**", "dir/file", True), ("dir/**", "dir/file", True), ("dir/**", "dir/dir2/file", True),
    ("**/dir", "dir", True), ("**/dir", "dir/file", True), ("**/dir2/*", "dir/dir2/file", True),
    ("**/dir2/*", "dir/dir2/file/", True), ("**/dir2/**", "dir/dir2/dir3/file", True),
    ("**file", "file", True), ("**file", "dir/file", True), ("**/file", "dir/file", True),
    ("**file", "dir/dir/file", True), ("**/file", "dir/dir/file", True), ("**/file*", "dir/dir/file", True),
    ("**/file*", "dir/dir/file.txt", True), ("**/file*txt", "dir/dir/file.txt", True),
    ("**/file*.txt", "dir/dir/file.txt", True), ("**/file*.txt*", "dir/dir/file.txt", True),
    ("**/**/*.txt", "dir/dir/file.txt", True), ("**/**/*.txt2", "dir/dir/file.txt", False),
    ("**/*.txt", "file.txt", True), ("**/**/*.txt", "file.txt", True), ("a**/*.txt", "a/file.txt", True),
    ("a**/*.txt", "a/dir/file.txt", True), ("a**/*.txt", "a/dir/dir/file.txt", True),
    ("a/*.txt", "a/dir/file.txt", False), ("a/*.txt", "a/file.txt", True), ("a/*.txt**", "a/file.txt", True),
    ("a[b-d]e", "ae", False), ("a[b-d]e", "ace", True), ("a[b-d]e", "aae", False), ("a[^b-d]e", "aze", True),
    (".*", ".foo", True), (".*", "foo", False), ("abc.def", "abcdef", False), ("abc.def", "abc.def", True),
    ("abc.def", "abcZdef", False), ("abc?def", "abcZdef", True), ("abc?def", "abcdef", False),
    ("**/foo/bar", "foo/bar", True), ("**/foo/bar", "dir/foo/bar", True), ("**/foo/bar", "dir/dir2/foo/bar", True),
    ("abc/**", "abc", False), ("abc/**", "abc/def", True), ("abc/**", "abc/def/ghi", True),
    ("**/.foo", ".foo", True), ("**/.foo", "bar.foo", False), ("a(b)c/def", "a(b)c/def", True),
    ("a(b)c/def", "a(b)c/xyz", False), ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("a\\\\", "a\\", True), ("a\\*b", "a*b", True), ("a\\*b", "axb", False),
    # Go filepath.Match semantics on one component.
    ("*", "abc", True), ("*c", "abc", True), ("a*", "ab/c", True), ("a*/b", "abc/b", True), ("a*/b", "a/c/b", False),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True), ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True), ("a*b?c*x", "abxbbxdbxebxczzy", False), ("ab[^c]", "abc", False),
    ("a?b", "a☺b", True), ("a???b", "a☺b", False), ("[a-ζ]*", "α", True), ("a?b", "a/b", False),
    ("[\\]a]", "]", True), ("[x\\-]", "-", True), ("[x\\-]", "z", False),
    # A pattern naming a directory excludes what is inside it.
    ("docs", "docs/README.md", True), ("docs/", "docs/a/b", True), ("/docs", "docs/x", True),
    ("./docs/../docs", "docs/x", True), ("doc", "docs/x", False), ("*/temp*", "somedir/temporary.txt", True),
    ("*/*/temp*", "somedir/subdir/temporary.txt", True), ("temp?", "temp1", True), ("temp?", "x/temp1", False),
]

MULTI = [
    (["**", "!util/docker/web"], "util/docker/web/foo", False),
    (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
    (["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", False),
    (["docs", "!docs/README.md"], "docs/README.md", False),
    (["docs", "!docs/README.md"], "docs/other.md", True),
    (["docs/*", "!docs/README.md"], "docs/README.md", False),
    (["*.go", "!fileutils.go"], "fileutils.go", False),
    (["!fileutils.go", "*.go"], "fileutils.go", True),
    (["*.md", "!README*.md", "README-secret.md"], "README-secret.md", True),
    (["*.md", "!README*.md", "README-secret.md"], "README-public.md", False),
    (["*.md", "README-secret.md", "!README*.md"], "README-secret.md", False),
    (["a", "!a/b", "a/b/c"], "a/b/c/d", True), (["a", "!a/b", "a/b/c"], "a/b/x", False),
    # BuildKit walks with parent results: an exception naming a directory that was never excluded
    # does not rescue files a later-matching pattern excludes inside it.
    (["dir/*", "!dir"], "dir/x", True),
]


@pytest.mark.parametrize("pattern,path,excluded", SINGLE)
def test_single_pattern(pattern, path, excluded):
    assert Ignore.parse(pattern).excluded(path) is excluded


@pytest.mark.parametrize("patterns,path,excluded", MULTI)
def test_last_match_wins(patterns, path, excluded):
    assert Ignore(patterns).excluded(path) is excluded


def test_root_is_never_excluded():
    assert not Ignore(["*", "**"]).excluded(".")


@pytest.mark.parametrize("pattern", ["[", "a[", "[^bc", "[]a]", "[-]", "[x-]", "[a-b-c]", "\\", "!"])
def test_bad_patterns(pattern):
    with pytest.raises(IgnoreError):
        Ignore([pattern])


def test_dockerignore_file_syntax():
    text = "\ufeff# comment\n  # not a comment: a pattern\n\n  *.log  \n! keep.log\n/abs/path/\n!/abs/path/ok\n" \
           "./dot/../cleaned\n"
    ig = Ignore.parse(text)
    assert [(p.text, p.exclusion) for p in ig.patterns] == [
        ("# not a comment: a pattern", False), ("*.log", False), ("keep.log", True), ("abs/path", False),
        ("abs/path/ok", True), ("cleaned", False)]
    assert ig.excluded("x.log") and not ig.excluded("keep.log") and ig.excluded("abs/path/x")
    assert not ig.excluded("abs/path/ok") and ig.excluded("cleaned/sub")


def make_tree(root, files: list[str]) -> None:
    """Create files (paths ending in / are directories)."""
    for f in files:
        path = os.path.join(root, f)
        if f.endswith("/"):
            os.makedirs(path, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as fh:
                fh.write(f)


TREE = ["Dockerfile", ".dockerignore", "app/main.go", "app/main_test.go", "app/vendor/lib.go", "docs/a.md",
        "docs/keep/README.md", "docs/keep/other.txt", "build/out.bin", "build/logs/x.log", "empty/", "node_modules/m/i.js",
        "src/node_modules/n.js", "secret.key", "deep/a/b/c/keep.txt", "deep/a/b/c/drop.txt"]

WALK_CASES = [
    ("nothing ignored", "", set()),
    ("dockerfile and ignore file excluded", "Dockerfile\n.dockerignore\n", {"Dockerfile", ".dockerignore"}),
    ("directory and everything below", "build\n", {"build", "build/out.bin", "build/logs", "build/logs/x.log"}),
    ("exception re-includes below an excluded dir", "docs\n!docs/keep/README.md\n",
     {"docs/a.md", "docs/keep/other.txt"}),
    ("wildcard exception walks in", "deep\n!deep/*/*/*/keep.txt\n", {"deep/a/b/c/drop.txt"}),
    ("double star exception", "**/*.txt\n!**/keep.txt\n", {"docs/keep/other.txt", "deep/a/b/c/drop.txt"}),
    ("any depth node_modules", "**/node_modules\n",
     {"node_modules", "node_modules/m", "node_modules/m/i.js", "src/node_modules", "src/node_modules/n.js"}),
    ("test files", "**/*_test.go\n*.key\n", {"app/main_test.go", "secret.key"}),
]


def walk(root: str) -> set[str]:
    ctx = BuildContext(root)
    return {e.path for e in ctx.walk(ctx.sources(["."])[0])} - {"."}


@pytest.mark.parametrize("ignore,excluded", [c[1:] for c in WALK_CASES], ids=[c[0] for c in WALK_CASES])
def test_context_walk(tmp_path, ignore, excluded):
    make_tree(tmp_path, TREE)
    (tmp_path / ".dockerignore").write_text("")
    everything = walk(str(tmp_path))
    (tmp_path / ".dockerignore").write_text(ignore)
    assert everything - walk(str(tmp_path)) == excluded


def test_exception_of_a_top_level_dir(tmp_path):
    make_tree(tmp_path, TREE)
    (tmp_path / ".dockerignore").write_text("*\n!app\napp/vendor\n")
    assert walk(str(tmp_path)) == {"app", "app/main.go", "app/main_test.go"}


def test_excluded_dir_is_kept_only_as_parent_of_reincluded_files(tmp_path):
    make_tree(tmp_path, TREE)
    (tmp_path / ".dockerignore").write_text("docs\n!docs/keep/README.md\nempty\n!empty/nothing\n")
    seen = walk(str(tmp_path))
    assert {"docs", "docs/keep", "docs/keep/README.md"} <= seen and "empty" not in seen


def test_dockerfile_readable_even_when_ignored(tmp_path):
    make_tree(tmp_path, TREE)
    (tmp_path / ".dockerignore").write_text("Dockerfile\n.dockerignore\n")
    ctx = BuildContext(str(tmp_path))
    assert ctx.read_file("Dockerfile") == b"Dockerfile"
    assert ctx.ignore.excluded("Dockerfile")
