"""Doublestar patterns, the selectors Harbor's policies use (immutability, retention, replication filters).

`*` and `?` stop at "/", `**` crosses it (`**/` also matches no directory at all), `{a,b}` alternatives (which may
hold wildcards and nest), `[abc]`/`[!abc]` classes, `\\x` a literal x.  As github.com/bmatcuk/doublestar, a brace
or bracket left open is a bad pattern, refused when a rule is saved rather than matched literally."""

from __future__ import annotations

import functools
import re

PATTERN_MAX = 255


@functools.lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The regex matching what `pattern` matches as a whole; ValueError naming it if it is bad."""
    if not pattern or len(pattern) > PATTERN_MAX:
        raise ValueError(f"pattern must be 1 to {PATTERN_MAX} characters")
    return re.compile(_translate(pattern, pattern) + r"\Z", re.S)


def check(pattern: str) -> str:
    """`pattern` if it is a usable doublestar pattern; ValueError naming it otherwise."""
    compile_pattern(pattern)
    return pattern


def match(pattern: str, text: str) -> bool:
    """Whether `text` matches the doublestar `pattern` as a whole."""
    return compile_pattern(pattern).match(text) is not None


def _translate(p: str, whole: str) -> str:
    out, i = [], 0
    while i < len(p):
        c = p[i]
        if p.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if p.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\" and i + 1 < len(p):
            i += 1
            out.append(re.escape(p[i]))
        elif c == "{":
            end = _closing(p, i)
            if end < 0:
                raise ValueError(f"unbalanced braces in pattern {whole[:100]!r}")
            out.append("(?:" + "|".join(_translate(a, whole) for a in _alternatives(p[i + 1:end])) + ")")
            i = end
        elif c == "[":
            end = p.find("]", i + 2)
            if end < 0:
                raise ValueError(f"unclosed [ in pattern {whole[:100]!r}")
            body = p[i + 1:end]
            negate = body[:1] in ("!", "^")
            body = body[1:] if negate else body
            out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\").replace("[", "\\[") + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _closing(p: str, start: int) -> int:
    """The index of the brace closing the one at `start`, or -1."""
    depth = 0
    for j in range(start, len(p)):
        if p[j] == "{":
            depth += 1
        elif p[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return -1


def _alternatives(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for j, ch in enumerate(text):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:j])
            start = j + 1
    parts.append(text[start:])
    return parts
