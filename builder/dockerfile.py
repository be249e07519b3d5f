"""Dockerfile parsing into stages and instruction records, following BuildKit's parser.

Logical lines are assembled the way BuildKit does (parser directives, escape-char continuations with
comment and blank lines skipped inside them, heredoc bodies after the line); nothing is expanded here:
variables depend on ARG/ENV state at build time (see builder.resolve)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from builder.expand import split_raw
from builder.mounts import MountError, parse_mount
from dockyard.changes import json_form
from dockyard.errors import DockyardError

INSTRUCTIONS = ("ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
                "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR")
HEREDOC_INSTRUCTIONS = ("ADD", "COPY", "RUN")
# Flag name -> kind: "str" (one value), "bool", or "list" (repeatable).
FLAGS: dict[str, dict[str, str]] = {
    "FROM": {"platform": "str"},
    "RUN": {"mount": "list", "network": "str", "security": "str"},
    "COPY": {"from": "str", "chown": "str", "chmod": "str", "link": "bool", "parents": "bool", "exclude": "list"},
    "ADD": {"chown": "str", "chmod": "str", "link": "bool", "checksum": "str", "keep-git-dir": "bool",
            "exclude": "list"},
    "HEALTHCHECK": {"interval": "str", "timeout": "str", "start-period": "str", "start-interval": "str",
                    "retries": "str"},
}
NETWORK_MODES = ("default", "none", "host")
SECURITY_MODES = ("sandbox", "insecure")
_DIRECTIVE_RE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_HEREDOC_RE = re.compile(r"^(\d*)<<(-?)([^<]*)$")
_STAGE_NAME_RE = re.compile(r"^[a-z][a-z0-9-_.]*$")
FlagValue = str | bool | list[str]


class DockerfileError(DockyardError):
    """A Dockerfile is malformed; the message starts with `file:line:`."""


@dataclass(frozen=True)
class Heredoc:
    """An inline document: `body` as written; `content` with leading tabs stripped for `<<-`."""

    name: str
    body: str
    chomp: bool
    expand: bool
    fd: int | None = None

    @property
    def content(self) -> str:
        """The document text after `<<-` tab stripping."""
        return re.sub(r"(?m)^\t+", "", self.body) if self.chomp else self.body


@dataclass(frozen=True)
class KeyValue:
    """One `key=value` of ENV/LABEL, or `name[=default]` of ARG, both still unexpanded (quotes kept)."""

    key: str
    value: str | None


@dataclass
class Instruction:
    """One instruction. `value` is everything after the keyword; `args` the part after the flags; flags are
    raw (unexpanded) strings, bools, or lists for repeatable flags."""

    name: str
    value: str
    args: str
    flags: dict[str, FlagValue]
    lineno: int
    end_lineno: int
    original: str
    filename: str = "Dockerfile"
    heredocs: list[Heredoc] = field(default_factory=list)
    pairs: list[KeyValue] = field(default_factory=list)
    trigger: Instruction | None = None

    @property
    def exec_form(self) -> list[str] | None:
        """The JSON (exec) form of the arguments, or None for shell form."""
        return json_form(self.args)

    @property
    def where(self) -> str:
        """`Dockerfile:12`, the prefix of every message about this instruction."""
        return f"{self.filename}:{self.lineno}"

    def error(self, message: str) -> DockerfileError:
        """A DockerfileError naming this instruction's line."""
        return DockerfileError(f"{self.where}: {message}")

    def flag(self, name: str) -> str | None:
        """A one-value flag's raw text; None when absent."""
        value = self.flags.get(name)
        return value if isinstance(value, str) else None

    def flag_list(self, name: str) -> list[str]:
        """A repeatable flag's raw values; [] when absent."""
        value = self.flags.get(name)
        return value if isinstance(value, list) else []

    def flag_on(self, name: str) -> bool:
        """Whether a boolean flag is given and true."""
        return self.flags.get(name) is True


@dataclass
class Stage:
    """A build stage: `FROM [--platform=…] base [AS name]` and its instructions (base/platform unexpanded)."""

    index: int
    name: str | None
    base: str
    platform: str | None
    from_instruction: Instruction
    instructions: list[Instruction] = field(default_factory=list)

    @property
    def ref(self) -> str:
        """How messages name the stage: its name, else its index."""
        return self.name or str(self.index)


@dataclass
class Dockerfile:
    """A parsed Dockerfile: the ARGs before the first FROM, the stages, and the parser directives."""

    stages: list[Stage]
    global_args: list[Instruction]
    escape: str = "\\"
    syntax: str | None = None
    filename: str = "Dockerfile"

    def stage(self, ref: str) -> Stage | None:
        """A stage by name (case-insensitive) or by index."""
        if ref.isdigit():
            i = int(ref)
            return self.stages[i] if i < len(self.stages) else None
        return next((s for s in self.stages if s.name == ref.lower()), None)


def heredoc_word(word: str) -> Heredoc | None:
    """The heredoc a `[fd]<<[-]NAME` word introduces (empty body), or None; quoting NAME disables expansion."""
    m = _HEREDOC_RE.match(word)
    if not m:
        return None
    rest = m.group(3)
    name = unquote(rest)
    if not name or len(split_raw(rest, "\\")) != 1:
        return None
    return Heredoc(name, "", m.group(2) == "-", expand=name == rest, fd=int(m.group(1)) if m.group(1) else None)


def unquote(word: str) -> str:
    """Remove quotes and backslash escapes from a flag word, as BuildKit's extractBuilderFlags does."""
    out, quote, i = "", "", 0
    while i < len(word):
        ch = word[i]
        if ch == "\\":
            if i + 1 < len(word):
                out += word[i + 1]
            i += 2
            continue
        if quote and ch == quote:
            quote = ""
        elif not quote and ch in "'\"":
            quote = ch
        else:
            out += ch
        i += 1
    return out


class _Parser:
    """Line scanner and instruction builder for one Dockerfile text."""

    def __init__(self, text: str, filename: str):
        self.filename = filename
        self.lines = text.split("\n")
        if self.lines and self.lines[-1] == "":
            self.lines.pop()
        self.escape = "\\"
        self.syntax: str | None = None
        self.directives_done = False
        self.seen_directives: set[str] = set()
        self.continuation = re.compile(r"\\[ \t]*$")
        self.pos = 0

    def fail(self, lineno: int, message: str) -> DockerfileError:
        return DockerfileError(f"{self.filename}:{lineno}: {message}")

    def _directive(self, line: str, lineno: int) -> None:
        """Recognise `# escape=`/`# syntax=` until the first line that is not a directive."""
        if self.directives_done:
            return
        m = _DIRECTIVE_RE.match(line)
        key = m.group(1).lower() if m else ""
        if m is None or key not in ("escape", "syntax", "check"):
            self.directives_done = True
            return
        if key in self.seen_directives:
            raise self.fail(lineno, f"only one {key} parser directive can be used")
        self.seen_directives.add(key)
        if key == "escape":
            if m.group(2) not in ("\\", "`"):
                raise self.fail(lineno, f"invalid escape token {m.group(2)!r} does not match ^[\\\\`]$")
            self.escape = m.group(2)
            self.continuation = re.compile(re.escape(self.escape) + r"[ \t]*$")
        elif key == "syntax":
            self.syntax = m.group(2)

    def _trim_continuation(self, line: str) -> tuple[str, bool]:
        """Strip a trailing escape char; returns (text, ends_here)."""
        if self.continuation.search(line):
            return self.continuation.sub("", line), False
        return line, True

    def logical_lines(self) -> Iterator[tuple[int, str]]:
        """Yield (start line, logical line text); `self.pos` is the next unread line, which
        read_heredocs advances past heredoc bodies before the next logical line is read."""
        i = 0
        while i < len(self.lines):
            line = self.lines[i].rstrip("\r")
            if i == 0:
                line = line.removeprefix("\ufeff")
            i += 1
            start = i
            token = line.lstrip()
            self._directive(token, i)
            if token.startswith("#"):
                continue
            text, ends = self._trim_continuation(token)
            if ends and not text.strip():
                continue
            while not ends and i < len(self.lines):
                cont = self.lines[i].rstrip("\r")
                i += 1
                # Docker skips comment lines and empty lines inside a continuation.
                if cont.lstrip().startswith("#") or not cont.strip():
                    continue
                part, ends = self._trim_continuation(cont)
                text += part
            self.pos = i
            yield start, text
            i = self.pos

    def read_heredocs(self, ins: Instruction) -> None:
        """Detect `<<NAME` words in a RUN/COPY/ADD and consume their bodies from the following lines."""
        for word, _, _ in split_raw(ins.args, "\\"):
            doc = heredoc_word(word)
            if doc is None:
                continue
            body, terminated = [], False
            while self.pos < len(self.lines):
                line = self.lines[self.pos].rstrip("\r")
                self.pos += 1
                if (line.lstrip("\t") if doc.chomp else line) == doc.name:
                    terminated = True
                    break
                body.append(line + "\n")
            if not terminated:
                raise ins.error(f"unterminated heredoc {doc.name!r} (no line {doc.name!r} before the end of the file)")
            ins.heredocs.append(replace(doc, body="".join(body)))

    def instruction(self, start: int, text: str, nested: bool = False) -> Instruction:
        """Build and validate one instruction from its logical line."""
        keyword, *rest = re.split(r"\s+", text.strip(), maxsplit=1)
        keyword, value = keyword.upper(), (rest[0] if rest else "")
        if keyword not in INSTRUCTIONS:
            import difflib  # only for the error's suggestion

            close = difflib.get_close_matches(keyword, INSTRUCTIONS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise self.fail(start, f"unknown instruction: {text.split()[0]}{hint}")
        flags, args = self._flags(keyword, value, start)
        ins = Instruction(keyword, value, args, flags, start, start, "", self.filename)
        if keyword in HEREDOC_INSTRUCTIONS and "<<" in args and ins.exec_form is None and not nested:
            self.read_heredocs(ins)
        ins.end_lineno = self.pos if not nested else start
        self._validate(ins)
        return ins

    def _flags(self, keyword: str, value: str, lineno: int) -> tuple[dict[str, FlagValue], str]:
        """Split leading `--name[=value]` words off; validate them against the instruction's flags."""
        known = FLAGS.get(keyword, {})
        flags: dict[str, FlagValue] = {}
        rest_at = 0
        for word, _, end in split_raw(value, "\\"):
            if not word.startswith("--"):
                break
            rest_at = end
            if word == "--":
                break
            name, eq, raw = unquote(word[2:]).partition("=")
            kind = known.get(name)
            if kind is None:
                choices = f" (allowed: {', '.join('--' + k for k in known)})" if known else ""
                raise self.fail(lineno, f"unknown flag: --{name} for {keyword}{choices}")
            if kind == "bool":
                if eq and raw.lower() not in ("true", "false"):
                    raise self.fail(lineno, f"expecting boolean value for flag --{name}, not: {raw!r}")
                flags[name] = not eq or raw.lower() == "true"
            elif not eq:
                raise self.fail(lineno, f"missing a value on flag: --{name}")
            elif kind == "list":
                listed = flags.get(name)
                flags[name] = [*(listed if isinstance(listed, list) else []), raw]
            elif name in flags:
                raise self.fail(lineno, f"duplicate flag specified: --{name}")
            else:
                flags[name] = raw
        return flags, value[rest_at:].strip()

    def _validate(self, ins: Instruction) -> None:
        """Per-instruction syntax checks that need no variable values."""
        name, args = ins.name, ins.args
        if not args and name != "HEALTHCHECK":
            raise ins.error(f"{name} requires at least one argument")
        words = [w for w, _, _ in split_raw(args, self.escape)]
        if name == "FROM":
            if len(words) not in (1, 3) or (len(words) == 3 and words[1].lower() != "as"):
                raise ins.error("FROM requires either one or three arguments: FROM <image> [AS <name>]")
            if len(words) == 3 and not _STAGE_NAME_RE.match(words[2].lower()):
                raise ins.error(f"invalid name for build stage: {words[2]!r}, name can't start with a number "
                                "or contain symbols")
        elif name in ("ENV", "LABEL"):
            ins.pairs = self._pairs(ins, words)
        elif name == "ARG":
            for w in words:
                key, eq, default = w.partition("=")
                if not key:
                    raise ins.error(f"ARG names can not be blank: {w!r}")
                ins.pairs.append(KeyValue(key, default if eq else None))
        elif name in ("COPY", "ADD"):
            sources = ins.exec_form if ins.exec_form is not None else words
            if len(sources) < 2:
                raise ins.error(f"{name} requires at least two arguments, but only one was provided. "
                                "Destination could not be determined")
            if ins.exec_form is None and heredoc_word(sources[-1]):
                raise ins.error(f"{name} cannot accept a heredoc as a destination")
        elif name == "RUN":
            for spec in ins.flag_list("mount"):
                if "$" not in spec:
                    try:
                        parse_mount(spec)
                    except MountError as e:
                        raise ins.error(str(e)) from None
            for flag, allowed in (("network", NETWORK_MODES), ("security", SECURITY_MODES)):
                value = ins.flags.get(flag)
                if value is not None and value not in allowed:
                    raise ins.error(f"invalid --{flag}={value}: expected one of {', '.join(allowed)}")
        elif name == "SHELL":
            if not ins.exec_form:
                raise ins.error("SHELL requires the arguments to be in JSON form")
        elif name == "HEALTHCHECK":
            kind = words[0].upper() if words else ""
            if kind not in ("CMD", "NONE"):
                raise ins.error("HEALTHCHECK requires CMD followed by a command, or NONE")
            if kind == "NONE" and (len(words) > 1 or ins.flags):
                raise ins.error("HEALTHCHECK NONE takes no arguments or options")
            if kind == "CMD" and len(words) < 2:
                raise ins.error("HEALTHCHECK CMD requires a command")
        elif name == "ONBUILD":
            trigger = self.instruction(ins.lineno, args, nested=True)
            if trigger.name in ("ONBUILD", "FROM", "MAINTAINER"):
                raise ins.error(f"{trigger.name} isn't allowed as an ONBUILD trigger")
            ins.trigger = trigger

    @staticmethod
    def _pairs(ins: Instruction, words: list[str]) -> list[KeyValue]:
        """ENV/LABEL `k=v …`, or the legacy one-pair form `KEY value with spaces`."""
        if "=" not in words[0]:
            key, _, value = ins.args.partition(" ")
            if not value.strip():
                raise ins.error(f"{ins.name} must have two arguments: {ins.name} key=value")
            return [KeyValue(key, value.strip())]
        pairs = []
        for w in words:
            key, eq, value = w.partition("=")
            if not eq:
                raise ins.error(f"syntax error: can't find = in {w!r}; must be of the form: name=value")
            if not key:
                raise ins.error(f"{ins.name} names can not be blank: {w!r}")
            pairs.append(KeyValue(key, value))
        return pairs


def parse(text: str, filename: str = "Dockerfile") -> Dockerfile:
    """Parse Dockerfile text; raise DockerfileError (`file:line: message`) on any syntax error."""
    p = _Parser(text, filename)
    stages: list[Stage] = []
    global_args: list[Instruction] = []
    for start, line in p.logical_lines():
        ins = p.instruction(start, line)
        ins.original = "\n".join(p.lines[start - 1:ins.end_lineno])
        if ins.name == "FROM":
            words = [w for w, _, _ in split_raw(ins.args, p.escape)]
            name = words[2].lower() if len(words) == 3 else None
            if name and any(s.name == name for s in stages):
                raise ins.error(f"duplicate stage name {name!r}")
            stages.append(Stage(len(stages), name, words[0], ins.flag("platform"), ins))
        elif stages:
            stages[-1].instructions.append(ins)
        elif ins.name == "ARG":
            global_args.append(ins)
        else:
            raise ins.error(f"{ins.name} before the first FROM (only ARG may come before FROM)")
    if not stages:
        raise DockerfileError(f"{filename}: no FROM instruction" if global_args or p.lines
                              else f"{filename}: the Dockerfile is empty")
    return Dockerfile(stages, global_args, p.escape, p.syntax, filename)
