"""The container's init: runs in the forked child (pid 1 of its pid namespace), sets up and execs."""

from __future__ import annotations

import errno
import fcntl
import gc
import os
import resource
import signal
import stat
import termios  # at the top: after pivot_root the container's root has no Python modules
from typing import Iterable, NoReturn, Sequence

from dockyard.fsutil import read_text
from dockyard.inroot import FD_DIR, fd_path, open_beneath, secure_join
from dockyard.users import home_of
from runner import conceal, linux, seccomp
from runner.cgroups import Cgroup
from runner.rootfs import Overlay, mount_overlay
from runner.spec import DEFAULT_PATH, INIT_ANNOTATION, OVERLAY_ANNOTATION, capability_mask

NAMESPACE_FLAGS = {
    "mount": linux.CLONE_NEWNS, "uts": linux.CLONE_NEWUTS, "ipc": linux.CLONE_NEWIPC,
    "network": linux.CLONE_NEWNET, "cgroup": linux.CLONE_NEWCGROUP, "pid": linux.CLONE_NEWPID,
    "user": linux.CLONE_NEWUSER,
}  # fmt: skip

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
# runc's default device nodes: (name, major, minor).
_DEVICES = [("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)]
_DEV_LINKS = [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
              ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx")]  # fmt: skip


class InitError(Exception):
    """A setup failure reported to the runtime as one line with the exit status it implies."""

    def __init__(self, message: str, exit_code: int = 125):
        super().__init__(message)
        self.exit_code = exit_code


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


def container_init(
    config: dict, bundle: str, cgroup: Cgroup | None, stdio: tuple[int, int, int], errw: int,
    exec_fifo: str | None, die_with_parent: bool, go: int = -1, seccomp_filter: seccomp.Filter | None = None,
    keep_fds: Sequence[int] = (),
) -> NoReturn:
    """Set the container up per `config` and exec its process; failures go to `errw` as `code:message`.

    `go` (if not -1): a pipe to read one byte from before the exec; EOF instead means the start was called off.
    `seccomp_filter`: the compiled `linux.seccomp` of `config` (see seccomp.prepare).
    `keep_fds`: inherited descriptors that mount sources name as /proc/self/fd/N.
    """
    # No cyclic GC in this copy of the caller's heap: finalizing some inherited file object could close a
    # descriptor number this child has since reused.
    gc.disable()
    code = 125
    try:
        _prepare_process(stdio, [errw, go, *keep_fds])
        _setup(config, bundle, cgroup, exec_fifo, die_with_parent, errw, go, seccomp_filter)
    except InitError as e:
        code = _report(errw, e.exit_code, str(e))
    except OSError as e:
        code = _report(errw, 125, _describe(e))
    except BaseException as e:  # anything else still must end this forked child here
        code = _report(errw, 125, f"{type(e).__name__}: {e}")
    os._exit(code)


def _describe(e: OSError) -> str:
    msg = e.strerror or str(e)
    return f"{msg}: {e.filename}" if e.filename else msg


def _report(errw: int, code: int, message: str) -> int:
    line = f"{code}:{message}".replace("\n", " ").encode()
    try:
        os.write(errw, line)
    except OSError:
        pass
    return code


def _prepare_process(stdio: tuple[int, int, int], keep: list[int]) -> None:
    """Default signal dispositions (ignored ones survive exec), stdio on 0-2, every other fd but `keep` closed."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGHUP, signal.SIGQUIT, signal.SIGALRM):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    high = [os.dup(fd) for fd in stdio]  # via high fds so swapped stdout/stderr cannot clobber each other
    for target, fd in enumerate(high):
        os.dup2(fd, target, inheritable=True)
    for fd in high:
        os.close(fd)
    close_fds_except(fd for fd in keep if fd >= 0)


def _setup(config: dict, bundle: str, cgroup: Cgroup | None, exec_fifo: str | None, die_with_parent: bool, errw: int,
           go: int, seccomp_filter: seccomp.Filter | None) -> None:
    """Join the cgroup and namespaces, build the root, become the configured process and exec it."""
    lnx = config.get("linux") or {}
    proc = config["process"]
    reaper_too = (config.get("annotations") or {}).get(INIT_ANNOTATION) == "true"
    # Before anything of the container exists: with --init we stay its pid 1 for good.
    conceal.conceal(["dockyard-init", "--", *(proc.get("args") or [])] if reaper_too else ["dockyard-init"])
    if die_with_parent:  # from the start, so setup never outlives the runtime either
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    if cgroup is not None:
        cgroup.join()
    namespaces = lnx.get("namespaces") or []
    _enter_namespaces(namespaces)
    kinds = {n["type"] for n in namespaces}
    if any(n["type"] == "network" and not n.get("path") for n in namespaces):
        linux.loopback_up()
    if "mount" not in kinds:
        raise InitError("a mount namespace is required (the rootfs is entered with pivot_root)")
    # Opened before pivot_root hides the state dir; reopened for writing through /proc/self/fd.
    fifo_fd = os.open(exec_fifo, os.O_PATH | os.O_CLOEXEC) if exec_fifo else -1
    _prepare_rootfs(config, bundle)
    if "uts" in kinds:
        if config.get("hostname"):
            linux.sethostname(config["hostname"])
        if config.get("domainname"):
            linux.setdomainname(config["domainname"])
    for rl in proc.get("rlimits") or []:
        resource.setrlimit(getattr(resource, rl["type"]), (rl["soft"], rl["hard"]))
    if proc.get("terminal"):
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    if proc.get("noNewPrivileges"):
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    user = proc.get("user") or {}
    cwd = proc.get("cwd") or "/"
    if not os.path.isdir(cwd):  # created as root, like runc and Docker's WORKDIR; chdir below reports failures
        try:
            os.makedirs(cwd, 0o755, exist_ok=True)
        except OSError:
            pass
    env = dict(e.split("=", 1) if "=" in e else (e, "") for e in proc.get("env") or [])
    if "HOME" not in env:  # as runc does: from the container's passwd, else /
        env["HOME"] = home_of(user.get("uid", 0), read_text("/etc/passwd"))
    seccomp.install(seccomp_filter, proc, after_caps=False)
    switch_user(user, proc.get("capabilities") or {})
    conceal.non_dumpable()
    if die_with_parent:  # again: the uid change cleared it
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    os.umask(user.get("umask", 0o022))
    try:
        os.chdir(cwd)
    except OSError as e:
        raise InitError(f"chdir to cwd {cwd!r}: {e.strerror.lower()}", 126) from None
    args = proc.get("args") or []
    if not args:
        raise InitError("no command specified", 125)
    path = look_path(args[0], env.get("PATH", DEFAULT_PATH))  # before `created`, so create reports it
    if fifo_fd >= 0:
        os.write(errw, b"\0")  # created: the runtime may return; wait for `start` on the fifo
        fd = os.open(f"/proc/self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
        os.write(fd, b"0")
    if go >= 0 and not os.read(go, 1):
        raise InitError("start called off")
    seccomp.install(seccomp_filter, proc, after_caps=True)
    if reaper_too:
        child = os.fork()
        if child:
            reaper(child)
    try:
        os.execve(path, args, env)
    except OSError as e:
        code = 127 if e.errno == errno.ENOENT else 126
        msg = f"exec: {args[0]}: {e.strerror.lower()}"
        if fifo_fd >= 0:  # nobody reads errw after `create` returned; the process's stderr sees it
            os.write(2, msg.encode() + b"\n")
        raise InitError(msg, code) from None


def _prepare_rootfs(config: dict, bundle: str) -> None:
    """Mount the root and the configured mounts, pivot_root into it, then mask and write-protect paths."""
    lnx = config.get("linux") or {}
    rootfs = os.path.join(bundle, config["root"]["path"])
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


def _enter_namespaces(namespaces: list[dict]) -> None:
    """setns into namespaces given by path, unshare the rest (pid was handled by the parent's fork)."""
    fds = []
    try:
        for ns in namespaces:
            if ns.get("path") and ns["type"] != "pid":
                fds.append((os.open(ns["path"], os.O_RDONLY | os.O_CLOEXEC), NAMESPACE_FLAGS[ns["type"]]))
        flags = 0
        for ns in namespaces:
            if ns["type"] not in NAMESPACE_FLAGS:
                raise InitError(f"unknown namespace type {ns['type']!r}")
            if ns["type"] == "user":
                raise InitError("user namespaces are not supported")
            if not ns.get("path") and ns["type"] != "pid":
                flags |= NAMESPACE_FLAGS[ns["type"]]
        for fd, nstype in fds:
            linux.setns(fd, nstype)
        if flags:
            linux.unshare(flags)
    finally:
        for fd, _ in fds:
            os.close(fd)


def _mount(rootfs: str, bundle: str, m: dict) -> None:
    """One runtime-spec mount onto its destination resolved (and made) inside the rootfs, through a descriptor:
    neither a mount made before nor a symlink swapped in meanwhile can send it outside. A bind's source
    /proc/self/fd/N is an inherited detached mount, attached as it is."""
    kind = m.get("type") or ""
    flags, prop, data = parse_mount_options(m.get("options") or [])
    bind = linux.MS_BIND | (flags & linux.MS_REC) if flags & linux.MS_BIND or kind == "bind" else 0
    source = os.path.join(bundle, m.get("source", "")) if bind else m.get("source") or kind
    tree = _inherited_mount(source) if bind else None
    try:
        dest = open_beneath(rootfs, m["destination"], "file" if bind and not os.path.isdir(source) else "dir")
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
            dest = open_beneath(rootfs, m["destination"])  # the root of the new mount now
            try:
                if remount:
                    linux.mount(None, fd_path(dest), None, flags | linux.MS_BIND | linux.MS_REMOUNT)
                if prop:
                    linux.mount(None, fd_path(dest), None, prop)
            finally:
                os.close(dest)
    except OSError as e:
        raise InitError(f"mount {kind or 'bind'} on {m['destination']}: {os.strerror(e.errno) if e.errno else e}") from None


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
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            point, fstype, super_opts = fields[4], fields[sep + 1], fields[sep + 3]
            if os.path.dirname(point) != "/sys/fs/cgroup" or fstype not in ("cgroup", "cgroup2"):
                continue
            sub = os.path.join(dest, os.path.basename(point))
            os.makedirs(sub, exist_ok=True)
            opts = ",".join(o for o in super_opts.split(",") if o not in ("rw", "ro")) or None
            linux.mount("cgroup", sub, fstype, flags, opts if fstype == "cgroup" else None)
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


def switch_user(user: dict, caps: dict) -> None:
    """Drop the bounding set, change uid/gid/groups keeping caps, then set the process's capability sets."""
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last_cap = int(f.read())
    bounding = capability_mask(caps.get("bounding") or [])
    for cap in range(last_cap + 1):
        if not bounding >> cap & 1:
            linux.prctl(linux.PR_CAPBSET_DROP, cap)
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    linux.prctl(linux.PR_SET_KEEPCAPS, 1)
    os.setgroups(list(user.get("additionalGids") or []))
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    linux.prctl(linux.PR_SET_KEEPCAPS, 0)
    linux.capset(capability_mask(caps.get("effective") or []), capability_mask(caps.get("permitted") or []),
                 capability_mask(caps.get("inheritable") or []))  # fmt: skip
    ambient = capability_mask(caps.get("ambient") or [])
    for cap in range(last_cap + 1):
        if ambient >> cap & 1:
            linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_RAISE, cap)


def look_path(name: str, path: str) -> str:
    """The executable `name` resolves to, searching the container's PATH like a shell."""
    if "/" in name:
        return name
    for d in path.split(":"):
        candidate = os.path.join(d or ".", name)
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and os.access(candidate, os.X_OK):
            return candidate
    raise InitError(f"exec: {name}: not found", 127)


def close_fds_except(keep: Iterable[int]) -> None:
    """Close every fd above stderr except those in `keep`."""
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)


# Signals an init passes on to its child (as tini and catatonit do); SIGCHLD is its own business.
_FORWARDED = [s for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD)]


def reaper(child: int) -> NoReturn:
    """Be the container's pid 1 for `--init`: forward signals to `child`, reap every zombie, and exit with the
    child's status (128+signal when a signal ended it)."""
    close_fds_except(())  # the runtime waits for EOF on the error pipe: only the child's exec may give it
    try:  # ps's name for us (the command line is conceal's title)
        with open("/proc/self/comm", "wb") as comm:
            comm.write(b"dockyard-init")
    except OSError:
        pass  # no /proc in the container: cosmetic only

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for sig in _FORWARDED:
        try:
            signal.signal(sig, forward)
        except (OSError, ValueError):
            pass
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(0)
        if pid == child:
            os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
