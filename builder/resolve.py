"""Turn parsed instructions into what to execute, expanding variables where Docker does (not RUN/CMD/ENTRYPOINT)."""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from builder.args import GlobalScope, StageVars
from builder.dockerfile import DockerfileError, Heredoc, Instruction, Stage, heredoc_word
from builder.expand import split_raw
from builder.mounts import Mount, parse_mount
from dockyard.errors import DockyardError
from dockyard.image import Platform

# Where a RUN heredoc starting with `#!` is mounted and executed from (as BuildKit does).
PIPES_DIR = "/dev/pipes"
T = TypeVar("T")


@dataclass(frozen=True)
class FromSpec:
    """A stage's FROM with variables expanded: base is an image reference, a stage name, or `scratch`."""

    base: str
    platform: str | None


@dataclass(frozen=True)
class InlineFile:
    """A file whose content comes from the Dockerfile (heredoc)."""

    name: str
    data: str
    mode: int


@dataclass(frozen=True)
class RunSpec:
    """What a RUN executes: argv, scripts to mount under /dev/pipes, mounts, network and security mode."""

    argv: list[str]
    scripts: list[InlineFile] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    network: str = "default"
    security: str = "sandbox"


@dataclass(frozen=True)
class CopySpec:
    """COPY/ADD with variables expanded. `sources` are context (or --from stage/image) paths; `inline` are
    heredoc files; chmod is parsed, chown left as text (names resolve against the image's /etc/passwd)."""

    sources: list[str]
    inline: list[InlineFile]
    dest: str
    from_: str | None = None
    chown: str | None = None
    chmod: int | None = None
    link: bool = False
    parents: bool = False
    exclude: list[str] = field(default_factory=list)
    checksum: str | None = None
    keep_git_dir: bool = False


def _at(ins: Instruction, fn: Callable[..., T], *args: object) -> T:
    """Run an expansion step, prefixing any error with the instruction's line."""
    try:
        return fn(*args)
    except DockerfileError:
        raise
    except DockyardError as e:
        raise ins.error(str(e)) from None


def resolve_from(stage: Stage, scope: GlobalScope) -> FromSpec:
    """Expand a stage's base and --platform with the global ARGs."""
    ins = stage.from_instruction
    base = _at(ins, scope.word, stage.base)
    if not base:
        raise ins.error(f"base name ({stage.base}) should not be blank")
    platform = _at(ins, scope.word, stage.platform) if stage.platform else None
    if platform:
        platform = _at(ins, lambda text: str(Platform.parse(text)), platform)
    return FromSpec(base, platform or None)


def _is_single_heredoc(args: str) -> bool:
    """Whether a RUN's whole command is just one `<<NAME` word."""
    words = split_raw(args, "\\")
    return len(words) == 1 and heredoc_word(words[0][0]) is not None


def run_argv(ins: Instruction, shell: list[str]) -> tuple[list[str], list[InlineFile]]:
    """RUN's argv (and inline scripts), per BuildKit: exec form as is; `RUN <<EOF` runs the document (a
    file under /dev/pipes when it starts with `#!`); other heredocs are handed to the shell whole."""
    if ins.exec_form is not None:
        return ins.exec_form, []
    if not ins.heredocs:
        return [*shell, ins.args], []
    if _is_single_heredoc(ins.args):
        doc: Heredoc = ins.heredocs[0]
        if doc.content.startswith("#!"):
            return [posixpath.join(PIPES_DIR, doc.name)], [InlineFile(doc.name, doc.content, 0o755)]
        return [*shell, doc.content], []
    full = ins.args + "".join(f"\n{h.body}{h.name}" for h in ins.heredocs)
    return [*shell, full], []


def resolve_mounts(ins: Instruction, vars: StageVars) -> list[Mount]:
    """A RUN's --mount specs, expanded and parsed."""
    return [_at(ins, lambda s: parse_mount(vars.word(s)), spec) for spec in ins.flag_list("mount")]


def resolve_run(ins: Instruction, vars: StageVars, shell: list[str]) -> RunSpec:
    """A RUN: the command is not expanded (the shell does that); --mount values are."""
    argv, scripts = run_argv(ins, shell)
    return RunSpec(argv, scripts, resolve_mounts(ins, vars), ins.flag("network") or "default",
                   ins.flag("security") or "sandbox")


def _chmod(ins: Instruction, text: str) -> int:
    if not re.fullmatch(r"[0-7]{1,4}", text):
        raise ins.error(f"invalid --chmod={text}: expected an octal mode such as 0755")
    return int(text, 8)


def resolve_copy(ins: Instruction, vars: StageVars) -> CopySpec:
    """COPY/ADD: sources, heredoc files and destination, flags expanded."""
    docs = {h.name: h for h in ins.heredocs}
    raw = ins.exec_form if ins.exec_form is not None else [w for w, _, _ in split_raw(ins.args, vars.escape)]
    sources: list[str] = []
    inline: list[InlineFile] = []
    for word in raw[:-1]:
        word_doc = heredoc_word(word) if ins.exec_form is None else None
        doc = docs.get(word_doc.name) if word_doc else None
        if doc is not None:
            data = _at(ins, vars.heredoc, doc.content) if doc.expand else doc.content
            inline.append(InlineFile(doc.name, data, 0o644))
        elif ins.exec_form is not None:
            sources.append(_at(ins, vars.word, word))
        else:
            sources.extend(_at(ins, vars.words, word))
    dest = _at(ins, vars.word, raw[-1])
    if not dest:
        raise ins.error(f"{ins.name}: destination is empty after expansion ({raw[-1]})")
    def text(name: str) -> str | None:
        value = ins.flag(name)
        return _at(ins, vars.word, value) if value is not None else None

    chmod = text("chmod")
    return CopySpec(sources, inline, dest, from_=text("from") if ins.name == "COPY" else None,
                    chown=text("chown"), chmod=_chmod(ins, chmod) if chmod else None, link=ins.flag_on("link"),
                    parents=ins.flag_on("parents") if ins.name == "COPY" else False,
                    exclude=[_at(ins, vars.word, e) for e in ins.flag_list("exclude")],
                    checksum=text("checksum") if ins.name == "ADD" else None,
                    keep_git_dir=ins.flag_on("keep-git-dir") if ins.name == "ADD" else False)


def env_pairs(ins: Instruction, vars: StageVars) -> list[tuple[str, str]]:
    """ENV/LABEL pairs with keys and values expanded (quotes removed)."""
    return [(_at(ins, vars.word, kv.key), _at(ins, vars.word, kv.value or "")) for kv in ins.pairs]


def config_args(ins: Instruction, vars: StageVars) -> str:
    """The argument text to hand to dockyard.changes.apply, expanded for the instructions Docker expands."""
    name = ins.name
    if name in ("ENV", "LABEL"):
        return " ".join(shlex.quote(f"{k}={v}") for k, v in env_pairs(ins, vars))
    if name == "EXPOSE":
        return " ".join(_at(ins, vars.words, ins.args))
    if name == "VOLUME":
        items = ins.exec_form
        paths = [_at(ins, vars.word, p) for p in items] if items is not None else _at(ins, vars.words, ins.args)
        return json.dumps(paths)
    if name in ("USER", "WORKDIR", "STOPSIGNAL"):
        return _at(ins, vars.word, ins.args)
    # CMD, ENTRYPOINT, SHELL, HEALTHCHECK (flags included), ONBUILD (expanded when triggered), MAINTAINER.
    return ins.value
