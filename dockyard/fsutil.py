"""Filesystem primitives: atomic writes (temp, fsync, rename), durable trees (a syncfs, or an fsync of each entry
of a small one), advisory file locks, reading small files; the libc knobs of streaming writers (writeback,
malloc's handling of their buffers)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
from collections.abc import Iterator
from typing import BinaryIO

from dockyard.errors import DockyardError

# Name prefix of atomic writes' temp files: a writer killed mid-write leaves one behind for cleanup to find.
TEMP_PREFIX = ".tmp-"


class DiskFull(DockyardError):
    """The filesystem ran out of space or quota during a write."""


def _raise_if_full(e: OSError, path: str) -> None:
    """A full disk or quota as DiskFull naming `path` (one line for the user); other errors are the caller's."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        raise DiskFull(f"no space left on device writing {path}") from None


@contextlib.contextmanager
def _directory(path: str) -> Iterator[int]:
    """A read-only descriptor of a directory, closed after."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def read_text(path: str) -> str:
    """A small text file's content; "" when it is missing or unreadable (e.g. no /etc/passwd in an image)."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def fsync_dir(path: str) -> None:
    """Flush a directory entry change (a rename or create) to disk."""
    with _directory(path) as fd:
        os.fsync(fd)


def durable_tree(path: str) -> None:
    """Put a directory tree's files, directories and entries on disk, before a rename publishes it: syncfs(2) of
    the filesystem holding it, raising its error (since Linux 5.8 it reports writeback errors that happened since
    the descriptor was opened).

    One syncfs rather than an fsync of each file and directory: measured on this box's ext4 just after writing the
    tree, 2,000 files of 2 KB 21 ms vs 427 ms, 200 files of 4 KB 4 ms vs 55 ms, one 64 MiB file 38 vs 40 ms, 40
    one-file layers 0.75 vs 1.1 ms each. What else is dirty on the filesystem is written too, the price of it.
    Layers finishing together in a pull's threads sharing one syncfs (a group commit) measured no faster on 40
    small layers (0.352 vs 0.356 s a pull), so each layer has its own.
    """
    import ctypes

    with _directory(path) as fd:
        if _libc().syncfs(fd) != 0:
            err = ctypes.get_errno()
            e = OSError(err, os.strerror(err), path)
            _raise_if_full(e, path)
            raise e


def small_tree(root: str, limit: int) -> list[tuple[str, bool]] | None:
    """A tree's regular files and directories, each with whether it is a directory, children before their parent,
    when there are at most `limit` of them (the root counted) and nothing else; otherwise None. Anything else (a
    symlink, a device node, an extended attribute) is metadata an fsync need not write on every filesystem, so it
    takes a syncfs."""
    found: list[tuple[str, bool]] = []

    def walk(directory: str) -> bool:
        with os.scandir(directory) as it:
            for entry in it:
                is_dir = entry.is_dir(follow_symlinks=False)
                if not (is_dir or entry.is_file(follow_symlinks=False)) or len(found) >= limit:
                    return False
                if is_dir and not walk(entry.path):
                    return False
                found.append((entry.path, is_dir))
        return True

    if not walk(root) or len(found) >= limit:
        return None
    found.append((root, True))
    if any(os.listxattr(path, follow_symlinks=False) for path, _ in found):
        return None
    return found


def fsync_path(path: str, is_dir: bool) -> None:
    """fsync a file or directory by its path, not following a symlink (fsync_dir follows one: a store's own)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | (os.O_DIRECTORY if is_dir else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# Bytes written between writeback starts: the disk works while the rest arrives, so the final fsync is short.
WRITEBACK_STEP = 8 << 20
_SYNC_FILE_RANGE_WRITE = 2


# mallopt(3) parameters; see reuse_freed_buffers.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MALLOC_MMAP_THRESHOLD = 2 << 20
MALLOC_TRIM_THRESHOLD = 8 << 20


@functools.cache
def _libc():
    import ctypes  # only for writers of big files and for pulls

    return ctypes.CDLL(None, use_errno=True)


@functools.cache
def _sync_file_range():
    import ctypes

    fn = getattr(_libc(), "sync_file_range", None)
    if fn is not None:
        fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    return fn


@functools.cache
def reuse_freed_buffers() -> None:
    """Have malloc keep freed buffers of a few MiB for reuse rather than hand their pages back (once per process).

    A pull's threads each allocate and free buffers of up to ~1 MiB per read (HTTP body, gunzip output); glibc's
    default maps those past 128 KiB afresh and trims a thread arena's free top past ~2 MiB, so every read faulted
    in and zeroed fresh pages: ~40k page faults for a 100 MB pull (1 MiB reads), a third of its system time. With
    buffers up to 2 MiB always from the arena and at most 8 MiB of free top kept per arena, the same pull took
    ~16k (a memory cost bounded per arena).
    """
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is not None:  # glibc; other libcs keep their own policy
        mallopt(_M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD)
        mallopt(_M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD)


# FS_IOC_GETFLAGS / FS_IOC_SETFLAGS (linux/fs.h, as on 64-bit) and FS_TOPDIR_FL.
_FS_IOC_GETFLAGS, _FS_IOC_SETFLAGS, _FS_TOPDIR_FL = 0x80086601, 0x40086602, 0x00020000


def spread_subdirectories(path: str) -> None:
    """Mark a directory whose subdirectories are unrelated trees (chattr +T): ext4 then places each new one in a
    block group of its own choosing rather than beside its parent.

    Without it every inode of a store lands in its parent's group; on ext4 without a journal, creating one there
    steps over each inode deleted in the last minutes (0.1-1 ms per file on a box whose /tmp churns, 0.015 ms in
    a quiet group). Filesystems without the flag (tmpfs, xfs, overlay) keep their own placement.
    """
    import struct

    try:
        with _directory(path) as fd:
            flags = struct.unpack("i", fcntl.ioctl(fd, _FS_IOC_GETFLAGS, bytes(4)))[0]
            if not flags & _FS_TOPDIR_FL:
                fcntl.ioctl(fd, _FS_IOC_SETFLAGS, struct.pack("i", flags | _FS_TOPDIR_FL))
    except OSError:
        pass  # ENOTTY/EOPNOTSUPP where the filesystem has no such flag: a placement hint, nothing depends on it


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to begin writing a range to disk without waiting (sync_file_range(2); Linux only)."""
    fn = _sync_file_range()
    if fn is not None:
        fn(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def drop_cached(fd: int, offset: int = 0, length: int = 0) -> None:
    """Hand the clean page-cache pages of a file range (0: to its end) back to the kernel now, for the next writes
    to reuse (posix_fadvise DONTNEED); pages still dirty or being written stay.

    On a VM whose host takes back the guest's free memory, a page the guest has not touched lately costs a fault
    in the host on its first write: writing 200 MB into fresh pages took 0.6 s (0.4 s of it system time) where
    the same writes into recycled pages took 0.07 s.
    """
    os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


@contextlib.contextmanager
def atomic_file(path: str, mode: int = 0o644, tmpdir: str | None = None, durable: bool = True) -> Iterator[BinaryIO]:
    """Yield a temp file that replaces `path` on clean exit and vanishes on error.

    durable=False skips the fsyncs: still atomic for readers and crashes of the writer, but a power loss may
    lose the write (for state that is worthless after a reboot anyway).
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = _temp_file(tmpdir or directory)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except OSError as e:
        _unlink_quietly(tmp)
        _raise_if_full(e, path)
        raise
    except BaseException:
        _unlink_quietly(tmp)
        raise
    if durable:
        fsync_dir(directory)


def _temp_file(directory: str) -> tuple[int, str]:
    """A new file (mode 0600, fd and path) in `directory`, as tempfile.mkstemp makes it: without its import (random,
    shutil and the compressors), which every write of container state on the `run` path would pay."""
    for _ in range(100):
        path = os.path.join(directory, TEMP_PREFIX + os.urandom(6).hex())
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600), path
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", directory)


def key_name(key: bytes) -> str:
    """A file name for `key` by its crc32 and length: cheap (hashlib loads OpenSSL, ~3 ms of a start), so not
    unique: the file must keep the whole key and be taken only under it."""
    import zlib

    return f"{zlib.crc32(key):08x}-{len(key)}"


def atomic_write(path: str, data: bytes, mode: int = 0o644, durable: bool = True) -> None:
    """Write bytes to `path` atomically (durable=False: without the fsyncs, see atomic_file)."""
    with atomic_file(path, mode, durable=durable) as f:
        f.write(data)


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@contextlib.contextmanager
def locked(path: str, shared: bool = False, wait: bool = True) -> Iterator[None]:
    """Hold an flock on `path` (created if needed) for the duration of the block; wait=False raises
    BlockingIOError when someone else holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB))
        yield
    finally:
        os.close(fd)
