"""Host-side overlay views of a stage's filesystem: writable (COPY, WORKDIR write through it so overlayfs does
the copy-up of existing parents and symlinks resolve as in the image) and merged for reading (COPY --from,
RUN --mount from=)."""

from __future__ import annotations

import contextlib
import os
import shutil
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


def copy_dir_times(src: str, dest: str) -> None:
    """Give each directory under `dest` the times of its namesake under `src`: an upper written again differs from
    the first only there (the parents its copy made or copied up took the time of the writing)."""
    for dirpath, dirnames, _ in os.walk(src):
        for name in dirnames:
            st = os.lstat(os.path.join(dirpath, name))
            rel = os.path.relpath(os.path.join(dirpath, name), src)
            os.utime(os.path.join(dest, rel), ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


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
