"""The container's init: runs in the forked child (pid 1 of its pid namespace), sets up and execs.

It sequences the two halves of the setup, the root (runner.rootfs_setup) and the process (runner.process_setup),
as runc's init does; a failure is reported to the runtime as `code:message` (runner.forking).
"""

from __future__ import annotations

import errno
import fcntl
import gc
import os
import signal
import termios  # at the top: after pivot_root the container's root has no Python modules
from collections.abc import Sequence
from typing import NoReturn

from dockyard.fsutil import read_text
from dockyard.users import home_of
from runner import conceal, linux, seccomp
from runner.cgroups import Cgroup
from runner.forking import StartError, report_failure
from runner.process_setup import (
    become,
    close_fds_except,
    enter_namespaces,
    environment,
    look_path,
    set_names_and_limits,
)  # fmt: skip
from runner.reaper import reaper
from runner.rootfs_setup import prepare_rootfs
from runner.spec import DEFAULT_PATH, INIT_ANNOTATION


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
    except BaseException as e:  # whatever it is, this forked child must end here
        code = report_failure(errw, e)
    os._exit(code)


def _ptrace_may_see(namespaces: list[dict], proc: dict) -> bool:
    """Whether a process with CAP_SYS_PTRACE may see this init before its exec, so that the exe copy is needed.

    In a pid namespace of its own the init is seen only by the container's processes (those of an exec that
    comes early included), whose capabilities never exceed the bounding set `become` gives the container (but
    for an `exec --privileged`, whose every capability contains nothing anyway); a shared or the host's pid
    namespace shows it to processes of other bounds.
    """
    pid = next((n for n in namespaces if n["type"] == "pid"), None)
    bounding = (proc.get("capabilities") or {}).get("bounding") or []
    return pid is None or bool(pid.get("path")) or "CAP_SYS_PTRACE" in bounding


def _prepare_process(stdio: tuple[int, int, int], keep: list[int]) -> None:
    """Default signal dispositions (ignored ones survive exec), stdio on 0-2, every other fd but `keep` closed."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGHUP, signal.SIGQUIT,
                signal.SIGALRM):
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
    conceal.conceal(["dockyard-init", "--", *(proc.get("args") or [])] if reaper_too else ["dockyard-init"],
                    copy_exe=reaper_too or _ptrace_may_see(lnx.get("namespaces") or [], proc))
    if die_with_parent:  # from the start, so setup never outlives the runtime either
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    if cgroup is not None:
        cgroup.join()
    namespaces = lnx.get("namespaces") or []
    enter_namespaces(namespaces)
    kinds = {n["type"] for n in namespaces}
    if "mount" not in kinds:
        raise StartError("a mount namespace is required (the rootfs is entered with pivot_root)")
    # Opened before pivot_root hides the state dir; reopened for writing through /proc/self/fd.
    fifo_fd = os.open(exec_fifo, os.O_PATH | os.O_CLOEXEC) if exec_fifo else -1
    prepare_rootfs(config, bundle)
    set_names_and_limits(config, "uts" in kinds)
    if proc.get("terminal"):
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    user = proc.get("user") or {}
    cwd = proc.get("cwd") or "/"
    if not os.path.isdir(cwd):  # created as root, like runc and Docker's WORKDIR; chdir below reports failures
        try:
            os.makedirs(cwd, 0o755, exist_ok=True)
        except OSError:
            pass
    env = environment(proc)
    if "HOME" not in env:  # as runc does: from the container's passwd, else /
        env["HOME"] = home_of(user.get("uid", 0), read_text("/etc/passwd"))
    become(user, proc, seccomp_filter)
    if die_with_parent:  # again: the uid change cleared it
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
    os.umask(user.get("umask", 0o022))
    try:
        os.chdir(cwd)
    except OSError as e:
        raise StartError(f"chdir to cwd {cwd!r}: {(e.strerror or str(e)).lower()}", 126) from None
    args = proc.get("args") or []
    if not args:
        raise StartError("no command specified", 125)
    path = look_path(args[0], env.get("PATH", DEFAULT_PATH))  # before `created`, so create reports it
    if fifo_fd >= 0:
        os.write(errw, b"\0")  # created: the runtime may return; wait for `start` on the fifo
        fd = os.open(f"/proc/self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
        os.write(fd, b"0")
    if go >= 0 and not os.read(go, 1):
        raise StartError("start called off")
    seccomp.install(seccomp_filter, proc, after_caps=True)
    if reaper_too:
        child = os.fork()
        if child:
            reaper(child)
    try:
        os.execve(path, args, env)
    except OSError as e:
        code = 127 if e.errno == errno.ENOENT else 126
        msg = f"exec: {args[0]}: {(e.strerror or str(e)).lower()}"
        if fifo_fd >= 0:  # nobody reads errw after `create` returned; the process's stderr sees it
            os.write(2, msg.encode() + b"\n")
        raise StartError(msg, code) from None
