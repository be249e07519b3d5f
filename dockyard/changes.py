"""Dockerfile instructions that only change an image config (CMD, ENV, LABEL…), shared by import, commit and build."""

from __future__ import annotations

import json
import shlex
from typing import Any

from dockyard.errors import DockyardError

DEFAULT_SHELL = ["/bin/sh", "-c"]
_DURATION_UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000,
                   "h": 3_600_000_000_000}


class InvalidInstruction(DockyardError):
    """A config instruction is malformed or not allowed here."""


def json_form(args: str) -> list[str] | None:
    """The exec (JSON array of strings) form of an argument, or None when it is shell form."""
    text = args.strip()
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def command_form(args: str, shell: list[str]) -> list[str]:
    """CMD/ENTRYPOINT/RUN arguments: exec form as given, shell form wrapped in the shell."""
    exec_form = json_form(args)
    return exec_form if exec_form is not None else [*shell, args.strip()]


def key_values(args: str, instruction: str) -> list[tuple[str, str]]:
    """`k=v k2="v 2"` pairs, or the legacy single `k v` form of ENV and LABEL."""
    try:
        words = shlex.split(args, posix=True)
    except ValueError as e:
        raise InvalidInstruction(f"{instruction}: {e}: {args}") from None
    if not words:
        raise InvalidInstruction(f"{instruction} requires at least one argument")
    if "=" not in words[0]:
        key, _, value = args.strip().partition(" ")
        if not value.strip():
            raise InvalidInstruction(f"{instruction} names can not be blank: {args}")
        return [(key, " ".join(shlex.split(value.strip(), posix=True)))]
    pairs = []
    for w in words:
        key, eq, value = w.partition("=")
        if not eq or not key:
            raise InvalidInstruction(f"{instruction}: expected KEY=VALUE, got {w!r}")
        pairs.append((key, value))
    return pairs


def parse_duration(text: str) -> int:
    """A Go duration (`30s`, `1m30s`, `500ms`) in nanoseconds."""
    total, num, i = 0, "", 0
    if text == "0":
        return 0
    while i < len(text):
        c = text[i]
        if c.isdigit() or c == ".":
            num += c
            i += 1
            continue
        unit = text[i:i + 2] if text[i:i + 2] in _DURATION_UNITS else c
        if unit not in _DURATION_UNITS or not num:
            raise InvalidInstruction(f"invalid duration: {text!r}")
        total += int(float(num) * _DURATION_UNITS[unit])
        num, i = "", i + len(unit)
    if num:
        raise InvalidInstruction(f"invalid duration (missing unit): {text!r}")
    return total


def healthcheck(args: str, shell: list[str]) -> dict[str, Any]:
    """The Healthcheck config object for `HEALTHCHECK [OPTIONS] CMD …` or `NONE`."""
    words = args.strip().split(None, 1)
    if words and words[0].upper() == "NONE":
        return {"Test": ["NONE"]}
    hc: dict[str, Any] = {}
    rest = args.strip()
    names = {"interval": "Interval", "timeout": "Timeout", "start-period": "StartPeriod",
             "start-interval": "StartInterval", "retries": "Retries"}
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        key, _, value = flag[2:].partition("=")
        if key not in names:
            raise InvalidInstruction(f"HEALTHCHECK: unknown flag --{key}")
        hc[names[key]] = int(value) if key == "retries" else parse_duration(value)
        rest = rest.lstrip()
    kind, _, cmd = rest.partition(" ")
    if kind.upper() != "CMD" or not cmd.strip():
        raise InvalidInstruction("HEALTHCHECK requires CMD followed by a command, or NONE")
    exec_form = json_form(cmd)
    hc["Test"] = ["CMD", *exec_form] if exec_form is not None else ["CMD-SHELL", cmd.strip()]
    return dict(sorted(hc.items(), key=lambda kv: kv[0] != "Test"))


def _required(instruction: str, args: str) -> str:
    """The stripped argument of an instruction that needs one."""
    value = args.strip()
    if not value:
        raise InvalidInstruction(f"{instruction} requires an argument")
    return value


def _cmd(config: dict[str, Any], args: str, shell: list[str]) -> None:
    config["Cmd"] = command_form(args, shell)


def _entrypoint(config: dict[str, Any], args: str, shell: list[str]) -> None:
    config["Entrypoint"] = command_form(args, shell)
    # Docker: a new ENTRYPOINT resets an inherited CMD.
    config.pop("Cmd", None)


def _env(config: dict[str, Any], args: str, shell: list[str]) -> None:
    env = list(config.get("Env") or [])
    for k, v in key_values(args, "ENV"):
        env = [e for e in env if e.partition("=")[0] != k] + [f"{k}={v}"]
    config["Env"] = env


def _label(config: dict[str, Any], args: str, shell: list[str]) -> None:
    config["Labels"] = {**(config.get("Labels") or {}), **dict(key_values(args, "LABEL"))}


def _expose(config: dict[str, Any], args: str, shell: list[str]) -> None:
    ports = dict(config.get("ExposedPorts") or {})
    for p in _required("EXPOSE", args).split():
        port, _, proto = p.partition("/")
        if not port.replace("-", "").isdigit() or proto not in ("", "tcp", "udp", "sctp"):
            raise InvalidInstruction(f"EXPOSE: invalid port {p!r}")
        ports[f"{port}/{proto or 'tcp'}"] = {}
    config["ExposedPorts"] = ports


def _volume(config: dict[str, Any], args: str, shell: list[str]) -> None:
    vols = dict(config.get("Volumes") or {})
    paths = json_form(args)
    for v in paths if paths is not None else _required("VOLUME", args).split():
        if not v:
            raise InvalidInstruction("VOLUME specified can not be an empty string")
        vols[v] = {}
    config["Volumes"] = vols


def _user(config: dict[str, Any], args: str, shell: list[str]) -> None:
    config["User"] = _required("USER", args)


def _workdir(config: dict[str, Any], args: str, shell: list[str]) -> None:
    import posixpath

    path = _required("WORKDIR", args)
    config["WorkingDir"] = posixpath.normpath(posixpath.join(config.get("WorkingDir") or "/", path))


def _stopsignal(config: dict[str, Any], args: str, shell: list[str]) -> None:
    config["StopSignal"] = _required("STOPSIGNAL", args)


def _onbuild(config: dict[str, Any], args: str, shell: list[str]) -> None:
    trigger = _required("ONBUILD", args)
    word = trigger.split(None, 1)[0].upper()
    if word in ("ONBUILD", "FROM", "MAINTAINER"):
        raise InvalidInstruction(f"{word} isn't allowed as an ONBUILD trigger")
    config["OnBuild"] = [*(config.get("OnBuild") or []), trigger]


def _shell(config: dict[str, Any], args: str, shell: list[str]) -> None:
    exec_form = json_form(args)
    if not exec_form:
        raise InvalidInstruction("SHELL requires the arguments to be in JSON form")
    config["Shell"] = exec_form


def _healthcheck(config: dict[str, Any], args: str, shell: list[str]) -> None:
    config["Healthcheck"] = healthcheck(args, shell)


_HANDLERS = {"CMD": _cmd, "ENTRYPOINT": _entrypoint, "ENV": _env, "LABEL": _label, "EXPOSE": _expose,
             "VOLUME": _volume, "USER": _user, "WORKDIR": _workdir, "STOPSIGNAL": _stopsignal,
             "ONBUILD": _onbuild, "SHELL": _shell, "HEALTHCHECK": _healthcheck}
CONFIG_INSTRUCTIONS = (*_HANDLERS, "MAINTAINER")


def apply(config: dict[str, Any], instruction: str, args: str) -> str | None:
    """Apply one config instruction to an image config's `config` object in place; returns the
    MAINTAINER value when that is the instruction (it belongs to the image's top level)."""
    ins = instruction.upper()
    if ins == "MAINTAINER":
        return _required("MAINTAINER", args)
    handler = _HANDLERS.get(ins)
    if handler is None:
        raise InvalidInstruction(f"{instruction} is not a config instruction "
                                 f"(allowed: {', '.join(CONFIG_INSTRUCTIONS)})")
    handler(config, args, config.get("Shell") or DEFAULT_SHELL)
    return None


def apply_change_line(image_config: dict[str, Any], line: str) -> None:
    """Apply a `--change 'CMD …'` line to a whole image config."""
    instruction, _, args = line.strip().partition(" ")
    if not instruction:
        raise InvalidInstruction("empty --change")
    maintainer = apply(image_config.setdefault("config", {}), instruction, args)
    if maintainer is not None:
        image_config["author"] = maintainer
