"""Sizes: as docker reads them (its RAMInBytes: `512m`, `1.5g`, `100k`, `1024`, binary multiples), and as du and
docker count them on disk."""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import Iterable

_SIZE = re.compile(r"(\d+(?:\.\d+)?) ?([kKmMgGtTpP]?)[iI]?[bB]?")
_SCALE = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def ram_in_bytes(text: str) -> int:
    """The size `text` names, in bytes; ValueError when it names none."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"invalid size {text!r}")
    return int(float(match.group(1)) * _SCALE[match.group(2).lower()])


def disk_usage(paths: Iterable[str], seen: set[tuple[int, int]] | None = None) -> int:
    """Bytes under `paths` as `du -sb` counts them: the apparent size of every file, directory and symlink, each
    inode once (also across calls sharing `seen`, so content hard-linked or counted elsewhere is not counted twice)."""
    seen = set() if seen is None else seen
    return sum(_walk(p, seen, dirs=True) for p in paths)


def content_size(path: str) -> int:
    """Bytes of a tree's content as docker counts an unpacked layer: every non-directory's size, each inode once."""
    return _walk(path, set(), dirs=False)


def _walk(top: str, seen: set[tuple[int, int]], dirs: bool) -> int:
    total = 0
    todo = [top]  # a stack, not recursion: a layer may nest directories deeper than Python's stack
    while todo:
        path = todo.pop()
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            continue
        seen.add(key)
        if not stat.S_ISDIR(st.st_mode):
            total += st.st_size
            continue
        total += st.st_size if dirs else 0
        with contextlib.suppress(FileNotFoundError, NotADirectoryError), os.scandir(path) as entries:
            todo.extend(entry.path for entry in entries)
    return total
