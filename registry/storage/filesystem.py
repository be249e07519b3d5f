"""The filesystem storage driver: paths are files under one root directory, every visible file appears by a rename."""

from __future__ import annotations

import builtins
import contextlib
import os
import shutil
import stat
from collections.abc import Iterator
from typing import BinaryIO

from dockyard.fsutil import TEMP_PREFIX, WRITEBACK_STEP, atomic_write, fsync_dir, start_writeback
from registry.storage.driver import FileInfo, FileWriter, StorageDriver, check_path
from registry.storage.locks import RedisSettings, open_locks


class FilesystemDriver(StorageDriver):
    """Files under `root`; writes are atomic (temp file, fsync, rename) and readers get real files (sendfile).
    Locks are flocks on files in the store, or Redis locks (a root shared by several hosts, e.g. over NFS)."""

    params = ("rootdirectory",)

    def __init__(self, root: str, redis: RedisSettings | None = None):
        self.root = os.path.abspath(root)
        # Replicas sharing Redis locks must mount the shared root at the same path: it names their locks.
        self.locks = open_locks(redis, f"filesystem:{self.root}", self.root, make_parents=False)

    @classmethod
    def from_params(cls, params: dict) -> FilesystemDriver:
        return cls(params["rootdirectory"], params.get("redis"))

    def _full(self, path: str) -> str:
        return os.path.join(self.root, check_path(path)) if path else self.root

    def get_content(self, path: str) -> bytes:
        # Raw descriptor calls: a manifest GET reads two small files, and open()'s buffered file object costs more
        # than the reads (a tty check, seeks, a second read).
        fd = os.open(self._full(path), os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            data = os.read(fd, size + 1)  # one read when the file is as large as stat said
            if len(data) <= size:
                return data
            parts = [data]  # it grew (a file appended in place): read on to its end
            while chunk := os.read(fd, 1 << 20):
                parts.append(chunk)
            return b"".join(parts)
        finally:
            os.close(fd)

    def put_content(self, path: str, data: bytes, durable: bool = True) -> None:
        full = self._full(path)
        try:
            atomic_write(full, data, durable=durable)
        except FileNotFoundError:  # the first file of its directory
            os.makedirs(os.path.dirname(full), exist_ok=True)
            atomic_write(full, data, durable=durable)

    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        # The caller owns the open file (the driver's contract: it closes it).
        f = open(self._full(path), "rb")  # noqa: SIM115
        if offset:
            f.seek(offset)
        return f

    def writer(self, path: str, append: bool = False, new: bool = False) -> FileWriter:
        full = self._full(path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        return _Writer(full, append)  # looking costs a local file no round trip: `new` changes nothing

    def stat(self, path: str) -> FileInfo:
        st = os.stat(self._full(path))
        return FileInfo(path, st.st_size, st.st_mtime, stat.S_ISDIR(st.st_mode))

    def list(self, path: str) -> list[str]:
        try:
            names = os.listdir(self._full(path))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [n for n in names if not n.startswith(TEMP_PREFIX)]

    # builtins.list: in the class body `list` is the method above.
    def walk(self, path: str) -> Iterator[tuple[str, builtins.list[str], builtins.list[str]]]:
        for dirpath, dirnames, filenames in os.walk(self._full(path)):
            rel = os.path.relpath(dirpath, self.root)
            # dirnames is os.walk's own list, so a caller's pruning takes effect.
            yield ("" if rel == "." else rel), dirnames, [n for n in filenames if not n.startswith(TEMP_PREFIX)]

    def move(self, src: str, dst: str) -> None:
        full_dst = self._full(dst)
        os.makedirs(os.path.dirname(full_dst), exist_ok=True)
        os.rename(self._full(src), full_dst)
        fsync_dir(os.path.dirname(full_dst))

    def delete(self, path: str) -> bool:
        full = self._full(path)
        try:
            os.unlink(full)
        except FileNotFoundError:
            return False
        except IsADirectoryError:
            shutil.rmtree(full, ignore_errors=True)  # a concurrent delete may take parts of it first
        return True

    def touch(self, path: str) -> None:
        os.utime(self._full(path))

    def purge_partial_writes(self, cutoff: float, dry_run: bool = False) -> int:
        removed = 0
        for dirpath, _, filenames in os.walk(self.root):
            for name in filenames:
                if not name.startswith(TEMP_PREFIX):
                    continue
                path = os.path.join(dirpath, name)
                with contextlib.suppress(FileNotFoundError):
                    if os.stat(path).st_mtime < cutoff:
                        if not dry_run:
                            os.unlink(path)
                        removed += 1
        return removed

    def mkdir(self, path: str) -> None:
        os.makedirs(self._full(path), exist_ok=True)

    def local_path(self, path: str) -> str | None:
        return self._full(path)


class _Writer(FileWriter):
    """Appends to the file in place, starting writeback as it goes so the fsync at commit has little left. Its note
    is a hidden file beside it (a temp file's name: listings skip it, the purge of partial writes takes it)."""

    def __init__(self, path: str, append: bool):
        self._path = path
        directory, name = os.path.split(path)
        self._note_path = os.path.join(directory, f"{TEMP_PREFIX}note.{name}")
        self._note: bytes | None = None if append else b""  # None: not read yet (most writers never ask)
        self._noted: bytes | None = self._note  # what the note file holds, when known
        if not append:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._note_path)
        # Kept open across write() calls; commit()/cancel() close it.
        self._file = open(path, "ab" if append else "wb")  # noqa: SIM115
        self._size = self._flushed = os.fstat(self._file.fileno()).st_size

    @property
    def note(self) -> bytes:
        if self._note is None:
            try:
                with open(self._note_path, "rb") as f:
                    self._note = f.read()
            except FileNotFoundError:
                self._note = b""
            self._noted = self._note
        return self._note

    @note.setter
    def note(self, value: bytes) -> None:
        self._note = value

    def _drop_note(self) -> None:
        if self._noted != b"":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._note_path)

    def write(self, data: bytes) -> int:
        n = self._file.write(data)
        self._size += n
        if self._size - self._flushed >= WRITEBACK_STEP:
            self._file.flush()
            start_writeback(self._file.fileno(), self._flushed, self._size - self._flushed)
            self._flushed = self._size
        return n

    @property
    def size(self) -> int:
        return self._size

    def commit(self) -> None:
        if self._file.closed:
            raise ValueError(f"writer of {self._path} is closed")
        with self._file:
            self._file.flush()
            os.fsync(self._file.fileno())
        self._drop_note()

    def close(self) -> None:
        if self._file.closed:
            return
        self._file.close()
        if self._note is not None and self._note != self._noted:
            # Not durable: a note says what the bytes are, and one a crash lost only costs reading them again.
            atomic_write(self._note_path, self._note, durable=False)

    def cancel(self) -> None:
        self._file.close()
        self._drop_note()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)
