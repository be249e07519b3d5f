"""The container's process as the init and exec make it: namespaces, user and capabilities, descriptors, program path.

Runs in a forked child; failures raise StartError (runner.forking reports them to the runtime).
"""

from __future__ import annotations

import os
import resource
import stat
from collections.abc import Iterable

from runner import conceal, linux, seccomp
from runner.forking import StartError
from runner.spec import capability_mask

NAMESPACE_FLAGS = {
    "mount": linux.CLONE_NEWNS, "uts": linux.CLONE_NEWUTS, "ipc": linux.CLONE_NEWIPC,
    "network": linux.CLONE_NEWNET, "cgroup": linux.CLONE_NEWCGROUP, "pid": linux.CLONE_NEWPID,
    "user": linux.CLONE_NEWUSER,
}  # fmt: skip


def enter_namespaces(namespaces: list[dict]) -> None:
    """setns into namespaces given by path, unshare the rest (pid was handled by the parent's fork); a new
    network namespace gets its loopback up."""
    fds = []
    try:
        for ns in namespaces:
            if ns.get("path") and ns["type"] != "pid":
                fds.append((os.open(ns["path"], os.O_RDONLY | os.O_CLOEXEC), NAMESPACE_FLAGS[ns["type"]]))
        flags = 0
        for ns in namespaces:
            if ns["type"] not in NAMESPACE_FLAGS:
                raise StartError(f"unknown namespace type {ns['type']!r}")
            if ns["type"] == "user":
                raise StartError("user namespaces are not supported")
            if not ns.get("path") and ns["type"] != "pid":
                flags |= NAMESPACE_FLAGS[ns["type"]]
        for fd, nstype in fds:
            linux.setns(fd, nstype)
        if flags:
            linux.unshare(flags)
    finally:
        for fd, _ in fds:
            os.close(fd)
    if flags & linux.CLONE_NEWNET:
        linux.loopback_up()


def set_names_and_limits(config: dict, new_uts: bool) -> None:
    """Host and domain name (in a UTS namespace of its own) and the process's rlimits."""
    if new_uts:
        if config.get("hostname"):
            linux.sethostname(config["hostname"])
        if config.get("domainname"):
            linux.setdomainname(config["domainname"])
    for rl in config["process"].get("rlimits") or []:
        resource.setrlimit(getattr(resource, rl["type"]), (rl["soft"], rl["hard"]))


def environment(proc: dict) -> dict[str, str]:
    """The process's `env` list as a dict (an entry without `=` is an empty variable)."""
    return dict(e.split("=", 1) if "=" in e else (e, "") for e in proc.get("env") or [])


def become(user: dict, proc: dict, seccomp_filter: seccomp.Filter | None) -> None:
    """no_new_privs, a seccomp filter that needs our capabilities, then `user` with the process's capabilities;
    non-dumpable again after the uid change (see runner.conceal)."""
    if proc.get("noNewPrivileges"):
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    seccomp.install(seccomp_filter, proc, after_caps=False)
    switch_user(user, proc.get("capabilities") or {})
    conceal.non_dumpable()


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
    raise StartError(f"exec: {name}: not found", 127)


def close_fds_except(keep: Iterable[int]) -> None:
    """Close every fd above stderr except those in `keep`."""
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)
