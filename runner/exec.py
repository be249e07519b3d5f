"""`exec`: a new process inside a running container's namespaces and cgroup, as its user, caps and env."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

# All at the top: the child imports nothing once it is in the container's mount namespace (no copy of us there).
from dockyard import users
from dockyard.errors import DockyardError
from dockyard.fsutil import read_text
from runner import conceal, linux, seccomp, spec, terminal
from runner.cgroups import Cgroup
from runner.containers import Container
from runner.forking import StartError, in_child, report, start_error
from runner.process_setup import NAMESPACE_FLAGS, become, close_fds_except, environment, look_path

if TYPE_CHECKING:
    import socket

# Entered in this order; mnt last so the /proc paths of the others stay reachable until then.
NAMESPACES = (("ipc", "ipc"), ("uts", "uts"), ("net", "network"), ("cgroup", "cgroup"), ("pid", "pid"),
              ("mnt", "mount"))


def exec_in(root: str, c: Container, command: list[str], user: str = "", workdir: str = "", env: Sequence[str] = (),
            detach: bool = False, interactive: bool = False, privileged: bool = False,
            output: int | None = None, tty: bool = False) -> int:
    """Run `command` in the container; its exit code (0 at once with detach). `output`: fd for stdout+stderr.

    tty: the command gets a new pty of the container's devpts, relayed to our stdin (if interactive) and stdout.
    """
    import socket

    from runner import lifecycle
    from runner.runtime import load_config

    pid = c.pid or lifecycle.init_pid(c.id)
    if not pid:
        raise DockyardError(f"container {c.name} is not running")
    config = load_config(c.bundle)
    if privileged:  # read here: inside, /proc/self is not ours (we are outside the container's pid namespace)
        all_caps = spec.available_capabilities()
        config["process"]["capabilities"] = dict.fromkeys(("bounding", "effective", "permitted"), all_caps)
    seccomp_filter = seccomp.prepare(config)  # here: inside, the container's /run could hold a planted one
    # The child opens the pty inside the container and hands its master back over this pair.
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM) if tty and not detach else (None, None)

    def work(errw: int) -> int:
        if ours is not None:
            ours.close()
        if detach:
            os.setsid()
            if os.fork():
                os._exit(0)
        stdio = _stdio(interactive and not detach, detach, output)
        return _enter_and_exec(c, pid, config, command, user, workdir, list(env), stdio, errw, theirs,
                               seccomp_filter)

    def relay_pty() -> None:
        assert ours is not None and theirs is not None  # passed to in_child only with the pair
        theirs.close()
        _, fds, _, _ = socket.recv_fds(ours, 1, 1)
        ours.close()
        if fds:  # none: the child failed before; its report says why
            try:
                terminal.relay(fds[0], interactive)
            finally:
                os.close(fds[0])

    code, reported = in_child(work, relay_pty if ours is not None else None)
    if reported:
        raise start_error(reported)
    return 0 if detach else code


def _stdio(interactive: bool, detach: bool, output: int | None) -> tuple[int, int, int]:
    null = os.open(os.devnull, os.O_RDWR)
    if detach:
        return null, null, null
    if output is not None:
        return null, output, output
    return (0 if interactive else null), 1, 2


def _enter_and_exec(c: Container, pid: int, config: dict, command: list[str], user: str, workdir: str,
                    env: list[str], stdio: tuple[int, int, int], errw: int,
                    pty_to: socket.socket | None = None, seccomp_filter: seccomp.Filter | None = None) -> int:
    """(in the forked child) join cgroup and namespaces, become the container's process, fork into its pid
    namespace and exec there.

    Everything but the fork and exec happens here, outside the container's pid namespace where its processes
    cannot see us; what they do see for a moment is a non-dumpable copy with their own credentials and no exe,
    memory or descriptor of the host's (see runner.conceal).
    pty_to: a socket to send the master of a new pty (on the container's devpts) to; the slave is the command's stdio.
    """
    import socket

    conceal.conceal(["dockyard-exec"])
    Cgroup.of_container(c.id).join()
    fds = []
    mine = {ns: os.stat(f"/proc/self/ns/{ns}").st_ino for ns, _ in NAMESPACES}
    for ns, kind in NAMESPACES:
        path = f"/proc/{pid}/ns/{ns}"
        if os.stat(path).st_ino != mine[ns]:  # host network containers share ours: setns would be pointless
            fds.append((os.open(path, os.O_RDONLY | os.O_CLOEXEC), NAMESPACE_FLAGS[kind]))
    for fd, flag in fds:
        linux.setns(fd, flag)
        os.close(fd)
    slave_path = ""
    if pty_to is not None:
        master, slave_path = terminal.open_pty()
        terminal.copy_window_size(master)  # before the command runs: it may ask at once
        socket.send_fds(pty_to, [b"m"], [master])
        os.close(master)
        pty_to.close()
    path, variables = _become(config, command, user, workdir, env, stdio, errw, seccomp_filter)
    # setns(CLONE_NEWPID) only places our children in the container's pid namespace.
    grandchild = os.fork()
    if grandchild == 0:
        code = 126
        try:
            if slave_path:
                slave = terminal.become_controlling(slave_path)
                for target in (0, 1, 2):
                    os.dup2(slave, target)
                os.close(slave)
            os.execve(path, command, variables)
        except OSError as e:
            what = f"exec: {command[0]}" if e.filename == path else "terminal"
            code = report(errw, 127 if e.errno == 2 else 126, f"{what}: {(e.strerror or str(e)).lower()}")
        os._exit(code)
    os.close(errw)
    _, status = os.waitpid(grandchild, 0)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def _become(config: dict, command: list[str], user: str, workdir: str, env: list[str],
            stdio: tuple[int, int, int], errw: int,
            seccomp_filter: seccomp.Filter | None = None) -> tuple[str, dict[str, str]]:
    """(in the container's namespaces) user, capabilities, cwd and stdio of the container's process, -u/-w/-e
    applied; the program's path and environment for the exec."""
    proc = config["process"]
    for target, fd in enumerate(stdio):
        if fd != target:
            os.dup2(fd, target)
    close_fds_except((errw,))  # nothing of the host's may be seen in the container's /proc/PID/fd
    if user:
        u = users.resolve(user, read_text("/etc/passwd"), read_text("/etc/group"))
        ident = {"uid": u.uid, "gid": u.gid, "additionalGids": u.additional_gids}
    else:
        ident = proc.get("user") or {}
    become(ident, proc, seccomp_filter)
    variables = environment(proc)
    for e in env:
        key, eq, value = e.partition("=")
        if eq:
            variables[key] = value
        elif key in os.environ:
            variables[key] = os.environ[key]
    cwd = workdir or proc.get("cwd") or "/"
    try:
        os.chdir(cwd)
    except OSError as e:
        raise StartError(f"chdir to {cwd!r}: {(e.strerror or str(e)).lower()}", 126) from None
    path = look_path(command[0], variables.get("PATH", spec.DEFAULT_PATH))
    seccomp.install(seccomp_filter, proc, after_caps=True)  # inherited by the process that execs
    return path, variables
