"""Dockerfile word processing as BuildKit's shell lexer does it: quotes, escapes and `$VAR`/`${VAR:-x}` expansion."""

from __future__ import annotations

from collections.abc import Mapping

from dockyard.errors import DockyardError

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_WHITESPACE = " \t\r\n"


class ExpansionError(DockyardError):
    """A variable substitution is malformed, or `${VAR?msg}` found VAR unset."""


class _Words:
    """Accumulates output; splits on unquoted whitespace when asked to."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.current = ""
        self.in_word = False

    def add(self, text: str, split: bool) -> None:
        """Append text; unquoted whitespace (split=True) ends the current word."""
        if not split:
            self.current += text
            self.in_word = True
            return
        for ch in text:
            if ch in _WHITESPACE:
                self.end()
            else:
                self.current += ch
                self.in_word = True

    def result(self, split: bool) -> list[str]:
        """The words (split) or the single text built."""
        if not split:
            return [self.current]
        self.end()
        return self.words

    def end(self) -> None:
        """Close the word being built, if any."""
        if self.in_word:
            self.words.append(self.current)
        self.current, self.in_word = "", False


class _Scanner:
    """One pass over a text; `quotes=False` is heredoc mode (quotes literal, escapes only before `$`)."""

    def __init__(self, text: str, env: Mapping[str, str], escape: str, quotes: bool):
        self.text, self.env, self.escape, self.quotes = text, env, escape, quotes
        self.pos = 0

    def peek(self, offset: int = 0) -> str:
        i = self.pos + offset
        return self.text[i] if i < len(self.text) else ""

    def run(self, stop: str = "", split: bool = False) -> list[str]:
        """Process until the unescaped `stop` character (consumed) or the end; one word unless split."""
        out = _Words()
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if stop and ch == stop:
                self.pos += 1
                return out.result(split)
            if ch == self.escape:
                nxt = self.peek(1)
                if not self.quotes and nxt not in ("$", self.escape):
                    out.add(ch, False)
                    self.pos += 1
                    continue
                # A trailing escape stands for itself.
                out.add(nxt or ch, False)
                self.pos += 2
            elif ch == "'" and self.quotes:
                out.add(self._single_quoted(), False)
            elif ch == '"' and self.quotes:
                out.add(self._double_quoted(), False)
            elif ch == "$":
                out.add(self._dollar(), split)
            else:
                out.add(ch, split)
                self.pos += 1
        if stop:
            raise ExpansionError(f"missing '{stop}' in: {self.text}")
        return out.result(split)

    def _single_quoted(self) -> str:
        end = self.text.find("'", self.pos + 1)
        if end < 0:
            raise ExpansionError(f"unexpected end of statement while looking for matching single-quote: {self.text}")
        value = self.text[self.pos + 1:end]
        self.pos = end + 1
        return value

    def _double_quoted(self) -> str:
        self.pos += 1
        value = ""
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == '"':
                self.pos += 1
                return value
            if ch == self.escape and self.peek(1) in ('"', "$", self.escape):
                value += self.peek(1)
                self.pos += 2
            elif ch == "$":
                value += self._dollar()
            else:
                value += ch
                self.pos += 1
        raise ExpansionError(f"unexpected end of statement while looking for matching double-quote: {self.text}")

    def _name(self) -> str:
        start = self.pos
        if self.peek().isdigit():
            # Positional-style names ($1) are digits only, as in BuildKit.
            while self.peek().isdigit():
                self.pos += 1
            return self.text[start:self.pos]
        while self.pos < len(self.text) and self.text[self.pos] in _NAME_CHARS:
            self.pos += 1
        return self.text[start:self.pos]

    def _dollar(self) -> str:
        """Expand the `$…` at pos; a `$` not followed by a name or `{` is literal."""
        self.pos += 1
        if self.peek() != "{":
            name = self._name()
            return self.env.get(name, "") if name else "$"
        self.pos += 1
        name = self._name()
        if not name:
            raise ExpansionError(f"bad substitution: {self.text}")
        ch = self.peek()
        if not ch:
            raise ExpansionError(f"missing '}}' in: {self.text}")
        if ch == "}":
            self.pos += 1
            return self.env.get(name, "")
        colon = ch == ":"
        if colon:
            self.pos += 1
            ch = self.peek()
        if not ch or ch not in "-+?":
            raise ExpansionError(f"unsupported modifier ({ch or 'end of text'}) in substitution: {self.text}")
        self.pos += 1
        word = self.run(stop="}")[0]
        value = self.env.get(name)
        if value is None or (colon and value == ""):  # unset (or, with the colon, empty)
            if ch == "?":
                raise ExpansionError(f"{name}: {word or 'is not allowed to be unset'}")
            return word if ch == "-" else ""
        return word if ch == "+" else value


def expand_word(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """One word: quotes removed, escapes applied, variables expanded, whitespace kept."""
    return _Scanner(text, env, escape, quotes=True).run()[0]


def expand_words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """Words split on unquoted whitespace (also inside unquoted expansions), as BuildKit's ProcessWords."""
    return _Scanner(text, env, escape, quotes=True).run(split=True)


def expand_heredoc(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """A heredoc body with an unquoted delimiter: `$` forms expanded, quotes literal, escape only before `$`."""
    return _Scanner(text, env, escape, quotes=False).run()[0]


def split_raw(text: str, escape: str = "\\") -> list[tuple[str, int, int]]:
    """Words of a line split on unquoted whitespace, quotes and escapes kept, with their (start, end) offsets."""
    words: list[tuple[str, int, int]] = []
    i, start, quote = 0, -1, ""
    while i < len(text):
        ch = text[i]
        if start < 0 and ch in _WHITESPACE:
            i += 1
            continue
        if start < 0:
            start = i
        if quote:
            if ch == escape and quote == '"':
                i += 1
            elif ch == quote:
                quote = ""
        elif ch == escape:
            i += 1
        elif ch in "'\"":
            quote = ch
        elif ch in _WHITESPACE:
            words.append((text[start:i], start, i))
            start = -1
        i += 1
    if start >= 0:
        words.append((text[start:], start, len(text)))
    return words
