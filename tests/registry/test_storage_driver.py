"""The storage driver contract, run against every driver: the filesystem one and S3 (on a Ceph RADOS Gateway)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

from dockyard.fsutil import TEMP_PREFIX
from registry.storage.driver import StorageDriver, open_driver


@dataclass
class DriverKit:
    """How to make one driver on a fresh store, and how to fake a writer killed mid-write in it."""

    make: Callable[[pytest.FixtureRequest], StorageDriver]
    # Leaves a write killed mid-way in a directory, `age` seconds old if the driver can backdate it; its time.
    leave_partial_write: Callable[[StorageDriver, str, float], float]


def _fs_partial(driver: StorageDriver, directory: str, age: float) -> float:
    path = Path(driver.local_path(directory)) / f"{TEMP_PREFIX}killed"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"half")
    t = time.time() - age
    os.utime(path, (t, t))
    return t


def _s3_partial(driver: StorageDriver, directory: str, age: float) -> float:
    """A multipart upload with one part and no tail: a writer killed before it closed (S3 cannot backdate it)."""
    started = time.time()
    w = driver.writer(f"{directory}/killed")
    w.write(b"h" * driver.chunksize)  # type: ignore[attr-defined]  # one full part, uploaded as written
    return started


DRIVERS = {
    "filesystem": DriverKit(lambda request: open_driver("filesystem",
                                                        {"rootdirectory": str(request.getfixturevalue("tmp_path"))}),
                            _fs_partial),
    "s3": DriverKit(lambda request: open_driver("s3", {**request.getfixturevalue("s3_params"), "chunksize": 5 << 20}),
                    _s3_partial),
}


@pytest.fixture(params=[pytest.param(name, marks=[pytest.mark.s3] if name == "s3" else []) for name in sorted(DRIVERS)])
def kit(request) -> DriverKit:
    return DRIVERS[request.param]


@pytest.fixture
def driver(kit, request) -> StorageDriver:
    return kit.make(request)


def test_put_and_get_content(driver):
    driver.put_content("a/b/c", b"one")
    assert driver.get_content("a/b/c") == b"one"
    driver.put_content("a/b/c", b"two", durable=False)
    assert driver.get_content("a/b/c") == b"two"
    with pytest.raises(FileNotFoundError):
        driver.get_content("a/b/missing")


def test_reader_from_an_offset(driver):
    driver.put_content("r", b"0123456789")
    with driver.reader("r") as f:
        assert f.read() == b"0123456789"
    with driver.reader("r", 4) as f:
        assert f.read(3) == b"456"
    with driver.reader("r", 10) as f:  # at the end: nothing left
        assert f.read() == b""
    with pytest.raises(FileNotFoundError):
        driver.reader("absent")


def test_writer_commit_resume_and_cancel(driver):
    w = driver.writer("up/data")
    assert w.size == 0
    w.write(b"abc")
    assert w.size == 3
    w.close()  # cut off: what was written stays for a resume
    with driver.writer("up/data", append=True) as w:
        assert w.size == 3
        w.write(b"def")
        assert w.size == 6
        w.commit()
    assert driver.get_content("up/data") == b"abcdef"
    assert driver.stat("up/data").size == 6
    w = driver.writer("up/data", append=True)
    w.write(b"ghi")
    w.cancel()
    with pytest.raises(FileNotFoundError):
        driver.stat("up/data")
    with driver.writer("up/data") as w:  # a new writer starts empty
        w.write(b"x")
        w.commit()
    assert driver.get_content("up/data") == b"x"


def test_a_new_write_where_nothing_is(driver):
    """new=True: the caller knows the path is empty, so an appending writer starts at 0 without looking."""
    with driver.writer("new/data", append=True, new=True) as w:
        assert w.size == 0 and w.note == b""
        w.write(b"abc")
        w.note = b"3 x"
    with driver.writer("new/data", append=True) as w:  # closed, it is resumed as any write
        assert w.size == 3 and w.note == b"3 x"
        w.commit()
    assert driver.get_content("new/data") == b"abc"


def test_delete_files_of_a_directory_known_to_hold_them(driver):
    """A directory of known files, one of them committed elsewhere (its leftovers beside it), goes whole."""
    driver.put_content("s/info", b"i")
    with driver.writer("s/data") as w:
        w.write(b"half")  # closed: an open write, resumed next
    with driver.writer("s/data", append=True) as w:
        driver.commit_to(w, "s/data", "blob/data")
    driver.delete_files("s", ["info", "data"])
    assert driver.list("s") == [] and driver.list("") == ["blob"] and driver.get_content("blob/data") == b"half"
    with pytest.raises(FileNotFoundError):
        driver.stat("s/data")


def test_writer_note_kept_with_the_open_write(driver):
    """A note set before close is what the next writer of the path reads, in any process; commit, cancel and a new
    write drop it, and it is no file of the directory's."""
    w = driver.writer("up/data")
    assert w.note == b""
    w.write(b"abc")
    w.note = b"3 first"
    w.close()
    assert set(driver.list("up")) <= {"data"}  # the open write itself is listed on the filesystem only
    with driver.writer("up/data", append=True) as w:
        assert w.note == b"3 first"
        w.write(b"def")
    with driver.writer("up/data", append=True) as w:  # closed without a new note: the old one stays
        assert (w.size, w.note) == (6, b"3 first")
        w.note = b"6 second"
    w = driver.writer("up/data", append=True)
    assert w.note == b"6 second"
    w.commit()
    with driver.writer("up/data", append=True) as w:  # appending to committed content: no note
        assert w.note == b""
        w.note = b"6 third"
    with driver.writer("up/data", append=True) as w:
        assert w.note == b"6 third"
    driver.writer("up/data", append=True).cancel()
    with driver.writer("up/data", append=True) as w:
        assert w.note == b""
        w.note = b"0 fourth"
    with driver.writer("up/data") as w:  # a new write starts without one
        assert w.note == b""
    with driver.writer("up/data", append=True) as w:
        assert w.note == b""


def test_writes_resumed_across_part_boundaries(driver):
    """Pieces of a chunked push around S3's 5 MiB part minimum, each by a new writer, then appends to the result."""
    pieces = [os.urandom(3 << 20), os.urandom(4 << 20), b"x", os.urandom(6 << 20)]
    with driver.writer("up/big") as w:
        w.write(pieces[0])
    for piece in pieces[1:3]:
        with driver.writer("up/big", append=True) as w:
            w.write(piece)
    assert driver.stat("up/big").size == (7 << 20) + 1  # an open write, before commit
    driver.writer("up/big", append=True).commit()
    assert driver.get_content("up/big") == b"".join(pieces[:3])
    with driver.writer("up/big", append=True) as w:  # appending to committed content
        w.write(pieces[3])
        w.commit()
    assert driver.get_content("up/big") == b"".join(pieces)
    with driver.reader("up/big", (7 << 20) - 5) as f:
        assert f.read(10) == b"".join(pieces)[(7 << 20) - 5:(7 << 20) + 5]
    assert driver.list("up") == ["big"]
    assert driver.purge_partial_writes(time.time() + 60) == 0  # a commit leaves nothing behind


def test_stat(driver):
    before = time.time()
    driver.put_content("d/f", b"12345")
    info = driver.stat("d/f")
    assert (info.size, info.is_dir) == (5, False) and info.mtime >= before - 2
    assert driver.stat("d").is_dir
    with pytest.raises(FileNotFoundError):
        driver.stat("d/none")


def test_list_and_walk(driver, kit):
    for path in ("top/a", "top/sub/b", "top/sub/deeper/c", "top/skip/d"):
        driver.put_content(path, b"")
    kit.leave_partial_write(driver, "top", 0)
    assert sorted(driver.list("top")) == ["a", "skip", "sub"]  # a write in progress is no child
    assert driver.list("nowhere") == [] and driver.list("top/a") == []
    seen = {}
    for directory, subdirs, files in driver.walk("top"):
        subdirs[:] = [d for d in subdirs if d != "skip"]
        seen[directory] = sorted(files)
    assert seen == {"top": ["a"], "top/sub": ["b"], "top/sub/deeper": ["c"]}


def test_move_replaces_and_creates_parents(driver):
    driver.put_content("src", b"new")
    driver.put_content("x/y/dst", b"old")
    driver.move("src", "x/y/dst")
    assert driver.get_content("x/y/dst") == b"new"
    with pytest.raises(FileNotFoundError):
        driver.stat("src")
    driver.put_content("src2", b"2")
    driver.move("src2", "fresh/dir/dst")
    assert driver.get_content("fresh/dir/dst") == b"2"


def test_delete_file_and_tree(driver):
    driver.put_content("t/f", b"")
    driver.put_content("t/sub/g", b"")
    assert driver.delete("t/f") and not driver.delete("t/f")
    assert driver.delete("t") and not driver.delete("t")
    assert driver.list("t") == []
    with pytest.raises(FileNotFoundError):
        driver.stat("t/sub/g")


def test_touch_refreshes_the_modification_time(driver):
    driver.put_content("blob", b"b")
    old = time.time() - 7200
    if driver.local_path("blob"):
        os.utime(driver.local_path("blob"), (old, old))
        assert driver.stat("blob").mtime < time.time() - 3600
    else:  # no backdating on S3: let its one-second mtime resolution pass instead
        old = driver.stat("blob").mtime
        time.sleep(1.1)
    driver.touch("blob")
    assert old < driver.stat("blob").mtime >= time.time() - 60
    with pytest.raises(FileNotFoundError):
        driver.touch("no-blob")


def test_locks(driver):
    driver.put_content("s/info", b"")
    with driver.lock("s/lock"):
        with pytest.raises(BlockingIOError):
            with driver.lock("s/lock", wait=False):
                pass
    with driver.lock("s/lock", shared=True), driver.lock("s/lock", shared=True, wait=False):
        with pytest.raises(BlockingIOError):
            with driver.lock("s/lock", wait=False):
                pass
    with driver.lock("s/lock", wait=False):
        pass
    driver.delete("s")
    with pytest.raises(FileNotFoundError):  # a lock in a removed directory does not bring it back
        with driver.lock("s/lock"):
            pass


def test_purge_partial_writes(driver, kit):
    driver.put_content("p/kept", b"k")
    written = kit.leave_partial_write(driver, "p", 2 * 86400)
    assert driver.purge_partial_writes(written - 60) == 0  # younger than the cutoff: kept
    cutoff = written + 1
    assert driver.purge_partial_writes(cutoff, dry_run=True) == 1
    assert driver.purge_partial_writes(cutoff) == 1
    assert driver.purge_partial_writes(cutoff) == 0
    assert driver.get_content("p/kept") == b"k"


@pytest.mark.parametrize("bad", ["/abs", "../up", "a/../b", "a//b", "a/./b", "trailing/", "nul\0"])
def test_paths_outside_the_store_are_refused(driver, bad):
    with pytest.raises(ValueError):
        driver.put_content(bad, b"")
    with pytest.raises(ValueError):
        driver.stat(bad)


def test_filesystem_driver_serves_real_files(tmp_path):
    """Blob GETs use sendfile(2): the filesystem driver's readers are real files and it never redirects."""
    driver = open_driver("filesystem", {"rootdirectory": str(tmp_path)})
    driver.put_content("blobs/x", b"data")
    assert driver.local_path("blobs/x") == str(tmp_path / "blobs" / "x")
    assert driver.redirect_url("blobs/x") is None
    with driver.reader("blobs/x") as f:
        assert os.fstat(f.fileno()).st_size == 4


def test_filesystem_content_is_read_to_its_end(tmp_path):
    """get_content reads what a file holds beyond the size stat gave (one that grew meanwhile): a FIFO's is 0."""
    driver = open_driver("filesystem", {"rootdirectory": str(tmp_path)})
    os.mkfifo(tmp_path / "grows")
    data = os.urandom(3 << 20)
    writer = threading.Thread(target=(tmp_path / "grows").write_bytes, args=(data,))
    writer.start()
    try:
        assert driver.get_content("grows") == data
    finally:
        writer.join()


@pytest.mark.s3
def test_s3_listings_span_pages(request):
    """Listings, walks, deletes, open uploads and their parts all follow S3's continuation pages."""
    driver = DRIVERS["s3"].make(request)
    driver.page_size = 2  # type: ignore[attr-defined]
    names = [f"n{i}" for i in range(5)]
    for name in names:
        driver.put_content(f"many/{name}", b"")
        driver.put_content(f"many/d{name}/f", b"")
    assert sorted(driver.list("many")) == sorted(names + [f"d{n}" for n in names])
    assert sorted(d for d, _, _ in driver.walk("many")) == ["many"] + [f"many/d{n}" for n in names]
    for name in names[:3]:  # three open writes of three parts each
        with driver.writer(f"open/{name}") as w:
            w.write(os.urandom(3 * driver.chunksize))  # type: ignore[attr-defined]
    assert driver.stat("open/n0").size == 3 * driver.chunksize  # type: ignore[attr-defined]
    assert driver.purge_partial_writes(time.time() + 60, dry_run=True) == 3
    assert driver.delete("many") and driver.delete("open")
    assert driver.list("") == [] and driver.purge_partial_writes(time.time() + 60) == 0
