"""COPY and ADD: put context (or other stage) files into a root with Docker's destination rules.

The root is either a writable overlay view of the stage (so existing parents are copied up with their
metadata and symlinks in the destination resolve as in the image) or, for --link, an empty upperdir."""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from collections.abc import Callable
from dataclasses import dataclass

from builder.context import BuildContext, Entry, Held, Source
from builder.ignore import Ignore
from builder.resolve import InlineFile
from dockyard.compression import decompressed
from dockyard.errors import DockyardError
from dockyard.inroot import resolve_beneath, secure_join

# A COPY of at most this much content is staged in memory (see staging_size); a tmpfs also takes whole pages.
_STAGE_LIMIT = 256 << 20
_PAGE = 4096
_STAGE_SLACK = 16 << 20
# How a file the copy writes is made: new (nothing there to follow or replace unseen), never a link's target.
NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_TAR_MAGIC_AT = 257


class CopyError(DockyardError):
    """A COPY/ADD cannot be carried out as written."""


@dataclass(frozen=True)
class Item:
    """One thing to copy: a source read through `reader` (the context or a stage's root), a downloaded
    file (`path`, for ADD URLs), or an inline heredoc file."""

    reader: BuildContext | None = None
    source: Source | None = None
    inline: InlineFile | None = None
    path: str | None = None
    name: str = ""
    mode: int = 0o644
    mtime_ns: int = 0


def is_archive(fd: int) -> bool:
    """Whether a file is a tar archive, plain or gzip/bzip2/xz/zstd compressed (sniffed by content)."""
    with os.fdopen(os.dup(fd), "rb") as f:
        try:
            head = decompressed(f).read(_TAR_MAGIC_AT + 8)
        except (DockyardError, OSError, EOFError):
            return False
        finally:
            os.lseek(fd, 0, os.SEEK_SET)
    return head[_TAR_MAGIC_AT:_TAR_MAGIC_AT + 5] == b"ustar"


def copy_data(src: int, dst: int) -> None:
    """Copy a whole file in the kernel (reflink or in-kernel copy where the filesystem can)."""
    try:
        while os.copy_file_range(src, dst, 1 << 30):
            pass
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
            raise
        while os.sendfile(dst, src, None, 1 << 30):
            pass


def _write_all(fd: int, data: bytes) -> None:
    """Write all of `data` (a write to a regular file may still be short, e.g. on a signal)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def staging_size(reader: BuildContext, sources: list[Source], exclude: Ignore | None,
                 inline: list[InlineFile]) -> int:
    """The size of a tmpfs that holds what a COPY of these writes (files in whole pages, a page per symlink, room
    for the directories it copies up), or 0 when that is too much to hold in memory: a COPY whose layer is likely
    stored already is written in memory first, so the store gets files only if its diff shows a new layer."""
    pages = sum(-(-len(f.data.encode()) // _PAGE) for f in inline)
    for src in sources:
        for e in reader.walk(src, exclude):
            pages += -(-e.key[2] // _PAGE) if e.kind == "file" else e.kind == "symlink"
            if pages * _PAGE > _STAGE_LIMIT:
                return 0
    return pages * _PAGE + _STAGE_SLACK


class Copier:
    """Writes items into `root` with one owner (--chown, else root) and optional --chmod."""

    def __init__(self, root: str, owner: tuple[int, int], chmod: int | None, exclude: Ignore | None):
        self.root = root
        self.uid, self.gid = owner
        self.chmod = chmod
        self.exclude = exclude
        self._dir_times: list[tuple[str, int]] = []
        # The bytes of files written from memory, by path in the root: the layer diff need not read them back.
        self.written: dict[str, bytes] = {}
        # The bytes in `written` read from files (an upper bound: replaced files are not taken off).
        self._held = Held(self)
        # New files already belong to this process's user and group (new directories are given them too).
        self._own = owner == (os.geteuid(), os.getegid())

    # -- paths in the root ---------------------------------------------------------------------------

    def real(self, path: str) -> str:
        """Where an absolute image path lives under the root, symlinks resolved inside the root."""
        return secure_join(self.root, path)

    def leaf(self, path: str) -> str:
        """Like real(), but a final symlink is not followed: writing there replaces the link."""
        return os.path.join(self.real(posixpath.dirname(path) or "/"), posixpath.basename(path))

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(self.real(path))

    def ensure_dir(self, path: str, mode: int = 0o755) -> str:
        """mkdir -p inside the root, where symlinks on the way lead (resolved in the root, as Docker does);
        new directories get the copy's owner, the last one `mode`."""
        try:
            names = resolve_beneath(self.root, path)
        except NotADirectoryError:
            raise CopyError(f"cannot copy to {path}: a parent is not a directory") from None
        real = self.root
        for i, name in enumerate(names):
            real = os.path.join(real, name)
            if os.path.isdir(real):  # resolved: no symlink left on the way
                continue
            if os.path.lexists(real):
                raise CopyError(f"cannot copy to {path}: it exists and is not a directory")
            os.mkdir(real)
            os.chown(real, self.uid, self.gid)
            os.chmod(real, mode if i == len(names) - 1 else 0o755)
        return real

    def _replaceable(self, real: str, what: str) -> None:
        """Make room for a new file or link: an existing non-directory is replaced, a directory is not."""
        try:
            st = os.lstat(real)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            raise CopyError(f"cannot copy {what}: a directory exists at the destination")
        os.unlink(real)

    # -- writing ---------------------------------------------------------------------------------------

    def file_from_fd(self, src: int, real: str, mode: int, mtime_ns: int, what: str, fresh: bool = False) -> None:
        """Write one regular file from an open fd."""
        self._new_file(real, mode, mtime_ns, what, fresh, lambda fd: copy_data(src, fd))
        self.written.pop(self._in_root(real), None)

    def data(self, data: bytes, real: str, mode: int, what: str, mtime_ns: int | None = None,
             fresh: bool = False) -> None:
        """Write one regular file from bytes (a heredoc, or a small file read whole)."""
        self._new_file(real, mode, mtime_ns, what, fresh, lambda fd: _write_all(fd, data))
        self.written[self._in_root(real)] = data

    def _in_root(self, real: str) -> str:
        """The path of `real` (a path under the root) relative to the root."""
        return real[len(self.root) + 1:]

    def _new_file(self, real: str, mode: int, mtime_ns: int | None, what: str, fresh: bool,
                  fill: Callable[[int], None]) -> None:
        """Create `real`, fill it, set owner, mode and mtime. `fresh`: its directory is one this copy made,
        so nothing is there to replace, and a file made by the copy's owner already has its owner."""
        if not fresh:
            self._replaceable(real, what)
        fd = os.open(real, NEW_FILE, 0o600)
        try:
            fill(fd)
            if not (fresh and self._own):
                os.fchown(fd, self.uid, self.gid)
            os.fchmod(fd, self.chmod if self.chmod is not None else mode)
            if mtime_ns is not None:
                os.utime(fd, ns=(mtime_ns, mtime_ns))
        finally:
            os.close(fd)

    def tree(self, reader: BuildContext, source: Source, dest: str) -> None:
        """Copy a context directory's contents (not the directory itself) into `dest`."""
        reals: dict[str, str] = {}
        fresh: set[str] = set()  # directories this copy made: empty when made, and only it writes there
        for e in reader.walk(source, self.exclude):
            if e.path == ".":
                existed = self.is_dir(dest)
                reals["."] = self.ensure_dir(dest, self.chmod if self.chmod is not None else e.mode)
                if not existed:
                    self._dir_times.append((reals["."], e.key[3]))
                    fresh.add(".")
                continue
            parent, _, name = e.path.rpartition("/")
            parent = parent or "."
            real = os.path.join(reals[parent], name)
            if e.kind == "dir":
                if parent in fresh:
                    os.mkdir(real)
                    fresh.add(e.path)
                else:
                    if os.path.islink(real):  # a symlink to a directory in the image is followed, as docker does
                        real = self.real(posixpath.join(dest, e.path))
                    if not os.path.lexists(real):
                        os.mkdir(real)
                        fresh.add(e.path)
                    elif not os.path.isdir(real):
                        raise CopyError(f"cannot copy directory {e.rel}: a file exists at the destination")
                os.chown(real, self.uid, self.gid)
                os.chmod(real, self.chmod if self.chmod is not None else e.mode)
                self._dir_times.append((real, e.key[3]))
                reals[e.path] = real
            else:
                self.entry(reader, e, real, parent in fresh)

    def entry(self, reader: BuildContext, e: Entry, real: str, fresh: bool = False) -> None:
        """Copy one non-directory entry to `real` (`fresh`: into a directory this copy made)."""
        if e.link is not None:  # a symlink
            if not fresh:
                self._replaceable(real, e.rel)
            os.symlink(e.link, real)
            os.lchown(real, self.uid, self.gid)
            os.utime(real, ns=(e.key[3], e.key[3]), follow_symlinks=False)
            return
        # A small file is read whole (or was, for the cache key), so the layer diff after the copy need not open it.
        data = reader.content(e, self._held)
        if data is not None:
            self.data(data, real, e.mode, e.rel, e.key[3], fresh)
            return
        src = reader.open(e.rel)
        try:
            self.file_from_fd(src, real, e.mode, e.key[3], e.rel, fresh)
        finally:
            os.close(src)

    def finish(self) -> None:
        """Set directory mtimes last (adding children changed them), deepest first."""
        for real, mtime_ns in reversed(self._dir_times):
            os.utime(real, ns=(mtime_ns, mtime_ns), follow_symlinks=False)
        self._dir_times.clear()


def copy_items(copier: Copier, items: list[Item], dest: str, workdir: str, *, add: bool, parents: bool,
               instruction: str) -> None:
    """Docker's rules: a directory's contents are copied; a trailing slash (or several sources) makes
    the destination a directory; a relative destination is relative to WORKDIR; ADD unpacks local tars."""
    from dockyard.layers import apply_layer  # heavy-ish; only needed for COPY/ADD

    target = posixpath.normpath(posixpath.join(workdir or "/", dest))
    as_dir = dest.endswith(("/", "/.")) or dest == "."
    if len(items) > 1 and not as_dir:
        if not copier.is_dir(target):
            raise CopyError(f"{instruction}: when copying more than one source the destination must be a "
                            f"directory and end with a /: {dest}")
        as_dir = True
    for item in items:
        if item.inline is not None:
            path = posixpath.join(target, item.inline.name) if as_dir or copier.is_dir(target) else target
            copier.ensure_dir(posixpath.dirname(path))
            copier.data(item.inline.data.encode(), copier.leaf(path), item.inline.mode, item.inline.name)
            continue
        if item.path is not None:  # a downloaded URL
            path = posixpath.join(target, item.name) if as_dir or copier.is_dir(target) else target
            copier.ensure_dir(posixpath.dirname(path))
            fd = os.open(item.path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                copier.file_from_fd(fd, copier.leaf(path), item.mode, item.mtime_ns, item.name)
            finally:
                os.close(fd)
            continue
        src, reader = item.source, item.reader
        assert src is not None and reader is not None  # neither inline nor downloaded: a source in a reader
        base = posixpath.join(target, src.rel) if parents else target
        if src.entry.kind == "dir":
            copier.tree(reader, src, base)
            continue
        if add and src.entry.kind == "file":
            fd = reader.open(src.rel)
            try:
                if is_archive(fd):
                    root = copier.ensure_dir(base)
                    with os.fdopen(os.dup(fd), "rb") as f:
                        apply_layer(f, root)
                    copier.written.clear()  # the archive may have replaced any of them
                    continue
            finally:
                os.close(fd)
        name = posixpath.basename(src.rel) if src.entry.path == "." else src.entry.path
        if parents:
            path = base
        elif as_dir or copier.is_dir(target):
            path = posixpath.join(target, name)
        else:
            path = target
        copier.ensure_dir(posixpath.dirname(path) or "/")
        copier.entry(reader, src.entry, copier.leaf(path))
    copier.finish()
