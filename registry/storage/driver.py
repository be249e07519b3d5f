"""The storage driver interface: a narrow store of paths and bytes, as CNCF distribution's storagedriver.

A driver knows nothing of blobs, repositories or uploads (registry.storage.layout owns that structure, once, on
top of any driver).  Paths are relative, "/"-separated, without empty, "." or ".." components; "" is the root.
A missing path raises FileNotFoundError (distribution's PathNotFoundError).

Contract, for a second backend such as S3 (which has no rename and no directories):
- put_content and move are atomic: readers see the old content or the new, never a part.  S3 gets this from
  PutObject / server-side CopyObject; `move` may copy then delete.
- A writer's bytes need only be readable at its path after `commit`; `close` keeps what was written so a later
  `writer(path, append=True)` resumes it (S3: a multipart upload, resumed by its parts), and `stat` then reports
  the size written so far (S3: the sum of the pending upload's parts).
- A writer's `note` (a few ASCII bytes, e.g. the digest of what it wrote) is kept with the uncommitted write by
  `close` and read back by the next writer of the path in any process (S3: metadata of the tail object the close
  writes anyway, so it costs no request of its own); commit and cancel drop it.
- `touch` refreshes a path's modification time (GC reads it as "last used"; S3: copy the object onto itself).
- `lock` is an advisory lock shared by every process serving the same store (GC runs while pushes go on): the
  driver's `locks` (registry.storage.locks), flocks on one host or Redis locks shared by every replica.
"""

from __future__ import annotations

import abc
import builtins
import contextlib
import importlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:  # locks.py imports StorageError from here
    from registry.storage.locks import Hold, Locks


class StorageError(OSError):
    """A backend failed for good (after its retries); the server answers 500 with the spec's error body."""


@dataclass(frozen=True)
class FileInfo:
    """What `stat` tells about a path."""

    path: str
    size: int
    mtime: float
    is_dir: bool


class FileWriter(abc.ABC):
    """An open write to one path (distribution's FileWriter): write, then commit, close to resume later, or cancel."""

    @abc.abstractmethod
    def write(self, data: bytes) -> int:
        """Append bytes; how many were taken."""

    @property
    @abc.abstractmethod
    def size(self) -> int:
        """Bytes at the path so far, those of earlier writers included."""

    @abc.abstractmethod
    def commit(self) -> None:
        """Make everything written durable and readable at the path, and close."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stop writing, keeping what was written for a later append (a no-op after commit or cancel)."""

    @abc.abstractmethod
    def cancel(self) -> None:
        """Stop writing and remove the path's content."""

    @property
    @abc.abstractmethod
    def note(self) -> bytes:
        """What the last `close` of this uncommitted write kept with it (b"" when nothing), or what was set since."""

    @note.setter
    @abc.abstractmethod
    def note(self, value: bytes) -> None:
        """Keep `value` (a few ASCII bytes) with the write at `close`."""

    def __enter__(self) -> FileWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class StorageDriver(abc.ABC):
    """Bytes at paths: the operations the registry's storage layout needs from a backend."""

    # Parameter names its configuration section (`storage.<name>`) accepts.
    params: tuple[str, ...] = ()
    # Where `lock` takes its locks (set by the driver's constructor).
    locks: Locks

    @classmethod
    @abc.abstractmethod
    def from_params(cls, params: dict) -> StorageDriver:
        """A driver from its configuration parameters (names in `params`, already checked, and "redis": the
        config's [redis] section as RedisSettings, when there is one)."""

    @abc.abstractmethod
    def get_content(self, path: str) -> bytes:
        """The whole content of a (small) file."""

    @abc.abstractmethod
    def put_content(self, path: str, data: bytes, durable: bool = True) -> None:
        """Replace a file's content atomically, creating its parents; durable=False: a cache a crash may lose."""

    @abc.abstractmethod
    def reader(self, path: str, offset: int = 0) -> BinaryIO:
        """A file object reading from `offset`; a real file (with fileno, for sendfile) when the driver can."""

    @abc.abstractmethod
    def writer(self, path: str, append: bool = False, new: bool = False) -> FileWriter:
        """A writer of `path`: a new empty file, or with append=True, continuing where the content ends.
        new=True: the caller knows nothing is there (no content, no open write), so nothing is looked up or removed."""

    @abc.abstractmethod
    def stat(self, path: str) -> FileInfo:
        """Size, modification time and kind of a path."""

    @abc.abstractmethod
    def list(self, path: str) -> list[str]:
        """Names of a directory's children (files and directories), unsorted; [] when it does not exist."""

    @abc.abstractmethod
    # builtins.list: in the class body `list` is the method above.
    def walk(self, path: str) -> Iterator[tuple[str, builtins.list[str], builtins.list[str]]]:
        """(directory, subdirectory names, file names) from `path` down, as os.walk: prune by editing the list."""

    @abc.abstractmethod
    def move(self, src: str, dst: str) -> None:
        """Move a file onto `dst` (replacing it) atomically and durably, creating dst's parents."""

    def commit_to(self, writer: FileWriter, path: str, dst: str) -> None:
        """Commit `writer` (of `path`) and move what it wrote onto `dst`: a finished upload becoming its blob. What
        the write kept beside `path` (S3: its tail) may stay until the caller's `delete_files` of its directory."""
        writer.commit()
        self.move(path, dst)

    @abc.abstractmethod
    def delete(self, path: str) -> bool:
        """Remove a file or a whole directory tree; False when nothing was there."""

    def delete_files(self, path: str, names: Iterable[str]) -> None:
        """Remove a directory whose only files are `names`, none with an open write (its writers committed or
        cancelled): as `delete`, but a driver that must look for what a directory holds (S3) need not."""
        self.delete(path)

    @abc.abstractmethod
    def touch(self, path: str) -> None:
        """Set a file's modification time to now."""

    def lock(self, path: str, shared: bool = False, wait: bool = True,
             check_dir: bool = True) -> contextlib.AbstractContextManager[Hold]:
        """Hold the advisory lock named `path` for a block; wait=False raises BlockingIOError when it is taken.
        Its directory must exist (FileNotFoundError): a lock does not bring a removed directory back. check_dir=False
        spares that look (S3: a listing) to a caller that finds out under the lock whether what it guards is there,
        and calls `locks.forget` of the directory when it is not."""
        parent = check_path(path).rpartition("/")[0]
        if parent and check_dir:
            self.require_dir(parent)
        return self.locks.hold(path, shared, wait)

    def is_file(self, path: str) -> bool:
        """Whether a (committed) file is at `path`."""
        try:
            return not self.stat(path).is_dir
        except FileNotFoundError:
            return False

    def require_dir(self, path: str) -> None:
        """Raise FileNotFoundError unless `path` is a directory (NotADirectoryError when it is a file)."""
        if not self.stat(path).is_dir:
            raise NotADirectoryError(path)

    @abc.abstractmethod
    def purge_partial_writes(self, cutoff: float, dry_run: bool = False) -> int:
        """Remove what writers killed mid-write left (temp files, abandoned multipart uploads) older than
        `cutoff`; how many."""

    # A default that does nothing on purpose (not a forgotten @abstractmethod): only drivers with directories
    # override it.
    def mkdir(self, path: str) -> None:  # noqa: B027
        """Create a directory and its parents (drivers without directories have nothing to do)."""

    def redirect_url(self, path: str, method: str = "GET") -> str | None:
        """A URL the client may fetch the content from directly (a presigned URL), or None to serve it here."""
        return None

    def local_path(self, path: str) -> str | None:
        """The local filesystem path of `path` when the driver keeps files on this machine, else None."""
        return None


# name -> "module:class", imported on first use so a backend's dependencies load only when configured.
DRIVERS: dict[str, str] = {"filesystem": "registry.storage.filesystem:FilesystemDriver",
                           "s3": "registry.storage.s3:S3Driver"}


def driver_class(name: str) -> type[StorageDriver]:
    """The driver class registered under `name`; KeyError when there is none."""
    module, _, cls = DRIVERS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def open_driver(name: str, params: dict) -> StorageDriver:
    """A driver by its configuration name (`storage.<name>`) and parameters."""
    return driver_class(name).from_params(params)


def check_path(path: str) -> str:
    """`path` if it is a valid driver path (see the module docstring); ValueError otherwise."""
    if path and (path[0] == "/" or "\0" in path or any(p in ("", ".", "..") for p in path.split("/"))):
        raise ValueError(f"invalid storage path {path!r}")
    return path
