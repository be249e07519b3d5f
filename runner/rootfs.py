"""Overlay root filesystems: read-only lowerdirs (top-most first) under a fresh upperdir."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from dockyard.inroot import layered_path
from runner import linux

# Mount data must fit one page; keep a margin for upperdir/workdir and options.
_PAGE_BUDGET = 4000


@dataclass
class Overlay:
    """The directories of one overlay mount."""

    upper: str
    work: str
    lower: list[str] = field(default_factory=list)  # top-most first, as overlayfs orders them

    def to_dict(self) -> dict:
        """JSON form (stored in the bundle's config annotations)."""
        return {"lower": self.lower, "upper": self.upper, "work": self.work}

    @classmethod
    def from_dict(cls, d: dict) -> Overlay:
        """Inverse of to_dict."""
        return cls(upper=d["upper"], work=d["work"], lower=list(d.get("lower", [])))


def _escape(path: str) -> str:
    """Overlay option syntax treats ',' ':' and '\\' specially."""
    return path.replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


def mount_overlay(overlay: Overlay, target: str) -> None:
    """Mount `overlay` on `target`; long lowerdir lists go through short symlinks so the data fits a page."""
    for d in (overlay.upper, overlay.work):
        os.makedirs(d, exist_ok=True)
    lowers = [os.path.abspath(p) for p in overlay.lower]
    for p in lowers:
        if not os.path.isdir(p):
            raise FileNotFoundError(errno.ENOENT, "overlay lowerdir is not a directory", p)
    if not lowers:
        # overlayfs needs at least one lowerdir; an empty one gives an image with no layers.
        empty = os.path.join(os.path.dirname(os.path.abspath(overlay.work)), "empty")
        os.makedirs(empty, exist_ok=True)
        lowers = [empty]
    tail = f",upperdir={_escape(os.path.abspath(overlay.upper))},workdir={_escape(os.path.abspath(overlay.work))}"
    data = "lowerdir=" + ":".join(map(_escape, lowers)) + tail
    if len(data) <= _PAGE_BUDGET:
        linux.mount("overlay", target, "overlay", 0, data)
        return
    # Like containers-storage's "l/" links: overlayfs resolves each lowerdir at mount time, so short
    # symlinks to the real directories make the option string small and can go right after the mount.
    import shutil  # the rare long path pays for these imports, not every container start
    import tempfile

    links = tempfile.mkdtemp(prefix="dyo")
    try:
        names = []
        for i, p in enumerate(lowers):
            name = os.path.join(links, format(i, "x"))
            os.symlink(p, name)
            names.append(name)
        data = "lowerdir=" + ":".join(names) + tail
        if len(data) > _PAGE_BUDGET:
            raise OSError(errno.E2BIG, f"too many overlay lowerdirs ({len(lowers)})", target)
        linux.mount("overlay", target, "overlay", 0, data)
    finally:
        shutil.rmtree(links, ignore_errors=True)


def unmount(target: str) -> None:
    """Unmount `target`, lazily if it is busy; not mounted is fine."""
    try:
        linux.umount(target)
    except OSError as e:
        if e.errno == errno.EINVAL:  # not a mount point
            return
        if e.errno != errno.EBUSY:
            raise
        linux.umount(target, linux.MNT_DETACH)


def with_mount_points(overlay: Overlay, mounts: list[dict], init: str, shared: str = "") -> Overlay:
    """Add a lowerdir holding the mount points the layers lack (Docker's "-init" layer).

    Otherwise the runtime would create them in the upperdir and a RUN's layer would carry empty
    /etc/hostname, /proc… stubs and copied-up parent directories. The lowerdir is `init`, or with `shared` the
    directory there that holds just these mount points (made by the first container that needs it, then read-only
    for all: a start spares the ~10 mkdirs).
    """
    dirs = [overlay.upper, *overlay.lower]
    points: list[tuple[str, bool]] = []
    for m in mounts:
        dest = "/" + os.path.normpath(m["destination"]).lstrip("/")
        if layered_path(dirs, dest) is not None:
            continue
        parent = os.path.dirname(dest)
        while parent != "/" and layered_path(dirs, parent) is None:
            parent = os.path.dirname(parent)
        if parent != "/" and not os.path.isdir(layered_path(dirs, parent) or ""):
            continue  # a parent that is a file: the runtime reports the failed mount
        points.append((dest.lstrip("/"), m.get("type") == "bind" and not os.path.isdir(m.get("source", ""))))
    if not points:
        return overlay
    lower = (shared and _shared_mount_points(shared, points)) or _make_mount_points(init, points)
    return Overlay(upper=overlay.upper, work=overlay.work, lower=[lower, *overlay.lower])


@contextmanager
def mount_points_held(shared: str, exclusive: bool = False) -> Iterator[None]:
    """Hold `shared` (its lock file): shared from a create's choice of a directory there until its record is
    saved, exclusive while prune_mount_points looks for the directories no container names."""
    import fcntl

    os.makedirs(shared, exist_ok=True)
    fd = os.open(os.path.join(shared, ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


def prune_mount_points(shared: str, in_use: set[str]) -> int:
    """Remove the directories under `shared` that no lowerdir in `in_use` names, with their claims and any temp
    left by a crash; how many directories.

    The caller holds mount_points_held(shared, exclusive=True) and gathered `in_use` under it, so no create can
    take a directory between the gathering and the removal. A directory goes by a rename first (never seen
    half-deleted), and before its claim (sorted: NAME before NAME.key), so a name is never reclaimed while its old
    directory is still there.
    """
    import shutil

    removed = 0
    for name in sorted(os.listdir(shared)) if os.path.isdir(shared) else ():
        path = os.path.normpath(os.path.join(shared, name))
        if name == ".lock" or path in in_use or path.removesuffix(".key") in in_use:
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            doomed = f"{path}.{os.getpid()}.prune"
            os.rename(path, doomed)
            shutil.rmtree(doomed)
            removed += not name.endswith(".tmp")
        else:
            os.unlink(path)
    return removed


def _make_mount_points(directory: str, points: list[tuple[str, bool]]) -> str:
    """Make each (relative path, is a file) under `directory`, parents included; `directory`."""
    for rel, is_file in points:
        path = os.path.join(directory, rel)
        os.makedirs(os.path.dirname(path) if is_file else path, exist_ok=True)
        if is_file:
            open(path, "ab").close()
    return directory


def _shared_mount_points(shared: str, points: list[tuple[str, bool]]) -> str | None:
    """The directory under `shared` that holds exactly `points`, made if need be; None if another set of mount points
    has its name.

    Named by a crc32 of the list (hashlib's import costs a start more than the mkdirs it saves), whose text is kept
    beside it in NAME.key, claimed (linked in place) before the directory is made: a name is one list's for good, and
    a directory is taken only under its own list. The directory itself appears whole (a rename) or not at all.
    """
    from dockyard.fsutil import atomic_write, key_name

    key = "".join(f"{'file' if is_file else 'dir'} {rel}\n" for rel, is_file in sorted(set(points))).encode()
    path = os.path.join(shared, key_name(key))
    try:
        with open(path + ".key", "rb") as f:
            claimed = f.read()
    except FileNotFoundError:
        os.makedirs(shared, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        atomic_write(tmp, key, durable=False)
        try:
            os.link(tmp, path + ".key")  # fails if another claimed the name first: then its claim counts
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        with open(path + ".key", "rb") as f:
            claimed = f.read()
    if claimed != key:
        return None
    if not os.path.isdir(path):
        import shutil

        tmp = _make_mount_points(f"{path}.{os.getpid()}.tmp", points)
        try:
            os.rename(tmp, path)
        except OSError as e:  # made meanwhile by another container's create: the same content
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return path
