"""Write a directory (typically an overlayfs upper dir) as a deterministic OCI layer tar."""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from collections.abc import Mapping
from typing import BinaryIO

from dockyard.layers import tarheader
from dockyard.layers.format import (
    BLOCK,
    END_OF_ARCHIVE,
    OPAQUE_WHITEOUT,
    OPAQUE_XATTRS,
    WHITEOUT_PREFIX,
    XATTR_PAX_PREFIX,
    LayerError,
    kept_xattr,
)

_COPY = 1 << 20
_UNDIFFABLE = ("trusted.overlay.redirect", "trusted.overlay.metacopy",
               "user.overlay.redirect", "user.overlay.metacopy")
_ENCODING = "utf-8"
_ERRORS = "surrogateescape"


def write_diff(src: str, out: BinaryIO, *, source_date_epoch: int | None = None,
               contents: Mapping[str, bytes] | None = None) -> None:
    """Write the tree under `src` (not `src` itself) to `out` as an uncompressed PAX layer tar. `contents`: the
    bytes of files the caller has just written there, by tar name (read from there only when their size differs)."""
    _DiffWriter(out, source_date_epoch, contents or {}).tree(src)
    out.write(END_OF_ARCHIVE)


class _DiffWriter:
    """Walks a tree in sorted order, emitting one tar entry per file, whiteouts converted."""

    def __init__(self, out: BinaryIO, epoch: int | None, contents: Mapping[str, bytes]):
        self._out = out
        self._epoch = epoch
        self._contents = contents
        self._inodes: dict[tuple[int, int], str] = {}  # (dev, ino) -> first name, for hard links
        self._buf = bytearray(_COPY)

    def tree(self, src: str) -> None:
        """Emit every entry below `src` depth-first in name order, parents before children."""
        # An explicit stack rather than recursion: an upper dir may nest deeper than Python's limit.
        stack = [iter(_listing(src, ""))]
        while stack:
            item = next(stack[-1], None)
            if item is None:
                stack.pop()
            elif self._entry(*item):
                stack.append(iter(_listing(item[0], item[1] + "/")))

    def _entry(self, path: str, name: str) -> bool:
        """Emit one entry; True when it is a directory whose children come next."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return False  # vanished between listing and stat: it is simply not part of the diff
        mode = st.st_mode
        if stat.S_ISSOCK(mode):
            return False  # sockets cannot be archived meaningfully (docker skips them too)
        mtime = int(st.st_mtime)
        if self._epoch is not None and mtime > self._epoch:
            mtime = self._epoch
        if stat.S_ISCHR(mode) and st.st_rdev == 0:
            # overlayfs whiteout: a 0/0 character device. Checked before hard links because
            # overlayfs shares one whiteout inode among many names.
            head, _, base = name.rpartition("/")
            wh = tarfile.TarInfo(f"{head}/{WHITEOUT_PREFIX}{base}" if head else WHITEOUT_PREFIX + base)
            wh.mode, wh.mtime = 0o600, mtime
            self._out.write(_header(wh))
            return False
        xattrs = _xattrs(path)
        if xattrs and any(k in xattrs for k in _UNDIFFABLE):
            # Such an entry is only a pointer into a lower layer: the upper dir alone is no diff.
            raise LayerError(f"{name} is an overlayfs redirect/metacopy entry; mount the overlay "
                             "with redirect_dir=off,metacopy=off to diff it")
        info = tarfile.TarInfo(name)
        info.mode = stat.S_IMODE(mode)
        info.uid, info.gid, info.mtime = st.st_uid, st.st_gid, mtime
        # surrogateescape keeps a binary capability blob byte-exact through tarfile's PAX writer
        info.pax_headers = {XATTR_PAX_PREFIX + key: value.decode(_ENCODING, _ERRORS)
                            for key, value in xattrs.items() if kept_xattr(key)}
        if not stat.S_ISDIR(mode) and st.st_nlink > 1:
            first = self._inodes.setdefault((st.st_dev, st.st_ino), name)
            if first != name:
                info.type, info.linkname = tarfile.LNKTYPE, first
                self._out.write(_header(info))
                return False
        if stat.S_ISREG(mode):
            info.size = st.st_size
            self._out.write(_header(info))
            data = self._contents.get(name)
            if data is not None and len(data) == st.st_size:  # no need to open and read it again
                self._out.write(data)
                self._pad(st.st_size)
            else:
                self._copy(path, name, st.st_size)
        elif stat.S_ISDIR(mode):
            info.type = tarfile.DIRTYPE
            self._out.write(_header(info))
            if any(xattrs.get(k) == b"y" for k in OPAQUE_XATTRS):
                # Right after its directory, so an applier sees the marker before the new children.
                opq = tarfile.TarInfo(f"{name}/{OPAQUE_WHITEOUT}")
                opq.mode, opq.uid, opq.gid, opq.mtime = info.mode, info.uid, info.gid, mtime
                self._out.write(_header(opq))
            return True
        elif stat.S_ISLNK(mode):
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
            self._out.write(_header(info))
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            self._out.write(_header(info))
        elif stat.S_ISFIFO(mode):
            info.type = tarfile.FIFOTYPE
            self._out.write(_header(info))
        return False

    def _copy(self, path: str, name: str, size: int) -> None:
        """Append exactly `size` bytes of the file plus block padding; a file that changed size fails."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as e:
            raise LayerError(f"cannot read {name}: {e.strerror}") from None
        try:
            left = size
            view = memoryview(self._buf)
            while left:
                n = os.readv(fd, [view[:min(left, _COPY)]])
                if n == 0:
                    raise LayerError(f"{name} shrank while being archived")
                self._out.write(view[:n])
                left -= n
            if os.read(fd, 1):
                raise LayerError(f"{name} grew while being archived")
        finally:
            os.close(fd)
        self._pad(size)

    def _pad(self, size: int) -> None:
        """Zeros up to the next block after `size` bytes of content."""
        pad = -size % BLOCK
        if pad:
            self._out.write(bytes(pad))


def _listing(dirpath: str, prefix: str) -> list[tuple[str, str]]:
    """(path, tar name) of each entry in a directory, sorted by name."""
    try:
        with os.scandir(dirpath) as it:
            names = sorted(e.name for e in it)
    except OSError as e:
        raise LayerError(f"cannot read directory {dirpath}: {e.strerror}") from None
    return [(os.path.join(dirpath, n), prefix + n) for n in names]


def _header(info: tarfile.TarInfo) -> bytes:
    """The entry's header: the fast ustar encoder when it fits, tarfile's PAX writer otherwise."""
    if not info.pax_headers:
        name = info.name + "/" if info.type == tarfile.DIRTYPE else info.name
        block = tarheader.encode(name, info.mode, info.uid, info.gid, info.size, int(info.mtime),
                                 info.type, info.linkname, info.devmajor, info.devminor)
        if block is not None:
            return block
    return info.tobuf(tarfile.PAX_FORMAT, _ENCODING, _ERRORS)


def _xattrs(path: str) -> dict[str, bytes]:
    """All xattrs of `path` itself (not a symlink's target); none where the filesystem has none."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.ENOENT):
            return {}
        raise
    out = {}
    for key in names:
        try:
            out[key] = os.getxattr(path, key, follow_symlinks=False)
        except OSError as e:
            if e.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EPERM):
                raise
    return out
