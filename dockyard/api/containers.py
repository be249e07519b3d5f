"""Containers in docker-py's shape: `client.containers.run/create/get/list/prune` and the Container model."""

from __future__ import annotations

import math
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, overload

from dockyard.api.errors import APIError, ContainerError, ImageNotFound, NotFound, engine_errors
from dockyard.api.model import Model
from runner import lifecycle, listing, logs
from runner.containers import Containers

if TYPE_CHECKING:
    from datetime import datetime
    from typing import TypeAlias

    from dockyard.api.client import Client
    from runner.containers import Container as Record
    from runner.create import Options
    from runner.network.endpoint import EndpointConfig

    Moment: TypeAlias = datetime | int | float | str | None  # a time for logs: a datetime, Unix seconds or RFC 3339


class ExecResult(NamedTuple):
    """What `exec_run` returns, as docker-py: the exit code and the command's output (stdout and stderr)."""

    exit_code: int | None  # None when detached, as docker-py
    output: bytes | None


@dataclass
class RunOptions:
    """The keyword arguments of `run`/`create` the engine understands, as docker-py names them."""

    name: str | None = None
    environment: dict[str, str] | list[str] | None = None
    ports: dict[str, Any] | None = None
    publish_all_ports: bool = False
    volumes: dict[str, dict] | list[str] | None = None
    volumes_from: list[str] | None = None
    mounts: list[str] | None = None  # --mount syntax
    tmpfs: dict[str, str] | None = None
    network: str | None = None
    network_mode: str | None = None
    # {network: {"Aliases": [...], "IPAMConfig": {"IPv4Address": ip}}} (or aliases/ipv4_address): every one joins
    networking_config: dict[str, dict] | None = None
    entrypoint: str | list[str] | None = None
    working_dir: str | None = None
    user: str | None = None
    labels: dict[str, str] | list[str] | None = None
    hostname: str | None = None
    tty: bool = False
    stdin_open: bool = False
    mem_limit: int | str | None = None
    nano_cpus: int | None = None
    pids_limit: int | None = None
    cap_add: list[str] | None = None
    cap_drop: list[str] | None = None
    privileged: bool = False
    security_opt: list[str] | None = None
    read_only: bool = False
    init: bool = False
    restart_policy: dict | None = None
    healthcheck: dict | None = None
    stop_signal: str | None = None
    stop_timeout: float | None = None  # seconds; a fraction (compose's stop_grace_period) rounds up
    dns: list[str] | None = None
    extra_hosts: dict[str, str] | list[str] | None = None
    links: dict[str, str] | list[str] | None = None
    auto_remove: bool = False
    runtime: str | None = None
    platform: str | None = None  # of a multi-platform image; a foreign one runs under qemu

    def to_options(self, image: str, command: str | list[str] | None) -> Options:
        """The engine's create options (runner.create.Options) for these arguments."""
        from runner import create, volumes

        entrypoint, command = self.entrypoint, _argv(command)
        if isinstance(entrypoint, list):  # the engine takes one entrypoint word; the rest go before the command
            entrypoint, command = (entrypoint[0], [*entrypoint[1:], *command]) if entrypoint else ("", command)
        mounts = [volumes.parse_volume_flag(v) for v in _volume_flags(self.volumes)]
        mounts += [volumes.parse_mount_flag(m) for m in self.mounts or []]
        mounts += [volumes.parse_tmpfs_flag(f"{target}:{opts}" if opts else target)
                   for target, opts in (self.tmpfs or {}).items()]
        policy = self.restart_policy or {}
        restart = policy.get("Name") or "no"
        if restart == "on-failure" and policy.get("MaximumRetryCount"):
            restart += f":{policy['MaximumRetryCount']}"
        memory = self.mem_limit
        first, *more = _endpoints(self.network or self.network_mode, self.networking_config or {})
        return create.Options(
            image=image, command=command, entrypoint=entrypoint, name=self.name or "",
            env=_pairs(self.environment), workdir=self.working_dir or "", user=self.user or "",
            hostname=self.hostname or "", tty=self.tty, interactive=self.stdin_open, mounts=mounts,
            volumes_from=list(self.volumes_from or []), read_only=self.read_only, publish=_publish_flags(self.ports),
            publish_all=self.publish_all_ports, network=first.network, ip=first.ip, aliases=first.aliases,
            networks=more,
            add_hosts=_pairs(self.extra_hosts, ":"), dns=list(self.dns or []),
            links=_pairs(self.links, ":"),
            memory=create.parse_bytes(memory) if isinstance(memory, str) else memory,
            cpus=self.nano_cpus / 1e9 if self.nano_cpus else None, pids_limit=self.pids_limit, restart=restart,
            init=self.init, cap_add=list(self.cap_add or []), cap_drop=list(self.cap_drop or []),
            security_opt=create.load_security_opts(list(self.security_opt or [])), privileged=self.privileged,
            stop_signal=self.stop_signal or "",
            stop_timeout=None if self.stop_timeout is None else math.ceil(self.stop_timeout),
            labels=dict(_pair_dict(self.labels)), runtime=self.runtime or "dockyard", auto_remove=self.auto_remove,
            healthcheck=_healthcheck(self.healthcheck), platform=self.platform)


def _endpoints(network: str | None, config: dict[str, dict]) -> list[EndpointConfig]:
    """The networks to join: `network` (else networking_config's first, else bridge), then networking_config's
    others, each with its aliases and fixed address from networking_config (docker-py's EndpointConfig keys)."""
    from runner.network.endpoint import EndpointConfig

    names = list(dict.fromkeys([network or next(iter(config), "bridge"), *config]))
    out = []
    for name in names:
        settings = config.get(name) or {}
        unknown = set(settings) - {"Aliases", "aliases", "IPAMConfig", "ipv4_address"}
        if unknown:
            raise APIError(f"networking_config[{name!r}]: unsupported key(s) {', '.join(sorted(unknown))} "
                           "(Aliases, IPAMConfig.IPv4Address)")
        ipam = settings.get("IPAMConfig") or {}
        ip = settings.get("ipv4_address") or ipam.get("IPv4Address") or ipam.get("ipv4_address") or ""
        out.append(EndpointConfig(name, ip, list(settings.get("Aliases") or settings.get("aliases") or [])))
    return out


def _argv(command: str | list[str] | None) -> list[str]:
    if command is None:
        return []
    return shlex.split(command) if isinstance(command, str) else list(command)


def _pairs(value: dict | list | None, sep: str = "=") -> list[str]:
    """A dict or a list of `KEY<sep>VALUE` as the list."""
    if isinstance(value, dict):
        return [f"{k}{sep}{v}" for k, v in value.items()]
    return list(value or [])


def _pair_dict(value: dict | list | None) -> dict[str, str]:
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    return dict(item.partition("=")[::2] for item in value or [])


def _volume_flags(value: dict | list | None) -> list[str]:
    """docker-py's volumes ({source: {"bind": target, "mode": "ro"}} or ["src:dst:mode"]) as -v flags."""
    if isinstance(value, dict):
        return [f"{src}:{v['bind']}:{v.get('mode', 'rw')}" if isinstance(v, dict) else f"{src}:{v}"
                for src, v in value.items()]
    return list(value or [])


def _publish_flags(ports: dict | None) -> list[str]:
    """docker-py's ports ({"80/tcp": 8080 | ("127.0.0.1", 8080) | [8080, 8081] | None}) as -p flags."""
    out = []
    for ctr, hosts in (ports or {}).items():
        ctr = str(ctr)
        for host in hosts if isinstance(hosts, list) else [hosts]:
            if host is None:
                out.append(ctr)
            elif isinstance(host, tuple):
                out.append(f"{host[0]}:{host[1] if len(host) > 1 and host[1] is not None else ''}:{ctr}")
            else:
                out.append(f"{host}:{ctr}")
    return out


def _healthcheck(hc: dict | None) -> dict | None:
    """docker-py's healthcheck ({"test": [...] | "cmd", "interval": ns, ...}) as the image config's Healthcheck."""
    if not hc:
        return None
    test = hc.get("test", hc.get("Test"))
    out: dict[str, Any] = {"Test": ["CMD-SHELL", test] if isinstance(test, str) else list(test or ["NONE"])}
    for key in ("interval", "timeout", "retries", "start_period"):
        value = hc.get(key, hc.get(key.title().replace("_", "")))
        if value is not None:
            out[key.title().replace("_", "")] = value
    return out


class Container(Model):
    """One container; `attrs` is docker's inspect object as of the last `reload()`."""

    def __init__(self, client: Client, record: Record):
        self.client = client
        self._record = record
        super().__init__(listing.inspect(client.root, record))

    @property
    def id(self) -> str:
        return self._record.id

    @property
    def name(self) -> str:
        return self._record.name

    @property
    def status(self) -> str:
        return self._record.status

    @property
    def labels(self) -> dict[str, str]:
        return self._record.config.get("Labels") or {}

    @property
    def ports(self) -> dict[str, list[dict]]:
        return self.attrs["NetworkSettings"]["Ports"]

    @property
    def health(self) -> str:
        """Its health check's status: "starting", "healthy" or "unhealthy"; "none" without a check."""
        return (self.attrs["State"].get("Health") or {}).get("Status") or "none"

    @property
    def image(self):
        """The container's image (from client.images)."""
        return self.client.images.get(self._record.image_id)

    @engine_errors()
    def reload(self) -> None:
        """Read the container's state again."""
        self._record = Containers(self.client.root).load(self.id)
        self.attrs = listing.inspect(self.client.root, self._record)

    @engine_errors()
    def start(self) -> None:
        lifecycle.start(self.client.root, self.id)
        self.reload()

    @engine_errors()
    def stop(self, timeout: float | None = None, signal: str | int | None = None) -> None:
        """The stop signal (default: the container's), SIGKILL after `timeout` seconds (default: its own, or 10)."""
        lifecycle.stop(self.client.root, self.id, timeout, signal)
        self.reload()

    @engine_errors()
    def kill(self, signal: str | int | None = None) -> None:
        lifecycle.kill(self.client.root, self.id, signal or "KILL")
        self.reload()

    @engine_errors()
    def restart(self, timeout: float | None = None) -> None:
        lifecycle.restart(self.client.root, self.id, timeout)
        self.reload()

    @engine_errors()
    def pause(self) -> None:
        lifecycle.pause(self.client.root, self.id)
        self.reload()

    @engine_errors()
    def unpause(self) -> None:
        lifecycle.unpause(self.client.root, self.id)
        self.reload()

    @engine_errors()
    def remove(self, force: bool = False, v: bool = False) -> None:
        lifecycle.remove(self.client.root, self.id, force, v)

    @engine_errors()
    def rename(self, name: str) -> None:
        lifecycle.rename(self.client.root, self.id, name)
        self.reload()

    @engine_errors()
    def wait(self, timeout: float | None = None) -> dict:
        """Block until the container stops: {"StatusCode": exit code}."""
        return {"StatusCode": lifecycle.wait(self.client.root, self.id, timeout)}

    @overload
    def logs(self, stdout: bool = ..., stderr: bool = ..., *, stream: Literal[False] = ..., timestamps: bool = ...,
             tail: str | int = ..., since: Moment = ..., follow: bool | None = ..., until: Moment = ...) -> bytes: ...

    @overload
    def logs(self, stdout: bool = ..., stderr: bool = ..., *, stream: Literal[True], timestamps: bool = ...,
             tail: str | int = ..., since: Moment = ..., follow: bool | None = ...,
             until: Moment = ...) -> Iterator[bytes]: ...

    def logs(self, stdout: bool = True, stderr: bool = True, *, stream: bool = False, timestamps: bool = False,
             tail: str | int = "all", since: Moment = None, follow: bool | None = None,
             until: Moment = None) -> bytes | Iterator[bytes]:
        """The container's output from its log (tail: a count or "all"): bytes, or with `stream` a generator of
        its lines as they come; `follow` (default: as `stream`) goes on until the container stops."""
        chunks = self._log_lines(stdout, stderr, timestamps, tail, since, until, stream if follow is None else follow)
        return chunks if stream else b"".join(chunks)

    def _log_lines(self, stdout: bool, stderr: bool, timestamps: bool, tail: str | int, since: Moment,
                   until: Moment, follow: bool) -> Iterator[bytes]:
        streams = {"stdout"} if stdout else set()
        streams |= {"stderr"} if stderr else set()
        with engine_errors():
            for entry in logs.read(self.client.root, self.id, None if tail == "all" else int(tail),
                                   logs.timestamp(since), logs.timestamp(until), follow):
                if entry.get("stream", "stdout") in streams:
                    yield (f"{entry['time']} {entry['log']}" if timestamps else entry["log"]).encode()

    @engine_errors()
    def start_attached(self, interactive: bool = False) -> int:
        """Start it with this process's stdout/stderr (and with `interactive`, for a container created with
        stdin_open, our stdin) attached, through its TTY when created with tty=True (`dockyard start -a[i]`);
        its exit code."""
        code = lifecycle.start_attached(self.client.root, self.id, interactive)
        self.reload()
        return code

    @engine_errors()
    def exec_attached(self, cmd: str | list[str], *, tty: bool = False, interactive: bool = False, user: str = "",
                      environment: dict | list | None = None, workdir: str | None = None, privileged: bool = False,
                      detach: bool = False) -> int:
        """Run a command in the running container on this process's stdin/stdout/stderr, as `dockyard exec -it`
        (a tty of its own with `tty`); its exit code (0 at once with detach)."""
        self.reload()
        argv = _argv(cmd)
        lifecycle.check_exec(self._record, argv, tty and interactive)
        return lifecycle.exec_run(self.client.root, self._record, argv, user=user, workdir=workdir or "",
                                  env=_pairs(environment), detach=detach, interactive=interactive,
                                  privileged=privileged, tty=tty)

    @engine_errors()
    def exec_run(self, cmd: str | list[str], user: str = "", environment: dict | list | None = None,
                 workdir: str | None = None, privileged: bool = False, detach: bool = False) -> ExecResult:
        """Run a command in the running container; its exit code and output (None when detached)."""
        import tempfile

        self.reload()
        with tempfile.TemporaryFile() as out:
            code = lifecycle.exec_run(self.client.root, self._record, _argv(cmd), user=user or "",
                                      workdir=workdir or "", env=_pairs(environment), detach=detach,
                                      privileged=privileged, output=out.fileno())
            out.seek(0)
            return ExecResult(None if detach else code, None if detach else out.read())

    @engine_errors()
    def top(self, ps_args: str | None = None) -> dict:
        """The container's processes: {"Titles": [...], "Processes": [[...]]}."""
        self.reload()
        return lifecycle.top(self._record, shlex.split(ps_args) if ps_args else None).as_docker()


class ContainerCollection:
    """The containers of a client's store."""

    def __init__(self, client: Client):
        self.client = client

    @engine_errors()
    def create(self, image: str, command: str | list[str] | None = None, **kwargs: Any) -> Container:
        """A new (created, not started) container; keyword arguments as docker-py's (see RunOptions)."""
        from dockyard.image import Platform
        from dockyard.store import Store

        opts = RunOptions(**kwargs).to_options(image, command)
        try:
            Store(self.client.root).resolve(image, Platform.parse(opts.platform) if opts.platform else None)
        except NotFound as e:
            raise ImageNotFound(str(e)) from None
        return Container(self.client, lifecycle.create(self.client.root, opts))

    @engine_errors()
    def run(self, image: str, command: str | list[str] | None = None, *, detach: bool = False,
            remove: bool = False, stdout: bool = True, stderr: bool = False, **kwargs: Any) -> Container | bytes:
        """Create and start a container. detach: the Container at once; else wait for it and return its output
        (stdout by default), raising ContainerError (with its stderr) when it exits non-zero."""
        if detach and remove:
            kwargs["auto_remove"] = True  # as docker-py: nobody is left to remove it
            remove = False
        container = self.create(image, command, **kwargs)
        try:
            container.start()
        except BaseException:
            if remove:
                container.remove(force=True)
            raise
        if detach:
            return container
        code = container.wait()["StatusCode"]
        out = container.logs(stdout=stdout, stderr=stderr)
        err = container.logs(stdout=False, stderr=True) if code else b""
        if remove:
            container.remove(force=True)
        if code:
            raise ContainerError(container, code, _argv(command) or None, image, err)
        return out

    @engine_errors()
    def get(self, container_id: str) -> Container:
        """A container by name, id or unique id prefix (NotFound otherwise)."""
        return Container(self.client, Containers(self.client.root).find(container_id))

    @engine_errors()
    def list(self, all: bool = False, filters: dict[str, str | list[str]] | None = None,
             limit: int = -1) -> list[Container]:
        """As `dockyard ps`: running containers (every one with all=True), newest first; filters as docker's."""
        wanted = {k: v if isinstance(v, list) else [str(v)] for k, v in (filters or {}).items()}
        return [Container(self.client, c) for c in listing.list_containers(self.client.root, all, wanted, limit)]

    @engine_errors()
    def prune(self, filters: dict | None = None) -> dict:
        """Remove every stopped container: {"ContainersDeleted": [ids], "SpaceReclaimed": their layers' bytes}."""
        from dockyard.sizes import disk_usage

        sizes = {c.id: disk_usage([c.bundle + "/diff"]) for c in Containers(self.client.root).all() if not c.running}
        removed = lifecycle.prune(self.client.root)
        return {"ContainersDeleted": removed or None, "SpaceReclaimed": sum(sizes.get(cid, 0) for cid in removed)}


__all__ = ["Container", "ContainerCollection", "ExecResult", "RunOptions"]
