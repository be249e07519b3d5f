"""Thin ctypes wrappers for the Linux syscalls Python 3.11 lacks (mount, namespaces, capabilities)."""

from __future__ import annotations

import ctypes
import functools
import os

from dockyard.machine import machine

_libc = ctypes.CDLL(None, use_errno=True)

# Namespace flags (linux/sched.h).
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# Mount flags (linux/mount.h).
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOSYMFOLLOW = 0x100
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
MNT_DETACH = 0x2

# prctl options (linux/prctl.h).
PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
PR_SET_MM = 35
PR_SET_MM_MAP = 14

# Syscalls glibc has no wrapper for, by architecture.
_SYSCALLS = {
    "x86_64": {"pivot_root": 155, "capset": 126, "seccomp": 317},
    "aarch64": {"pivot_root": 41, "capset": 91, "seccomp": 277},
}

# open_tree / move_mount flags (linux/mount.h, linux/fcntl.h).
_AT_EMPTY_PATH = 0x1000
_AT_RECURSIVE = 0x8000
_OPEN_TREE_CLONE = 1
_OPEN_TREE_CLOEXEC = os.O_CLOEXEC
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_MOVE_MOUNT_T_EMPTY_PATH = 0x40

_LINUX_CAPABILITY_VERSION_3 = 0x20080522

# The new mount API (same numbers on every architecture) and its flags (linux/mount.h).
_OPEN_TREE, _MOVE_MOUNT, _FSOPEN, _FSCONFIG, _FSMOUNT, _MOUNT_SETATTR = 428, 429, 430, 431, 432, 442
_FSCONFIG_CMD_CREATE = 6
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4


@functools.cache
def _abi() -> str:
    """The machine whose syscall numbers this interpreter uses: fixed for the process, whatever its personality."""
    return machine()


def _syscall(name: str) -> int:
    """The number of syscall `name` on the machine this interpreter runs as (not os.uname()'s under a personality:
    with `setarch linux32` a 64-bit runtime still calls by x86_64's numbers)."""
    arch = _abi()
    try:
        return _SYSCALLS[arch][name]
    except KeyError:
        raise OSError(38, f"{name}: syscall number unknown on {arch}") from None  # ENOSYS


def _check(result: int, what: str, path: str | None = None) -> int:
    """Raise OSError with errno when a libc call returned -1."""
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)
    return result


def _b(s: str | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    """mount(2)."""
    _check(_libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)),
           f"mount {fstype or source} on {target}")


PROC_SUPER_MAGIC = 0x9FA0
PROC_ROOT_INO = 1


def fs_type(path: str) -> int:
    """statfs(2)'s f_type: the magic number of the filesystem `path` lies on."""
    buf = ctypes.create_string_buffer(128)  # struct statfs (120 bytes on 64-bit Linux) begins with f_type
    _check(_libc.statfs(_b(path), buf), "statfs", path)
    return ctypes.c_long.from_buffer(buf).value


def clone_mount(fd: int, recursive: bool = True) -> int:
    """open_tree(2) OPEN_TREE_CLONE: a detached bind mount of what `fd` (an O_PATH descriptor) refers to.

    Unlike the descriptor itself, it can be attached (move_mount) in another mount namespace."""
    flags = _AT_EMPTY_PATH | _OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC | (_AT_RECURSIVE if recursive else 0)
    return _check(_libc.syscall(_OPEN_TREE, fd, b"", flags), "open_tree")


def attach_mount(tree: int, target: int) -> None:
    """move_mount(2): attach the detached mount `tree` on the object the descriptor `target` refers to."""
    _check(_libc.syscall(_MOVE_MOUNT, tree, b"", target, b"",
                         _MOVE_MOUNT_F_EMPTY_PATH | _MOVE_MOUNT_T_EMPTY_PATH), "move_mount")


def umount(target: str, flags: int = 0) -> None:
    """umount2(2)."""
    _check(_libc.umount2(_b(target), flags), f"unmount {target}")


def unshare(flags: int) -> None:
    """unshare(2)."""
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int) -> None:
    """setns(2) on an open namespace file descriptor."""
    _check(_libc.setns(fd, nstype), "setns")


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2)."""
    _check(_libc.syscall(_syscall("pivot_root"), _b(new_root), _b(put_old)), "pivot_root")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """prctl(2) with integer arguments."""
    return _check(
        _libc.prctl(option, ctypes.c_ulong(arg2), ctypes.c_ulong(arg3), ctypes.c_ulong(arg4), ctypes.c_ulong(arg5)),
        "prctl",
    )


def sethostname(name: str) -> None:
    """sethostname(2) (avoids importing socket on the start path)."""
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname")


def setdomainname(name: str) -> None:
    """setdomainname(2)."""
    raw = name.encode()
    _check(_libc.setdomainname(raw, len(raw)), "setdomainname")


_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.mremap.restype = ctypes.c_void_p
_libc.mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p]
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.sbrk.restype = ctypes.c_void_p
_libc.sbrk.argtypes = [ctypes.c_long]


def anonymize(start: int, length: int, prot: int) -> None:
    """Replace the mapping at [start, start+length) by an anonymous private copy with protection `prot`, at once."""
    copy = _libc.mmap(None, length, 3, 0x22, -1, 0)  # PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS
    if copy == ctypes.c_void_p(-1).value:
        _check(-1, "mmap")
    if prot & 1:  # PROT_READ: an unreadable mapping has nothing to keep
        ctypes.memmove(copy, start, length)
    _check(_libc.mprotect(copy, length, prot), "mprotect")
    # mremap swaps the pages in one step, so even code running from them keeps running.
    if _libc.mremap(copy, length, length, 3, start) != start:  # MREMAP_MAYMOVE|MREMAP_FIXED
        _check(-1, "mremap")


class _MmMap(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "start_code", "end_code", "start_data", "end_data", "start_brk", "brk", "start_stack",
        "arg_start", "arg_end", "env_start", "env_end", "auxv")] + [
        ("auxv_size", ctypes.c_uint32), ("exe_fd", ctypes.c_uint32)]


def set_mm(exe_fd: int, args: int, args_length: int) -> None:
    """PR_SET_MM_MAP: /proc/self/exe becomes `exe_fd` (-1: stays), /proc/self/cmdline the `args_length` bytes at
    address `args`, /proc/self/environ empty; the rest of the memory map stays as it is."""
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rpartition(b")")[2].split()

    def field(number: int) -> int:  # numbered as in proc(5); `fields` starts at the third
        return int(fields[number - 3])

    mm = _MmMap(start_code=field(26), end_code=field(27), start_data=field(45), end_data=field(46),
                start_brk=field(47), brk=_libc.sbrk(0), start_stack=field(28), arg_start=args,
                arg_end=args + args_length, env_start=args + args_length, env_end=args + args_length, auxv=0,
                auxv_size=0, exe_fd=exe_fd & 0xFFFFFFFF)  # the kernel's (u32)-1: no change
    _check(_libc.prctl(PR_SET_MM, PR_SET_MM_MAP, ctypes.byref(mm), ctypes.sizeof(mm), 0), "prctl(PR_SET_MM_MAP)")


def detached_tmpfs(attrs: int) -> int:
    """An fd of a new tmpfs mount attached nowhere, with MOUNT_ATTR_* `attrs` (fsopen + fsmount)."""
    fs = _check(_libc.syscall(_FSOPEN, b"tmpfs", 1), "fsopen tmpfs")  # FSOPEN_CLOEXEC
    try:
        _check(_libc.syscall(_FSCONFIG, fs, _FSCONFIG_CMD_CREATE, None, None, 0), "fsconfig tmpfs")
        return _check(_libc.syscall(_FSMOUNT, fs, 1, attrs), "fsmount tmpfs")  # FSMOUNT_CLOEXEC
    finally:
        os.close(fs)


def set_mount_attrs(mount_fd: int, attrs: int) -> None:
    """mount_setattr(2): add MOUNT_ATTR_* `attrs` to the mount `mount_fd` refers to."""
    attr = (ctypes.c_uint64 * 4)(attrs, 0, 0, 0)  # struct mount_attr: attr_set, attr_clr, propagation, userns_fd
    _check(_libc.syscall(_MOUNT_SETATTR, mount_fd, b"", _AT_EMPTY_PATH, attr, ctypes.sizeof(attr)), "mount_setattr")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """capset(2) for the calling thread with 64-bit capability masks."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in range(2):
        shift = 32 * i
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    _check(_libc.syscall(_syscall("capset"), ctypes.byref(header), data), "capset")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


SECCOMP_SET_MODE_FILTER = 1
_BPF_MAXINSNS = 4096


def seccomp_set_filter(program: bytes, flags: int = 0) -> None:
    """seccomp(SECCOMP_SET_MODE_FILTER): confine the calling thread with a BPF program (8-byte instructions)."""
    count = len(program) // 8
    if not 0 < count <= _BPF_MAXINSNS or len(program) % 8:
        raise OSError(22, f"seccomp: a filter of {len(program)} bytes is not a BPF program of at most "
                          f"{_BPF_MAXINSNS} instructions")
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(count, ctypes.addressof(buf))
    _check(_libc.syscall(_syscall("seccomp"), SECCOMP_SET_MODE_FILTER, ctypes.c_uint(flags), ctypes.byref(prog)),
           "seccomp")


def socket_fd(family: int, kind: int, proto: int = 0) -> int:
    """socket(2) as a plain close-on-exec fd (the socket module costs ~1.5 ms to import)."""
    return _check(_libc.socket(family, kind | 0o2000000, proto), "socket")  # SOCK_CLOEXEC


def loopback_up() -> None:
    """Bring `lo` up in the current network namespace with SIOCSIFFLAGS (no `ip` binary)."""
    import fcntl
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    fd = socket_fd(2, 2)  # AF_INET, SOCK_DGRAM
    try:
        ifreq = bytearray(struct.pack("16sh22x", b"lo", 0))
        fcntl.ioctl(fd, siocgifflags, ifreq)
        flags = struct.unpack_from("h", ifreq, 16)[0]
        struct.pack_into("h", ifreq, 16, flags | iff_up)
        fcntl.ioctl(fd, siocsifflags, ifreq)
    finally:
        os.close(fd)
