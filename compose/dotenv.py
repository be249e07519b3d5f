"""`.env` files as docker compose reads them: comments, `export`, single (literal) and double (escapes,
variables) quotes, unquoted values cut at ` #`, and `KEY` alone inheriting the process environment."""

from __future__ import annotations

import re

from compose.errors import ComposeError, quoted
from compose.hostfiles import read_regular
from compose.interpolate import Interpolator, Lookup

_EXPORT = re.compile(r"export\s+")
_ESCAPE = re.compile(r"\\([abfnrtv$\"\\]|0[0-7]{0,3})")
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", '"': '"', "\\": "\\"}
_SPACE = " \t\v\f\r\x85\xa0"


def read_file(path: str, lookup: Lookup) -> dict[str, str]:
    """The variables of one env file; `lookup` (the environment so far) serves `${VAR}` and bare `KEY` lines."""
    data = read_regular(path, "env file")
    try:
        text = data.decode().removeprefix("\ufeff")
    except UnicodeDecodeError:
        raise ComposeError(f"env file {path}: not UTF-8") from None
    try:
        return parse(text, lookup)
    except ComposeError as e:
        raise ComposeError(f"env file {path}: {e}") from None


def parse(text: str, lookup: Lookup) -> dict[str, str]:
    """Parse dotenv text; ComposeError naming the line on bad syntax."""
    out: dict[str, str] = {}

    def find(name: str) -> str | None:
        found = lookup(name)
        return found if found is not None else out.get(name)

    interpolator = Interpolator(find)
    text = text.replace("\r\n", "\n")
    line = 1
    pos = 0
    while True:
        while pos < len(text) and (text[pos].isspace() or text[pos] == "#"):
            if text[pos] == "#":
                end = text.find("\n", pos)
                pos = len(text) if end < 0 else end
                continue
            line += text[pos] == "\n"
            pos += 1
        if pos >= len(text):
            return out
        export = _EXPORT.match(text, pos)
        if export:
            pos = export.end()
        end = pos
        while end < len(text) and text[end] not in "=:\n":
            end += 1
        key = text[pos:end].strip(_SPACE)
        if not re.fullmatch(r"[\w.\-\[\]]*", key):  # empty is allowed (`="value"`), as compose-go does
            raise ComposeError(f"line {line}: invalid variable name {quoted(text[pos:end].strip())}")
        if end >= len(text) or text[end] == "\n":
            inherited = lookup(key)
            if inherited is not None:
                out[key] = inherited
            pos = end
            continue
        pos = end + 1
        while pos < len(text) and text[pos] in _SPACE:
            pos += 1
        quote = text[pos] if pos < len(text) and text[pos] in "'\"" else ""
        if not quote:
            stop = text.find("\n", pos)
            stop = len(text) if stop < 0 else stop
            raw = text[pos:stop].split(" #", 1)[0].rstrip()
            out[key] = _expand(interpolator, raw, line)
            pos = stop
            continue
        close = _closing_quote(text, pos + 1, quote)
        if close < 0:
            raise ComposeError(f"line {line}: unterminated quoted value {text[pos:].splitlines()[0]}")
        body = text[pos + 1:close]
        line += body.count("\n")
        if quote == "'":
            out[key] = body.replace("\\'", "'")
        else:
            out[key] = _expand(interpolator, _unescape(body), line)
        pos = close + 1
        rest = text.find("\n", pos)  # whatever follows the closing quote on its line is ignored (a comment)
        pos = len(text) if rest < 0 else rest


def _closing_quote(text: str, start: int, quote: str) -> int:
    i = start
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == quote:
            return i
        i += 1
    return -1


def _unescape(body: str) -> str:
    def one(m: re.Match[str]) -> str:
        code = m.group(1)
        if code == "$":
            return "$$"  # stays a literal dollar through interpolation
        if code.startswith("0"):
            return chr(int(code, 8)) if len(code) > 1 else "\0"
        return _ESCAPES[code]

    return _ESCAPE.sub(one, body)


def _expand(interpolator: Interpolator, raw: str, line: int) -> str:
    try:
        return interpolator.text(raw)
    except ComposeError as e:
        raise ComposeError(f"line {line}: {e}") from None
