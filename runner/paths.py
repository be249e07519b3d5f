"""Paths: resolving them inside a root directory without ever leaving it, and reading small files."""

from __future__ import annotations

import errno
import os
import stat


class Escape(Exception):
    """A path would leave the root: a `..` above it, or (`link` set) a symlink with an absolute `target`."""

    def __init__(self, link: str | None = None, target: str | None = None):
        super().__init__(link, target)
        self.link, self.target = link, target


def resolve_beneath(root: str, unsafe: str, follow_final: bool = True, clamp: bool = True,
                    max_links: int = 255) -> list[str]:
    """The components of `unsafe` resolved inside `root`, symlinks followed as if `root` were `/`.

    clamp=True treats the root as `/` (`..` stops there, absolute links restart there); clamp=False raises
    Escape instead. The final component is followed only with follow_final. ELOOP after max_links links."""
    parts = [p for p in unsafe.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            elif not clamp:
                raise Escape()
            continue
        candidate = os.path.join(root, *resolved, part)
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            resolved.append(part)
            continue
        if stat.S_ISLNK(st.st_mode) and (parts or follow_final):
            links += 1
            if links > max_links:
                raise OSError(errno.ELOOP, "too many levels of symbolic links", unsafe)
            target = os.readlink(candidate)
            if target.startswith("/"):
                if not clamp:
                    raise Escape("/".join([*resolved, part]), target)
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return resolved


def secure_join(root: str, unsafe: str) -> str:
    """Resolve `unsafe` inside `root`, following symlinks as if `root` were `/`; the result never escapes."""
    return os.path.join(root, *resolve_beneath(root, unsafe))


def read_text(path: str) -> str:
    """A small text file's content; "" when it is missing or unreadable (e.g. no /etc/passwd in an image)."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""
