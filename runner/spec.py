"""Build OCI runtime-spec 1.x `config.json` dicts with Docker's defaults."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field, replace

from dockyard.inroot import fd_path
from dockyard.users import User

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# The overlay the runtime mounts as the rootfs inside the container's own mount namespace (so it can never
# leak into the host); other runtimes ignore it and need the caller to mount it first (see sandbox.py).
OVERLAY_ANNOTATION = "io.dockyard.rootfs.overlay"
# `--init` under our runtime: pid 1 stays our (already loaded) init code, which forks the process, forwards
# signals to it and reaps every zombie; other runtimes get a bind-mounted static init instead.
INIT_ANNOTATION = "io.dockyard.init"

# Capability numbers are the index in this list (linux/capability.h).
CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
    "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
    "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
]  # fmt: skip

# moby's oci/caps DefaultCapabilities: CapEff 00000000a80425fb for root.
DOCKER_CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",
    "CAP_AUDIT_WRITE",
]  # fmt: skip

MASKED_PATHS = [
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
    "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
]  # fmt: skip
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

# runc's default device cgroup allow-list (what Docker containers get).
DEFAULT_DEVICE_RULES = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},
]


def available_capabilities() -> list[str]:
    """What "ALL" means here: the capabilities in our own bounding set (a sandboxed host's may lack some)."""
    with open("/proc/self/status") as f:
        bounding = next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))
    return [name for i, name in enumerate(CAPABILITIES) if bounding >> i & 1]


def capability_mask(names: list[str]) -> int:
    """Bit mask for capability names ("CAP_X" or "X"); unknown names are an error."""
    mask = 0
    for name in names:
        full = name.upper() if name.upper().startswith("CAP_") else "CAP_" + name.upper()
        try:
            mask |= 1 << CAPABILITIES.index(full)
        except ValueError:
            raise ValueError(f"unknown capability {name!r}") from None
    return mask


@dataclass
class Mount:
    """An extra mount: a bind of a host path or a tmpfs."""

    destination: str
    type: str = "bind"  # "bind" or "tmpfs"
    source: str = ""
    readonly: bool = False
    options: list[str] = field(default_factory=list)
    # A descriptor of a bind's source instead of a path: an O_PATH one (dockyard.inroot.open_beneath), which
    # sandbox.run clones as a detached mount that our runtime's init inherits and attaches. Nothing renamed or
    # swapped in after the lookup can redirect it.
    fd: int | None = None

    def by_path(self) -> Mount:
        """This mount with a descriptor replaced by the path its object has now, for runtimes that take no
        descriptors (runc): they look the path up again."""
        if self.fd is None:
            return self
        return replace(self, source=os.readlink(fd_path(self.fd)), fd=None)

    def to_oci(self) -> dict:
        """The runtime-spec mount entry."""
        opts = list(self.options)
        if self.type == "bind":
            opts = ["rbind", *opts]
        elif self.type == "tmpfs":
            opts = ["nosuid", "nodev", *opts]
        else:
            raise ValueError(f"unsupported mount type {self.type!r} for {self.destination}")
        if self.readonly:
            opts.append("ro")
        source = fd_path(self.fd) if self.fd is not None else self.source or self.type
        return {"destination": self.destination, "type": self.type, "source": source, "options": opts}


@dataclass
class Resources:
    """Cgroup limits; None means unlimited."""

    memory: int | None = None  # bytes
    memory_swap: int | None = None  # bytes of memory+swap; None = same as memory (no swap)
    cpu_quota: int | None = None  # microseconds per period
    cpu_period: int | None = None
    cpu_shares: int | None = None
    pids: int | None = None
    all_devices: bool = False  # --privileged

    def to_oci(self) -> dict:
        """The runtime-spec `linux.resources` object."""
        rules = [{"allow": True, "access": "rwm"}] if self.all_devices else DEFAULT_DEVICE_RULES
        res: dict = {"devices": [dict(r) for r in rules]}
        if self.memory is not None:
            res["memory"] = {"limit": self.memory,
                             "swap": self.memory_swap if self.memory_swap is not None else self.memory}
        cpu = {k: v for k, v in (("quota", self.cpu_quota), ("period", self.cpu_period), ("shares", self.cpu_shares))
               if v is not None}
        if cpu:
            res["cpu"] = cpu
        if self.pids is not None:
            res["pids"] = {"limit": self.pids}
        return res


def default_mounts(privileged: bool = False) -> list[dict]:
    """Docker's default mounts: /proc, /dev tmpfs, /dev/pts, /sys ro, cgroup ro, /dev/mqueue, /dev/shm.

    privileged: /sys and the cgroups read-write, as docker --privileged.
    """
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["ro", "nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
    ]  # fmt: skip
    if privileged:
        for m in mounts:
            if m["destination"] in ("/sys", "/sys/fs/cgroup"):
                m["options"] = [o for o in m["options"] if o != "ro"]
    return mounts


# Under the host's /dev, what runc's HostDevices leaves out of a privileged container's /dev.
_HOST_DEV_SKIP = frozenset({"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"})


def host_devices() -> list[dict]:
    """Every device node under the host's /dev as runtime-spec `linux.devices` (what --privileged gets)."""
    devices = []
    for top, dirs, files in os.walk("/dev"):
        dirs[:] = [d for d in dirs if d not in _HOST_DEV_SKIP]
        for name in files:
            path = os.path.join(top, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            kind = "c" if stat.S_ISCHR(st.st_mode) else "b" if stat.S_ISBLK(st.st_mode) else ""
            if kind and path not in ("/dev/console", "/dev/ptmx"):  # the container has its own (pts/ptmx)
                devices.append({"path": path, "type": kind, "major": os.major(st.st_rdev),
                                "minor": os.minor(st.st_rdev), "fileMode": stat.S_IMODE(st.st_mode),
                                "uid": st.st_uid, "gid": st.st_gid})
    return devices


def namespaces(network: str = "host") -> list[dict]:
    """Namespaces for a network mode: "host", "none"/"private" (new netns, only lo), or a netns path."""
    ns = [{"type": t} for t in ("pid", "ipc", "uts", "mount", "cgroup")]
    if network in ("none", "private"):
        ns.append({"type": "network"})
    elif network.startswith("/"):
        ns.append({"type": "network", "path": network})
    elif network != "host":
        raise ValueError(f"unknown network mode {network!r}")
    return ns


def default_spec(
    rootfs: str,
    args: list[str],
    env: list[str] | None = None,
    cwd: str = "/",
    user: User | None = None,
    hostname: str = "",
    network: str = "host",
    readonly_rootfs: bool = False,
    mounts: list[Mount] | None = None,
    resources: Resources | None = None,
    no_new_privileges: bool = False,
    rlimits: dict[str, tuple[int, int]] | None = None,
    capabilities: list[str] | None = None,
    cgroups_path: str | None = None,
    terminal: bool = False,
    privileged: bool = False,
    seccomp_profile: dict | str = "default",
) -> dict:
    """A runtime-spec config with Docker's defaults (caps, masked/read-only paths, mounts, devices, seccomp).

    seccomp_profile: "default" (Docker's), "unconfined" or a Docker-format profile dict, compiled for the caps.
    privileged: as docker --privileged, every capability, no seccomp, the host's devices, nothing masked.
    """
    user = user or User()
    env = list(env or [])
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, "PATH=" + DEFAULT_PATH)
    caps = list(DOCKER_CAPABILITIES if capabilities is None else capabilities)
    resources = resources or Resources()
    linux: dict = {"namespaces": namespaces(network)}
    if privileged:
        caps = available_capabilities()
        resources = replace(resources, all_devices=True)
        linux["devices"] = host_devices()
    else:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
        if seccomp_profile != "unconfined":
            from runner import seccomp

            profile = seccomp_profile if isinstance(seccomp_profile, dict) else seccomp.default_profile()  # "default"
            linux["seccomp"] = seccomp.compile_profile(profile, caps)
    linux["resources"] = resources.to_oci()
    if cgroups_path:
        linux["cgroupsPath"] = cgroups_path
    process: dict = {
        "terminal": terminal,
        "user": {"uid": user.uid, "gid": user.gid,
                 **({"additionalGids": list(user.additional_gids)} if user.additional_gids else {})},
        "args": list(args),
        "env": env,
        "cwd": cwd,
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": no_new_privileges,
    }
    if rlimits:
        process["rlimits"] = [{"type": k, "hard": hard, "soft": soft} for k, (soft, hard) in rlimits.items()]
    return {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": rootfs, "readonly": readonly_rootfs},
        "hostname": hostname,
        "mounts": default_mounts(privileged) + [m.to_oci() for m in mounts or []],
        "linux": linux,
    }


def etc_mounts(directory: str, hostname: str, network: str = "host", durable: bool = True) -> list[Mount]:
    """Write hosts, hostname and resolv.conf for a container into `directory`; return their bind mounts.

    durable=False for bundles that do not outlive a reboot (a throw-away sandbox, a --rm container).
    """
    from dockyard.fsutil import atomic_write, read_text

    host_net = network == "host"
    hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    if hostname:
        hosts += f"127.0.1.1\t{hostname}\n"
    if host_net:
        hosts = read_text("/etc/hosts") or hosts
    resolv = read_text("/etc/resolv.conf")
    if not host_net:
        resolv = "".join(line for line in resolv.splitlines(True) if not _loopback_nameserver(line))
    files = {"hosts": hosts, "hostname": (hostname or "localhost") + "\n", "resolv.conf": resolv}
    mounts = []
    for name, text in files.items():
        path = os.path.join(directory, name)
        atomic_write(path, text.encode(), durable=durable)
        mounts.append(Mount(destination="/etc/" + name, source=path))
    return mounts


def _loopback_nameserver(line: str) -> bool:
    """A host-local resolver is unreachable from a private netns (Docker drops them too)."""
    words = line.split()
    return len(words) > 1 and words[0] == "nameserver" and (words[1].startswith("127.") or words[1] == "::1")
