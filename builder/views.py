"""Host-side overlay views of a stage's filesystem: writable (COPY, WORKDIR write through it so overlayfs does
the copy-up of existing parents and symlinks resolve as in the image) and merged for reading (COPY --from,
RUN --mount from=)."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator

from runner import rootfs


@contextlib.contextmanager
def in_memory(path: str, size: int) -> Iterator[bool]:
    """Mount a private tmpfs of `size` bytes on the empty directory `path` for the block; False (nothing mounted)
    where none can be mounted (not root, say): the caller then works on disk, as it would without it."""
    from runner import linux

    try:
        linux.mount("tmpfs", path, "tmpfs", 0, f"size={size},mode=0700")
    except OSError:
        yield False
        return
    try:
        yield True
    finally:
        rootfs.unmount(path)


def copy_upper(src: str, dest: str) -> None:
    """Copy an upper dir written in memory into the empty directory `dest` with everything its diff reads (types,
    owners, modes, times, xattrs, hard links): a new layer diffed on a tmpfs is kept on disk without reading its
    sources again."""
    from builder.copy import NEW_FILE, copy_data

    links: dict[tuple[int, int], str] = {}  # (dev, ino) -> the first copy of a hard-linked file
    dirs: list[tuple[str, os.stat_result]] = []
    stack = [(src, dest)]
    while stack:
        sdir, ddir = stack.pop()
        with os.scandir(sdir) as it:
            entries = [(e.path, os.path.join(ddir, e.name), e.stat(follow_symlinks=False)) for e in it]
        for spath, dpath, st in entries:
            mode = st.st_mode
            if stat.S_ISDIR(mode):
                os.mkdir(dpath, 0o700)
                _metadata(spath, dpath, st, times=False)
                dirs.append((dpath, st))  # its times are set once its children are in
                stack.append((spath, dpath))
            elif stat.S_ISREG(mode):
                first = links.get((st.st_dev, st.st_ino)) if st.st_nlink > 1 else None
                if first is not None:
                    os.link(first, dpath)
                    continue
                links[(st.st_dev, st.st_ino)] = dpath
                fin = os.open(spath, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                try:
                    fout = os.open(dpath, NEW_FILE, 0o600)
                    try:
                        copy_data(fin, fout)
                    finally:
                        os.close(fout)
                finally:
                    os.close(fin)
                _metadata(spath, dpath, st)
            elif stat.S_ISLNK(mode):
                os.symlink(os.readlink(spath), dpath)
                _metadata(spath, dpath, st)
            elif not stat.S_ISSOCK(mode):  # devices (whiteouts among them) and fifos; a diff skips sockets
                os.mknod(dpath, mode, st.st_rdev)
                _metadata(spath, dpath, st)
    for dpath, st in reversed(dirs):  # listed after their parents: reversed, a parent's times are set last
        os.utime(dpath, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
    top = os.stat(src)
    os.chmod(dest, stat.S_IMODE(top.st_mode))


def _metadata(spath: str, dpath: str, st: os.stat_result, times: bool = True) -> None:
    """Give `dpath` the owner, mode, xattrs and (unless not yet) times `spath` has; a symlink's own."""
    os.chown(dpath, st.st_uid, st.st_gid, follow_symlinks=False)
    link = stat.S_ISLNK(st.st_mode)
    if not link:
        os.chmod(dpath, stat.S_IMODE(st.st_mode))  # after chown, which clears set-id bits
    for key in os.listxattr(spath, follow_symlinks=False):
        os.setxattr(dpath, key, os.getxattr(spath, key, follow_symlinks=False), follow_symlinks=False)
    if times:
        os.utime(dpath, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def new_upper(parent: str) -> str:
    """A fresh, empty upper directory; its mode is the mode of `/` in the container, hence 0755."""
    path = tempfile.mkdtemp(prefix="upper-", dir=parent)
    os.chmod(path, 0o755)
    return path


@contextlib.contextmanager
def writable(lowerdirs: list[str], upper: str) -> Iterator[str]:
    """Mount lowerdirs (top-most first) under `upper` on a temp dir; yields the merged root."""
    scratch = tempfile.mkdtemp(prefix="view-", dir=os.path.dirname(upper))
    target = os.path.join(scratch, "merged")
    os.mkdir(target)
    try:
        rootfs.mount_overlay(rootfs.Overlay(upper=upper, work=os.path.join(scratch, "work"), lower=lowerdirs),
                             target)
        try:
            yield target
        finally:
            rootfs.unmount(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@contextlib.contextmanager
def merged(lowerdirs: list[str], scratch_parent: str) -> Iterator[str]:
    """The merged view of lowerdirs for reading; a single layer is used as it is, none gives an empty dir."""
    scratch = tempfile.mkdtemp(prefix="view-", dir=scratch_parent)
    try:
        if len(lowerdirs) <= 1:
            os.chmod(scratch, 0o755)
            yield lowerdirs[0] if lowerdirs else scratch
            return
        # A throw-away upper: nothing writes here, and mount_overlay already handles long lowerdir lists.
        with writable(lowerdirs, new_upper(scratch)) as root:
            yield root
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
