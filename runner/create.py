"""`create`: an image and run options become a container record and its OCI bundle (nothing copied)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dockyard.errors import DockyardError, NotFound
from dockyard.fsutil import atomic_write, read_text
from runner import spec
from runner.cgroups import container_path
from runner.containers import Container, Containers, check_name, new_id, now
from runner.network.endpoint import DEFAULT_NETWORK, EndpointConfig

if TYPE_CHECKING:
    from runner.volumes import MountSpec

NETNS_DIR = "/run/dockyard/netns"
NETWORK_KEYS = ("name", "alias", "ip")  # of --network's long form
ETC_FILES = ("hosts", "hostname", "resolv.conf")  # a container's own, bind-mounted at /etc
RESTART_POLICIES = ("no", "on-failure", "always", "unless-stopped")


@dataclass
class Options:
    """What `run`/`create` flags ask for (docker's names)."""

    image: str
    command: list[str] = field(default_factory=list)
    entrypoint: str | None = None
    name: str = ""
    env: list[str] = field(default_factory=list)  # -e and --env-file lines, in order
    workdir: str = ""
    user: str = ""
    hostname: str = ""
    tty: bool = False
    interactive: bool = False
    mounts: list[MountSpec] = field(default_factory=list)
    volumes_from: list[str] = field(default_factory=list)
    read_only: bool = False
    publish: list[str] = field(default_factory=list)
    publish_all: bool = False
    network: str = "bridge"  # the first network, or the mode: host, none, container:<name|id>
    ip: str = ""  # the first network's fixed address
    aliases: list[str] = field(default_factory=list)  # the first network's aliases
    networks: list[EndpointConfig] = field(default_factory=list)  # the further networks, joined in order
    add_hosts: list[str] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    memory: int | None = None
    cpus: float | None = None
    pids_limit: int | None = None
    restart: str = "no"
    init: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    security_opt: list[str] = field(default_factory=list)  # as load_security_opts leaves them
    privileged: bool = False
    stop_signal: str = ""
    stop_timeout: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    runtime: str = "dockyard"
    auto_remove: bool = False
    healthcheck: dict | None = None
    platform: str | None = None  # os/arch[/variant] of a multi-platform image (default: the host's)


def parse_restart(text: str) -> dict:
    """`no|on-failure[:N]|always|unless-stopped` into docker's RestartPolicy."""
    name, _, count = text.partition(":")
    if name not in RESTART_POLICIES or (count and (name != "on-failure" or not count.isdigit())):
        raise DockyardError(f"invalid restart policy {text!r}: want no, on-failure[:N], always or unless-stopped")
    return {"Name": name, "MaximumRetryCount": int(count or 0)}


def parse_bytes(text: str) -> int:
    """Docker's RAMInBytes: 512m, 1g, 100k, 1024 (bytes)."""
    from dockyard.sizes import ram_in_bytes

    try:
        return ram_in_bytes(text)
    except ValueError:
        raise DockyardError(f"invalid size {text!r}: want a number with an optional unit (b, k, m, g)") from None


def capabilities(add: list[str], drop: list[str]) -> list[str]:
    """Docker's default capability set with --cap-add/--cap-drop applied (ALL allowed in either)."""
    def norm(names: list[str]) -> list[str]:
        return [n.upper() if n.upper() in ("ALL",) or n.upper().startswith("CAP_") else "CAP_" + n.upper()
                for n in names]

    add, drop = norm(add), norm(drop)
    for n in add + drop:
        if n != "ALL" and n not in spec.CAPABILITIES:
            raise DockyardError(f"unknown capability {n!r}")
    if not add and not drop:
        return list(spec.DOCKER_CAPABILITIES)
    available = spec.available_capabilities()
    for n in add:
        if n != "ALL" and n not in available:
            raise DockyardError(f"capability {n} is not available on this host (not in our bounding set)")
    caps = list(spec.DOCKER_CAPABILITIES)
    if "ALL" in drop:
        caps = []
    caps = [c for c in caps if c not in drop]
    if "ALL" in add:
        caps = available
    caps += [c for c in add if c != "ALL" and c not in caps]
    return caps


@dataclass
class Security:
    """What --security-opt asks for."""

    no_new_privileges: bool = False
    seccomp: dict | str = "default"  # "default", "unconfined" or a Docker-format profile


def _split_security_opt(opt: str) -> tuple[str, str]:
    """KEY=VALUE (or docker's older KEY:VALUE); bare no-new-privileges means true."""
    if opt == "no-new-privileges":
        return opt, "true"
    key, sep, value = opt.partition("=")
    if not sep:
        key, sep, value = opt.partition(":")
    if (key, value) in (("apparmor", "unconfined"), ("label", "disable")):
        return key, value  # we apply neither AppArmor nor SELinux: asking for none is granted, a profile is not
    if not sep or key not in ("seccomp", "no-new-privileges"):
        raise DockyardError(f"unsupported --security-opt {opt[:100]!r} (seccomp=unconfined|PROFILE.json, "
                            "no-new-privileges, apparmor=unconfined, label=disable)")
    return key, value


def load_security_opts(opts: list[str]) -> list[str]:
    """--security-opt values as docker stores them: a seccomp profile file becomes `seccomp=<its compact JSON>`."""
    from runner import seccomp

    out = []
    for opt in opts:
        key, value = _split_security_opt(opt)
        if key == "seccomp" and value not in ("unconfined", "builtin"):
            if not value:
                raise DockyardError("--security-opt seccomp: want unconfined or a profile file")
            opt = "seccomp=" + json.dumps(seccomp.read_profile(value), separators=(",", ":"))
        out.append(opt)
    return out


def parse_security_opts(opts: list[str]) -> Security:
    """The Security that stored --security-opt values ask for (the last of each kind wins)."""
    from runner import seccomp

    sec = Security()
    for opt in opts:
        key, value = _split_security_opt(opt)
        if key == "no-new-privileges":
            if value not in ("true", "false"):
                raise DockyardError(f"invalid --security-opt {opt[:100]!r}: want no-new-privileges[=true|false]")
            sec.no_new_privileges = value == "true"
        elif key != "seccomp":
            continue
        elif value in ("unconfined", "builtin"):
            sec.seccomp = "default" if value == "builtin" else value
        else:
            sec.seccomp = seccomp.parse_profile(value, "given with --security-opt")
    return sec


def command_of(image_config: dict, opts: Options) -> tuple[list[str], list[str]]:
    """(Entrypoint, Cmd) as docker combines them: --entrypoint resets the image's Cmd."""
    if opts.entrypoint is not None:
        entrypoint = [opts.entrypoint] if opts.entrypoint else []
        cmd = list(opts.command)
    else:
        entrypoint = list(image_config.get("Entrypoint") or [])
        cmd = list(opts.command) or list(image_config.get("Cmd") or [])
    if not entrypoint and not cmd:
        raise DockyardError("no command specified")
    return entrypoint, cmd


def merged_env(image_env: list[str], extra: list[str]) -> list[str]:
    """Image Env overridden by -e/--env-file in order; `-e NAME` takes NAME from our environment if set."""
    env: dict[str, str] = {}
    for line in [*image_env, *extra]:
        key, eq, value = line.partition("=")
        if not key:
            raise DockyardError(f"invalid environment variable {line!r}")
        if eq:
            env[key] = value
        elif key in os.environ:
            env[key] = os.environ[key]
    return [f"{k}={v}" for k, v in env.items()]


def read_env_file(path: str) -> list[str]:
    """Lines of a docker --env-file: KEY=VALUE or KEY, comments and blank lines skipped."""
    try:
        with open(path) as f:
            return [line.rstrip("\n") for line in f if line.strip() and not line.lstrip().startswith("#")]
    except OSError as e:
        raise DockyardError(f"--env-file {path}: {e.strerror}") from None


def parse_network_flag(text: str) -> EndpointConfig:
    """`--network NAME` or its long form `name=NAME,alias=A,alias=B,ip=IP` (docker's keys; others refused)."""
    if "=" not in text:
        return EndpointConfig(text)
    ep = EndpointConfig("")
    for item in text.split(","):
        key, eq, value = item.partition("=")
        if not eq or key not in NETWORK_KEYS or not value:
            raise DockyardError(f"invalid --network {text!r}: want NAME or name=NAME[,alias=ALIAS][,ip=IP]")
        if key == "alias":
            ep.aliases.append(value)
        else:
            setattr(ep, "network" if key == "name" else "ip", value)
    if not ep.network:
        raise DockyardError(f"invalid --network {text!r}: it names no network (name=NAME)")
    return ep


def _special_mode(network: str) -> bool:
    """host, none and container:<x>: modes that join no network of ours."""
    return network in ("host", "none") or network.startswith("container:")


def _endpoints(root: str, opts: Options) -> list[EndpointConfig]:
    """The networks the container joins, in order (names resolved, each checked); [] for the special modes.

    Checked here, before anything is made, as docker's create refuses them.
    """
    mode = opts.network or DEFAULT_NETWORK
    if _special_mode(mode):
        if opts.networks:
            raise DockyardError(f"conflicting options: --network {mode} cannot be combined with other networks "
                                f"({', '.join(e.network for e in opts.networks)})")
        if opts.aliases:
            raise DockyardError(f"network-scoped aliases are only supported for user-defined networks, "
                                f"not --network {mode}")
        if opts.ip:
            raise DockyardError(f"user specified IP address is supported on user-defined networks only, "
                                f"not --network {mode}")
        return []
    import ipaddress
    import re

    from runner.network import store

    state = store.read(root)
    out: list[EndpointConfig] = []
    for want in [EndpointConfig(mode, opts.ip, list(opts.aliases)), *opts.networks]:
        if _special_mode(want.network):
            raise DockyardError(f"conflicting options: --network {want.network} cannot be combined with other "
                                "networks")
        if state is not None:
            net = state.network(want.network)
            name, subnet = net.name, net.subnet
        elif want.network == DEFAULT_NETWORK:
            name, subnet = DEFAULT_NETWORK, ""
        else:
            raise NotFound(f"network {want.network} not found")
        if any(e.network == name for e in out):
            raise DockyardError(f"network {name} is given twice")
        if name == DEFAULT_NETWORK and (want.aliases or want.ip):
            raise DockyardError(f"network-scoped aliases and fixed addresses are only supported for user-defined "
                                f"networks, not {DEFAULT_NETWORK}")
        for alias in want.aliases:
            if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", alias) or len(alias) > 253:
                raise DockyardError(f"invalid network alias {alias[:100]!r} for network {name}: "
                                    "only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        if want.ip:
            try:
                address = ipaddress.IPv4Address(want.ip)
            except ValueError:
                raise DockyardError(f"invalid IP address {want.ip[:100]!r} for network {name}") from None
            if address not in ipaddress.IPv4Network(subnet):
                raise DockyardError(f"IP address {want.ip} is not in network {name}'s subnet {subnet}")
        out.append(EndpointConfig(name, want.ip, list(dict.fromkeys(want.aliases))))
    return out


def _joined_container(root: str, opts: Options) -> Container:
    """The container whose network namespace `--network container:<name|id>` joins; what docker refuses with it
    is refused here (it must be running only at start: it may be started in between)."""
    conflicts = ((opts.publish or opts.publish_all, "port publishing"), (opts.hostname, "hostname"),
                 (opts.dns, "dns"), (opts.add_hosts, "custom host-to-IP mapping"), (opts.links, "links"))
    for given, what in conflicts:
        if given:
            raise DockyardError(f"conflicting options: {what} and the container type network mode ({opts.network})")
    ref = opts.network.removeprefix("container:")
    try:
        return Containers(root).find(ref)
    except NotFound:
        raise NotFound(f"--network {opts.network}: no such container: {ref}") from None


def create(root: str, opts: Options) -> Container:
    """Resolve the image, record the container and write its bundle; the image stays held until rm."""
    from dockyard import users
    from dockyard.image import Platform
    from dockyard.store import Store
    from runner import binfmt, rootfs

    store = Store(root)
    image = store.resolve(opts.image, Platform.parse(opts.platform) if opts.platform else None)
    binfmt.ensure(Platform.of(image.config) or Platform.host())  # a foreign image's binaries run under qemu
    icfg = image.config.get("config") or {}
    entrypoint, cmd = command_of(icfg, opts)
    restart = parse_restart(opts.restart)
    if opts.auto_remove and restart["Name"] != "no":
        raise DockyardError("conflicting options: --restart and --rm")
    if opts.runtime not in ("dockyard", "runc"):
        raise DockyardError(f"unknown runtime {opts.runtime!r} (dockyard or runc)")
    if opts.name:
        check_name(opts.name)
    security = parse_security_opts(opts.security_opt)
    caps = capabilities(opts.cap_add, opts.cap_drop)
    network = opts.network or DEFAULT_NETWORK
    endpoints = _endpoints(root, opts)
    if endpoints:
        network = endpoints[0].network
    joined = _joined_container(root, opts) if network.startswith("container:") else None
    if joined is not None:
        network = f"container:{joined.id}"  # as docker records it: by id, so a rename changes nothing
    ports = _ports(opts, icfg)
    if ports and network in ("host", "none"):
        ports = []  # docker ignores published ports outside a bridge network
    store_containers = Containers(root)
    cid = new_id()
    cdir = store_containers.path(cid)
    user_text = opts.user or icfg.get("User") or ""
    hostname = opts.hostname or (os.uname().nodename if network == "host" else
                                 joined.config["Hostname"] if joined else cid[:12])
    config: dict[str, Any] = {
        "Hostname": hostname, "Domainname": "", "User": user_text, "AttachStdin": opts.interactive,
        "AttachStdout": True, "AttachStderr": True, "ExposedPorts": icfg.get("ExposedPorts") or {},
        "Tty": opts.tty, "OpenStdin": opts.interactive, "StdinOnce": False,
        "Env": merged_env(icfg.get("Env") or [], opts.env), "Cmd": cmd, "Image": opts.image,
        "Volumes": icfg.get("Volumes") or None, "WorkingDir": opts.workdir or icfg.get("WorkingDir") or "",
        "Entrypoint": entrypoint or None, "Labels": {**(icfg.get("Labels") or {}), **opts.labels},
        "StopSignal": opts.stop_signal or icfg.get("StopSignal") or "SIGTERM",
        "StopTimeout": opts.stop_timeout, "Healthcheck": opts.healthcheck or icfg.get("Healthcheck"),
    }
    host_config = {
        "NetworkMode": network, "PortBindings": [p.__dict__ for p in ports], "PublishAllPorts": opts.publish_all,
        "IP": endpoints[0].ip if endpoints else "", "ExtraHosts": list(opts.add_hosts), "Dns": list(opts.dns),
        "Links": list(opts.links),
        "RestartPolicy": restart, "AutoRemove": opts.auto_remove, "ReadonlyRootfs": opts.read_only,
        "Memory": opts.memory or 0, "NanoCpus": int((opts.cpus or 0) * 1e9), "PidsLimit": opts.pids_limit,
        "CapAdd": opts.cap_add, "CapDrop": opts.cap_drop, "Init": opts.init, "Runtime": opts.runtime,
        "SecurityOpt": list(opts.security_opt) or None, "Privileged": opts.privileged,
        "VolumesFrom": list(opts.volumes_from),
    }
    c = Container(id=cid, name=opts.name.lstrip("/"), image=opts.image, image_digest=str(image.manifest_digest),
                  image_id=str(image.id), created=now(), bundle=cdir, config=config, host_config=host_config,
                  networks={e.network: e.settings() for e in endpoints})
    store_containers.add(c)  # reserves the name; from here on failures remove the record again
    try:
        # The image's unpacked layers are looked up (or unpacked again) and held in one `writing()` section: a
        # prune in another process then runs wholly before (the layers are unpacked again) or after (it sees the
        # hold and keeps them), never between (see Store.gc).
        with store.writing():
            store.hold(f"container-{cid}", [image.manifest_digest], durable=not c.ephemeral)
            lowerdirs = store.lowerdirs(image)
        user = users.resolve(user_text, users.read_layered(lowerdirs, "etc/passwd"),
                             users.read_layered(lowerdirs, "etc/group"))
        specs = list(opts.mounts)
        image_volumes = list((icfg.get("Volumes") or {}).keys())
        mounts: list[spec.Mount] = []
        if specs or opts.volumes_from or image_volumes:  # (only then: a run with none spares the volume code's import)
            from runner import volumes

            for ref in opts.volumes_from:
                name, _, mode = ref.partition(":")
                specs[:0] = volumes.volumes_from(store_containers.find(name).mounts, mode)
            mounts, c.mounts = volumes.resolve(root, specs, image_volumes, lowerdirs)
        net_mode = network if network in ("host", "none") else os.path.join(NETNS_DIR, cid)
        if joined is not None:  # the files of the namespace's owner, as docker shares them
            from runner.network.container import joined_id

            owner = store_containers.path(joined_id(joined) or joined.id)  # one joined in turn shares its owner's
            etc = [spec.Mount("/etc/" + name, source=os.path.join(owner, name)) for name in ETC_FILES]
        else:
            etc = spec.etc_mounts(cdir, hostname, "host" if network == "host" else "none", durable=not c.ephemeral)
        if opts.dns:
            from runner.network.hosts import resolv_conf

            text = resolv_conf(read_text("/etc/resolv.conf"), dns=opts.dns)
            atomic_write(os.path.join(cdir, "resolv.conf"), text.encode(), durable=not c.ephemeral)
        args = entrypoint + cmd
        if opts.init and opts.runtime != "dockyard":
            mounts.append(spec.Mount(INIT_PATH, "bind", _init_program(), True))
            args = [INIT_PATH, "--", *args]
        resources = spec.Resources(
            memory=opts.memory, cpu_quota=int(opts.cpus * 100000) if opts.cpus else None,
            cpu_period=100000 if opts.cpus else None, pids=opts.pids_limit)
        oci = spec.default_spec(
            "rootfs", args, env=config["Env"], cwd=config["WorkingDir"] or "/", user=user, hostname=hostname,
            network=net_mode, readonly_rootfs=opts.read_only, mounts=etc + mounts, resources=resources,
            no_new_privileges=security.no_new_privileges, capabilities=caps, cgroups_path=container_path(cid),
            terminal=opts.tty, privileged=opts.privileged, seccomp_profile=security.seccomp)
        if network == "host":
            oci["linux"]["namespaces"] = [n for n in oci["linux"]["namespaces"] if n["type"] != "uts"]
            oci.pop("hostname", None)
        os.makedirs(os.path.join(cdir, "rootfs"), exist_ok=True)
        shared = os.path.join(root, MOUNT_POINTS_DIR)
        with rootfs.mount_points_held(shared):  # until the record names the directory: a prune keeps it
            overlay = rootfs.with_mount_points(spec_overlay(cdir, lowerdirs), oci["mounts"],
                                               os.path.join(cdir, "init"), shared=shared)
            oci["annotations"] = {spec.OVERLAY_ANNOTATION: json.dumps(overlay.to_dict())}
            if opts.init and opts.runtime == "dockyard":
                oci["annotations"][spec.INIT_ANNOTATION] = "true"
            atomic_write(os.path.join(cdir, "config.json"), json.dumps(oci).encode(), durable=not c.ephemeral)
            if c.mounts:  # the one change since `add` wrote the record (a run without mounts spares the rewrite)
                store_containers.save(c)
    except BaseException:
        remove_files(root, c)
        raise
    return c


MOUNT_POINTS_DIR = "mountpoints"  # under the store root: the containers' shared "-init" lowerdirs (runner.rootfs)
INIT_PATH = "/dev/init"  # where --init's reaper is bind-mounted (docker uses /sbin/docker-init)


def _init_program() -> str:
    """The reaper for --init under another runtime (ours runs its own): a static init from the host."""
    import shutil

    for name in ("catatonit", "tini-static"):
        if path := shutil.which(name):
            return path
    raise DockyardError("--init needs catatonit or tini-static on the host (apt-get install catatonit)")


def spec_overlay(cdir: str, lowerdirs: list[str]):
    """The container's overlay: the image's layers under its own upper (`diff`) and work dirs."""
    from runner.rootfs import Overlay

    return Overlay(upper=os.path.join(cdir, "diff"), work=os.path.join(cdir, "work"), lower=list(lowerdirs))


def _ports(opts: Options, icfg: dict) -> list:
    if not opts.publish and not opts.publish_all:
        return []  # spares the start path the socket imports
    from runner.network import ports

    out = []
    for p in opts.publish:
        out += ports.parse_publish(p)
    if opts.publish_all:
        out += ports.from_exposed((icfg.get("ExposedPorts") or {}).keys())
    return out



def remove_files(root: str, c: Container, later: bool = False) -> None:
    """Drop a container's record, bundle, upper dir and image hold (later: as Containers.remove_record)."""
    from dockyard.store import Store

    Store(root).release(f"container-{c.id}")
    Containers(root).remove_record(c.id, later)
