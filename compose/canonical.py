"""One file's services and resources in the canonical form (MODEL.md): short syntaxes expanded, types checked,
relative paths resolved against the file's base directory, every error naming its key path and line."""

from __future__ import annotations

import os
import posixpath
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from compose import schema
from compose.durations import format_go, seconds
from compose.errors import ComposeError, quoted
from compose.units import boolean, file_mode, integer, number, ram_bytes
from compose.yamlfile import Path, YamlFile

_PROTOCOLS = ("tcp", "udp", "sctp")
_CONDITIONS = ("service_started", "service_healthy", "service_completed_successfully")
_PROPAGATION = ("shared", "rshared", "slave", "rslave", "private", "rprivate")


@dataclass
class Context:
    """Where one file's values come from: the file (for errors) and the directory its relative paths start at."""

    file: YamlFile
    base_dir: str
    home: str | None

    def error(self, path: Path, message: str) -> ComposeError:
        return ComposeError(f"{self.file.where(path)}: {message}")

    def host_path(self, text: str, path: Path) -> str:
        """A host path as the user wrote it (at `path`): `~` expanded, relative ones against the base directory,
        normalized."""
        if text == "~" or text.startswith("~/"):
            if not self.home:
                raise self.error(path, f"cannot expand {quoted(text)}: HOME is not set")
            text = self.home + text[1:]
        return os.path.normpath(os.path.join(self.base_dir, text))


def check_keys(value: Any, allowed: frozenset[str], path: Path, ctx: Context) -> dict[str, Any]:
    """`value` as a mapping whose keys are all in `allowed` (or `x-`); the error names the first other key."""
    if not isinstance(value, dict):
        raise ctx.error(path, f"must be a mapping, got {_kind(value)}")
    for key in value:
        if key not in allowed and not key.startswith("x-"):
            raise ComposeError(f"{ctx.file.where((*path, key), path)}: additional property {quoted(key)} "
                               "is not allowed")
    return value


def service(name: str, raw: Any, ctx: Context) -> dict[str, Any]:
    """One service in canonical form (without `extends`, which the loader resolves)."""
    path: Path = ("services", name)
    raw = check_keys({} if raw is None else raw, schema.SERVICE, path, ctx)
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if value is None:
            continue
        handler = _HANDLERS.get(key)
        out[key] = handler(value, (*path, key), ctx) if handler else value
    return out


def network(key: str, raw: Any, ctx: Context) -> dict[str, Any]:
    """A top-level network (its default name is set once the project's name is known)."""
    path: Path = ("networks", key)
    out = _resource(raw, schema.NETWORK, schema.NETWORK_ORDER, path, ctx)
    _resource_common(out, path, ctx)
    for flag in ("internal", "attachable", "enable_ipv4", "enable_ipv6"):
        if flag in out:
            out[flag] = boolean(out[flag], ctx.file.where((*path, flag)))
    if isinstance(out.get("ipam"), dict):
        configs = out["ipam"].get("config") or []
        if not isinstance(configs, list):
            raise ctx.error((*path, "ipam", "config"), "must be a list")
    return out


def volume(key: str, raw: Any, ctx: Context) -> dict[str, Any]:
    """A top-level volume."""
    path: Path = ("volumes", key)
    out = _resource(raw, schema.VOLUME, schema.VOLUME_ORDER, path, ctx)
    _resource_common(out, path, ctx)
    return out


def mounted_file(kind: str, key: str, raw: Any, ctx: Context) -> dict[str, Any]:
    """A top-level secret or config: from a file (made absolute), an environment variable, inline content or
    external."""
    path: Path = (kind, key)
    out = _resource(raw, schema.SECRET, schema.SECRET_ORDER, path, ctx)
    _resource_common(out, path, ctx)
    sources = [s for s in ("file", "environment", "content") if s in out] + (["external"] if out.get("external")
                                                                             else [])
    if len(sources) != 1:
        raise ctx.error(path, "must set exactly one of file, environment, content, external")
    if "file" in out:
        out["file"] = ctx.host_path(_string(out["file"], (*path, "file"), ctx), (*path, "file"))
    return out


def _resource(raw: Any, allowed: frozenset[str], order: tuple[str, ...], path: Path, ctx: Context) -> dict[str, Any]:
    """A top-level resource's mapping (null: all defaults) with its keys checked, nulls dropped, in compose-go's
    order."""
    spec = check_keys({} if raw is None else raw, allowed, path, ctx)
    return schema.ordered({k: v for k, v in spec.items() if v is not None}, order)


def _resource_common(out: dict[str, Any], path: Path, ctx: Context) -> None:
    if "external" in out:
        external = out["external"]
        if isinstance(external, dict):  # the legacy `external: {name: x}`
            if "name" in external:
                out["name"] = _string(external["name"], (*path, "external", "name"), ctx)
            external = True
        out["external"] = boolean(external, ctx.file.where((*path, "external")))
    if "name" in out:
        out["name"] = _string(out["name"], (*path, "name"), ctx)
    for key in ("labels", "driver_opts"):
        if key in out:
            out[key] = _key_values(out[key], (*path, key), ctx, keep_none=False)


# -- small shapes ---------------------------------------------------------------------------------------------------

def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def _string(value: Any, path: Path, ctx: Context) -> str:
    """A scalar as a string: numbers as written (docker compose reads `user: 1000` as "1000")."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    raise ctx.error(path, f"must be a string, got {_kind(value)}")


def _string_list(value: Any, path: Path, ctx: Context) -> list[str]:
    """A list of strings; a lone string is a list of one (dns, tmpfs, dns_search accept that)."""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list):
        raise ctx.error(path, f"must be a list, got {_kind(value)}")
    return [_string(item, (*path, i), ctx) for i, item in enumerate(value)]


def _key_values(value: Any, path: Path, ctx: Context, keep_none: bool = True) -> dict[str, str | None]:
    """A `KEY=value` list or a mapping as {key: value}; `KEY` alone (or a null value) is None."""
    out: dict[str, str | None] = {}
    if isinstance(value, list):
        for i, item in enumerate(value):
            text = _string(item, (*path, i), ctx)
            key, sep, val = text.partition("=")
            if not key:
                raise ctx.error((*path, i), f"invalid entry {quoted(text)} (want KEY=value)")
            out[key] = val if sep else None
    elif isinstance(value, dict):
        for key, val in value.items():
            out[key] = None if val is None else _string(val, (*path, key), ctx)
    else:
        raise ctx.error(path, f"must be a mapping or a list, got {_kind(value)}")
    if not keep_none:
        return {k: v if v is not None else "" for k, v in out.items()}
    return out


def _shell_words(value: Any, path: Path, ctx: Context) -> list[str]:
    if isinstance(value, list):
        return [_string(item, (*path, i), ctx) for i, item in enumerate(value)]
    text = _string(value, path, ctx)
    try:
        return shlex.split(text)
    except ValueError as e:
        raise ctx.error(path, f"cannot split {quoted(text)}: {e}") from None


def _duration(value: Any, path: Path, ctx: Context) -> str:
    if not isinstance(value, str | int | float):
        raise ctx.error(path, f"must be a duration, got {_kind(value)}")
    return format_go(seconds(value, ctx.file.where(path)))


def _bytes(value: Any, path: Path, ctx: Context) -> int:
    return ram_bytes(value, ctx.file.where(path))


def _int(value: Any, path: Path, ctx: Context) -> int:
    return integer(value, ctx.file.where(path))


def _bool(value: Any, path: Path, ctx: Context) -> bool:
    return boolean(value, ctx.file.where(path))


def _float(value: Any, path: Path, ctx: Context) -> float:
    return number(value, ctx.file.where(path))


# -- ports ----------------------------------------------------------------------------------------------------------

def _ports(value: Any, path: Path, ctx: Context) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise ctx.error(path, f"must be a list, got {_kind(value)}")
    out: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        out.extend(_port(item, (*path, i), ctx))
    return out


def _port(item: Any, path: Path, ctx: Context) -> list[dict[str, Any]]:
    if isinstance(item, dict):
        spec = check_keys(item, schema.PORT, path, ctx)
        if "target" not in spec:
            raise ctx.error(path, "port is missing its target")
        target = _port_number(spec["target"], (*path, "target"), ctx)
        entry: dict[str, Any] = {}
        if "name" in spec:
            entry["name"] = _string(spec["name"], (*path, "name"), ctx)
        entry["mode"] = _string(spec.get("mode", "ingress"), (*path, "mode"), ctx)
        if spec.get("host_ip"):
            entry["host_ip"] = _string(spec["host_ip"], (*path, "host_ip"), ctx)
        entry["target"] = target
        if spec.get("published") not in (None, ""):
            published = _string(spec["published"], (*path, "published"), ctx)
            if _port_range(published) is None:
                raise ctx.error((*path, "published"), f"invalid port {quoted(published)}")
            entry["published"] = published
        protocol = _string(spec.get("protocol", "tcp"), (*path, "protocol"), ctx).lower()
        if protocol not in _PROTOCOLS:
            raise ctx.error((*path, "protocol"), f"invalid protocol {quoted(protocol)}")
        entry["protocol"] = protocol
        if "app_protocol" in spec:
            entry["app_protocol"] = _string(spec["app_protocol"], (*path, "app_protocol"), ctx)
        return [entry]
    if isinstance(item, int) and not isinstance(item, bool):
        item = str(item)
    if not isinstance(item, str):
        raise ctx.error(path, f"invalid port {quoted(item)}")
    parsed = _short_port(item.strip())
    if parsed is None:
        raise ctx.error(path, f'invalid port "{item}"')
    return parsed


def _short_port(text: str) -> list[dict[str, Any]] | None:
    """`[HOST_IP:][HOST[-END]:]CONTAINER[-END][/PROTO]` as port entries, one per container port; None if invalid."""
    spec, _, protocol = text.partition("/")
    protocol = protocol.lower() or "tcp"
    if protocol not in _PROTOCOLS:
        return None
    host_ip = ""
    if spec.startswith("["):  # an IPv6 host address
        close = spec.find("]:")
        if close < 0:
            return None
        host_ip, parts = spec[1:close], spec[close + 2:].split(":")
        if len(parts) != 2:
            return None
    else:
        parts = spec.split(":")
        if len(parts) == 3:
            host_ip = parts.pop(0)
        elif len(parts) > 3:
            return None
    container = _port_range(parts[-1])
    host = parts[0] if len(parts) == 2 else ""
    host_range = _port_range(host) if host else None
    if container is None or (host and host_range is None):
        return None
    count = container[1] - container[0] + 1
    if host_range and count > 1 and host_range[1] - host_range[0] + 1 != count:
        return None
    entries = []
    for offset in range(count):
        entry: dict[str, Any] = {"mode": "ingress"}
        if host_ip:
            entry["host_ip"] = host_ip
        entry["target"] = container[0] + offset
        if host_range:
            # several container ports map one-to-one; one container port takes the whole host range (docker picks)
            single = count > 1 or host_range[0] == host_range[1]
            entry["published"] = str(host_range[0] + offset) if single else host
        entry["protocol"] = protocol
        entries.append(entry)
    return entries


def _port_range(text: str) -> tuple[int, int] | None:
    match = re.fullmatch(r"(\d{1,5})(?:-(\d{1,5}))?", text)
    if match is None:
        return None
    low = int(match.group(1))
    high = int(match.group(2) or low)
    return (low, high) if 0 < low <= high <= 65535 else None


def _port_number(value: Any, path: Path, ctx: Context) -> int:
    number_ = _int(value, path, ctx)
    if not 0 < number_ <= 65535:
        raise ctx.error(path, f"invalid port {quoted(value)}")
    return number_


# -- volumes --------------------------------------------------------------------------------------------------------

def _volumes(value: Any, path: Path, ctx: Context) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise ctx.error(path, f"must be a list, got {_kind(value)}")
    return [_volume_mount(item, (*path, i), ctx) for i, item in enumerate(value)]


def _volume_mount(item: Any, path: Path, ctx: Context) -> dict[str, Any]:
    if isinstance(item, str):
        return _short_volume(item, path, ctx)
    spec = check_keys(item, schema.VOLUME_MOUNT, path, ctx)
    kind = spec.get("type")
    if kind not in ("bind", "volume", "tmpfs", "npipe", "cluster", "image"):
        raise ctx.error((*path, "type"), f"invalid mount type {quoted(kind)}")
    if not spec.get("target"):
        raise ctx.error(path, "mount is missing its target")
    entry: dict[str, Any] = {"type": kind}
    if spec.get("source"):
        source = _string(spec["source"], (*path, "source"), ctx)
        entry["source"] = ctx.host_path(source, (*path, "source")) if kind == "bind" else source
    elif kind == "bind":
        raise ctx.error(path, "bind mount is missing its source")
    entry["target"] = _mount_target(_string(spec["target"], (*path, "target"), ctx), (*path, "target"), ctx)
    if "read_only" in spec and _bool(spec["read_only"], (*path, "read_only"), ctx):
        entry["read_only"] = True
    if "consistency" in spec:
        entry["consistency"] = _string(spec["consistency"], (*path, "consistency"), ctx)
    if isinstance(spec.get("bind"), dict):
        bind = dict(spec["bind"])
        # compose-go's default for a written `bind:` mapping (a short-syntax bind gets it too)
        bind["create_host_path"] = _bool(bind.get("create_host_path", True), (*path, "bind", "create_host_path"), ctx)
        entry["bind"] = _bind_order(bind)
    if isinstance(spec.get("volume"), dict):
        vol = dict(spec["volume"])
        if "nocopy" in vol:
            vol["nocopy"] = _bool(vol["nocopy"], (*path, "volume", "nocopy"), ctx)
        entry["volume"] = vol
    if isinstance(spec.get("tmpfs"), dict):
        tmpfs = dict(spec["tmpfs"])
        if "size" in tmpfs:
            tmpfs["size"] = _bytes(tmpfs["size"], (*path, "tmpfs", "size"), ctx)
        if "mode" in tmpfs:
            tmpfs["mode"] = file_mode(tmpfs["mode"], ctx.file.where((*path, "tmpfs", "mode")))
        entry["tmpfs"] = tmpfs
    if "image" in spec:
        entry["image"] = spec["image"]
    return entry


def _short_volume(text: str, path: Path, ctx: Context) -> dict[str, Any]:
    """`[SOURCE:]TARGET[:OPTIONS]`: a bind when SOURCE is a path (`/`, `.`, `~`), else a named volume."""
    parts = text.split(":")
    if len(parts) > 3 or not all(parts[:2]) or not text:
        raise ctx.error(path, f'invalid volume "{text}"')
    options = parts[2].split(",") if len(parts) == 3 else []
    source, target = (parts[0], parts[1]) if len(parts) > 1 else ("", parts[0])
    entry: dict[str, Any] = {}
    is_bind = source.startswith(("/", ".", "~"))
    entry["type"] = "bind" if is_bind else "volume"
    if source:
        entry["source"] = ctx.host_path(source, path) if is_bind else source
    entry["target"] = _mount_target(target, path, ctx)
    bind: dict[str, Any] = {}
    vol: dict[str, Any] = {}
    for option in options:
        if option == "ro":
            entry["read_only"] = True
        elif option == "rw":
            pass
        elif option in ("z", "Z"):
            bind["selinux"] = option
        elif option in _PROPAGATION:
            bind["propagation"] = option
        elif option == "nocopy":
            vol["nocopy"] = True
        else:
            raise ctx.error(path, f'invalid volume "{text}": unknown option {quoted(option)}')
    if is_bind:
        bind["create_host_path"] = True
        entry["bind"] = _bind_order(bind)
    elif bind:
        raise ctx.error(path, f'invalid volume "{text}": {"/".join(bind.values())} applies to bind mounts only')
    if vol:
        entry["volume"] = vol
    return entry


def _mount_target(target: str, path: Path, ctx: Context) -> str:
    """A container path: absolute (docker refuses others), cleaned as compose-go's path.Clean does."""
    if not target.startswith("/"):
        raise ctx.error(path, f"mount target {quoted(target)} must be an absolute path")
    return "/" + posixpath.normpath(target).lstrip("/")  # normpath keeps a leading `//`; Go's Clean does not


def _bind_order(bind: dict[str, Any]) -> dict[str, Any]:
    return schema.ordered(bind, ("propagation", "create_host_path", "selinux"))


# -- the rest of a service ------------------------------------------------------------------------------------------

def _build(value: Any, path: Path, ctx: Context) -> dict[str, Any]:
    spec = {"context": value} if isinstance(value, str) else check_keys(value, schema.BUILD, path, ctx)
    out: dict[str, Any] = {k: v for k, v in spec.items() if v is not None}
    context = _string(spec.get("context", "."), (*path, "context"), ctx)
    is_remote = "://" in context or context.startswith(("git@", "github.com/"))
    out["context"] = context if is_remote else ctx.host_path(context, (*path, "context"))
    if spec.get("dockerfile") is not None:
        out["dockerfile"] = _string(spec["dockerfile"], (*path, "dockerfile"), ctx)
    elif "dockerfile_inline" not in spec:
        out["dockerfile"] = "Dockerfile"
    for key in ("args", "labels"):
        if key in spec and spec[key] is not None:
            out[key] = _key_values(spec[key], (*path, key), ctx, keep_none=key == "args")
    if "secrets" in spec:
        out["secrets"] = _mounts(spec["secrets"], (*path, "secrets"), ctx, default_dir=None)
    if "target" in spec:
        out["target"] = _string(spec["target"], (*path, "target"), ctx)
    return schema.ordered(out, schema.BUILD_ORDER)


def _networks(value: Any, path: Path, ctx: Context) -> dict[str, Any]:
    if isinstance(value, list):
        return {_string(n, (*path, i), ctx): None for i, n in enumerate(value)}
    if not isinstance(value, dict):
        raise ctx.error(path, f"must be a mapping or a list, got {_kind(value)}")
    out: dict[str, Any] = {}
    for key, spec in value.items():
        if spec is None:
            out[key] = None
            continue
        entry = dict(check_keys(spec, schema.SERVICE_NETWORK, (*path, key), ctx))
        if "aliases" in entry:
            entry["aliases"] = _string_list(entry["aliases"], (*path, key, "aliases"), ctx)
        for k in ("priority", "gw_priority"):
            if k in entry:
                entry[k] = _int(entry[k], (*path, key, k), ctx)
        out[key] = entry
    return out


def _depends_on(value: Any, path: Path, ctx: Context) -> dict[str, Any]:
    if isinstance(value, list):
        return {_string(n, (*path, i), ctx): {"condition": "service_started", "required": True}
                for i, n in enumerate(value)}
    if not isinstance(value, dict):
        raise ctx.error(path, f"must be a mapping or a list, got {_kind(value)}")
    out: dict[str, Any] = {}
    for name, spec in value.items():
        spec = check_keys({} if spec is None else spec, schema.DEPENDS_ON, (*path, name), ctx)
        condition = spec.get("condition", "service_started")
        if condition not in _CONDITIONS:
            raise ctx.error((*path, name, "condition"), f"invalid condition {quoted(condition)} (want one of "
                                                        f"{', '.join(_CONDITIONS)})")
        entry: dict[str, Any] = {"condition": condition}
        if spec.get("restart") is not None:
            entry["restart"] = _bool(spec["restart"], (*path, name, "restart"), ctx)
        entry["required"] = _bool(spec.get("required", True), (*path, name, "required"), ctx)
        out[name] = entry
    return out


def _healthcheck(value: Any, path: Path, ctx: Context) -> dict[str, Any]:
    spec = check_keys(value, schema.HEALTHCHECK, path, ctx)
    out: dict[str, Any] = {}
    if "test" in spec:
        test = spec["test"]
        out["test"] = ["CMD-SHELL", test] if isinstance(test, str) else _string_list(test, (*path, "test"), ctx)
        if out["test"] and out["test"][0] not in ("CMD", "CMD-SHELL", "NONE"):
            raise ctx.error((*path, "test"), 'must start with "CMD", "CMD-SHELL" or "NONE"')
    for key in ("timeout", "interval"):
        if spec.get(key) is not None:
            out[key] = _duration(spec[key], (*path, key), ctx)
    if spec.get("retries") is not None:
        out["retries"] = _int(spec["retries"], (*path, "retries"), ctx)
    for key in ("start_period", "start_interval"):
        if spec.get(key) is not None:
            out[key] = _duration(spec[key], (*path, key), ctx)
    if spec.get("disable") is not None:
        out["disable"] = _bool(spec["disable"], (*path, "disable"), ctx)
    return out


def _deploy(value: Any, path: Path, ctx: Context) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ctx.error(path, f"must be a mapping, got {_kind(value)}")
    out = dict(value)
    if out.get("replicas") is not None:
        out["replicas"] = _int(out["replicas"], (*path, "replicas"), ctx)
    if "labels" in out:
        out["labels"] = _key_values(out["labels"], (*path, "labels"), ctx, keep_none=False)
    resources = out.get("resources")
    if isinstance(resources, dict):
        out["resources"] = resources = dict(resources)
        for part in ("limits", "reservations"):
            spec = resources.get(part)
            if not isinstance(spec, dict):
                continue
            spec = resources[part] = dict(spec)
            where: Path = (*path, "resources", part)
            if spec.get("cpus") is not None:
                spec["cpus"] = _float(spec["cpus"], (*where, "cpus"), ctx)
            if spec.get("memory") is not None:
                spec["memory"] = _bytes(spec["memory"], (*where, "memory"), ctx)
            if spec.get("pids") is not None:
                spec["pids"] = _int(spec["pids"], (*where, "pids"), ctx)
            resources[part] = schema.ordered(spec, ("cpus", "memory", "pids"))
    return schema.ordered(out, schema.DEPLOY_ORDER)


def _mounts(value: Any, path: Path, ctx: Context, default_dir: str | None) -> list[dict[str, Any]]:
    """Service secrets/configs: a name alone or {source, target, uid, gid, mode}; target defaults under
    `default_dir` (None: no default, as for build secrets)."""
    if not isinstance(value, list):
        raise ctx.error(path, f"must be a list, got {_kind(value)}")
    out = []
    for i, item in enumerate(value):
        spec = {"source": item} if isinstance(item, str) else check_keys(item, schema.MOUNTED_FILE, (*path, i), ctx)
        if not spec.get("source"):
            raise ctx.error((*path, i), "is missing its source")
        entry: dict[str, Any] = {"source": _string(spec["source"], (*path, i, "source"), ctx)}
        if spec.get("target"):
            entry["target"] = _string(spec["target"], (*path, i, "target"), ctx)
        elif default_dir is not None:
            entry["target"] = posixpath.join(default_dir, entry["source"])
        for key in ("uid", "gid"):
            if spec.get(key) is not None:
                entry[key] = _string(spec[key], (*path, i, key), ctx)
        if spec.get("mode") is not None:
            entry["mode"] = file_mode(spec["mode"], ctx.file.where((*path, i, "mode")))
        out.append(entry)
    return out


def _env_file(value: Any, path: Path, ctx: Context) -> list[dict[str, Any]]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ctx.error(path, f"must be a string or a list, got {_kind(value)}")
    out = []
    for i, item in enumerate(items):
        spec = {"path": item} if isinstance(item, str) else check_keys(item, frozenset({"path", "required", "format"}),
                                                                         (*path, i), ctx)
        if not spec.get("path"):
            raise ctx.error((*path, i), "is missing its path")
        out.append({"path": ctx.host_path(_string(spec["path"], (*path, i, "path"), ctx), (*path, i)),
                    "required": _bool(spec.get("required", True), (*path, i, "required"), ctx)})
    return out


def _extra_hosts(value: Any, path: Path, ctx: Context) -> list[str]:
    """`host:ip`, `host=ip`, `host=ip1,ip2` or {host: ip | [ips]} as one `host:ip` entry per address."""
    if isinstance(value, dict):
        pairs = [(host, _string(ip, (*path, host), ctx)) for host, ips in value.items()
                 for ip in (ips if isinstance(ips, list) else [ips])]
    else:
        pairs = []
        for i, entry in enumerate(_string_list(value, path, ctx)):
            host, sep, ips = entry.partition("=") if "=" in entry else entry.partition(":")
            if not sep or not host or not ips:
                raise ctx.error((*path, i), f"invalid extra host {quoted(entry)} (want host:ip)")
            pairs.extend((host, ip) for ip in ips.split(","))
    return [f"{host}:{ip}" for host, ip in pairs]


def _ulimits(value: Any, path: Path, ctx: Context) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ctx.error(path, f"must be a mapping, got {_kind(value)}")
    out: dict[str, Any] = {}
    for name, spec in value.items():
        if isinstance(spec, dict):
            spec = check_keys(spec, frozenset({"soft", "hard"}), (*path, name), ctx)
            out[name] = {k: _int(spec[k], (*path, name, k), ctx) for k in ("soft", "hard") if k in spec}
        else:
            out[name] = _int(spec, (*path, name), ctx)
    return out


def _extends(value: Any, path: Path, ctx: Context) -> dict[str, str]:
    spec = {"service": value} if isinstance(value, str) else check_keys(value, schema.EXTENDS, path, ctx)
    if not spec.get("service"):
        raise ctx.error(path, "is missing the service to extend")
    out = {"service": _string(spec["service"], (*path, "service"), ctx)}
    if spec.get("file"):
        out["file"] = ctx.host_path(_string(spec["file"], (*path, "file"), ctx), (*path, "file"))
    return out


def _pull_policy(value: Any, path: Path, ctx: Context) -> str:
    policy = _string(value, path, ctx)
    return "missing" if policy == "if_not_present" else policy


def _mapping(value: Any, path: Path, ctx: Context) -> Any:
    if not isinstance(value, dict):
        raise ctx.error(path, f"must be a mapping, got {_kind(value)}")
    return value


def _logging(value: Any, path: Path, ctx: Context) -> Any:
    spec = dict(check_keys(value, frozenset({"driver", "options"}), path, ctx))
    if "driver" in spec:
        spec["driver"] = _string(spec["driver"], (*path, "driver"), ctx)
    if spec.get("options") is not None:
        spec["options"] = _key_values(spec["options"], (*path, "options"), ctx, keep_none=False)
    return schema.ordered(spec, ("driver", "options"))


def _list(value: Any, path: Path, ctx: Context) -> Any:
    if not isinstance(value, list):
        raise ctx.error(path, f"must be a list, got {_kind(value)}")
    return value


def _strings(value: Any, path: Path, ctx: Context) -> Any:
    return _key_values(value, path, ctx, keep_none=False)


def _environment(value: Any, path: Path, ctx: Context) -> Any:
    return _key_values(value, path, ctx)


def _secrets(value: Any, path: Path, ctx: Context) -> Any:
    return _mounts(value, path, ctx, "/run/secrets")


def _configs(value: Any, path: Path, ctx: Context) -> Any:
    return _mounts(value, path, ctx, "/")


Handler = Callable[[Any, Path, Context], Any]
_HANDLERS: dict[str, Handler] = {
    **dict.fromkeys(("container_name", "hostname", "domainname", "user", "working_dir", "stop_signal", "pid", "ipc",
                     "restart", "image", "network_mode", "platform", "runtime", "cgroup_parent", "cgroup",
                     "isolation", "mac_address", "userns_mode", "uts", "cpuset"), _string),
    **dict.fromkeys(("init", "read_only", "privileged", "tty", "stdin_open", "oom_kill_disable", "attach",
                     "use_api_socket"), _bool),
    **dict.fromkeys(("scale", "pids_limit", "cpu_shares", "cpu_count", "cpu_percent", "cpu_period", "cpu_quota",
                     "oom_score_adj", "mem_swappiness"), _int),
    **dict.fromkeys(("mem_limit", "memswap_limit", "mem_reservation", "shm_size"), _bytes),
    **dict.fromkeys(("cap_add", "cap_drop", "dns", "dns_search", "dns_opt", "security_opt", "tmpfs", "profiles",
                     "links", "external_links", "group_add", "device_cgroup_rules", "volumes_from", "expose"),
                    _string_list),
    **dict.fromkeys(("labels", "annotations", "sysctls"), _strings),
    **dict.fromkeys(("develop", "blkio_config", "credential_spec", "storage_opt", "provider"), _mapping),
    "logging": _logging,
    **dict.fromkeys(("devices", "post_start", "pre_stop", "pre_start"), _list),
    "label_file": _string_list,
    **dict.fromkeys(("command", "entrypoint"), _shell_words),
    "environment": _environment,
    "cpus": _float,
    "stop_grace_period": _duration,
    "pull_policy": _pull_policy,
    "ports": _ports,
    "volumes": _volumes,
    "build": _build,
    "networks": _networks,
    "depends_on": _depends_on,
    "healthcheck": _healthcheck,
    "deploy": _deploy,
    "secrets": _secrets,
    "configs": _configs,
    "env_file": _env_file,
    "extra_hosts": _extra_hosts,
    "ulimits": _ulimits,
    "extends": _extends,
}
