"""Seccomp: Docker-format profiles compiled per container into the runtime-spec `linux.seccomp`, and installed.

A Docker profile's rules carry conditions (`includes`/`excludes` by capability, architecture and kernel version);
`compile_profile` settles them for one container into plain runtime-spec rules that go into config.json, so runc
enforces the same filter. Our runtime has libseccomp (through the pyseccomp binding) turn that `linux.seccomp` into
its BPF program, cached under CACHE_DIR (importing the binding alone costs ~20 ms, more than a start), and
the container's init installs it right before execve.
"""

from __future__ import annotations

import errno
import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import NoReturn

from dockyard.errors import DockyardError
from dockyard.fsutil import key_name
from dockyard.machine import machine as this_machine

DEFAULT_PROFILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seccomp_default.json")
CACHE_DIR = "/run/dockyard/seccomp"
MAX_PROFILE_BYTES = 1 << 20  # Docker's own profile is some 20 KiB
MAX_RULES = 4096
MAX_NAMES = 16384

ACTIONS = ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO",
           "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG")  # SCMP_ACT_NOTIFY needs a listener: unsupported
OPERATORS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5,
             "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}  # libseccomp's enum scmp_compare
ARCHES = ("SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64",
          "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64",
          "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390",
          "SCMP_ARCH_S390X", "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64", "SCMP_ARCH_LOONGARCH64")
FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2, "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4}
# uname's machine -> (the name Docker's `arches` conditions use, the libseccomp architecture).
MACHINES = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"), "i686": ("x86", "SCMP_ARCH_X86"),
    "aarch64": ("arm64", "SCMP_ARCH_AARCH64"), "armv7l": ("arm", "SCMP_ARCH_ARM"),
    "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"), "s390x": ("s390x", "SCMP_ARCH_S390X"),
    "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"), "loongarch64": ("loongarch64", "SCMP_ARCH_LOONGARCH64"),
    "mips64": ("mips64", "SCMP_ARCH_MIPS64"),
}  # fmt: skip
# Patterns as text: compiled (and cached by `re`) only when a profile is validated, not on every start.
_SYSCALL_NAME = r"[a-z0-9_]{1,64}"
_ARCH_NAME = "|".join(ARCHES)
_FLAG_NAME = "|".join(FLAGS)
_CAP_NAME = r"CAP_[A-Z_]{1,40}"
_KERNEL = r"(\d{1,3})\.(\d{1,3})"
_MAX_ERRNO = 4095
# The syscall dispatch as a binary tree (libseccomp's optimize level 2): the same decisions, but the kernel's
# install, which runs the program once per syscall number to build its cache, takes half as long (~1.5 ms less
# on every start for Docker's profile). In the cache key, so programs compiled linear are not reused.
_PROGRAM_SHAPE = "optimize=2"
_U64 = (1 << 64) - 1


def _fail(where: str, message: str) -> NoReturn:
    raise DockyardError(f"seccomp profile {where}: {message}")


def _strings(value: object, where: str, pattern: str, what: str, limit: int = MAX_NAMES) -> list[str]:
    if not isinstance(value, list) or len(value) > limit:
        _fail(where, f"want a list of at most {limit} {what}s")
    for item in value:
        if not isinstance(item, str) or not re.fullmatch(pattern, item):
            _fail(where, f"invalid {what} {str(item)[:80]!r}")
    return value


def _number(value: object, where: str, top: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        _fail(where, f"want an integer from 0 to {top}, not {str(value)[:40]!r}")
    return value


def _check_rule(rule: object, where: str, conditional: bool) -> int:
    """Validate one syscalls[] entry (Docker's form when `conditional`, else runtime-spec's); its name count."""
    if not isinstance(rule, dict):
        _fail(where, "want an object")
    names = rule.get("names")
    if conditional and rule.get("name") is not None:
        if names:
            _fail(where, "both name and names")
        names = [rule["name"]]
    if not names:
        _fail(where, "no syscall names")
    _strings(names, where + ".names", _SYSCALL_NAME, "syscall name")
    if rule.get("action") not in ACTIONS:
        _fail(where, f"unsupported action {str(rule.get('action'))[:40]!r}")
    if rule.get("errnoRet") is not None:
        _number(rule["errnoRet"], where + ".errnoRet", _MAX_ERRNO)
    args = rule.get("args") or []
    if not isinstance(args, list) or len(args) > 6:
        _fail(where + ".args", "want a list of at most 6 conditions")
    for i, arg in enumerate(args):
        at = f"{where}.args[{i}]"
        if not isinstance(arg, dict):
            _fail(at, "want an object")
        _number(arg.get("index"), at + ".index", 5)
        _number(arg.get("value"), at + ".value", _U64)
        if arg.get("valueTwo") is not None:
            _number(arg["valueTwo"], at + ".valueTwo", _U64)
        if arg.get("op") not in OPERATORS:
            _fail(at, f"unknown operator {str(arg.get('op'))[:40]!r}")
    for key in ("includes", "excludes"):
        cond = rule.get(key)
        if cond is None:
            continue
        if not conditional or not isinstance(cond, dict):
            _fail(f"{where}.{key}", "not allowed here" if not conditional else "want an object")
        _strings(cond.get("caps") or [], f"{where}.{key}.caps", _CAP_NAME, "capability", 64)
        _strings(cond.get("arches") or [], f"{where}.{key}.arches", _SYSCALL_NAME, "architecture", 64)
        if cond.get("minKernel") is not None and not (isinstance(cond["minKernel"], str)
                                                      and re.fullmatch(_KERNEL, cond["minKernel"])):  # fmt: skip
            _fail(f"{where}.{key}.minKernel", "want a version like 4.8")
    return len(names)


def _check(profile: object, where: str, conditional: bool) -> dict:
    """Validate a whole profile (Docker's form when `conditional`, else the runtime-spec's `linux.seccomp`)."""
    if not isinstance(profile, dict):
        _fail(where, "want a JSON object")
    if profile.get("defaultAction") not in ACTIONS:
        _fail(where, f"unsupported defaultAction {str(profile.get('defaultAction'))[:40]!r}")
    if profile.get("defaultErrnoRet") is not None:
        _number(profile["defaultErrnoRet"], where + ": defaultErrnoRet", _MAX_ERRNO)
    if profile.get("listenerPath"):
        _fail(where, "listenerPath (SCMP_ACT_NOTIFY) is not supported")
    _strings(profile.get("architectures") or [], where + ": architectures", _ARCH_NAME, "architecture", 64)
    _strings(profile.get("flags") or [], where + ": flags", _FLAG_NAME, "flag", 8)
    arch_map = profile.get("archMap") or []
    if arch_map and (not conditional or profile.get("architectures")):
        _fail(where, "archMap is not allowed here" if not conditional else "both architectures and archMap")
    if not isinstance(arch_map, list) or len(arch_map) > 64:
        _fail(where + ": archMap", "want a list")
    for i, entry in enumerate(arch_map):
        if not isinstance(entry, dict) or entry.get("architecture") not in ARCHES:
            _fail(f"{where}: archMap[{i}]", "want an object with a known architecture")
        _strings(entry.get("subArchitectures") or [], f"{where}: archMap[{i}].subArchitectures", _ARCH_NAME,
                 "architecture", 64)  # fmt: skip
    rules = profile.get("syscalls") or []
    if not isinstance(rules, list) or len(rules) > MAX_RULES:
        _fail(where + ": syscalls", f"want a list of at most {MAX_RULES} rules")
    if sum(_check_rule(r, f"{where}: syscalls[{i}]", conditional) for i, r in enumerate(rules)) > MAX_NAMES:
        _fail(where + ": syscalls", f"more than {MAX_NAMES} names")
    return profile


def parse_profile(text: str | bytes, where: str) -> dict:
    """A Docker-format profile from JSON text, validated (hostile input: one-line errors naming `where`)."""
    if len(text) > MAX_PROFILE_BYTES:
        _fail(where, f"larger than {MAX_PROFILE_BYTES} bytes")
    try:
        profile = json.loads(text)
    except (ValueError, RecursionError) as e:
        _fail(where, f"not valid JSON: {str(e)[:120]}")
    return _check(profile, where, conditional=True)


def read_profile(path: str) -> dict:
    """The Docker-format profile in file `path`, validated."""
    try:
        with open(path, "rb") as f:
            text = f.read(MAX_PROFILE_BYTES + 1)
    except OSError as e:
        _fail(path, e.strerror or str(e))
    return parse_profile(text, path)


@lru_cache(maxsize=1)
def default_profile() -> dict:
    """Docker's default profile (our data file; the tests validate it, so starts skip that)."""
    with open(DEFAULT_PROFILE, "rb") as f:
        return json.load(f)


def _kernel_at_least(version: str, release: str) -> bool:
    want = re.fullmatch(_KERNEL, version)
    have = re.match(_KERNEL, release)
    return have is not None and want is not None and (int(have[1]), int(have[2])) >= (int(want[1]), int(want[2]))


def _applies(rule: dict, caps: list[str], arch: str, release: str) -> bool:
    """Whether a Docker rule holds for this container: as moby, includes needs every cap, excludes any."""
    exc, inc = rule.get("excludes") or {}, rule.get("includes") or {}
    if arch in (exc.get("arches") or []) or any(c in caps for c in exc.get("caps") or []):
        return False
    if exc.get("minKernel") and _kernel_at_least(exc["minKernel"], release):
        return False
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if not all(c in caps for c in inc.get("caps") or []):
        return False
    return not inc.get("minKernel") or _kernel_at_least(inc["minKernel"], release)


def compile_profile(profile: dict, caps: list[str], machine: str = "", release: str = "") -> dict:
    """The runtime-spec `linux.seccomp` of a Docker profile for a container with bounding set `caps`."""
    uname = os.uname()
    machine = machine or this_machine()
    arch, native = MACHINES.get(machine, (machine, ""))
    out: dict = {"defaultAction": profile["defaultAction"]}
    if profile.get("defaultErrnoRet") is not None:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    if profile.get("architectures"):
        out["architectures"] = list(profile["architectures"])
    for entry in profile.get("archMap") or []:
        if entry["architecture"] == native:
            out["architectures"] = [native, *(entry.get("subArchitectures") or [])]
    if profile.get("flags"):
        out["flags"] = list(profile["flags"])
    out["syscalls"] = [
        {"names": list(rule.get("names") or [rule["name"]]), "action": rule["action"],
         **{k: rule[k] for k in ("errnoRet", "args") if rule.get(k) is not None}}
        for rule in profile.get("syscalls") or [] if _applies(rule, caps, arch, release or uname.release)
    ]  # fmt: skip
    return out


@dataclass
class Filter:
    """A compiled seccomp program (BPF, 8-byte instructions) and the flags to install it with."""

    program: bytes
    flags: int = 0

    def install(self) -> None:
        """Confine this thread and all it execs; needs no_new_privs or CAP_SYS_ADMIN."""
        from runner import linux

        linux.seccomp_set_filter(self.program, self.flags)


def prepare(config: dict) -> Filter | None:
    """The filter of config.json's `linux.seccomp` (None without one): from the cache, else via libseccomp."""
    seccomp = (config.get("linux") or {}).get("seccomp")
    if seccomp is None:
        return None
    text = json.dumps(seccomp, sort_keys=True, separators=(",", ":"))  # (one line: JSON escapes newlines)
    key = f"{this_machine()}\n{_PROGRAM_SHAPE}\n{text}\n".encode()
    # Named by key_name; the file starts with the whole key, so a program is taken only when it was compiled from
    # exactly this (validated) text.
    path = os.path.join(CACHE_DIR, key_name(key) + ".bpf")
    try:
        with open(path, "rb") as f:
            cached = f.read()
    except FileNotFoundError:
        cached = b""
    if len(cached) > len(key) and cached.startswith(key):
        program = cached[len(key):]
    else:
        program = _compile(_check(seccomp, "linux.seccomp", conditional=False))
        try:
            os.makedirs(CACHE_DIR, mode=0o700, exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "wb") as out:
                out.write(key + program)
            os.replace(tmp, path)
        except OSError as e:
            raise DockyardError(f"seccomp cache {CACHE_DIR}: {e.strerror}") from None
    return Filter(program, sum(FLAGS[f] for f in seccomp.get("flags") or []))


def install(flt: Filter | None, process: dict, after_caps: bool) -> None:
    """Install `flt` at its point of the init: without no_new_privs the kernel wants CAP_SYS_ADMIN, so before the
    capabilities are dropped (as runc does); with it, as late as possible (after_caps), right before execve."""
    if flt is not None and bool(process.get("noNewPrivileges")) == after_caps:
        flt.install()


def _compile(seccomp: dict) -> bytes:
    """libseccomp's BPF for a runtime-spec `linux.seccomp`, rule by rule as runc builds it."""
    import tempfile

    import pyseccomp as sc

    def action(name: str, errno_ret: int | None) -> int:
        if name == "SCMP_ACT_ERRNO":
            return sc.ERRNO(errno.EPERM if errno_ret is None else errno_ret)
        if name == "SCMP_ACT_TRACE":
            return sc.TRACE(errno.EPERM if errno_ret is None else errno_ret)
        return {"SCMP_ACT_KILL": sc.KILL_THREAD, "SCMP_ACT_KILL_THREAD": sc.KILL_THREAD,
                "SCMP_ACT_KILL_PROCESS": sc.KILL_PROCESS, "SCMP_ACT_TRAP": sc.TRAP, "SCMP_ACT_ALLOW": sc.ALLOW,
                "SCMP_ACT_LOG": sc.LOG}[name]  # fmt: skip

    default = action(seccomp["defaultAction"], seccomp.get("defaultErrnoRet"))
    flt = sc.SyscallFilter(default)
    flt.set_attr(sc.Attr.CTL_NNP, 0)  # no_new_privs is the config's choice, set by the init
    try:  # (part of the cache key: _PROGRAM_SHAPE)
        flt.set_attr(sc.Attr.CTL_OPTIMIZE, 2)
    except OSError:
        pass  # libseccomp before 2.5: the linear program, which decides the same
    for arch in seccomp.get("architectures") or []:
        value = getattr(sc.Arch, arch.removeprefix("SCMP_ARCH_"), None)
        if value is None:
            raise DockyardError(f"seccomp: architecture {arch} is not known to this libseccomp")
        if not flt.exist_arch(value):
            flt.add_arch(value)
    for rule in seccomp.get("syscalls") or []:
        act = action(rule["action"], rule.get("errnoRet"))
        if act == default:  # libseccomp refuses rules that only repeat the default
            continue
        conds = [sc.Arg(a["index"], OPERATORS[a["op"]], a["value"], a.get("valueTwo") or 0)
                 for a in rule.get("args") or []]
        # libseccomp compares each argument once per rule: runc adds each condition on a repeated index on its own
        repeated = len({a["index"] for a in rule.get("args") or []}) < len(conds)
        for name in rule["names"]:
            nr = sc.resolve_syscall(sc.Arch.NATIVE, name)
            if nr == -1:  # newer than this libseccomp (or no such call): the default action stays, as with runc
                continue
            try:
                for group in [[c] for c in conds] if repeated else [conds]:
                    flt.add_rule(act, nr, *group)
            except OSError as e:
                raise DockyardError(f"seccomp rule for {name}: {e.strerror}") from None
    with tempfile.TemporaryFile() as f:
        flt.export_bpf(f)
        f.seek(0)
        return f.read()
