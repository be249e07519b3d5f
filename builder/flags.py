"""The values of `docker buildx build` flags, parsed as buildx does: --ulimit, --shm-size, --secret, --ssh,
--build-context, --annotation, --cache-to and --cache-from."""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass, field

from builder.mounts import MountError, parse_size
from dockyard.errors import DockyardError

_ULIMITS = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss",
            "rtprio", "rttime", "sigpending", "stack")
ANNOTATION_LEVELS = ("manifest", "manifest-descriptor", "index", "index-descriptor")


class FlagError(DockyardError):
    """A build flag's value is malformed."""


@dataclass(frozen=True)
class RunSettings:
    """What --add-host, --ulimit and --shm-size give every RUN."""

    extra_hosts: list[tuple[str, str]] = field(default_factory=list)  # (host, ip)
    rlimits: dict[str, tuple[int, int]] = field(default_factory=dict)  # "RLIMIT_NOFILE" -> (soft, hard)
    shm_size: int | None = None


def parse_ulimit(text: str) -> tuple[str, tuple[int, int]]:
    """`--ulimit nofile=1024[:2048]` -> ("RLIMIT_NOFILE", (soft, hard)); -1 is unlimited, as docker's."""
    name, eq, values = text.partition("=")
    if not eq or name not in _ULIMITS:
        raise FlagError(f"--ulimit {text}: expected NAME=SOFT[:HARD] with NAME one of {', '.join(_ULIMITS)}")
    soft_text, _, hard_text = values.partition(":")
    try:
        soft, hard = int(soft_text), int(hard_text or soft_text)
    except ValueError:
        raise FlagError(f"--ulimit {text}: limits must be numbers") from None
    soft, hard = (resource.RLIM_INFINITY if v == -1 else v for v in (soft, hard))
    if soft < -1 or hard < -1 or (hard != resource.RLIM_INFINITY and (soft == resource.RLIM_INFINITY or soft > hard)):
        raise FlagError(f"--ulimit {text}: the soft limit must not exceed the hard limit")
    return "RLIMIT_" + name.upper(), (soft, hard)


def parse_shm_size(text: str) -> int:
    """`--shm-size 128m` in bytes."""
    try:
        size = parse_size(text)
    except MountError:
        raise FlagError(f"--shm-size {text}: expected a size such as 64m or 1g") from None
    if size <= 0:
        raise FlagError(f"--shm-size {text}: must be more than 0")
    return size


def _fields(text: str, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for f in text.split(","):
        key, eq, value = f.partition("=")
        if not eq or not key:
            raise FlagError(f"{flag} {text}: {f!r} is not a key=value pair")
        out[key.strip().lower()] = value
    return out


def parse_secret(text: str) -> tuple[str, bytes]:
    """`--secret id=ID,src=PATH|env=VAR` (type=file|env; without src/env, the variable ID if set, else the
    file ID, as buildx) -> (id, value)."""
    fields = _fields(text, "--secret")
    sid = fields.pop("id", "")
    kind = fields.pop("type", "")
    src = fields.pop("src", None) or fields.pop("source", None)
    env = fields.pop("env", None)
    if fields:
        raise FlagError(f"--secret {text}: unexpected field(s) {', '.join(sorted(fields))}")
    if kind not in ("", "file", "env"):
        raise FlagError(f"--secret {text}: type must be file or env")
    if kind == "env" and src and not env:
        env, src = src, None
    if not sid:
        sid = env or (os.path.basename(src) if src else "")
    if not sid:
        raise FlagError(f"--secret {text}: expected id=ID,src=PATH or id=ID,env=VAR")
    if env is None and src is None:
        if kind == "env" or (kind == "" and sid in os.environ):
            env = sid
        else:
            src = sid
    if env is not None:
        if env not in os.environ:
            raise FlagError(f"--secret {text}: environment variable {env} is not set")
        return sid, os.environ[env].encode()
    assert src is not None
    return sid, read_secret(sid, src)


def read_secret(sid: str, path: str) -> bytes:
    """A secret's value from its file."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise FlagError(f"secret id={sid}: no such file: {path}") from None
    except OSError as e:
        raise FlagError(f"secret id={sid}: cannot read {path}: {e.strerror}") from None


def parse_ssh(text: str) -> tuple[str, list[str]]:
    """`--ssh ID[=SOCKET|KEY[,KEY…]]` -> (id, paths); no paths means the agent of $SSH_AUTH_SOCK."""
    sid, _, paths = text.partition("=")
    if not sid:
        raise FlagError(f"--ssh {text}: expected default or ID[=SOCKET|KEY[,KEY...]]")
    found = [p for p in paths.split(",") if p]
    for p in found:
        if not os.path.exists(p):
            raise FlagError(f"--ssh {text}: {p}: no such socket or key file")
    if not found and not os.environ.get("SSH_AUTH_SOCK"):
        raise FlagError(f"--ssh {text}: SSH_AUTH_SOCK is not set (give a socket or key path: {sid}=PATH)")
    return sid, found


@dataclass(frozen=True)
class NamedContext:
    """A `--build-context NAME=…` value: a local directory, an image reference or an OCI layout (path, tag)."""

    kind: str  # "dir", "image" or "oci-layout"
    value: str
    tag: str = ""


def parse_build_context(text: str) -> tuple[str, NamedContext]:
    """`--build-context name=DIR|docker-image://REF|oci-layout://PATH[@TAG]`."""
    name, eq, value = text.partition("=")
    if not eq or not name or not value:
        raise FlagError(f"--build-context {text}: expected NAME=DIR, NAME=docker-image://REF or "
                        "NAME=oci-layout://PATH[@TAG]")
    if value.startswith("docker-image://"):
        return name.lower(), NamedContext("image", value.removeprefix("docker-image://"))
    if value.startswith("oci-layout://"):
        path, _, tag = value.removeprefix("oci-layout://").partition("@")
        if not os.path.isfile(os.path.join(path, "index.json")):
            raise FlagError(f"--build-context {text}: {path} is not an OCI layout (no index.json)")
        return name.lower(), NamedContext("oci-layout", path, tag or "latest")
    if "://" in value:
        raise FlagError(f"--build-context {text}: unsupported source (use a directory, docker-image:// or "
                        "oci-layout://)")
    if not os.path.isdir(value):
        raise FlagError(f"--build-context {text}: {value} is not a directory")
    return name.lower(), NamedContext("dir", os.path.abspath(value))


def parse_annotation(text: str) -> tuple[str, str, str]:
    """`--annotation [LEVEL:]KEY=VALUE` -> (level, key, value); the level defaults to manifest, as buildx's."""
    key, eq, value = text.partition("=")
    if not eq or not key:
        raise FlagError(f"--annotation {text}: expected [TYPE:]KEY=VALUE")
    level = "manifest"
    prefix, colon, rest = key.partition(":")
    if colon and prefix.split("[")[0] in ANNOTATION_LEVELS:
        level, key = prefix.split("[")[0], rest
    if not key:
        raise FlagError(f"--annotation {text}: the key is empty")
    return level, key, value


# Keys buildx accepts per cache type and direction; values we need not act on (oci-mediatypes, image-manifest: the
# cache is always an OCI image manifest) are accepted as buildx documents them.
_CACHE_KEYS = {
    ("--cache-to", "registry"): {"ref", "mode", "compression", "ignore-error", "oci-mediatypes", "image-manifest"},
    ("--cache-to", "local"): {"dest", "mode", "compression", "ignore-error", "oci-mediatypes", "image-manifest"},
    ("--cache-to", "inline"): set(),
    ("--cache-from", "registry"): {"ref"},
    ("--cache-from", "local"): {"src"},
}


@dataclass(frozen=True)
class CacheSpec:
    """A --cache-to / --cache-from value: where a build cache goes or comes from."""

    kind: str  # "registry", "local", "inline"; or "image" (--cache-from NAME: a local image, else a registry ref)
    ref: str = ""  # registry and image
    path: str = ""  # local: dest or src
    mode: str = "min"  # min: the final image's steps; max: every stage's
    compression: str = ""  # the layers' compression in the cache ("": as built)
    ignore_error: bool = False  # an export that fails is a warning

    def __str__(self) -> str:
        return self.ref or self.path or self.kind


def parse_cache(text: str, flag: str) -> CacheSpec:
    """`--cache-to`/`--cache-from` as buildx parses them: `type=registry,ref=REF[,mode=min|max][,compression=…]`,
    `type=local,dest=DIR|src=DIR`, `type=inline`; a bare value is a registry reference (--cache-from: a local
    image first)."""
    if "=" not in text:
        if not text:
            raise FlagError(f"{flag}: expected type=registry,ref=REF, type=local,... or an image reference")
        _check_ref(text, text, flag)
        return CacheSpec("image" if flag == "--cache-from" else "registry", ref=text)
    fields = _fields(text, flag)
    kind = fields.pop("type", "")
    if not kind:  # as buildx: the type follows from the keys given
        kind = "registry" if "ref" in fields else "local" if {"src", "dest"} & set(fields) else ""
    allowed = _CACHE_KEYS.get((flag, kind))
    if allowed is None:
        kinds = sorted(k for f, k in _CACHE_KEYS if f == flag)
        raise FlagError(f"{flag} {text}: type={kind or '(none)'} is not supported (use {', '.join(kinds)})")
    extra = sorted(set(fields) - allowed)
    if extra:
        raise FlagError(f"{flag} {text}: {extra[0]}={fields[extra[0]]} is not a type={kind} field")
    mode = fields.get("mode", "min")
    if mode not in ("min", "max"):
        raise FlagError(f"{flag} {text}: mode={mode}: expected min or max")
    compression = fields.get("compression", "")
    if compression not in ("", "gzip", "zstd"):
        raise FlagError(f"{flag} {text}: compression={compression}: expected gzip or zstd")
    ignore = fields.get("ignore-error", "false").lower()
    if ignore not in ("true", "false"):
        raise FlagError(f"{flag} {text}: ignore-error={ignore}: expected true or false")
    ref = fields.get("ref", "")
    path = fields.get("dest", "") or fields.get("src", "")
    if kind == "registry":
        _check_ref(text, ref, flag)
    if kind == "local":
        if not path:
            raise FlagError(f"{flag} {text}: type=local needs {'dest' if flag == '--cache-to' else 'src'}=DIR")
        if flag == "--cache-from" and not os.path.isdir(path):
            raise FlagError(f"{flag} {text}: src={path} is not a directory")
        path = os.path.abspath(path)
    return CacheSpec(kind, ref, path, mode, compression, ignore == "true")


def _check_ref(text: str, ref: str, flag: str) -> None:
    from dockyard import reference

    if not ref:
        raise FlagError(f"{flag} {text}: type=registry needs ref=REF")
    try:
        reference.parse(ref)
    except DockyardError:
        raise FlagError(f"{flag} {text}: ref={ref} is not a valid image reference") from None
