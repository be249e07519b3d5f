"""Running foreign-architecture binaries: qemu-user-static's binfmt_misc handlers, registered when missing.

A handler is registered with the F (fix binary) flag, so the kernel opens the emulator once, now, and a
container's mount namespace (where no /usr/bin/qemu-* exists) can still run the image's binaries through it.
"""

from __future__ import annotations

import os
from _thread import allocate_lock

from dockyard.errors import DockyardError
from dockyard.image import Platform

BINFMT_DIR = "/proc/sys/fs/binfmt_misc"
CONF_DIRS = ("/usr/lib/binfmt.d", "/etc/binfmt.d")
# Our platform names as qemu's (and its handler's) architecture names.
_QEMU_ARCH = {"arm64": "aarch64", "arm": "arm", "386": "i386", "amd64": "x86_64", "ppc64le": "ppc64le",
              "s390x": "s390x", "riscv64": "riscv64", "mips64le": "mips64el", "loong64": "loongarch64"}
_lock = allocate_lock()  # (threading's Lock, without importing threading on every `run`)
_ready: set[str] = set()


class EmulationUnavailable(DockyardError):
    """A foreign-architecture binary cannot run here: qemu-user-static or binfmt_misc is missing."""


def native(platform: Platform) -> bool:
    """Whether this machine runs the platform's binaries without an emulator."""
    host = Platform.host()
    return (platform.os, platform.architecture) == (host.os, host.architecture) or \
        (host.architecture, platform.architecture) in (("amd64", "386"), ("arm64", "arm"))


def ensure(platform: Platform) -> None:
    """Make the platform's binaries runnable here: nothing for native ones, else the qemu handler registered
    (mounting binfmt_misc first if need be); EmulationUnavailable says exactly what is missing."""
    if native(platform):
        return
    qemu = _QEMU_ARCH.get(platform.architecture)
    if qemu is None:
        raise EmulationUnavailable(f"cannot run {platform} binaries: no qemu emulator is known for "
                                   f"{platform.architecture}")
    with _lock:
        if qemu in _ready:
            return
        _mount()
        handler = os.path.join(BINFMT_DIR, f"qemu-{qemu}")
        if not os.path.exists(handler):
            _register(qemu, platform)
        _check(handler, platform)
        _ready.add(qemu)


def _mount() -> None:
    if os.path.exists(os.path.join(BINFMT_DIR, "register")):
        return
    import subprocess  # (here: every `run` imports this module, and runs natively)

    r = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", BINFMT_DIR], capture_output=True, text=True)
    if r.returncode != 0 or not os.path.exists(os.path.join(BINFMT_DIR, "register")):
        raise EmulationUnavailable(f"cannot run foreign binaries: binfmt_misc is not mounted on {BINFMT_DIR} "
                                   f"and mounting it failed ({(r.stderr or '').strip() or 'no register file'})")


def _register(qemu: str, platform: Platform) -> None:
    """Write the handler line qemu-user-static ships, with the F flag added."""
    for directory in CONF_DIRS:
        path = os.path.join(directory, f"qemu-{qemu}.conf")
        if os.path.exists(path):
            break
    else:
        raise EmulationUnavailable(f"cannot run {platform} binaries: no binfmt_misc handler qemu-{qemu} and no "
                                   f"{CONF_DIRS[0]}/qemu-{qemu}.conf (install qemu-user-static)")
    with open(path) as f:
        line = next((x.strip() for x in f if x.startswith(":")), "")
    fields = line.split(":")
    if len(fields) != 8:
        raise EmulationUnavailable(f"{path}: not a binfmt_misc handler line")
    interpreter = fields[6]
    if not os.path.exists(interpreter):
        raise EmulationUnavailable(f"cannot run {platform} binaries: {path} names {interpreter}, which is missing "
                                   "(reinstall qemu-user-static)")
    if "F" not in fields[7]:
        fields[7] += "F"
    try:
        with open(os.path.join(BINFMT_DIR, "register"), "w") as f:
            f.write(":".join(fields))
    except FileExistsError:
        pass  # another process registered it meanwhile
    except OSError as e:
        raise EmulationUnavailable(f"cannot register the binfmt_misc handler qemu-{qemu}: {e.strerror}") from None


def _check(handler: str, platform: Platform) -> None:
    """The handler is enabled and opens its emulator at registration (F), as containers need."""
    try:
        with open(handler) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise EmulationUnavailable(f"cannot run {platform} binaries: {handler} is missing after registering "
                                   "it") from None
    name = os.path.basename(handler)
    if "enabled" not in lines:
        raise EmulationUnavailable(f"cannot run {platform} binaries: the binfmt_misc handler {name} is disabled "
                                   f"(echo 1 > {handler})")
    flags = next((x.split(":", 1)[1].strip() for x in lines if x.startswith("flags:")), "")
    if "F" not in flags:
        raise EmulationUnavailable(f"cannot run {platform} binaries in containers: the binfmt_misc handler {name} "
                                   f"lacks the F flag (echo -1 > {handler}, and dockyard registers it again)")
