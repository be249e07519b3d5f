"""Go `filepath.Match` patterns (`*`, `?`, `[a-z]`, `[^x]`, `\\` escapes) as Python regexes, and Go's path.Clean."""

from __future__ import annotations

import functools
import posixpath
import re

from dockyard.errors import DockyardError


class BadPattern(DockyardError):
    """A glob pattern is not valid Go filepath.Match syntax."""


def _class_char(pattern: str, i: int, whole: str) -> tuple[str, int]:
    """One (possibly escaped) character of a `[...]` range, as Go's getEsc reads it."""
    if i >= len(pattern) or pattern[i] in "-]":
        raise BadPattern(f"syntax error in pattern: {whole!r}")
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            raise BadPattern(f"syntax error in pattern: {whole!r}")
    return pattern[i], i + 1


def _char_class(pattern: str, i: int) -> tuple[str, int]:
    """Translate the class starting after `[` at index i; returns (regex, index after `]`)."""
    out = "["
    if i < len(pattern) and pattern[i] == "^":
        out += "^"
        i += 1
    ranges = 0
    while True:
        if i < len(pattern) and pattern[i] == "]" and ranges:
            return out + "]", i + 1
        lo, i = _class_char(pattern, i, pattern)
        out += re.escape(lo)
        if i < len(pattern) and pattern[i] == "-":
            hi, i = _class_char(pattern, i + 1, pattern)
            out += "-" + re.escape(hi)
        ranges += 1


@functools.lru_cache(maxsize=4096)
def component_regex(pattern: str) -> re.Pattern[str]:
    """Compile a Go filepath.Match pattern for one path component (`*` and `?` never match `/`)."""
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            cls, i = _char_class(pattern, i + 1)
            out += cls
            continue
        elif c == "\\":
            if i + 1 >= len(pattern):
                raise BadPattern(f"syntax error in pattern: {pattern!r}")
            out += re.escape(pattern[i + 1])
            i += 1
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out + r"\Z", re.DOTALL)


def has_magic(pattern: str) -> bool:
    """Whether a path pattern contains Go glob metacharacters."""
    return any(c in pattern for c in "*?[\\")


def go_clean(path: str) -> str:
    """Go's path.Clean: normalised, `..` folded, no trailing slash, a single leading slash at most."""
    cleaned = posixpath.normpath(path) if path else "."
    # posixpath keeps a POSIX-special leading `//`; Go does not.
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned
