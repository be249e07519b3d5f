"""A service of the canonical model as `client.containers.create` arguments (docker-py's names)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from compose import resources
from compose.durations import seconds
from compose.errors import ComposeError

if TYPE_CHECKING:
    from compose.model import Project

# Service keys the container API cannot honour: refused by name rather than silently dropped.
UNSUPPORTED = ("pid", "ipc", "ulimits", "sysctls", "devices", "domainname", "mac_address", "cgroup_parent",
               "shm_size", "group_add", "userns_mode", "oom_score_adj", "oom_kill_disable", "cpuset", "isolation",
               "device_cgroup_rules", "storage_opt", "runtime", "platform", "uts", "gpus")
RESTART_NAMES = ("no", "always", "on-failure", "unless-stopped")


@dataclass
class Target:
    """What a container of the service needs besides the service itself."""

    name: str  # the container's name
    labels: dict[str, str]  # compose's labels, added to the service's own
    container_of: Callable[[str], str]  # a service's first container (for service:x, links, volumes_from)
    secrets_dir: str  # where secrets and configs given as content or environment are written
    publish: bool = True  # one-off `run` containers publish ports only with --service-ports
    overrides: dict[str, Any] = field(default_factory=dict)  # `run`'s own arguments (command, user, ...)


def image_name(project: Project, service: str) -> str:
    """The service's image: its `image`, else `<project>-<service>` when it builds (docker compose's rule)."""
    spec = project.service(service)
    if spec.get("image"):
        return spec["image"]
    if "build" not in spec:
        raise ComposeError(f"service {service} has neither an image nor a build context specified")
    return f"{project.name}-{service}"


def create_args(project: Project, service: str, target: Target) -> dict[str, Any]:
    """containers.create's keyword arguments (image and command included) for one container of `service`."""
    svc = project.service(service)
    where = f"services.{service}"
    for key in UNSUPPORTED:
        if svc.get(key):
            raise ComposeError(f"{where}.{key}: not supported by dockyard")
    limits = ((svc.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    cpus = limits.get("cpus", svc.get("cpus"))
    args: dict[str, Any] = {
        "image": image_name(project, service),
        "command": svc.get("command"),
        "name": target.name,
        "environment": {k: v for k, v in (svc.get("environment") or {}).items() if v is not None},
        "labels": {**(svc.get("labels") or {}), **target.labels},
        "user": svc.get("user"), "working_dir": svc.get("working_dir"), "hostname": svc.get("hostname"),
        "tty": bool(svc.get("tty")), "stdin_open": bool(svc.get("stdin_open")),
        "init": bool(svc.get("init")), "read_only": bool(svc.get("read_only")),
        "privileged": bool(svc.get("privileged")),
        "cap_add": svc.get("cap_add"), "cap_drop": svc.get("cap_drop"), "security_opt": svc.get("security_opt"),
        "dns": svc.get("dns"), "extra_hosts": svc.get("extra_hosts"),
        "stop_signal": svc.get("stop_signal"),
        "mem_limit": limits.get("memory", svc.get("mem_limit")),
        "nano_cpus": int(float(cpus) * 1e9) if cpus else None,
        "pids_limit": limits.get("pids", svc.get("pids_limit")),
        "restart_policy": _restart(svc.get("restart"), where),
        "healthcheck": _healthcheck(svc.get("healthcheck"), where),
        "ports": _ports(svc.get("ports") or []) if target.publish else None,
        "tmpfs": {t.partition(":")[0]: t.partition(":")[2] for t in svc.get("tmpfs") or []},
        "mounts": _mounts(project, service, svc, target),
        "volumes_from": [_volumes_from(v, target) for v in svc.get("volumes_from") or []],
        "links": [f"{target.container_of(s)}:{alias or s}"
                  for s, _, alias in (link.partition(":") for link in svc.get("links") or [])],
    }
    if "entrypoint" in svc:
        args["entrypoint"] = svc["entrypoint"]
    if svc.get("stop_grace_period") is not None:
        args["stop_timeout"] = seconds(svc["stop_grace_period"], f"{where}.stop_grace_period")
    # `expose` maps to nothing: on a bridge every port of a container is reachable from its networks already.
    args.update(_networking(project, service, svc, target))
    args.update(target.overrides)
    return {k: v for k, v in args.items() if v is not None}


def _restart(policy: str | None, where: str) -> dict[str, Any] | None:
    if not policy:
        return None
    name, _, count = policy.partition(":")
    if name not in RESTART_NAMES or (count and not count.isdigit()):
        raise ComposeError(f"{where}.restart: invalid restart policy {policy!r}")
    return {"Name": name, "MaximumRetryCount": int(count or 0)}


def _healthcheck(hc: dict[str, Any] | None, where: str) -> dict[str, Any] | None:
    """compose's healthcheck as docker-py's (durations in nanoseconds); disable: true is test NONE."""
    if not hc:
        return None
    if hc.get("disable"):
        return {"test": ["NONE"]}
    out: dict[str, Any] = {"test": hc.get("test") or []}
    for key in ("interval", "timeout", "start_period"):
        if hc.get(key) is not None:
            out[key] = int(seconds(hc[key], f"{where}.healthcheck.{key}") * 1e9)
    if hc.get("retries") is not None:
        out["retries"] = int(hc["retries"])
    return out


def _ports(ports: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """docker-py's ports: {"80/tcp": [published | (host_ip, published) | None, ...]}."""
    out: dict[str, list[Any]] = {}
    for p in ports:
        published = p.get("published") or None
        host: Any = (p["host_ip"], published) if p.get("host_ip") else published
        out.setdefault(f"{p['target']}/{p.get('protocol') or 'tcp'}", []).append(host)
    return out


def _mounts(project: Project, service: str, svc: dict[str, Any], target: Target) -> list[str]:
    """The service's volumes, secrets and configs as --mount specs."""
    out = []
    for i, v in enumerate(svc.get("volumes") or []):
        where = f"services.{service}.volumes[{i}]"
        kind, dest = v.get("type", "volume"), v.get("target", "")
        fields = [f"type={kind}", f"target={dest}"]
        if kind == "bind":
            source = v.get("source", "")
            if (v.get("bind") or {}).get("create_host_path") and not os.path.exists(source):
                os.makedirs(source, exist_ok=True)  # docker compose creates a missing short-syntax bind source
            fields.append(f"source={source}")
        elif kind == "volume" and v.get("source"):
            fields.append(f"source={resources.volume_name(project, v['source'])}")
        elif kind == "tmpfs" and (v.get("tmpfs") or {}).get("size"):
            fields.append(f"tmpfs-size={v['tmpfs']['size']}")
        elif kind not in ("volume", "tmpfs"):
            raise ComposeError(f"{where}: volume type {kind!r} is not supported")
        if v.get("read_only"):
            fields.append("readonly")
        out.append(_mount_spec(fields, where))
    for kind, default_dir in (("secrets", "/run/secrets"), ("configs", "")):
        for i, ref in enumerate(svc.get(kind) or []):
            where = f"services.{service}.{kind}[{i}]"
            source = _file_of(project, kind, ref["source"], target.secrets_dir, where)
            dest = ref.get("target") or ref["source"]
            dest = dest if dest.startswith("/") else f"{default_dir}/{dest}"
            out.append(_mount_spec(["type=bind", f"source={source}", f"target={dest}", "readonly"], where))
    return out


def _mount_spec(fields: list[str], where: str) -> str:
    if any("," in f for f in fields):
        raise ComposeError(f"{where}: a path with a comma is not supported")
    return ",".join(fields)


def _file_of(project: Project, kind: str, key: str, secrets_dir: str, where: str) -> str:
    """The host file holding a secret or config: its `file`, or its content/environment written out."""
    spec = getattr(project, kind).get(key)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", key):
        raise ComposeError(f"{where}: invalid {kind[:-1]} name {key!r}")
    if spec is None:
        raise ComposeError(f"{where}: undefined {kind[:-1]} {key!r}")
    if spec.get("file"):
        if not os.path.isfile(spec["file"]):
            raise ComposeError(f"{kind}.{key}.file: no such file: {spec['file']}")
        return spec["file"]
    if spec.get("external"):
        raise ComposeError(f"{kind}.{key}: external {kind} are not supported (swarm only)")
    if "content" in spec:
        content = spec["content"]
    elif "environment" in spec:
        content = project.environment.get(spec["environment"], os.environ.get(spec["environment"], ""))
    else:
        raise ComposeError(f"{kind}.{key}: needs file, content or environment")
    from dockyard.fsutil import atomic_write

    path = os.path.join(secrets_dir, kind, key)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    atomic_write(path, content.encode(), mode=0o444)
    return path


def _volumes_from(spec: str, target: Target) -> str:
    """`service[:ro]` or `container:name[:ro]` as the container to take volumes from."""
    if spec.startswith("container:"):
        return spec.removeprefix("container:")
    name, _, mode = spec.partition(":")
    return f"{target.container_of(name)}:{mode}" if mode else target.container_of(name)


def _networking(project: Project, service: str, svc: dict[str, Any], target: Target) -> dict[str, Any]:
    """network_mode, or the first network plus every network's aliases and fixed address."""
    mode = svc.get("network_mode")
    if mode:
        if mode.startswith("service:"):
            return {"network_mode": f"container:{target.container_of(mode.removeprefix('service:'))}"}
        return {"network_mode": mode}
    nets = svc.get("networks") or {"default": None}
    keys = sorted(nets, key=lambda k: (-((nets[k] or {}).get("priority") or 0), k))
    config: dict[str, dict[str, Any]] = {}
    for key in keys:
        spec = nets[key] or {}
        endpoint: dict[str, Any] = {"Aliases": [service, *(spec.get("aliases") or [])]}
        if spec.get("ipv4_address"):
            endpoint["IPAMConfig"] = {"IPv4Address": spec["ipv4_address"]}
        config[resources.network_name(project, key)] = endpoint
    return {"network": next(iter(config)), "networking_config": config}
