"""Keep the host's interpreter out of a container's reach while our Python works inside it (CVE-2019-5736 class).

Whatever enters a container (exec, health checks, cp) or is its init (until it execs; for good with --init) is
our Python for a while, visible to the container's processes in /proc. Through /proc/PID/exe they could open
the host's python binary and, once it runs nowhere, write it; through mem, fd and environ read or change the
process. So before such a process can be seen it calls conceal():
- it becomes non-dumpable: /proc/PID/{exe,mem,fd,map_files,environ,…} then need CAP_SYS_PTRACE, which a
  container has only when given it; exec resets the flag for the program that follows, as for runc's init;
- for a container that has CAP_SYS_PTRACE, /proc/PID/exe becomes a copy on a read-only tmpfs mounted nowhere
  (runc re-executes itself from a sealed memfd or such a copy; we swap the link instead: the executable's
  pages are replaced by anonymous copies, which lets PR_SET_MM_MAP repoint it); no open of it for write can
  succeed, now or later through /proc/PID/fd, and no descriptor of the host file is left;
- /proc/PID/cmdline shows `title` and environ nothing, not the host command's.
libpython and extension modules stay mapped from host files, but /proc/PID/map_files needs CAP_SYS_ADMIN,
with which a container is not contained anyway.
"""

from __future__ import annotations

import ctypes
import os

from runner import linux

_titles: list[ctypes.Array] = []  # what /proc/PID/cmdline points at must live as long as the process


def conceal(title: list[str], copy_exe: bool = True) -> None:
    """(in a forked, single-threaded child, before it joins a container) non-dumpable, cmdline the words of `title`,
    and with `copy_exe` exe a read-only copy (needed only where a process with CAP_SYS_PTRACE may look)."""
    linux.prctl(linux.PR_SET_DUMPABLE, 0)
    copy = _read_only_copy("/proc/self/exe") if copy_exe else -1
    try:
        if copy >= 0:
            _unmap_exe()
        raw = b"\0".join(w.encode(errors="replace") for w in title) + b"\0"
        text = ctypes.create_string_buffer(raw, len(raw))
        _titles.append(text)
        linux.set_mm(copy, ctypes.addressof(text), len(raw))  # (-1: exe stays as it is)
    finally:
        if copy >= 0:
            os.close(copy)


def _unmap_exe() -> None:
    """Replace every mapping of our executable by an anonymous copy: the kernel repoints exe only when the old file
    is mapped nowhere in the process."""
    exe = os.readlink("/proc/self/exe")
    with open("/proc/self/maps") as f:
        mappings = [line.split(maxsplit=5) for line in f]
    for m in mappings:
        if len(m) == 6 and m[5].rstrip("\n") == exe:
            start, end = (int(x, 16) for x in m[0].split("-"))
            perms = m[1]
            linux.anonymize(start, end - start, (perms[0] == "r") | (perms[1] == "w") << 1 | (perms[2] == "x") << 2)


def _read_only_copy(path: str) -> int:
    """A read-only fd of a copy of `path` on a read-only tmpfs attached nowhere: reopening it for write, even
    through /proc/PID/fd, fails (EROFS)."""
    mount = linux.detached_tmpfs(linux.MOUNT_ATTR_NOSUID | linux.MOUNT_ATTR_NODEV)
    try:
        out = os.open("dockyard", os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o555, dir_fd=mount)
        try:
            with open(path, "rb") as f:
                while os.sendfile(out, f.fileno(), None, 1 << 24):
                    pass
        finally:
            os.close(out)
        linux.set_mount_attrs(mount, linux.MOUNT_ATTR_RDONLY)
        return os.open("dockyard", os.O_RDONLY | os.O_CLOEXEC, dir_fd=mount)
    finally:
        os.close(mount)


def non_dumpable() -> None:
    """Again after a uid change, which resets the flag to fs.suid_dumpable."""
    linux.prctl(linux.PR_SET_DUMPABLE, 0)
