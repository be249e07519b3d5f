"""Paths resolved inside a root directory as if it were `/` (openat2's RESOLVE_IN_ROOT), the one walk every part of
dockyard uses: each component is opened as an O_PATH descriptor relative to its parent without following it, and
symlinks are resolved here, `..` and absolute targets clamped at the root. The descriptor of the result pins what
was found: used through fd_path(), a later rename or symlink swap cannot redirect a mount or a read of it."""

from __future__ import annotations

import errno
import os
import stat

MAX_LINKS = 255  # as many as securejoin follows before calling it a loop
_OPEN = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


class Escape(Exception):
    """A path would leave the root: a `..` above it, or (`link` set) a symlink with an absolute `target`."""

    def __init__(self, link: str | None = None, target: str | None = None):
        super().__init__(link, target)
        self.link, self.target = link, target


FD_DIR = "/proc/self/fd"


def fd_path(fd: int) -> str:
    """A path naming what `fd` refers to (the kernel follows it to the object, whatever its name is now)."""
    return f"{FD_DIR}/{fd}"


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


_UNOPENED = -1  # a directory of the walk not opened yet (above where it started)


def _close(fd: int | None) -> None:
    if fd is not None and fd != _UNOPENED:
        os.close(fd)


def _open_at(parent: int, name: str, create: str) -> tuple[int | None, bool, bool]:
    """(O_PATH descriptor of `name` in `parent` (a symlink itself, not its target), whether it is known to be a
    directory, whether it was made here); None when missing and not to be created; create="dir" or "file"
    makes it."""
    try:
        # Most components are directories: opened as one, they need no fstat to tell them from a symlink.
        return os.open(name, _OPEN | os.O_DIRECTORY, dir_fd=parent), True, False
    except NotADirectoryError:  # a symlink or a file, or `parent` is not a directory (then this open says so)
        return os.open(name, _OPEN, dir_fd=parent), False, False
    except FileNotFoundError:
        if not create:
            return None, False, False
    made = True
    try:
        if create == "file":
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                             dir_fd=parent))
        else:
            os.mkdir(name, 0o755, dir_fd=parent)
    except FileExistsError:
        made = False  # made meanwhile: looked at below like anything found
    return os.open(name, _OPEN, dir_fd=parent), False, made


def _open_dir(path: str) -> int | None:
    try:
        return os.open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None  # a root not made yet (an upperdir): nothing in it exists either


def _walk(root: str, unsafe: str, follow_final: bool, clamp: bool, max_links: int, create: str,
          made: list[str] | None = None, start: str = "") -> tuple[list[str], int | None, bool]:
    """(components of `unsafe` resolved under `root`, O_PATH descriptor of the result or None if it is missing,
    whether the result is known to be a directory).

    The walk begins at `start`, a directory an earlier walk resolved (its components real, no symlinks), and
    `..` goes back to the directory the walk came from (never the physical parent of a renamed one). What is
    created is listed in `made` (paths relative to the root); a non-directory on the way raises
    NotADirectoryError naming it (relative to the root)."""
    names = _parts(start)
    fds: list[int | None] = [_UNOPENED] * len(names)
    fds.append(_open_dir(os.path.join(root, *names)))
    todo = _parts(unsafe)[::-1]  # a stack: the next component is last
    links = 0
    is_dir = False
    try:
        while todo:
            part = todo.pop()
            if part == "..":
                if names:
                    names.pop()
                    _close(fds.pop())
                elif not clamp:
                    raise Escape()
                continue
            parent = fds[-1]
            if parent == _UNOPENED:  # come back above `start`
                parent = fds[-1] = _open_dir(os.path.join(root, *names))
            fd, is_dir, new = None, False, False
            if parent is not None:
                try:
                    fd, is_dir, new = _open_at(parent, part, ("dir" if todo else create) if create else "")
                except NotADirectoryError:
                    raise NotADirectoryError(errno.ENOTDIR, "not a directory", "/".join(names)) from None
                if new and made is not None:
                    made.append("/".join([*names, part]))
            if fd is not None and not is_dir and (todo or follow_final) and stat.S_ISLNK(os.fstat(fd).st_mode):
                links += 1
                try:
                    if links > max_links:
                        raise OSError(errno.ELOOP, "too many levels of symbolic links", unsafe)
                    target = os.readlink("", dir_fd=fd)
                finally:
                    os.close(fd)
                if target.startswith("/"):
                    if not clamp:
                        raise Escape("/".join([*names, part]), target)
                    names.clear()
                    while len(fds) > 1:
                        _close(fds.pop())
                todo.extend(_parts(target)[::-1])
                continue
            names.append(part)
            fds.append(fd)
        if fds[-1] == _UNOPENED:  # ended above `start`
            fds[-1] = _open_dir(os.path.join(root, *names))
        result = fds.pop()
    finally:
        for fd in fds:
            _close(fd)
    return names, result, bool(names) and is_dir


def resolve_beneath(root: str, unsafe: str, follow_final: bool = True, clamp: bool = True,
                    max_links: int = MAX_LINKS) -> list[str]:
    """The components of `unsafe` resolved inside `root`, symlinks followed as if `root` were `/`.

    clamp=True treats the root as `/` (`..` stops there, absolute links restart there); clamp=False raises
    Escape instead. The final component is followed only with follow_final. ELOOP after max_links links;
    a non-directory on the way raises NotADirectoryError; missing components are kept as written."""
    names, fd, _ = _walk(root, unsafe, follow_final, clamp, max_links, "")
    _close(fd)
    return names


def secure_join(root: str, unsafe: str) -> str:
    """Resolve `unsafe` inside `root`, following symlinks as if `root` were `/`; the result never escapes."""
    return os.path.join(root, *resolve_beneath(root, unsafe))


def open_beneath(root: str, unsafe: str, create: str = "") -> int:
    """An O_PATH descriptor (close-on-exec) of `unsafe` resolved inside `root`; FileNotFoundError if it is missing.

    create="dir" or "file": missing components are made inside the root (directories, the last one as asked)."""
    names, fd, _ = _walk(root, unsafe, True, True, MAX_LINKS, create)
    if fd is None:
        raise FileNotFoundError(errno.ENOENT, "no such file or directory", "/" + "/".join(names))
    return fd


def resolve_dir(root: str, unsafe: str, create: bool = False, made: list[str] | None = None,
                start: str = "") -> str | None:
    """The path, relative to `root`, of the directory `unsafe` names inside it (symlinks followed, clamped at the
    root); None when it is missing. create=True makes what is missing (mode 0755), listing each in `made`.

    A relative `unsafe` may start at `start`, a directory this function returned (saves walking it again).
    NotADirectoryError, its filename relative to the root, when a component is not a directory."""
    if "/" not in unsafe and unsafe not in ("", ".", ".."):
        # One plain name in a resolved directory: a real directory there is the answer, no walk needed.
        path = f"{start}/{unsafe}" if start else unsafe
        try:
            os.close(os.open(os.path.join(root, path), _OPEN | os.O_DIRECTORY))
            return path
        except FileNotFoundError:
            if create:
                try:
                    os.mkdir(os.path.join(root, path), 0o755)
                    if made is not None:
                        made.append(path)
                    return path
                except OSError:
                    pass  # made meanwhile, or `start` went away: the walk sorts it out
        except OSError:
            pass  # a symlink or not a directory: the walk sorts it out
    names, fd, is_dir = _walk(root, unsafe, True, True, MAX_LINKS, "dir" if create else "", made, start)
    if fd is None:
        return None
    try:
        if not is_dir and not stat.S_ISDIR(os.fstat(fd).st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", "/".join(names))
    finally:
        os.close(fd)
    return "/".join(names)


def layered_path(dirs: list[str], relpath: str) -> str | None:
    """Where `relpath` lives in the overlay of `dirs` (top-most first); None if absent or whited out."""
    for d in dirs:
        path = secure_join(d, relpath)
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:  # overlayfs whiteout
            return None
        return path
    return None
