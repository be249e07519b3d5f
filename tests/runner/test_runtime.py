"""Our OCI runtime on real namespaces, overlays and cgroups, checked against the host and against runc."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dockyard.errors import NotFound
from dockyard import users
from runner import cgroups, procfs, rootfs, runtime, sandbox, spec
from runner.runtime import StartError
from runner.sandbox import Sandbox
from dockyard.users import User
from runner.spec import Mount, Resources
from support import process_children, tool

REPO = Path(__file__).resolve().parents[2]
CAP_DOCKER = "00000000a80425fb"


# Every container id of this test process starts so: other suites (or another run of this one) may run
# containers at the same time.
PREFIX = f"rtt{os.getpid()}-"


def _our_cgroups() -> set[str]:
    """This suite's per-container cgroup dirs under every hierarchy's dockyard/ parent."""
    found = set()
    for base in (Path(cgroups.ROOT) / c / "dockyard" for c in os.listdir(cgroups.ROOT)):
        if base.is_dir():
            found |= {str(p) for p in base.iterdir() if p.is_dir() and p.name.startswith(PREFIX)}
    return found


@pytest.fixture(autouse=True)
def no_leaks(tmp_path):
    """Every test must leave no mounts under its tmp dir, no container cgroup and no child process."""
    yield
    with open("/proc/self/mountinfo") as f:
        assert str(tmp_path) not in f.read()
    assert _our_cgroups() == set()
    assert process_children().get(os.getpid(), []) == []


def _run(box: Sandbox, tmp_path: Path, runtime_name: str = "dockyard", stdin: int | None = None) -> tuple[runtime.ExitStatus, str, str]:
    """Run a sandbox capturing stdout/stderr into files."""
    out, err = tmp_path / "out", tmp_path / "err"
    with open(out, "wb") as o, open(err, "wb") as e:
        status = sandbox.run(box, stdin=stdin, stdout=o.fileno(), stderr=e.fileno(), runtime_name=runtime_name,
                             scratch=str(tmp_path), container_id=PREFIX + os.urandom(4).hex())
    return status, out.read_text(), err.read_text()


@pytest.fixture
def box(busybox_rootfs, tmp_path):
    """A factory of sandboxes over the busybox rootfs with a fresh upper dir."""

    def make(*args: str, **kw) -> Sandbox:
        kw.setdefault("lowerdirs", [str(busybox_rootfs)])
        return Sandbox(args=list(args), upperdir=str(tmp_path / "upper"), **kw)

    return make


def test_isolation_as_docker_sets_it_up(box, tmp_path):
    script = ("echo pid=$$; hostname; id; grep CapEff /proc/self/status; ls /sys/class/net; echo foo=$FOO; pwd;"
              "wc -c < /proc/keys; cat /sys/class/net/lo/flags; ls /proc/kcore 2>/dev/null && wc -c < /proc/kcore; mount")
    status, out, err = _run(box("sh", "-c", script, env=["FOO=bar baz"], cwd="/work/dir", hostname="box1",
                                network="none"), tmp_path)
    assert (status.code, err) == (0, "")
    lines = out.splitlines()
    assert lines[:9] == ["pid=1", "box1", "uid=0(root) gid=0(root)", f"CapEff:\t{CAP_DOCKER}", "lo",
                         "foo=bar baz", "/work/dir", "0", "0x9"]  # lo is up (IFF_UP|IFF_LOOPBACK)
    if os.path.exists("/proc/kcore"):
        assert lines[9:11] == ["/proc/kcore", "0"]
    mounts = {line.split()[2]: line for line in lines if " on /" in line}
    assert "(ro," in mounts["/sys"] and "(ro," in mounts["/proc/sys"] and "(ro," in mounts["/sys/fs/cgroup"]
    assert "ptmxmode=666" in mounts["/dev/pts"]
    for path in ("/dev/shm", "/dev/mqueue", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/proc/keys"):
        assert path in mounts
    # The overlay root, and the host's root is nowhere (pivot_root detached it).
    assert mounts["/"].startswith("overlay on / type overlay")
    assert not any(str(tmp_path) in line for line in lines if not line.startswith("overlay on / "))


def test_proc_sys_read_only_and_host_files_invisible(box, tmp_path):
    marker = Path("/tmp") / f"host-only-{os.getpid()}"
    marker.write_text("secret")
    try:
        status, out, err = _run(box("sh", "-c", f"test -e {marker} && echo visible; ls /;"
                                    "echo 1 > /proc/sys/kernel/domainname || echo denied; cat /etc/hostname"),
                                tmp_path)
    finally:
        marker.unlink()
    assert status.code == 0
    assert "visible" not in out and "denied" in out and "Read-only file system" in err
    assert set(out.split()) >= {"bin", "etc", "proc", "sys", "dev", "tmp"}


def test_user_groups_and_no_caps_for_non_root(box, tmp_path):
    status, out, _ = _run(box("sh", "-c", "id; grep -E 'CapEff|NoNewPrivs' /proc/self/status",
                              user=User(65534, 65534, [1]), no_new_privileges=True), tmp_path)
    assert status.code == 0
    assert out.splitlines() == ["uid=65534(nobody) gid=65534(nogroup) groups=1(daemon)",
                                "CapEff:\t0000000000000000", "NoNewPrivs:\t1"]


def test_rlimits_from_the_spec(busybox_rootfs, tmp_path):
    bundle = _bundle(busybox_rootfs, tmp_path, ["sh", "-c", "ulimit -n; ulimit -Hn"],
                     rlimits={"RLIMIT_NOFILE": (512, 1024)})
    out = tmp_path / "o"
    with open(out, "wb") as f:
        assert runtime.run(str(bundle), PREFIX + "rlimits", stdout=f.fileno()).code == 0
    assert out.read_text().split() == ["512", "1024"]


@pytest.mark.parametrize("script,code", [("true", 0), ("exit 3", 3), ("sleep 30 & kill -9 $!; wait $!", 137)])
def test_exit_codes(box, tmp_path, script, code):
    assert _run(box("sh", "-c", script), tmp_path)[0].code == code


def test_missing_command_and_bad_cwd_are_start_errors(box, tmp_path):
    with pytest.raises(StartError) as e:
        _run(box("nosuchcmd", "x"), tmp_path)
    assert (e.value.exit_code, str(e.value)) == (127, "exec: nosuchcmd: not found")
    with pytest.raises(StartError) as e:
        _run(box("/bin/nope"), tmp_path)
    assert e.value.exit_code == 127 and "/bin/nope" in str(e.value)
    with pytest.raises(StartError) as e:
        _run(box("true", cwd="/etc/passwd"), tmp_path)
    assert e.value.exit_code == 126 and "/etc/passwd" in str(e.value)


def test_writes_land_in_upper_not_in_lowers(box, busybox_rootfs, tmp_path):
    status, _, _ = _run(box("sh", "-c", "echo hi > /newfile && rm /bin/vi && mkdir -p /w/x"), tmp_path)
    assert status.code == 0
    upper = tmp_path / "upper"
    assert (upper / "newfile").read_text() == "hi\n"
    wh = os.lstat(upper / "bin" / "vi")
    assert stat.S_ISCHR(wh.st_mode) and wh.st_rdev == 0  # overlay whiteout
    assert (busybox_rootfs / "bin" / "vi").is_symlink() and not (busybox_rootfs / "newfile").exists()
    # Only the command's changes: no mount-point stubs (busybox has no /etc/hostname, /dev/shm…).
    assert sorted(str(p.relative_to(upper)) for p in upper.rglob("*")) == ["bin", "bin/vi", "newfile", "w", "w/x"]
    # A second run over the same upper sees the first one's writes.
    assert _run(box("cat", "/newfile"), tmp_path)[1] == "hi\n"


def test_extra_mounts_and_empty_lowers(box, busybox_rootfs, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in").write_text("from host\n")
    mounts = [Mount("/bin", source=str(busybox_rootfs / "bin"), readonly=True),
              Mount("/data", source=str(tmp_path / "data")), Mount("/scratch", type="tmpfs")]
    script = "cat /data/in; echo out > /data/out; touch /bin/x 2>/dev/null || echo ro; grep -c ' /scratch ' /proc/mounts"
    status, out, _ = _run(box("/bin/sh", "-c", script, lowerdirs=[], mounts=mounts), tmp_path)
    assert status.code == 0 and out.split("\n")[:3] == ["from host", "ro", "1"]
    assert (tmp_path / "data" / "out").read_text() == "out\n"


def test_host_network_sees_host_interfaces(box, tmp_path):
    status, out, _ = _run(box("ls", "/sys/class/net", network="host"), tmp_path)
    assert status.code == 0 and set(out.split()) == set(os.listdir("/sys/class/net"))


def test_memory_limit_oom_kill_is_detected(box, tmp_path):
    status, _, _ = _run(box("dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1",
                            resources=Resources(memory=8 << 20)), tmp_path)
    assert status == runtime.ExitStatus(137, oom_killed=True)
    status, _, _ = _run(box("dd", "if=/dev/zero", "of=/dev/null", "bs=1M", "count=1",
                            resources=Resources(memory=8 << 20)), tmp_path)
    assert status == runtime.ExitStatus(0, oom_killed=False)


def test_pids_limit_stops_a_fork_storm(box, tmp_path):
    status, out, err = _run(box("sh", "-c", "for i in $(seq 40); do sleep 1 & done; wait; echo done",
                                resources=Resources(pids=10)), tmp_path)
    assert (status.code, out) == (2, "") and "can't fork" in err  # busybox sh gives up when fork fails
    status, out, err = _run(box("sh", "-c", "for i in $(seq 5); do sleep 0.1 & done; wait; echo done",
                                resources=Resources(pids=10)), tmp_path)
    assert (status.code, out) == (0, "done\n")


def test_cpu_quota_is_applied(busybox_rootfs, tmp_path):
    path = "cpu/cpu.cfs_quota_us" if not cgroups.is_v2() else "cpu.max"
    bundle = _bundle(busybox_rootfs, tmp_path, ["cat", f"/sys/fs/cgroup/{path}"],
                     resources=Resources(cpu_quota=50000, cpu_period=100000))
    out = tmp_path / "o"
    with open(out, "wb") as f:
        assert runtime.run(str(bundle), PREFIX + "cpuq", stdout=f.fileno()).code == 0
    assert out.read_text().split()[0] == "50000"


def test_sixty_long_lowerdirs(tmp_path, busybox_rootfs):
    lowers = []
    for i in range(60):
        d = tmp_path / ("layer-with-a-long-directory-name-to-overflow-a-page-" + "x" * 40 + f"-{i:02d}")
        d.mkdir()
        (d / f"f{i}").write_text(str(i))
        (d / "top").write_text(str(i))
        lowers.append(str(d))
    assert len(":".join(lowers)) > 4096
    target = tmp_path / "merged"
    target.mkdir()
    rootfs.mount_overlay(rootfs.Overlay(upper=str(tmp_path / "u"), work=str(tmp_path / "w"), lower=lowers),
                         str(target))
    try:
        assert len([n for n in os.listdir(target) if n.startswith("f")]) == 60
        assert (target / "top").read_text() == "0"  # the first lowerdir is the top-most
        (target / "new").write_text("x")
    finally:
        rootfs.unmount(str(target))
    assert os.listdir(target) == [] and (tmp_path / "u" / "new").exists()
    # And as a container's root, mounted inside its own mount namespace.
    box = Sandbox(["sh", "-c", "cat /top; echo; ls / | grep -c '^f'"], lowerdirs=lowers + [str(busybox_rootfs)],
                  upperdir=str(tmp_path / "u2"))
    status, out, _ = _run(box, tmp_path)
    assert status.code == 0 and out.split() == ["0", "60"]


def test_sigterm_to_the_runtime_kills_the_container_and_cleans_up(busybox_rootfs, tmp_path):
    bundle = _bundle(busybox_rootfs, tmp_path, ["sh", "-c", "echo started; sleep 60"])
    code = textwrap.dedent(f"""
        import sys
        from runner import runtime
        st = runtime.run({str(bundle)!r}, {PREFIX + "sigterm"!r}, stdin=0, stdout=1, stderr=2, stop_grace=0.2)
        print("exit", st.code, flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, cwd=REPO, text=True)
    assert proc.stdout.readline() == "started\n"
    proc.send_signal(signal.SIGTERM)  # pid 1 has no handler, so only the SIGKILL after the grace ends it
    out, _ = proc.communicate(timeout=20)
    assert (proc.returncode, out) == (0, "exit 137\n")
    assert not Path(cgroups.ROOT, "pids", "dockyard", PREFIX + "sigterm").exists()


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="linux32 is an x86_64 personality")
def test_the_runtime_under_a_linux32_personality(busybox_rootfs, tmp_path):
    # uname says i686 there, yet a 64-bit runtime still calls pivot_root, capset and seccomp by x86_64's numbers;
    # the container inherits the personality, as under runc.
    bundle = _bundle(busybox_rootfs, tmp_path, ["uname", "-m"])
    code = f"from runner import runtime; print('exit', runtime.run({str(bundle)!r}, {PREFIX + 'linux32'!r}).code)"
    p = subprocess.run([tool("setarch"), "linux32", sys.executable, "-c", code], capture_output=True, cwd=REPO,
                       text=True, timeout=60)
    assert (p.returncode, p.stdout) == (0, "i686\nexit 0\n"), p.stderr


def test_killing_the_runtime_takes_the_container_with_it(busybox_rootfs, tmp_path):
    bundle = _bundle(busybox_rootfs, tmp_path, ["sh", "-c", "echo started; exec sleep 60"])
    proc = subprocess.Popen([sys.executable, "-c", f"from runner import runtime; runtime.run({str(bundle)!r}, {PREFIX + 'orphan'!r})"],
                            stdout=subprocess.PIPE, cwd=REPO, text=True)
    assert proc.stdout.readline() == "started\n"
    pids = cgroups.Cgroup("/dockyard/" + PREFIX + "orphan").pids()
    assert len(pids) == 1
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while procfs.proc_start_time(pids[0]) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not procfs.proc_start_time(pids[0])  # PDEATHSIG; its mount namespace (and overlay) went with it
    cgroups.Cgroup("/dockyard/" + PREFIX + "orphan").remove()  # the one thing SIGKILL of the runtime cannot clean


def test_lifecycle_create_start_state_kill_delete(busybox_rootfs, tmp_path):
    bundle = _bundle(busybox_rootfs, tmp_path, ["sh", "-c", "echo ran > /tmp/proof; exec sleep 60"])
    states = tmp_path / "state"
    out = tmp_path / "o"
    with open(out, "wb") as f:
        st = runtime.create(str(bundle), PREFIX + "life", str(states), stdout=f.fileno(), stderr=f.fileno())
    assert set(st) == {"ociVersion", "id", "status", "pid", "bundle", "annotations"}
    assert runtime.state(PREFIX + "life", str(states))["status"] == "created"
    assert json.loads((states / (PREFIX + "life") / "state.json").read_text())["pid"] == st["pid"]
    assert not (busybox_rootfs / "tmp" / "proof").exists()
    runtime.start(PREFIX + "life", str(states))
    assert runtime.state(PREFIX + "life", str(states))["status"] == "running"
    deadline = time.monotonic() + 10
    while not (busybox_rootfs / "tmp" / "proof").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    runtime.kill(PREFIX + "life", str(states), signal.SIGKILL)
    os.waitpid(st["pid"], 0)
    assert runtime.state(PREFIX + "life", str(states))["status"] == "stopped"
    assert (busybox_rootfs / "tmp" / "proof").read_text() == "ran\n"  # a plain-directory root is used in place
    (busybox_rootfs / "tmp" / "proof").unlink()
    runtime.delete(PREFIX + "life", str(states))
    assert not (states / (PREFIX + "life")).exists()
    with pytest.raises(NotFound):
        runtime.state(PREFIX + "life", str(states))


def test_a_start_that_looks_again_after_the_command_ended_reports_it_started(busybox_rootfs, tmp_path, monkeypatch):
    """The race of a loaded machine: start's wait for the init's byte times out, the init writes it, execs and its
    short command ends before start looks at the init again. That container ran: start must say so."""
    import select

    bundle = _bundle(busybox_rootfs, tmp_path, ["sh", "-c", "echo ran > /tmp/proof"])
    states = str(tmp_path / "state")
    pid = runtime.create(str(bundle), PREFIX + "short", states)["pid"]
    real_select = select.select

    def late_select(r, w, x, timeout):
        """The byte arrives and the command ends while this process is off the CPU; the wait then times out."""
        deadline = time.monotonic() + 10
        while procfs.proc_start_time(pid) and time.monotonic() < deadline:  # until the init is a zombie
            time.sleep(0.01)
        monkeypatch.setattr(select, "select", real_select)
        return [], [], []

    monkeypatch.setattr(select, "select", late_select)
    runtime.start(PREFIX + "short", states)
    assert (busybox_rootfs / "tmp" / "proof").read_text() == "ran\n"
    (busybox_rootfs / "tmp" / "proof").unlink()
    assert os.waitpid(pid, 0)[1] == 0
    runtime.delete(PREFIX + "short", states)


def test_delete_force_of_a_running_container(busybox_rootfs, tmp_path):
    bundle = _bundle(busybox_rootfs, tmp_path, ["sleep", "60"])
    states = str(tmp_path / "state")
    runtime.create(str(bundle), PREFIX + "forced", states)
    runtime.start(PREFIX + "forced", states)
    with pytest.raises(runtime.DockyardError, match="running"):
        runtime.delete(PREFIX + "forced", states)
    runtime.delete(PREFIX + "forced", states, force=True)
    assert not os.path.exists(os.path.join(states, PREFIX + "forced"))
    st = runtime.create(str(bundle), PREFIX + "never-started", states)
    runtime.delete(PREFIX + "never-started", states)  # like runc, a created container goes without force
    assert not os.path.exists(os.path.join(states, PREFIX + "never-started")) and not procfs.proc_start_time(st["pid"])


def test_a_run_in_another_thread_is_cancelled_through_on_start(box, tmp_path):
    import threading

    started = threading.Event()
    pids: list[int] = []
    result: list = []

    def record(pid: int) -> None:
        pids.append(pid)
        started.set()

    worker = threading.Thread(target=lambda: result.append(_run_with(box("sleep", "60"), tmp_path, record)))
    worker.start()
    assert started.wait(10)
    os.kill(pids[0], signal.SIGKILL)
    worker.join(10)
    assert result == [runtime.ExitStatus(137)]


def _run_with(b: Sandbox, tmp_path: Path, on_start) -> runtime.ExitStatus:
    return sandbox.run(b, scratch=str(tmp_path), on_start=on_start, container_id=PREFIX + "thread")


def test_create_reports_missing_command(busybox_rootfs, tmp_path):
    bundle = _bundle(busybox_rootfs, tmp_path, ["nosuchcmd"])
    with pytest.raises(StartError, match="exec: nosuchcmd: not found"):
        runtime.create(str(bundle), PREFIX + "nocmd", str(tmp_path / "state"))
    assert not (tmp_path / "state" / (PREFIX + "nocmd")).exists()


def test_bad_bundles_are_one_line_errors(tmp_path):
    with pytest.raises(NotFound, match="no config.json"):
        runtime.run(str(tmp_path), "x")
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(runtime.DockyardError, match="not valid JSON"):
        runtime.run(str(tmp_path), "x")
    with pytest.raises(runtime.DockyardError, match="invalid container id"):
        runtime.run(str(tmp_path), "../escape")


@pytest.mark.parametrize("network,user", [("none", User(0, 0, [1])), ("host", User(65534, 65534))])
def test_parity_with_runc(box, tmp_path, network, user):
    script = ("echo $$; id; hostname; grep -E 'Cap(Eff|Bnd|Prm)|NoNewPrivs' /proc/self/status; env | sort;"
              "stat -c '%A %t:%T %N' /dev/* /dev/pts/ptmx; pwd; cat /proc/self/cgroup | cut -d: -f3; umask;"
              "stat -c '%A %U %G %s %N' /etc/hosts /etc/hostname /etc/resolv.conf /tmp /bin/sh")
    if network == "none":  # the host's interfaces come and go with other suites' tests
        script += "; ls /sys/class/net"
    results = []
    for name in ("dockyard", sandbox.RUNC):
        b = box("sh", "-c", script, hostname="parity", network=network, cwd="/srv", user=user, env=["A=b"])
        results.append(_run(b, tmp_path, runtime_name=name))
    assert results[0] == results[1]
    lines = results[0][1].splitlines()
    assert lines[0] == "1" and lines[2] == "parity"
    if user.uid == 0:
        assert lines[1] == "uid=0(root) gid=0(root) groups=1(daemon)" and lines[4] == f"CapEff:\t{CAP_DOCKER}"
        assert "HOME=/root" in lines
    else:
        assert lines[4] == "CapEff:\t0000000000000000" and "HOME=/nonexistent" in lines


def test_spec_is_valid_for_runc_and_has_docker_defaults(tmp_path):
    cfg = spec.default_spec("rootfs", ["true"], network="none", resources=Resources(memory=1 << 30, pids=100))
    assert spec.capability_mask(cfg["process"]["capabilities"]["bounding"]) == int(CAP_DOCKER, 16)
    assert cfg["linux"]["maskedPaths"][:3] == ["/proc/asound", "/proc/acpi", "/proc/kcore"]
    assert {n["type"] for n in cfg["linux"]["namespaces"]} == {"pid", "ipc", "uts", "mount", "network", "cgroup"}
    assert "network" not in {n["type"] for n in spec.namespaces("host")}
    assert cfg["process"]["env"][0].startswith("PATH=")
    with pytest.raises(ValueError):
        spec.namespaces("bridge-ish")
    with pytest.raises(ValueError):
        spec.capability_mask(["CAP_NOPE"])


def test_users_resolve_like_docker(busybox_rootfs, tmp_path):
    passwd = users.read_layered([str(busybox_rootfs)], "/etc/passwd")
    group = "root:x:0:\ndaemon:x:1:nobody\nnogroup:x:65534:\n"
    assert users.resolve("", passwd, group) == User(0, 0, [])
    assert users.resolve("nobody", passwd, group) == User(65534, 65534, [1])
    assert users.resolve("nobody:daemon", passwd, group) == User(65534, 1, [])
    assert users.resolve("1234:5", passwd, group) == User(1234, 5, [])
    with pytest.raises(users.UnknownUser, match="unable to find user ghost"):
        users.resolve("ghost", passwd, group)
    # A whiteout in an upper layer hides the file below it.
    upper = tmp_path / "upper" / "etc"
    upper.mkdir(parents=True)
    os.mknod(upper / "passwd", stat.S_IFCHR | 0o600, 0)
    assert users.read_layered([str(tmp_path / "upper"), str(busybox_rootfs)], "etc/passwd") is None


def _bundle(rootfs_dir: Path, tmp_path: Path, args: list[str], **kw) -> Path:
    """A bundle whose root is the plain busybox directory (no overlay)."""
    bundle = tmp_path / "bundle"
    bundle.mkdir(exist_ok=True)
    cfg = spec.default_spec(str(rootfs_dir), args, network="none", **kw)
    (bundle / "config.json").write_text(json.dumps(cfg))
    return bundle


def test_readonly_rootfs_and_cgroup_namespace(box, tmp_path):
    status, out, err = _run(box("sh", "-c", "touch /x || echo ro; touch /tmp/y 2>/dev/null || echo ro-tmp; "
                                "cat /proc/self/cgroup", readonly_rootfs=True), tmp_path)
    assert status.code == 0 and "Read-only file system" in err
    lines = out.splitlines()
    assert lines[:2] == ["ro", "ro-tmp"]
    assert lines[2:] and all(line.endswith(":/") for line in lines[2:])  # its own cgroup is its root


def test_terminal_process_gets_a_controlling_tty(busybox_rootfs, tmp_path):
    bundle = _bundle(busybox_rootfs, tmp_path, ["sh", "-c", "test -t 0 && test -t 1 && echo is-a-tty; ls /dev/console"],
                     terminal=True)
    master, slave = os.openpty()
    try:
        status = runtime.run(str(bundle), PREFIX + "tty", slave, slave, slave)
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO once the slave side is closed and drained
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
    assert status.code == 0 and out.decode().split() == ["is-a-tty", "/dev/console"]


@pytest.mark.parametrize("mount,where", [
    ({"destination": "/proc", "type": "tmpfs", "source": "tmpfs"}, "only a proc filesystem may be mounted on /proc"),
    ({"destination": "/proc/sys", "type": "tmpfs", "source": "tmpfs"}, "/proc/sys is inside /proc"),
    ({"destination": "/proc/self/attr/current", "type": "bind", "source": "FILE", "options": ["rbind"]},
     "/proc/1/attr/current is inside /proc"),
    ({"destination": "/proc/sysrq-trigger", "type": "bind", "source": "FILE", "options": ["rbind"]},
     "/proc/sysrq-trigger is inside /proc"),
    ({"destination": "/proc/1/../sys/kernel/core_pattern", "type": "bind", "source": "FILE", "options": ["rbind"]},
     "/proc/sys/kernel/core_pattern is inside /proc"),
    ({"destination": "/proc/nosuch/dir", "type": "tmpfs", "source": "tmpfs"}, "/proc/nosuch/dir is inside /proc"),
])  # fmt: skip
def test_bundle_mounts_into_proc_are_refused(busybox_rootfs, tmp_path, mount, where):
    """As runc: a bundle's mount may not land inside /proc (its destination resolved in the root), nor on /proc
    unless it is a procfs; the start fails with one line naming the destination, nothing made in the root."""
    (tmp_path / "file").write_text("fake\n")
    bundle = _bundle(busybox_rootfs, tmp_path, ["true"])
    config = json.loads((bundle / "config.json").read_text())
    config["mounts"].append({**mount, "source": str(tmp_path / "file")} if mount["source"] == "FILE" else mount)
    (bundle / "config.json").write_text(json.dumps(config))
    before = sorted(p.name for p in (busybox_rootfs / "proc").iterdir())
    with pytest.raises(StartError) as e:
        runtime.run(str(bundle), PREFIX + "procmount")
    kind = mount["type"]
    assert e.value.exit_code == 125
    assert str(e.value) == f"mount {kind} on {mount['destination']}: refused: {where}"
    assert sorted(p.name for p in (busybox_rootfs / "proc").iterdir()) == before


def test_mounts_through_a_symlink_into_proc_are_refused(box, tmp_path):
    (tmp_path / "upper").mkdir()
    os.symlink("/proc/sys/kernel", tmp_path / "upper" / "evil")
    with pytest.raises(StartError) as e:
        _run(box("true", mounts=[Mount("/evil", type="tmpfs")]), tmp_path)
    assert (e.value.exit_code, str(e.value)) == (125, "mount tmpfs on /evil: refused: /proc/sys/kernel is inside /proc")


def test_mounts_runc_allows_over_proc(box, tmp_path):
    """The /proc files lxcfs emulates may be covered, and /proc itself by a bind of a procfs root."""
    (tmp_path / "uptime").write_text("12345.67 0.00\n")
    status, out, err = _run(box("cat", "/proc/uptime", mounts=[Mount("/proc/uptime", source=str(tmp_path / "uptime"))]),
                            tmp_path)
    assert (status.code, out) == (0, "12345.67 0.00\n"), err
    status, out, err = _run(box("sh", "-c", "ls /proc | grep -c '^[0-9]'", mounts=[Mount("/proc", source="/proc")]),
                            tmp_path)
    assert status.code == 0 and int(out) > 3, err  # the host's processes: the bind took the place of /proc


def test_containers_share_the_lowerdir_of_their_mount_points_but_never_a_foreign_one(tmp_path):
    # create's "-init" lowerdir: one per set of mount points in the store, made once; its name (a crc32 of the set,
    # which anyone can make collide) counts only as long as the claim beside it names the same set.
    layer = tmp_path / "layer"
    (layer / "etc").mkdir(parents=True)
    (tmp_path / "src").mkdir()
    shared = str(tmp_path / "mountpoints")
    mounts = [{"destination": "/proc", "type": "proc"}, {"destination": "/etc/hostname", "type": "bind",
              "source": str(tmp_path / "hostname")}, {"destination": "/data/../srv/x", "type": "bind",
              "source": str(tmp_path / "src")}]  # fmt: skip

    def overlay(n: int) -> rootfs.Overlay:
        base = rootfs.Overlay(upper=str(tmp_path / f"c{n}/diff"), work=str(tmp_path / f"c{n}/work"), lower=[str(layer)])
        return rootfs.with_mount_points(base, mounts, str(tmp_path / f"c{n}/init"), shared=shared)

    first, second = overlay(1), overlay(2)
    assert first.lower == second.lower and first.lower[1:] == [str(layer)]
    made = Path(first.lower[0])
    assert made.parent == tmp_path / "mountpoints" and not (tmp_path / "c1/init").exists()
    assert sorted(str(p.relative_to(made)) for p in made.rglob("*")) == ["etc", "etc/hostname", "proc", "srv", "srv/x"]
    assert (made / "etc/hostname").is_file() and (made / "srv/x").is_dir()
    # Another set of mount points claimed the name first: this container gets its own, as without sharing.
    Path(f"{made}.key").write_bytes(b"dir elsewhere\n")
    third = overlay(3)
    assert third.lower[0] == str(tmp_path / "c3/init") and (tmp_path / "c3/init/etc/hostname").is_file()
    assert sorted(os.listdir(shared)) == [made.name, f"{made.name}.key"]  # and no temp file left behind
