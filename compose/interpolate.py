"""Variable interpolation as docker compose does it: `$VAR`, `${VAR:-default}`, `${VAR:?error}`, `$$`, nested."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

from compose.errors import ComposeError, quoted

Lookup = Callable[[str], "str | None"]

_NAME = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
_OPERATORS = (":?", "?", ":-", "-", ":+", "+")


class Interpolator:
    """Substitutes variables from one lookup, warning once per variable that is unset and has no default."""

    def __init__(self, lookup: Lookup, warned: set[str] | None = None) -> None:
        self.lookup = lookup
        self.warned = warned if warned is not None else set()

    def text(self, template: str) -> str:
        """`template` with its variables substituted; ComposeError for a required unset variable or bad syntax."""
        if "$" not in template:
            return template
        out: list[str] = []
        i = 0
        while i < len(template):
            dollar = template.find("$", i)
            if dollar < 0:
                out.append(template[i:])
                break
            out.append(template[i:dollar])
            i = dollar + 1
            if template.startswith("$", i):
                out.append("$")
                i += 1
            elif template.startswith("{", i):
                end = _closing_brace(template, i)
                if end < 0:
                    raise ComposeError(f"invalid interpolation format {quoted(template)}: missing closing brace")
                out.append(self._braced(template[i + 1:end], template))
                i = end + 1
            else:
                name = _NAME.match(template, i)
                if name is None:
                    out.append("$")  # `$5`, `a $ b`: no variable there, kept as written (compose-go's pattern)
                else:
                    out.append(self._value(name.group()))
                    i = name.end()
        return "".join(out)

    def _braced(self, body: str, template: str) -> str:
        name = _NAME.match(body)
        if name is None:
            raise ComposeError(f"invalid interpolation format {quoted(template)}")
        var, rest = name.group(), body[name.end():]
        if not rest:
            return self._value(var)
        operator = next((op for op in _OPERATORS if rest.startswith(op)), None)
        if operator is None:
            raise ComposeError(f"invalid interpolation format {quoted(template)}")
        argument = rest[len(operator):]
        value = self.lookup(var)
        present = value is not None if operator in ("?", "-", "+") else bool(value)
        if operator.endswith("?"):
            if not present:
                reason = self.text(argument)
                tail = f": {reason}" if reason else ""
                raise ComposeError(f"required variable {var} is missing a value{tail}")
            return value or ""
        if operator.endswith("-"):
            return value if present and value is not None else self.text(argument)
        return self.text(argument) if present else (value or "")

    def _value(self, name: str) -> str:
        value = self.lookup(name)
        if value is None:
            if name not in self.warned:
                self.warned.add(name)
                print(f'WARN: The "{name}" variable is not set. Defaulting to a blank string.', file=sys.stderr)
            return ""
        return value

    def tree(self, value: Any, where: Callable[[tuple[str | int, ...]], str], path: tuple[str | int, ...] = ()) -> Any:
        """Every string value (not key) in a YAML tree substituted; errors name the key path via `where`."""
        if isinstance(value, str):
            try:
                return self.text(value)
            except ComposeError as e:
                raise ComposeError(f"{where(path)}: {e}") from None
        if isinstance(value, dict):
            return {k: self.tree(v, where, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.tree(v, where, (*path, i)) for i, v in enumerate(value)]
        return value


def _closing_brace(text: str, start: int) -> int:
    """The index of the `}` closing the `{` at `start`, nested `${...}` counted; -1 when there is none."""
    depth = 0
    i = start
    while i < len(text):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1
