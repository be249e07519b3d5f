""".dockerignore rules, matched exactly as moby/patternmatcher does (last match wins, `!` re-includes)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from builder.pathmatch import BadPattern, component_regex, go_clean

# Regex metacharacters that have no meaning in a Go filepath pattern and so stand for themselves.
_LITERAL = set(".+()|{}$")


class IgnoreError(BadPattern):
    """A .dockerignore pattern is malformed."""


@dataclass
class Pattern:
    """One cleaned pattern; `kind` is how it matches: exact, prefix, suffix or regex (as patternmatcher)."""

    text: str
    exclusion: bool
    kind: str = "exact"
    regex: re.Pattern[str] | None = None
    parts: list[str] = field(default_factory=list)

    def matches(self, path: str) -> bool:
        """Whether this pattern matches a slash-separated context-relative path."""
        if self.kind == "exact":
            return path == self.text
        if self.kind == "prefix":
            return path.startswith(self.text[:-2])
        if self.kind == "suffix":
            suffix = self.text[2:]
            return path.endswith(suffix) or (suffix[:1] == "/" and path == suffix[1:])
        return self.regex is not None and bool(self.regex.match(path))

    def could_match_below(self, parts: list[str]) -> bool:
        """Whether some path strictly inside the directory `parts` might match (for walk pruning)."""
        if "**" in self.text:
            return True
        if len(self.parts) <= len(parts):
            return False
        return all(component_regex(p).match(d) for p, d in zip(self.parts, parts, strict=False))


def _compile(p: Pattern) -> None:
    """Classify and translate a pattern the way patternmatcher's compile does."""
    out, kind, i, text = "^", "exact", 0, p.text
    while i < len(text):
        c = text[i]
        if c == "*" and text[i + 1:i + 2] == "*":
            start = i
            i += 2
            if text[i:i + 1] == "/":
                i += 1
            if i >= len(text):
                if kind == "exact":
                    kind = "prefix"
                else:
                    out, kind = out + ".*", "regex"
            else:
                out, kind = out + "(.*/)?", "regex"
            if start == 0:
                kind = "suffix"
            continue
        if c == "*":
            out, kind = out + "[^/]*", "regex"
        elif c == "?":
            out, kind = out + "[^/]", "regex"
        elif c in _LITERAL:
            out += "\\" + c
        elif c == "\\":
            if i + 1 < len(text):
                out, kind = out + re.escape(text[i + 1]), "regex"
                i += 1
            else:
                out += "\\\\"
        elif c in "[]":
            out, kind = out + c, "regex"
        else:
            out += c
        i += 1
    p.kind = kind
    if kind == "regex":
        try:
            p.regex = re.compile(out + r"\Z", re.DOTALL)
        except re.error:
            raise IgnoreError(f"syntax error in pattern: {p.text!r}") from None


class Ignore:
    """A compiled list of .dockerignore patterns."""

    def __init__(self, patterns: list[str]):
        self.patterns: list[Pattern] = []
        for raw in patterns:
            text = raw.strip()
            if not text:
                continue
            text = go_clean(text)
            exclusion = text.startswith("!")
            if exclusion:
                if len(text) == 1:
                    raise IgnoreError('illegal exclusion pattern: "!"')
                text = text[1:]
            # patternmatcher validates every pattern with filepath.Match; so do we, per component.
            try:
                for part in text.split("/"):
                    component_regex(part.replace("**", "*"))
            except BadPattern:
                raise IgnoreError(f"syntax error in .dockerignore pattern: {raw.strip()!r}") from None
            p = Pattern(text, exclusion, parts=text.split("/"))
            _compile(p)
            self.patterns.append(p)

    @classmethod
    def parse(cls, text: str) -> Ignore:
        """Read .dockerignore text: `#` comments, blank lines, `!` exceptions, leading `/` dropped."""
        patterns = []
        for n, line in enumerate(text.splitlines()):
            if n == 0:
                line = line.removeprefix("\ufeff")
            if line.startswith("#"):
                continue
            line = line.strip()
            if not line:
                continue
            invert = line.startswith("!")
            if invert:
                line = line[1:].strip()
            if line:
                line = go_clean(line)
                if len(line) > 1 and line.startswith("/"):
                    line = line[1:]
            patterns.append("!" + line if invert else line)
        return cls(patterns)

    def match(self, path: str, parent: list[bool] | None) -> tuple[bool, list[bool]]:
        """Whether `path` is excluded, given its parent directory's per-pattern results (None at the top).

        Returns the per-pattern results to pass on to the children: patternmatcher's
        MatchesUsingParentResults, which is what BuildKit's context walker uses."""
        matched = False
        info = [False] * len(self.patterns)
        for i, p in enumerate(self.patterns):
            hit = bool(parent and parent[i])
            if not hit:
                if p.exclusion != matched:
                    continue
                hit = p.matches(path)
            info[i] = hit
            if hit:
                matched = not p.exclusion
        return matched, info

    def match_path(self, path: str) -> tuple[bool, list[bool]]:
        """match() for a path from the root down, component by component, as a walk would see it."""
        matched, info, parts = False, None, path.split("/")
        for n in range(len(parts)):
            matched, info = self.match("/".join(parts[:n + 1]), info)
        return matched, info or []

    def excluded(self, path: str) -> bool:
        """Whether a context-relative path (slash-separated) is excluded."""
        path = go_clean(path).lstrip("/")
        return path not in (".", "") and self.match_path(path)[0]

    def may_include_below(self, directory: str) -> bool:
        """Whether an exception could re-include something inside an excluded directory (so walk into it)."""
        parts = directory.split("/")
        return any(p.exclusion and p.could_match_below(parts) for p in self.patterns)
