"""The container's root as runc's rootfs_linux.go builds it: the mount sequence onto checked destinations, /dev,
cgroup mounts, pivot_root, sysctls, read-only and masked paths, a read-only root.

Runs in the init (a forked child in its new mount namespace); failures raise StartError or OSError, which the
init reports to the runtime (runner.forking).
"""

from __future__ import annotations

import errno
import os
import stat

from dockyard.cgroupfs import cgroup_mounts
from dockyard.inroot import FD_DIR, fd_path, open_beneath, resolve_beneath, secure_join
from runner import linux
from runner.forking import StartError
from runner.rootfs import Overlay, mount_overlay
from runner.spec import OVERLAY_ANNOTATION

# Mount options that are flags: name -> (set?, flag); anything else is filesystem data.
_FLAGS = {
    "ro": (True, linux.MS_RDONLY), "rw": (False, linux.MS_RDONLY),
    "nosuid": (True, linux.MS_NOSUID), "suid": (False, linux.MS_NOSUID),
    "nodev": (True, linux.MS_NODEV), "dev": (False, linux.MS_NODEV),
    "noexec": (True, linux.MS_NOEXEC), "exec": (False, linux.MS_NOEXEC),
    "sync": (True, linux.MS_SYNCHRONOUS), "async": (False, linux.MS_SYNCHRONOUS),
    "dirsync": (True, linux.MS_DIRSYNC), "remount": (True, linux.MS_REMOUNT),
    "mand": (True, linux.MS_MANDLOCK), "nomand": (False, linux.MS_MANDLOCK),
    "atime": (False, linux.MS_NOATIME), "noatime": (True, linux.MS_NOATIME),
    "diratime": (False, linux.MS_NODIRATIME), "nodiratime": (True, linux.MS_NODIRATIME),
    "bind": (True, linux.MS_BIND), "rbind": (True, linux.MS_BIND | linux.MS_REC),
    "relatime": (True, linux.MS_RELATIME), "norelatime": (False, linux.MS_RELATIME),
    "strictatime": (True, linux.MS_STRICTATIME), "nostrictatime": (False, linux.MS_STRICTATIME),
    "nosymfollow": (True, linux.MS_NOSYMFOLLOW),
}  # fmt: skip
_PROPAGATION = {
    "private": linux.MS_PRIVATE, "rprivate": linux.MS_PRIVATE | linux.MS_REC,
    "shared": linux.MS_SHARED, "rshared": linux.MS_SHARED | linux.MS_REC,
    "slave": linux.MS_SLAVE, "rslave": linux.MS_SLAVE | linux.MS_REC,
    "unbindable": linux.MS_UNBINDABLE, "runbindable": linux.MS_UNBINDABLE | linux.MS_REC,
}  # fmt: skip
# The only files under /proc a mount may cover (those lxcfs emulates), as runc allows; /proc itself takes a procfs.
_PROC_FILES = frozenset([
    "/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat", "/proc/swaps", "/proc/uptime",
    "/proc/loadavg", "/proc/slabinfo", "/proc/net/dev", "/proc/sys/kernel/ns_last_pid",
])  # fmt: skip
# runc's default device nodes: (name, major, minor).
_DEVICES = [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)]
_DEV_LINKS = [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
              ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx")]  # fmt: skip


def parse_mount_options(options: list[str]) -> tuple[int, int, str]:
    """(flags, propagation flags, data string) for runtime-spec mount options."""
    flags, prop, data = 0, 0, []
    for opt in options:
        if opt in _FLAGS:
            on, bit = _FLAGS[opt]
            flags = flags | bit if on else flags & ~bit
        elif opt in _PROPAGATION:
            prop |= _PROPAGATION[opt]
        else:
            data.append(opt)
    return flags, prop, ",".join(data)


def prepare_rootfs(config: dict, bundle: str) -> None:
    """Mount the root and the configured mounts, pivot_root into it, then mask and write-protect paths."""
    lnx = config.get("linux") or {}
    rootfs = os.path.realpath(os.path.join(bundle, config["root"]["path"]))  # as descriptors' paths read
    prop = _PROPAGATION.get(lnx.get("rootfsPropagation", ""), linux.MS_PRIVATE | linux.MS_REC)
    linux.mount(None, "/", None, prop)  # nothing below may propagate back to the host
    overlay = (config.get("annotations") or {}).get(OVERLAY_ANNOTATION)
    if overlay:
        import json

        mount_overlay(Overlay.from_dict(json.loads(overlay)), rootfs)
    else:
        linux.mount(rootfs, rootfs, None, linux.MS_BIND | linux.MS_REC)  # pivot_root needs a mount point
    mounts = config.get("mounts") or []
    for m in mounts:
        _mount(rootfs, bundle, m)
    if any(m["destination"] == "/dev" and m.get("type") == "tmpfs" for m in mounts):
        _populate_dev(rootfs, lnx.get("devices") or [], config["process"].get("terminal", False))
    _pivot_root(rootfs)
    for key, value in (lnx.get("sysctl") or {}).items():
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(value)
    for path in lnx.get("readonlyPaths") or []:
        _readonly(path)
    for path in lnx.get("maskedPaths") or []:
        _mask(path)
    if config["root"].get("readonly"):
        linux.mount(None, "/", None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY)


def _mount(rootfs: str, bundle: str, m: dict) -> None:
    """One runtime-spec mount onto its destination resolved (and made) inside the rootfs and checked, through a
    descriptor: neither a mount made before nor a symlink swapped in meanwhile can send it outside or into /proc.
    A bind's source /proc/self/fd/N is an inherited detached mount, attached as it is."""
    kind = m.get("type") or ""
    flags, prop, data = parse_mount_options(m.get("options") or [])
    bind = linux.MS_BIND | (flags & linux.MS_REC) if flags & linux.MS_BIND or kind == "bind" else 0
    source = os.path.join(bundle, m.get("source", "")) if bind else m.get("source") or kind
    tree = _inherited_mount(source) if bind else None
    bind_source = source if bind else None
    try:
        dest = _destination(rootfs, m, kind, bind_source, "file" if bind and not os.path.isdir(source) else "dir")
        try:
            if tree is not None:
                linux.attach_mount(tree, dest)
            elif bind:
                linux.mount(source, fd_path(dest), None, bind)
            elif kind == "cgroup":  # under the /sys just mounted: nothing there to swap
                _mount_cgroups(secure_join(rootfs, m["destination"]), flags)
            else:
                linux.mount(source, fd_path(dest), kind, flags, data or None)
        finally:
            os.close(dest)
        remount = flags & ~bind if bind else 0  # flags like ro/nosuid only take effect on a bind remount
        if remount or prop:
            dest = _destination(rootfs, m, kind, bind_source)  # the root of the new mount now
            try:
                if remount:
                    linux.mount(None, fd_path(dest), None, flags | linux.MS_BIND | linux.MS_REMOUNT)
                if prop:
                    linux.mount(None, fd_path(dest), None, prop)
            finally:
                os.close(dest)
    except OSError as e:
        raise _mount_error(m, kind, os.strerror(e.errno) if e.errno else str(e)) from None


def _destination(rootfs: str, m: dict, kind: str, bind_source: str | None, create: str = "") -> int:
    """An O_PATH descriptor of the mount's destination resolved inside the rootfs (made if missing, see
    open_beneath), checked where it resolved to: before anything is made for it, and where the descriptor is
    (as runc's checks through /proc/self/fd). StartError naming the destination if it may take no such mount."""
    if create:
        _check_destination(m, "/" + "/".join(resolve_beneath(rootfs, m["destination"])), kind, bind_source)
    fd = open_beneath(rootfs, m["destination"], create)
    try:
        real = os.readlink(fd_path(fd))
        if real != rootfs and not real.startswith(rootfs + "/"):
            raise _mount_error(m, kind, "refused: it resolves outside the rootfs")
        _check_destination(m, real[len(rootfs):] or "/", kind, bind_source)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_destination(m: dict, where: str, kind: str, bind_source: str | None) -> None:
    """Refuse mount `m` on `where` (its destination resolved, from the container's /) if inside /proc, or on /proc
    unless a procfs: a fresh one, or a bind of a procfs root (as runc's checkProcMount)."""
    if where == "/proc":
        if (kind == "proc" and bind_source is None) or (bind_source is not None and _is_procfs_root(bind_source)):
            return
        raise _mount_error(m, kind, "refused: only a proc filesystem may be mounted on /proc")
    if where.startswith("/proc/") and where not in _PROC_FILES:
        raise _mount_error(m, kind, f"refused: {where} is inside /proc")


def _mount_error(m: dict, kind: str, reason: str) -> StartError:
    """The one line a failed or refused mount `m` reports, naming its destination."""
    return StartError(f"mount {kind or 'bind'} on {m['destination']}: {reason}")


def _is_procfs_root(path: str) -> bool:
    """`path` is the root directory of a procfs (a bind of it may cover /proc)."""
    return linux.fs_type(path) == linux.PROC_SUPER_MAGIC and os.stat(path).st_ino == linux.PROC_ROOT_INO


def _inherited_mount(source: str) -> int | None:
    """The descriptor a bind source /proc/self/fd/N names: a detached mount the runtime passed down (sandbox.run)."""
    head, _, number = source.rpartition("/")
    return int(number) if head == FD_DIR and number.isdigit() else None


def _mount_cgroups(dest: str, flags: int) -> None:
    """The container's own view of the cgroup hierarchies (rooted at its cgroup namespace)."""
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        linux.mount("cgroup", dest, "cgroup2", flags)
        return
    # v1: a tmpfs holding one mount per hierarchy the host has under /sys/fs/cgroup, like runc.
    linux.mount("tmpfs", dest, "tmpfs", flags & ~linux.MS_RDONLY, "mode=755")
    for m in cgroup_mounts():
        if os.path.dirname(m.point) != "/sys/fs/cgroup":
            continue
        sub = os.path.join(dest, os.path.basename(m.point))
        os.makedirs(sub, exist_ok=True)
        options = ",".join(m.options) if m.fstype == "cgroup" else ""
        linux.mount("cgroup", sub, m.fstype, flags, options or None)
    if flags & linux.MS_RDONLY:
        linux.mount(None, dest, None, flags | linux.MS_REMOUNT)


def _populate_dev(rootfs: str, devices: list[dict], terminal: bool) -> None:
    """Device nodes, the usual /dev symlinks and (with a terminal) /dev/console."""
    dev = os.path.join(rootfs, "dev")
    old = os.umask(0)
    try:
        for name, major, minor in _DEVICES:
            os.mknod(os.path.join(dev, name), stat.S_IFCHR | 0o666, os.makedev(major, minor))
        for d in devices:
            path = secure_join(rootfs, d["path"])
            kind = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[d["type"]]
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if os.path.lexists(path):
                os.unlink(path)
            os.mknod(path, kind | d.get("fileMode", 0o666), os.makedev(d.get("major", 0), d.get("minor", 0)))
            os.chown(path, d.get("uid", 0), d.get("gid", 0))
    finally:
        os.umask(old)
    for name, target in _DEV_LINKS:
        os.symlink(target, os.path.join(dev, name))
    if os.path.exists("/proc/kcore"):
        os.symlink("/proc/kcore", os.path.join(dev, "core"))
    if terminal:
        console = os.path.join(dev, "console")
        os.close(os.open(console, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o600))
        linux.mount(os.ttyname(0), console, None, linux.MS_BIND)


def _pivot_root(rootfs: str) -> None:
    """pivot_root into `rootfs` stacking the old root on top, then detach it (runc's trick, no put_old dir)."""
    os.chdir(rootfs)
    linux.pivot_root(".", ".")
    linux.mount(None, ".", None, linux.MS_SLAVE | linux.MS_REC)  # unmounting must not propagate to the host
    linux.umount(".", linux.MNT_DETACH)
    os.chdir("/")


def _readonly(path: str) -> None:
    if not os.path.exists(path):
        return
    linux.mount(path, path, None, linux.MS_BIND | linux.MS_REC)
    linux.mount(path, path, None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY | linux.MS_REC
                | linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)  # fmt: skip


def _mask(path: str) -> None:
    try:
        is_dir = os.path.isdir(path)
        if is_dir:
            linux.mount("tmpfs", path, "tmpfs", linux.MS_RDONLY)
        else:
            linux.mount("/dev/null", path, None, linux.MS_BIND)
    except FileNotFoundError:
        return
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise


