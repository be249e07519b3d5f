"""Reading one compose file: YAML to plain values, each node's line kept, `!reset`/`!override` noted, bombs refused."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

from compose.errors import ComposeError, quoted
from compose.hostfiles import MAX_BYTES

MAX_DEPTH = 100
# Without aliases a YAML node takes at least two bytes of text; a file whose aliases multiply its nodes far past that
# is an alias bomb ("billion laughs"), refused before it eats the memory.
_MIN_NODE_BUDGET = 200_000

Path = tuple[str | int, ...]

_NULL = re.compile(r"~|null|Null|NULL|")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT = re.compile(r"[-+]?(0|[1-9][0-9_]*)|0o?[0-7]+|0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9]*)?)([eE][-+]?[0-9]+)?|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)")


@dataclass
class YamlFile:
    """One compose file read: its data, the line of every key path, and the paths its `!reset`/`!override` tag."""

    name: str  # as the user named it (errors show it)
    data: dict[str, Any]
    lines: dict[Path, int] = field(default_factory=dict)
    resets: list[Path] = field(default_factory=list)
    overrides: list[Path] = field(default_factory=list)

    def where(self, path: Path, shown: Path | None = None) -> str:
        """`file:line: key.path` for an error about `path` (the nearest known line above it when it has none);
        `shown` is the key path printed, when it differs from the one whose line is meant."""
        probe = path
        while probe and probe not in self.lines:
            probe = probe[:-1]
        line = self.lines.get(probe)
        text = dotted(path if shown is None else shown)
        place = f"{self.name}:{line}" if line else self.name
        return f"{place}: {text}" if text else place


def dotted(path: Path) -> str:
    """A key path as errors write it: services.web.ports[1]."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def read(text: bytes, name: str) -> YamlFile:
    """Parse one compose file's bytes; ComposeError (one line, with the file's line) unless it is a mapping."""
    if len(text) > MAX_BYTES:
        raise ComposeError(f"{name}: file is larger than {MAX_BYTES // (1024 * 1024)} MiB")
    import yaml

    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        node = yaml.compose(text, Loader=loader_class)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = f":{mark.line + 1}" if mark else ""
        raise ComposeError(f"{name}{line}: invalid YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise ComposeError(f"{name}: invalid YAML: {str(e).splitlines()[0]}") from None
    except RecursionError:
        raise ComposeError(f"{name}: YAML nested too deeply") from None
    out = YamlFile(name, {})
    if node is None:
        return out
    if not isinstance(node, yaml.MappingNode):
        raise ComposeError(f"{name}:{node.start_mark.line + 1}: top-level object must be a mapping")
    reader = _Reader(out, max(_MIN_NODE_BUDGET, len(text) // 2))
    out.data = reader.value(node, (), 0)
    return out


class _Reader:
    """Turns a composed node graph into plain values, counting every node visited (aliases included)."""

    def __init__(self, out: YamlFile, budget: int) -> None:
        import yaml

        self.out = out
        self.budget = budget
        self.yaml = yaml

    def value(self, node: Any, path: Path, depth: int) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise ComposeError(f"{self.out.name}: document expands to too many nodes (YAML alias bomb?)")
        if depth > MAX_DEPTH:
            raise ComposeError(f"{self.out.where(path[:3])}: nested more than {MAX_DEPTH} levels (a recursive alias?)")
        self.out.lines.setdefault(path, node.start_mark.line + 1)
        tag = node.tag
        if tag == "!override":
            self.out.overrides.append(path)
        elif tag == "!reset":
            self.out.resets.append(path)
        elif tag.startswith("!") and not tag.startswith("!!"):
            raise ComposeError(f"{self.out.where(path)}: unknown tag {tag}")
        if isinstance(node, self.yaml.MappingNode):
            return self.mapping(node, path, depth)
        if isinstance(node, self.yaml.SequenceNode):
            return [self.value(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        return _scalar(node)

    def mapping(self, node: Any, path: Path, depth: int) -> dict[str, Any]:
        yaml = self.yaml
        result: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise ComposeError(f"{self.out.where(path)}: mapping keys must be strings")
            if key_node.tag == "tag:yaml.org,2002:merge" or (key_node.value == "<<" and key_node.style is None):
                # `<<: *base` or `<<: [*a, *b]`: keys written here win, then earlier merged mappings over later ones
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for source in sources:
                    if not isinstance(source, yaml.MappingNode):
                        raise ComposeError(f"{self.out.where(path)}: `<<` must merge mappings")
                    for k, v in self.mapping(source, path, depth + 1).items():
                        merged.setdefault(k, v)
                continue
            key = _key_text(key_node)
            if key in result:
                raise ComposeError(f"{self.out.name}:{key_node.start_mark.line + 1}: {_join(path, key)}: "
                                   f"mapping key {quoted(key)} already defined")
            child = (*path, key)
            self.out.lines[child] = key_node.start_mark.line + 1
            value = self.value(value_node, child, depth + 1)
            if value_node.tag == "!reset":
                continue  # the key is dropped here; the merge removes it from what came before
            result[key] = value
        for k, v in merged.items():
            result.setdefault(k, v)
        return result


def _join(path: Path, key: str) -> str:
    return dotted((*path, key))


def _key_text(node: Any) -> str:
    value = _scalar(node)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _scalar(node: Any) -> Any:
    """A scalar as YAML 1.2's core schema reads it (`yes`/`on` stay strings, as in docker compose)."""
    text = node.value
    if node.style:
        return text  # quoted, or a block scalar
    value = _core_value(text)
    if not isinstance(value, str) and node.tag == "tag:yaml.org,2002:str" and _implicit_tag(text) != node.tag:
        return text  # an explicit !!str
    return value


def _core_value(text: str) -> Any:
    if _NULL.fullmatch(text):
        return None
    if text in _BOOL:
        return _BOOL[text]
    if _INT.fullmatch(text):
        if len(text) > 1 and text[0] == "0" and text[1] in "01234567":
            return int(text, 8)  # `mode: 0440`, octal as docker compose's YAML reads it
        return int(text.replace("_", ""), 0) if text[:2] in ("0o", "0x") else int(text.replace("_", ""))
    if _FLOAT.fullmatch(text):
        lowered = text.lower()
        if lowered.endswith("inf"):
            return float("-inf") if lowered.startswith("-") else float("inf")
        return float("nan") if lowered.endswith("nan") else float(text.replace("_", ""))
    return text


def _implicit_tag(text: str) -> str:
    """The tag PyYAML's resolver gives a plain scalar (to tell an explicit `!!str` from an implicit one)."""
    import yaml

    return str(_resolver().resolve(yaml.ScalarNode, text, (True, False)))


@functools.cache
def _resolver() -> Any:
    import yaml

    return yaml.resolver.Resolver()
