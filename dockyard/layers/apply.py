"""Apply a layer tar onto a root directory: whiteouts honoured, nothing lands outside the root."""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tarfile
from collections.abc import Callable
from typing import BinaryIO, Literal, TypeVar, overload

from dockyard.compression import CompressionError, decompressed
from dockyard.digest import CHUNK, Digest, HashingReader
from dockyard.fsutil import WRITEBACK_STEP, start_writeback
from dockyard.inroot import resolve_dir
from dockyard.layers.format import (
    CAPABILITY_XATTR,
    OPAQUE_WHITEOUT,
    OPAQUE_XATTRS,
    WHITEOUT_META_PREFIX,
    WHITEOUT_PREFIX,
    LayerError,
    overlay_private,
)
from dockyard.layers.tarread import Member, TarReader

T = TypeVar("T")
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def apply_layer(stream: BinaryIO, root: str, *, overlay: bool = False) -> Digest:
    """Extract a (possibly compressed) layer onto `root`; return its diff_id.

    With overlay=True the layer is unpacked alone into an empty `root` to serve as an overlayfs
    lower dir: whiteouts become 0/0 character devices and opaque markers trusted.overlay.opaque.
    """
    plain = HashingReader(decompressed(stream))
    reader = TarReader(plain)
    applier = _Applier(os.path.realpath(root), overlay)
    try:
        for member in reader:
            applier.apply(member, reader)
        while plain.read(CHUNK):
            pass  # the diff_id covers the whole tar, trailing padding included
        applier.finish()
    except CompressionError as e:
        where = f" after {reader.current!r}" if reader.current else ""
        raise LayerError(f"layer stream is corrupt{where}: {e}") from None
    except OSError as e:
        raise LayerError(f"cannot apply layer entry {reader.current!r}: "
                         f"{e.strerror or e}") from None
    except (ValueError, OverflowError) as e:  # NUL bytes in names, absurd device numbers or times
        raise LayerError(f"layer entry {reader.current!r} is invalid: {e}") from None
    except RecursionError:  # shutil.rmtree of a directory nested deeper than Python's stack
        raise LayerError(f"layer entry {reader.current!r}: directory nesting too deep") from None
    return plain.digest()


def _clean(name: str, entry: str) -> list[str]:
    """Lexically clean a tar name into components; leading '/' is dropped, escaping '..' refused."""
    parts: list[str] = []
    for p in name.split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if not parts:
                what = "" if name == entry else f" ({name!r})"
                raise LayerError(f"layer entry {entry!r} points outside the root{what}")
            parts.pop()
        else:
            parts.append(p)
    return parts


class _Applier:
    """Applies members one by one; defers directory modes/mtimes and opaque pruning to the end."""

    def __init__(self, root: str, overlay: bool):
        self.root = root
        self.overlay = overlay
        self.chown = os.geteuid() == 0
        # logical parent components -> real path relative to root, after in-root symlink resolution
        self._dirs: dict[tuple[str, ...], str] = {(): ""}
        self._added: set[str] = set()  # real relative paths this layer created or replaced
        self._opaque: list[str] = []
        self._dir_meta: list[tuple[str, Member]] = []
        # Every file's data passes through one buffer, grown to the biggest file up to CHUNK: a fresh one per read
        # faulted in and zeroed new pages each time.
        self._buf = memoryview(bytearray())

    def apply(self, m: Member, reader: TarReader) -> None:
        parts = _clean(m.name, m.name)
        if not parts:
            return  # the root itself: its metadata belongs to whoever made the root
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(m, parts)
            return
        parent = self._dir(parts[:-1], m.name, create=True)
        rel = f"{parent}/{base}" if parent else base
        path = os.path.join(self.root, rel)
        if m.type == tarfile.LNKTYPE:
            self._hardlink(m, rel, path)
            return
        self._added.add(rel)
        if m.type == tarfile.DIRTYPE:
            self._create(path, lambda: os.mkdir(path, 0o700), merge_dir=True)
            self._owner_and_xattrs(path, m)
            self._dir_meta.append((path, m))  # mode/mtime once its children are in place
            return
        if m.type in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE):
            fd = self._create(path, lambda: os.open(path, _NEW_FILE, 0o600))
            self._file(fd, m, reader)
            return
        if m.type == tarfile.SYMTYPE:
            self._create(path, lambda: os.symlink(m.linkname, path))
        elif m.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
            kind = stat.S_IFCHR if m.type == tarfile.CHRTYPE else stat.S_IFBLK
            rdev = os.makedev(m.devmajor, m.devminor)
            self._create(path, lambda: os.mknod(path, kind | 0o600, rdev))
        elif m.type == tarfile.FIFOTYPE:
            self._create(path, lambda: os.mkfifo(path, 0o600))
        else:
            raise LayerError(f"layer entry {m.name!r} has unsupported tar type {m.type!r}")
        self._metadata(path, m)

    @overload
    def _create(self, path: str, make: Callable[[], T], merge_dir: Literal[False] = False) -> T: ...
    @overload
    def _create(self, path: str, make: Callable[[], T], merge_dir: bool) -> T | None: ...
    def _create(self, path: str, make: Callable[[], T], merge_dir: bool = False) -> T | None:
        """Create a new entry; only if the name is taken, look at what is there and replace it.

        Trying first saves an lstat per entry on the common path (a fresh or mostly new root).
        A directory over a directory merges instead (returns None).
        """
        try:
            return make()
        except FileExistsError:
            existing = _lstat(path)
            if merge_dir and existing is not None and stat.S_ISDIR(existing.st_mode):
                return None
            self._remove(path, existing)
            return make()

    def finish(self) -> None:
        """Prune opaque directories, then set directory modes and mtimes (children are done)."""
        for rel in self._opaque:
            self._prune(rel)
        for path, m in self._dir_meta:
            st = _lstat(path)
            if st is not None and stat.S_ISDIR(st.st_mode):  # not replaced later in the layer
                os.chmod(path, m.mode & 0o7777)
                os.utime(path, (m.mtime, m.mtime))

    def _dir(self, parts: list[str], name: str, create: bool) -> str | None:
        """Real relative path of the directory named by `parts`, resolved like a chroot would."""
        key = tuple(parts)
        hit = self._dirs.get(key)
        if hit is not None:
            return hit
        n = len(key) - 1
        while key[:n] not in self._dirs:
            n -= 1
        real = self._dirs[key[:n]]
        for i in range(n, len(key)):
            found = self._step(real, key[i], name, create)
            if found is None:
                return None
            real = found
            self._dirs[key[:i + 1]] = real
        return real

    def _step(self, base: str, component: str, name: str, create: bool) -> str | None:
        """Descend one component from `base`, following symlinks with targets clamped to root."""
        made: list[str] = []
        try:
            return resolve_dir(self.root, component, create, made, start=base)
        except NotADirectoryError as e:
            raise LayerError(f"layer entry {name!r}: {e.filename!r} is not a directory") from None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise LayerError(f"layer entry {name!r}: too many levels of symbolic links") from None
            raise
        finally:
            self._added.update(made)  # parents the tar did not list, made as docker makes them

    def _whiteout(self, m: Member, parts: list[str]) -> None:
        base = parts[-1]
        if base.startswith(WHITEOUT_META_PREFIX) and base != OPAQUE_WHITEOUT:
            return
        target = base[len(WHITEOUT_PREFIX):]
        if target in ("", ".", ".."):
            raise LayerError(f"layer entry {m.name!r} is not a valid whiteout")
        # In overlay form the marker must exist even where this layer has no parent entry.
        parent = self._dir(parts[:-1], m.name, create=self.overlay)
        if parent is None:
            return  # hides something that is not there
        if base == OPAQUE_WHITEOUT:
            if self.overlay:
                os.setxattr(os.path.join(self.root, parent), OPAQUE_XATTRS[0], b"y")
            else:
                self._opaque.append(parent)
            return
        rel = f"{parent}/{target}" if parent else target
        if rel in self._added:
            return  # a whiteout hides lower layers only, never what this same layer adds
        path = os.path.join(self.root, rel)
        self._remove(path, _lstat(path))
        if self.overlay:
            os.mknod(path, stat.S_IFCHR, os.makedev(0, 0))

    def _hardlink(self, m: Member, rel: str, path: str) -> None:
        parts = _clean(m.linkname, m.name)
        target_parent = self._dir(parts[:-1], m.name, create=False) if parts else None
        if target_parent is None:
            raise LayerError(f"layer entry {m.name!r} links to missing {m.linkname!r}")
        target_rel = f"{target_parent}/{parts[-1]}" if target_parent else parts[-1]
        if target_rel == rel:
            return  # a link to itself is already satisfied
        target = os.path.join(self.root, target_rel)
        st = _lstat(target)
        if st is None or stat.S_ISDIR(st.st_mode):
            raise LayerError(f"layer entry {m.name!r} links to missing {m.linkname!r}")
        self._create(path, lambda: os.link(target, path, follow_symlinks=False))
        self._added.add(rel)

    def _file(self, fd: int, m: Member, reader: TarReader) -> None:
        """Write a new regular file's data and metadata through its descriptor, then close it.

        A big file's data is sent to the disk step by step as it is written: the store's sync before it publishes
        the layer then has little left to wait for (the blob is written the same way, see store._Incoming).
        """
        written = flushed = 0
        if len(self._buf) < min(m.size, CHUNK):
            self._buf = memoryview(bytearray(min(m.size, CHUNK)))
        try:
            while got := reader.readinto(self._buf):
                view = self._buf[:got]
                while view:
                    n = os.write(fd, view)
                    view = view[n:]
                    written += n
                if written - flushed >= WRITEBACK_STEP:
                    start_writeback(fd, flushed, written - flushed)
                    flushed = written
            if self.chown:
                os.chown(fd, m.uid, m.gid)
            os.chmod(fd, m.mode & 0o7777)  # after chown, which clears setuid bits
            self._xattrs(fd, m)
            os.utime(fd, (m.mtime, m.mtime))
        finally:
            os.close(fd)

    def _metadata(self, path: str, m: Member) -> None:
        """Owner, mode, xattrs and mtime of a non-directory, never following a symlink."""
        self._owner_and_xattrs(path, m)
        if m.type != tarfile.SYMTYPE:
            os.chmod(path, m.mode & 0o7777)
        os.utime(path, (m.mtime, m.mtime), follow_symlinks=False)

    def _owner_and_xattrs(self, path: str, m: Member) -> None:
        if self.chown:
            os.lchown(path, m.uid, m.gid)
        self._xattrs(path, m)

    def _xattrs(self, target: str | int, m: Member) -> None:
        """Set the member's xattrs; only a lost file capability is an error (it changes behaviour)."""
        for key, value in m.xattrs.items():
            if overlay_private(key):
                continue
            try:
                if isinstance(target, int):
                    os.setxattr(target, key, value)
                else:
                    os.setxattr(target, key, value, follow_symlinks=False)
            except OSError as e:
                if key == CAPABILITY_XATTR or e.errno not in (errno.EPERM, errno.ENOTSUP):
                    raise LayerError(f"layer entry {m.name!r}: cannot set xattr {key}: "
                                     f"{e.strerror}") from None

    def _remove(self, path: str, st: os.stat_result | None) -> None:
        """Remove whatever is at `path` (a directory recursively, never following symlinks)."""
        if st is None:
            return
        if stat.S_ISDIR(st.st_mode):
            shutil.rmtree(path)
        else:
            os.unlink(path)
        if stat.S_ISDIR(st.st_mode) or stat.S_ISLNK(st.st_mode):
            # Resolved parents may have gone through what was removed.
            self._dirs = {(): ""}

    def _prune(self, top: str) -> None:
        """Remove what lower layers left in an opaque directory, keeping what this layer added."""
        todo = [top]
        while todo:
            rel = todo.pop()
            path = os.path.join(self.root, rel) if rel else self.root
            st = _lstat(path)
            if st is None or not stat.S_ISDIR(st.st_mode):
                continue  # removed or replaced later in this layer
            with os.scandir(path) as it:
                children = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
            for name, is_dir in children:
                child = f"{rel}/{name}" if rel else name
                if child not in self._added:
                    self._remove(os.path.join(path, name), _lstat(os.path.join(path, name)))
                elif is_dir:
                    todo.append(child)  # kept, but its own lower children are hidden too


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
