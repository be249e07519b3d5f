"""`RUN --mount=…` specs (bind, cache, secret, ssh, tmpfs) parsed and validated as BuildKit does."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from dockyard.errors import DockyardError

MOUNT_TYPES = ("bind", "cache", "secret", "ssh", "tmpfs")
SHARING_MODES = ("shared", "private", "locked")
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)$", re.I)
_BOOLS = {"1": True, "t": True, "true": True, "0": False, "f": False, "false": False}


class MountError(DockyardError):
    """A --mount spec is malformed."""


@dataclass(frozen=True)
class Mount:
    """One RUN mount with Docker's defaults filled in; `from_` is a stage name/index or image (bind, cache).

    A relative `target` is relative to the stage's WORKDIR, as in Docker."""

    type: str
    target: str | None = None
    source: str | None = None
    from_: str | None = None
    id: str | None = None
    sharing: str | None = None
    readonly: bool = False
    required: bool = False
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    env: str | None = None
    size: int | None = None


def _bool(key: str, value: str) -> bool:
    try:
        return _BOOLS[value.lower()]
    except KeyError:
        raise MountError(f"invalid boolean value {value!r} for mount option {key}") from None


def _int(key: str, value: str, base: int) -> int:
    try:
        return int(value, base)
    except ValueError:
        raise MountError(f"invalid value {value!r} for mount option {key}") from None


def parse_size(text: str) -> int:
    """A RAM size such as `64m`, `1GiB` or `1024` in bytes (binary multiples, like docker's RAMInBytes)."""
    m = _SIZE_RE.match(text.strip())
    if not m:
        raise MountError(f"invalid size: {text!r}")
    return int(float(m.group(1)) * 1024 ** " kmgtp".index(m.group(2).lower() or " "))


def parse_mount(spec: str) -> Mount:
    """Parse one `--mount` value (CSV of key=value fields; the type defaults to bind)."""
    import csv  # only for Dockerfiles with RUN --mount: not on every build's path

    try:
        fields = next(csv.reader([spec]))
    except (csv.Error, StopIteration):
        raise MountError(f"invalid mount spec: {spec!r}") from None
    opts: dict[str, str | None] = {}
    aliases = {"src": "source", "dst": "target", "destination": "target", "ro": "readonly", "rw": "readwrite"}
    for f in fields:
        key, eq, value = f.partition("=")
        key = aliases.get(key.strip().lower(), key.strip().lower())
        if not eq and key not in ("readonly", "readwrite", "required"):
            raise MountError(f"invalid field {f!r}: must be a key=value pair")
        opts[key] = value if eq else None
    kind = (opts.pop("type", None) or "bind").lower()
    if kind not in MOUNT_TYPES:
        raise MountError(f"unsupported mount type {kind!r} (expected one of {', '.join(MOUNT_TYPES)})")
    allowed = {"bind": {"target", "source", "from", "readonly", "readwrite"},
               "cache": {"target", "source", "from", "readonly", "readwrite", "id", "sharing", "mode", "uid", "gid"},
               "secret": {"target", "source", "id", "required", "mode", "uid", "gid", "env", "readonly"},
               "ssh": {"target", "id", "required", "mode", "uid", "gid", "readonly"},
               "tmpfs": {"target", "size", "readonly", "readwrite"}}[kind]
    for key in opts:
        if key not in allowed:
            raise MountError(f"unexpected key {key!r} for mount type {kind!r}")

    def flag(key: str) -> bool:
        value = opts.get(key)
        return key in opts and (value is None or _bool(key, value))

    def number(key: str, base: int) -> int | None:
        value = opts.get(key)
        return _int(key, value, base) if value else None

    # Bind (and secret/ssh) mounts are read-only unless asked otherwise; cache and tmpfs are writable.
    readonly = kind not in ("cache", "tmpfs")
    if "readonly" in opts:
        readonly = flag("readonly")
    if "readwrite" in opts:
        readonly = not flag("readwrite")
    target, source = opts.get("target"), opts.get("source")
    mount_id, sharing = opts.get("id"), opts.get("sharing")
    mode, uid, gid = number("mode", 8), number("uid", 10), number("gid", 10)
    if kind in ("bind", "cache", "tmpfs") and not target:
        raise MountError(f"{kind} mount requires a target: {spec!r}")
    if kind == "cache":
        sharing = (sharing or "shared").lower()
        if sharing not in SHARING_MODES:
            raise MountError(f"invalid cache sharing {sharing!r} (expected one of {', '.join(SHARING_MODES)})")
        mount_id = mount_id or target
    if kind == "secret":
        if source and mount_id:
            raise MountError("secret mount: both source and id can't be set")
        mount_id = mount_id or source or (posixpath.basename(target) if target else None)
        if not mount_id:
            raise MountError(f"secret mount requires an id or a target: {spec!r}")
        if not target and not opts.get("env"):
            target = f"/run/secrets/{mount_id}"
        mode = 0o400 if mode is None else mode
    if kind == "ssh":
        mount_id = mount_id or "default"
        target = target or "/run/buildkit/ssh_agent.0"
        mode = 0o600 if mode is None else mode
    return Mount(type=kind, target=posixpath.normpath(target) if target else None, source=source,
                 from_=opts.get("from") or None, id=mount_id, sharing=sharing if kind == "cache" else None,
                 readonly=readonly, required=flag("required"), mode=mode, uid=uid, gid=gid, env=opts.get("env"),
                 size=parse_size(size) if (size := opts.get("size")) else None)
