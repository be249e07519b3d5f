"""Seccomp and the security options: Docker's default profile in containers, RUN steps and exec under our runtime
and runc, --security-opt seccomp=unconfined|PROFILE / no-new-privileges, --privileged and --cap-add ALL."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from runner import seccomp, spec
from support import tool

# The probe's calls: what Docker's default profile refuses (with the errno it gives), and two it lets through.
REFUSED = {
    "add_key": "EPERM", "keyctl": "EPERM", "request_key": "EPERM", "perf_event_open": "EPERM",
    "io_uring_setup": "EPERM", "setns": "EPERM", "socket_alg": "EPERM",
    "personality_read_implies_exec": "EPERM", "clone3": "ENOSYS", "unshare_user": "EPERM",
}  # fmt: skip
ALLOWED = {"socket_unix": "OK", "personality_query": "OK"}
RUNTIMES = ["dockyard", "runc"]


@pytest.fixture(scope="session")
def probe(tmp_path_factory) -> str:
    """tests/runner/seccomp_probe.c built static, so it runs in the busybox image."""
    out = str(tmp_path_factory.mktemp("probe") / "probe")
    src = os.path.join(os.path.dirname(__file__), "seccomp_probe.c")
    subprocess.run([tool("gcc"), "-static", "-O1", "-o", out, src], check=True)
    return out


def _status(text: str) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def _probe(ctr, probe: str, *opts: str, calls: dict = REFUSED | ALLOWED) -> dict[str, str]:
    out = ctr("run", "--rm", "--network", "none", "-v", f"{probe}:/probe:ro", *opts, "busybox", "/probe", *calls).out
    return dict(line.split("=", 1) for line in out.splitlines())


def _own_bounding() -> str:
    with open("/proc/self/status") as f:
        return _status(f.read())["CapBnd"]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_default_profile_refuses_what_docker_refuses(ctr, probe, runtime):
    status = _status(ctr("run", "--rm", "--network", "none", "--runtime", runtime, "busybox", "cat",
                         "/proc/self/status").out)  # fmt: skip
    assert status["Seccomp"] == "2" and status["NoNewPrivs"] == "0"
    # The escape primitive itself: a new user namespace (full caps inside it) from busybox.
    r = ctr("run", "--rm", "--network", "none", "--runtime", runtime, "busybox", "unshare", "-U", "true", check=False)
    assert r.code != 0 and "Operation not permitted" in r.err
    assert _probe(ctr, probe, "--runtime", runtime) == REFUSED | ALLOWED


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_unconfined_and_privileged_have_no_filter(ctr, probe, runtime):
    for opts in (["--security-opt", "seccomp=unconfined"], ["--privileged"]):
        got = _probe(ctr, probe, "--runtime", runtime, *opts)
        assert not any(v == "EPERM" or v == "ENOSYS" for v in got.values()), (opts, got)
        out = ctr("run", "--rm", "--network", "none", "--runtime", runtime, *opts, "busybox", "cat", "/proc/self/status").out
        assert _status(out)["Seccomp"] == "0"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_custom_profile_denying_mkdir(ctr, runtime, tmp_path):
    profile = json.loads(open(seccomp.DEFAULT_PROFILE).read())
    profile["syscalls"].insert(0, {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13})
    path = tmp_path / "nomkdir.json"
    path.write_text(json.dumps(profile))
    r = ctr("run", "--rm", "--network", "none", "--runtime", runtime, "--security-opt", f"seccomp={path}", "busybox",
            "sh", "-c", "mkdir /made; grep Seccomp: /proc/self/status", check=False)  # fmt: skip
    assert "can't create directory '/made': Permission denied" in r.err and "Seccomp:\t2" in r.out
    ctr("run", "--rm", "--network", "none", "--runtime", runtime, "busybox", "mkdir", "/made")  # the default allows it


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_privileged_mounts_sees_host_devices_and_has_all_caps(ctr, runtime):
    script = ("grep -E '^(CapEff|Seccomp):' /proc/self/status; mkdir /m && mount -t tmpfs t /m && echo mounted; "
              "ls /dev; grep -c kcore /proc/self/mountinfo; grep ' /sys ' /proc/self/mountinfo")
    out = ctr("run", "--rm", "--network", "none", "--runtime", runtime, "--privileged", "busybox", "sh", "-c", script,
              check=False).out  # fmt: skip
    assert f"CapEff:\t{_own_bounding()}" in out and "Seccomp:\t0" in out and "mounted" in out
    host = {os.path.basename(d["path"]) for d in spec.host_devices() if os.path.dirname(d["path"]) == "/dev"}
    assert host and host <= set(out.split()), host - set(out.split())
    assert "\n0\n" in out  # /proc/kcore is not masked
    assert " /sys rw," in out
    plain = ctr("run", "--rm", "--network", "none", "--runtime", runtime, "busybox", "ls", "/dev").out.split()
    assert not host - {"null", "zero", "full", "random", "urandom", "tty"} <= set(plain)


def test_cap_add_all_and_caps_decide_the_rules(ctr, probe):
    out = ctr("run", "--rm", "--network", "none", "--cap-add", "ALL", "busybox", "cat", "/proc/self/status").out
    assert _status(out)["CapEff"] == _own_bounding() and _status(out)["Seccomp"] == "2"
    # The profile's conditions follow the caps: CAP_SYS_ADMIN opens unshare and mount, nothing else changes.
    got = _probe(ctr, probe, "--cap-add", "SYS_ADMIN")
    assert got == REFUSED | ALLOWED | {"unshare_user": "OK", "clone3": "EINVAL", "perf_event_open": "EFAULT", "setns": "EBADF"}
    r = ctr("run", "--rm", "--network", "none", "--cap-add", "sys_admin", "--cap-drop", "ALL", "busybox", "cat",
            "/proc/self/status")  # fmt: skip
    assert _status(r.out)["CapEff"] == "0000000000200000"
    r = ctr("run", "--rm", "--cap-add", "NOPE", "busybox", "true", check=False)
    assert r.code == 125 and r.err.strip() == "Error: unknown capability 'CAP_NOPE'"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_no_new_privileges_and_non_root(ctr, runtime):
    for opts, nnp in ((["--security-opt", "no-new-privileges"], "1"), (["--security-opt", "no-new-privileges=false"], "0"),
                      (["--security-opt", "no-new-privileges:true", "-u", "1000"], "1"), (["-u", "1000"], "0")):  # fmt: skip
        out = ctr("run", "--rm", "--network", "none", "--runtime", runtime, *opts, "busybox", "sh", "-c",
                  "cat /proc/self/status; unshare -U true 2>/dev/null; echo unshare=$?").out  # fmt: skip
        status = _status(out)
        assert (status["NoNewPrivs"], status["Seccomp"]) == (nnp, "2"), opts
        assert "unshare=1" in out


def test_exec_gets_the_containers_profile(ctr, probe):
    cid = ctr("run", "-d", "--network", "none", "-v", f"{probe}:/probe:ro", "--security-opt", "no-new-privileges",
              "busybox", "sleep", "60").out.strip()  # fmt: skip
    out = ctr("exec", "-u", "1000", cid, "/probe", *REFUSED).out
    assert dict(line.split("=", 1) for line in out.splitlines()) == REFUSED
    status = _status(ctr("exec", cid, "cat", "/proc/self/status").out)
    assert (status["Seccomp"], status["NoNewPrivs"]) == ("2", "1")
    status = _status(ctr("exec", "--privileged", cid, "cat", "/proc/self/status").out)
    assert status["CapEff"] == _own_bounding() and status["Seccomp"] == "2"
    ctr("rm", "-f", cid)
    cid = ctr("run", "-d", "--network", "none", "--security-opt", "seccomp=unconfined", "busybox", "sleep", "60").out.strip()
    assert _status(ctr("exec", cid, "cat", "/proc/self/status").out)["Seccomp"] == "0"


def test_inspect_shows_security_options(ctr, tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{\n "defaultAction": "SCMP_ACT_ALLOW",\n "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]\n}')
    cid = ctr("create", "--security-opt", f"seccomp={path}", "--security-opt", "no-new-privileges", "--cap-add", "ALL",
              "busybox", "true").out.strip()  # fmt: skip
    host = json.loads(ctr("inspect", cid).out)[0]["HostConfig"]
    assert host["SecurityOpt"] == ['seccomp={"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],'
                                   '"action":"SCMP_ACT_ERRNO"}]}', "no-new-privileges"]
    assert host["Privileged"] is False and host["CapAdd"] == ["ALL"]
    cid = ctr("create", "--privileged", "--security-opt", "apparmor=unconfined", "--security-opt", "label=disable",
              "busybox", "true").out.strip()  # fmt: skip
    host = json.loads(ctr("inspect", cid).out)[0]["HostConfig"]
    assert host["Privileged"] is True and host["SecurityOpt"] == ["apparmor=unconfined", "label=disable"]


HOSTILE = {
    "not json": "not valid JSON",
    "[1, 2]": "want a JSON object",
    '{"defaultAction": "SCMP_ACT_NOTIFY"}': "unsupported defaultAction 'SCMP_ACT_NOTIFY'",
    '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["../../x"], "action": "SCMP_ACT_ERRNO"}]}':
        "syscalls[0].names: invalid syscall name '../../x'",
    '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", '
    '"args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}': "syscalls[0].args[0].index: want an integer from 0 to 5",
    '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", '
    '"args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]}': "syscalls[0].args[0].value: want an integer",
    '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", '
    '"errnoRet": 70000}]}': "syscalls[0].errnoRet: want an integer from 0 to 4095",
    '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": {"names": 1}}': "syscalls: want a list",
    '{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"], "archMap": [{"architecture": '
    '"SCMP_ARCH_X86_64"}]}': "both architectures and archMap",
    '{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", '
    '"includes": {"minKernel": "four"}}]}': "syscalls[0].includes.minKernel: want a version like 4.8",
    "[" * 100000: "not valid JSON",
}  # fmt: skip


def test_hostile_profiles_are_one_line_errors(ctr, tmp_path):
    path = tmp_path / "hostile.json"
    for text, message in HOSTILE.items():
        path.write_text(text)
        r = ctr("run", "--rm", "--security-opt", f"seccomp={path}", "busybox", "true", check=False)
        assert r.code == 125 and r.out == "", text[:60]
        assert r.err.startswith(f"Error: seccomp profile {path}: {message}") and r.err.count("\n") == 1, r.err
    path.write_bytes(b" " * (seccomp.MAX_PROFILE_BYTES + 10))
    r = ctr("run", "--rm", "--security-opt", f"seccomp={path}", "busybox", "true", check=False)
    assert r.code == 125 and "larger than" in r.err
    for opt in ("seccomp=", "apparmor=docker-default", "label=type:svirt_t", "no-new-privileges=maybe",
                f"seccomp={tmp_path}/missing.json"):
        r = ctr("run", "--rm", "--security-opt", opt, "busybox", "true", check=False)
        assert r.code == 125 and r.err.startswith("Error: ") and r.err.count("\n") == 1, r.err
    assert ctr("ps", "-aq").out == ""  # nothing was created


def test_run_steps_get_the_default_profile(dockyard, busybox_image, tmp_path):
    (tmp_path / "Dockerfile").write_text(
        "FROM busybox\nRUN grep Seccomp: /proc/self/status > /seccomp; unshare -U true 2>>/seccomp; echo $? >>/seccomp\n")
    dockyard("build", "-t", "probed", str(tmp_path))
    out = dockyard("run", "--rm", "--network", "none", "probed", "cat", "/seccomp").out
    assert out.startswith("Seccomp:\t2\n") and "Operation not permitted" in out and out.endswith("\n1\n")


def _allowed(oci: dict) -> set[str]:
    return {n for r in oci["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args") for n in r["names"]}


# Where podman's profile (containers-common, Debian 12) and Docker's differ for the default capabilities.
PODMAN_ONLY = {
    # podman leaves namespaces and mounts to the capabilities; Docker wants CAP_SYS_ADMIN (and masks clone's flags)
    "clone", "clone3", "fsconfig", "fsmount", "fsopen", "fspick", "mount", "mount_setattr", "move_mount", "open_tree",
    "pivot_root", "setns", "umount", "umount2", "unshare",
    "keyctl",  # podman allows keyrings
    "get_mempolicy", "mbind", "set_mempolicy", "pidfd_getfd", "reboot", "syslog",  # Docker: only with their caps
    "socket",  # Docker allows it only for families other than AF_ALG and AF_VSOCK
    "readdir", "sigaction", "signal", "sigpending", "sigsuspend",  # old 32-bit x86/arm calls Docker leaves out
    "syscall", "timerfd",  # calls of other architectures
}  # fmt: skip
DOCKER_ONLY = {  # calls newer than that profile (and io_pgetevents/vmsplice, which it refuses)
    "cachestat", "fchmodat2", "futex_requeue", "futex_wait", "futex_waitv", "futex_wake", "getxattrat",
    "io_pgetevents", "io_pgetevents_time64", "listmount", "listxattrat", "map_shadow_stack", "mseal",
    "removexattrat", "riscv_hwprobe", "setxattrat", "statmount", "uretprobe", "vmsplice",
}  # fmt: skip


def test_default_allow_list_matches_podmans_profile_but_the_known_differences():
    ours = seccomp.compile_profile(seccomp.read_profile(seccomp.DEFAULT_PROFILE), spec.DOCKER_CAPABILITIES)
    peer = seccomp.compile_profile(seccomp.read_profile("/usr/share/containers/seccomp.json"), spec.DOCKER_CAPABILITIES)
    assert _allowed(peer) - _allowed(ours) == PODMAN_ONLY
    assert _allowed(ours) - _allowed(peer) == DOCKER_ONLY
    assert ours["architectures"] == peer["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]


def test_conditions_by_arch_kernel_and_caps():
    profile = seccomp.read_profile(seccomp.DEFAULT_PROFILE)
    amd64 = seccomp.compile_profile(profile, [], machine="x86_64", release="6.1.0-18-amd64")
    arm64 = seccomp.compile_profile(profile, [], machine="aarch64", release="6.1.0")
    old = seccomp.compile_profile(profile, [], machine="x86_64", release="4.4.0")
    ptraced = seccomp.compile_profile(profile, ["CAP_SYS_PTRACE"], machine="x86_64", release="4.4.0")
    assert "arch_prctl" in _allowed(amd64) and "arch_prctl" not in _allowed(arm64)
    assert "set_tls" in _allowed(arm64) and arm64["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert "ptrace" in _allowed(amd64) and "ptrace" not in _allowed(old) and "ptrace" in _allowed(ptraced)
    admin = seccomp.compile_profile(profile, ["CAP_SYS_ADMIN"], machine="x86_64", release="6.1")
    assert {"mount", "unshare", "setns", "clone", "clone3"} <= _allowed(admin)
    assert not {"mount", "unshare", "setns", "clone", "clone3"} & _allowed(amd64)
    clone = [r for r in amd64["syscalls"] if r["names"] == ["clone"]]
    assert clone == [{"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                      "args": [{"index": 0, "value": 0x7E020000, "op": "SCMP_CMP_MASKED_EQ"}]}]
    assert [r for r in amd64["syscalls"] if r["names"] == ["clone3"]][0]["errnoRet"] == 38
    assert not [r for r in admin["syscalls"] if r["names"] == ["clone3"] and r["action"] != "SCMP_ACT_ALLOW"]


def test_runtime_refuses_a_hostile_linux_seccomp(tmp_path):
    from runner import runtime

    (tmp_path / "rootfs").mkdir()
    cases = {
        "names: invalid syscall name 'a/b'": [{"names": ["a/b"], "action": "SCMP_ACT_ERRNO"}],
        "includes: not allowed here": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "includes": {}}],
        "unsupported action 'SCMP_ACT_NOTIFY'": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}],
    }
    for message, rules in cases.items():
        config = spec.default_spec("rootfs", ["true"], network="none")
        config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}
        (tmp_path / "config.json").write_text(json.dumps(config))
        with pytest.raises(runtime.StartError) as e:
            runtime.run(str(tmp_path), "dy-test-hostile-seccomp")
        assert message in str(e.value) and "\n" not in str(e.value)


def _bpf_run(program: bytes, data: bytes) -> int:
    """A classic-BPF interpreter for seccomp programs (the instructions libseccomp emits): the return value for
    one struct seccomp_data."""
    import struct

    insns = list(struct.iter_unpack("<HBBI", program))
    a = x = pc = 0
    mem = [0] * 16
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        cls, op = code & 0x07, code & 0xF0
        if cls == 0x00:  # LD
            a = struct.unpack_from("<I", data, k)[0] if code & 0xE0 == 0x20 else mem[k] if code & 0xE0 == 0x60 else k
        elif cls == 0x01:  # LDX
            x = mem[k] if code & 0xE0 == 0x60 else k
        elif cls in (0x02, 0x03):  # ST, STX
            mem[k] = a if cls == 0x02 else x
        elif cls == 0x04:  # ALU
            v = x if code & 0x08 else k
            a = {0x00: a + v, 0x10: a - v, 0x40: a | v, 0x50: a & v, 0x60: a << v, 0x70: a >> v}[op] & 0xFFFFFFFF
        elif cls == 0x05:  # JMP
            v = x if code & 0x08 else k
            if op == 0x00:
                pc += k
            else:
                taken = {0x10: a == v, 0x20: a > v, 0x30: a >= v, 0x40: bool(a & v)}[op]
                pc += jt if taken else jf
        elif cls == 0x06:  # RET
            return a if code & 0x18 == 0x10 else k
        else:  # MISC: TAX / TXA
            x, a = (a, a) if op == 0x00 else (x, x)


def test_optimized_program_decides_as_the_linear_one(monkeypatch):
    # The filter is compiled as libseccomp's binary tree (quicker for the kernel to install); it must decide every
    # call exactly as the plain linear program of the same rules would.
    import struct

    import pyseccomp

    rules = seccomp._check(seccomp.compile_profile(seccomp.read_profile(seccomp.DEFAULT_PROFILE),
                                                   spec.DOCKER_CAPABILITIES), "linux.seccomp", conditional=False)
    tree = seccomp._compile(rules)
    real = pyseccomp.SyscallFilter.set_attr
    monkeypatch.setattr(pyseccomp.SyscallFilter, "set_attr", lambda self, attr, value: None
                        if attr == pyseccomp.Attr.CTL_OPTIMIZE else real(self, attr, value))
    linear = seccomp._compile(rules)
    assert tree != linear
    x86_64, i386, aarch64 = 0xC000003E, 0x40000003, 0xC00000B7  # aarch64: an architecture not in the filter
    numbers = {x86_64: [*range(460), *range(0x40000000, 0x40000000 + 550, 5)], i386: range(460), aarch64: range(9)}
    # Every call with zero arguments; those with argument conditions with some that match and some that do not.
    conditional = {pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)
                   for rule in rules["syscalls"] if rule.get("args") for name in rule["names"]}
    args = ([0x7E020000, 1, 8, 0, 0, 0], [0x10000000, 0xFFFFFFFF, 38, 2, 0, 0], [0xFFFFFFFF] + [1] * 5)
    seen = set()
    for arch, nrs in numbers.items():
        for nr in nrs:
            for a in ([0] * 6, *(args if nr in conditional else ())):
                data = struct.pack("<IIQ6Q", nr, arch, 0, *a)
                decision = _bpf_run(tree, data)
                assert decision == _bpf_run(linear, data), (hex(arch), nr, a)
                seen.add(decision)
    assert len(seen) >= 3  # allow, errno(EPERM), errno(ENOSYS), kill: the comparison covered several outcomes


def test_a_cached_program_serves_only_the_profile_it_was_compiled_from(tmp_path, monkeypatch):
    # The cache files are named by a crc32 of the profile text, which anyone can make collide: a program found under
    # a profile's name is taken only when the file holds that very text, else compiled anew (and the file replaced).
    monkeypatch.setattr(seccomp, "CACHE_DIR", str(tmp_path))

    def config(syscall: str) -> dict:
        return {"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW",
                                      "syscalls": [{"names": [syscall], "action": "SCMP_ACT_ERRNO"}]}}}

    mine, other = config("mkdir"), config("rmdir")
    program = seccomp.prepare(mine).program
    [name] = os.listdir(tmp_path)
    assert seccomp.prepare(mine).program == program  # from the cache now
    stranger = seccomp.prepare(other).program
    assert stranger != program
    [other_name] = set(os.listdir(tmp_path)) - {name}
    # What a colliding profile leaves under our name: its own text and program; then files of no profile at all.
    for planted in ((tmp_path / other_name).read_bytes(), b"", b"garbage"):
        (tmp_path / name).write_bytes(planted)
        assert seccomp.prepare(mine).program == program
        assert (tmp_path / name).read_bytes().endswith(program)
