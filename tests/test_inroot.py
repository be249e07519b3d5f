"""The in-root path walk every part of dockyard shares: RESOLVE_IN_ROOT semantics on a real directory tree."""

from __future__ import annotations

import errno
import os

import pytest

from dockyard.inroot import Escape, fd_path, open_beneath, resolve_beneath, resolve_dir, secure_join


@pytest.fixture
def root(tmp_path):
    """tmp_path/root with links out of it (absolute, `..`, a chain), an inside link, a loop; tmp_path/host beside."""
    (tmp_path / "host").mkdir()
    (tmp_path / "host" / "secret").write_text("host")
    r = tmp_path / "root"
    (r / "d").mkdir(parents=True)
    (r / "d" / "f").write_text("inside")
    for name, target in (("abs", str(tmp_path / "host")), ("up", "../host"), ("chain", "d/../abs"),
                         ("inside", "/d/f"), ("loop", "loop"), ("deep", "d/../../../../d")):
        os.symlink(target, r / name)
    return r


def test_links_and_dotdot_clamp_at_the_root(root, tmp_path):
    host = str(tmp_path / "host").lstrip("/").split("/")
    assert resolve_beneath(str(root), "abs/secret") == [*host, "secret"]
    assert resolve_beneath(str(root), "chain/secret") == [*host, "secret"]
    assert resolve_beneath(str(root), "up/secret") == ["host", "secret"]
    assert resolve_beneath(str(root), "/../../deep/f") == ["d", "f"]
    assert resolve_beneath(str(root), "inside") == ["d", "f"]
    assert resolve_beneath(str(root), "inside", follow_final=False) == ["inside"]
    assert resolve_beneath(str(root), "missing/../d/./f") == ["d", "f"]
    assert secure_join(str(root), "abs") == os.path.join(root, *host)
    with pytest.raises(Escape) as e:
        resolve_beneath(str(root), "abs/secret", clamp=False)
    assert (e.value.link, e.value.target) == ("abs", str(tmp_path / "host"))
    with pytest.raises(Escape):
        resolve_beneath(str(root), "up", clamp=False)
    with pytest.raises(OSError) as e:
        resolve_beneath(str(root), "loop")
    assert e.value.errno == errno.ELOOP
    with pytest.raises(NotADirectoryError):
        resolve_beneath(str(root), "d/f/x")


def test_open_beneath_pins_and_creates_only_inside(root, tmp_path):
    fd = open_beneath(str(root), "up/../inside")
    try:
        assert os.readlink(fd_path(fd)) == str(root / "d" / "f")
        with open(fd_path(fd)) as f:
            assert f.read() == "inside"
    finally:
        os.close(fd)
    with pytest.raises(FileNotFoundError):
        open_beneath(str(root), "abs/secret")
    for path, kind in (("abs/new/dir", "dir"), ("up/file", "file")):
        fd = open_beneath(str(root), path, create=kind)
        os.close(fd)
    assert os.path.isdir(root / str(tmp_path / "host").lstrip("/") / "new" / "dir")
    assert os.path.isfile(root / "host" / "file")
    assert sorted(os.listdir(tmp_path / "host")) == ["secret"]


def test_resolve_dir_from_a_resolved_start_creates_inside_and_names_what_is_no_directory(root, tmp_path):
    host = str(tmp_path / "host").lstrip("/")
    assert resolve_dir(str(root), "d") == "d"
    assert resolve_dir(str(root), "missing") is None
    made: list[str] = []
    assert resolve_dir(str(root), "abs", create=True, made=made) == host
    parts = host.split("/")  # the absolute link's target is made inside the root, piece by piece
    assert made == ["/".join(parts[:i + 1]) for i in range(len(parts))]
    assert os.path.isdir(root / host)
    made.clear()
    assert resolve_dir(str(root), "../up/new", create=True, made=made, start="d") == "host/new"
    assert made == ["host", "host/new"]
    assert resolve_dir(str(root), "..", start="d") == ""
    made.clear()
    assert resolve_dir(str(root), "new", create=True, made=made, start="d") == "d/new" and made == ["d/new"]
    assert os.path.isdir(root / "d" / "new")
    with pytest.raises(NotADirectoryError) as e:
        resolve_dir(str(root), "f/x", start="d")
    assert e.value.filename == "d/f"
    with pytest.raises(NotADirectoryError) as e:
        resolve_dir(str(root), "inside")
    assert e.value.filename == "d/f"
    assert sorted(os.listdir(tmp_path / "host")) == ["secret"]
