"""The resident server (dockyard.resident): commands served by a pre-imported process through the launcher, run
as the caller's own CLI process would, and every caller it must not serve run directly.

Which process ran a command is read from the server's log ($DOCKYARD_RESIDENT_LOG): its child writes
"<child pid> served <caller pid>: <command>" before the command starts, and "refused" lines name the caller too.
"""

from __future__ import annotations

import io
import json
import os
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from client.registries import start_distribution
from support import REPO, descendants, process_state, tool, wait_for

from dockyard import launcher
from dockyard.resident import FRAME_MAX, NOT_SERVED, REQUEST, frame

RUN = ("run", "--rm", "--network", "none")
BUILD = ("build", "-q", "--network", "none")  # (RUN steps without a bridge)
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}  # with --no-cache, the same inputs make the same image ID
PATIENCE = 60  # seconds for anything awaited: more only if a server or a child hangs


def gone(pid: int) -> bool:
    """Whether process `pid` ended (a zombie counts: it runs nothing)."""
    return process_state(pid) in (None, "Z", "X")


@dataclass
class Resident:
    """A launcher for this checkout with the resident server on, its socket directory and log the test's own."""

    launcher: str
    directory: str
    log: Path
    env: dict[str, str]

    def popen(self, *args: str, prefix: tuple[str, ...] = (), env: dict | None = None, **kw) -> subprocess.Popen:
        return subprocess.Popen([*prefix, self.launcher, *args], env={**self.env, **(env or {})},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)

    def run(self, *args: str, input: bytes | None = None, **kw) -> tuple[subprocess.Popen, int, str, str]:
        """(the process, its status, stdout, stderr) of one command."""
        p = self.popen(*args, stdin=subprocess.PIPE, **kw)
        out, err = p.communicate(input, timeout=120)
        return p, p.returncode, out.decode(), err.decode()

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def served(self, pid: int) -> int | None:
        """The pid of the server's child that ran caller `pid`'s command; None if none did."""
        return next((int(words[0]) for words in map(str.split, self.lines()) if words[1:3] == ["served", f"{pid}:"]),
                    None)

    def refused(self, pid: int) -> str:
        return "\n".join(line for line in self.lines() if f" {pid}:" in line and line.split()[1] != "served")

    def servers(self) -> list[int]:
        return [int(line.split()[0]) for line in self.lines() if " serving " in line]

    def warm(self) -> int:
        """Start the server (a first command runs directly and starts it); its pid once it listens."""
        p, code, _, err = self.run("version")
        assert code == 0, err
        assert self.served(p.pid) is None  # no server yet: run directly
        return int(wait_for(lambda: self.servers() and self.servers()[-1], PATIENCE, "the server listens"))


@pytest.fixture
def resident(tmp_path, store_root, monkeypatch) -> Iterator[Resident]:
    """The resident server on for this test's launcher (conftest turns it off for the rest of the suite); every
    server it started is stopped at teardown."""
    (tmp_path / "bin").mkdir()
    directory = tempfile.mkdtemp(prefix="dy-resident-")  # (short: a socket's path is at most 107 bytes)
    log = tmp_path / "resident.log"
    env = {**os.environ, "DOCKYARD_RESIDENT": "1", "DOCKYARD_RESIDENT_DIR": directory,
           "DOCKYARD_RESIDENT_LOG": str(log), "DOCKYARD_RESIDENT_IDLE": "120"}
    r = Resident(launcher.write(str(tmp_path / "bin"), str(REPO)), directory, log, env)
    yield r
    for pid in r.servers():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"dockyard.resident.server" in f.read():
                    os.kill(pid, signal.SIGTERM)
        except (FileNotFoundError, ProcessLookupError):
            continue
        wait_for(lambda pid=pid: gone(pid), PATIENCE, "the server exits on SIGTERM")
    shutil.rmtree(directory, ignore_errors=True)


def test_cold_start_runs_directly_then_the_server_serves(resident, busybox_image):
    server = resident.warm()
    p, code, out, _ = resident.run("version")
    assert code == 0 and "Version:" in out
    child = resident.served(p.pid)
    assert child and child != p.pid
    with open(f"/proc/{server}/status") as f:  # the server: detached in its own session
        assert f"NSsid:\t{server}" in f.read()
    names = os.listdir(resident.directory)
    assert names and all(n.endswith((".sock", ".lock")) for n in names)


def test_a_served_run_reports_status_and_streams(resident, busybox_image):
    resident.warm()
    p, code, out, err = resident.run(*RUN, busybox_image, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (code, out, err) == (3, "out\n", "err\n") and resident.served(p.pid)
    p, code, out, _ = resident.run(*RUN, busybox_image, "true")
    assert code == 0 and resident.served(p.pid)
    p, code, _, _ = resident.run(*RUN, "--init", busybox_image, "sh", "-c", "kill -9 $$")
    assert code == 137 and resident.served(p.pid)
    p, code, out, _ = resident.run(*RUN, "-i", busybox_image, "cat", input=b"through stdin\n")
    assert (code, out) == (0, "through stdin\n") and resident.served(p.pid)
    p, code, out, _ = resident.run(*RUN, "-e", "PASSED", busybox_image, "sh", "-c", "echo $PASSED",
                                   env={"PASSED": "the caller's"})
    assert out == "the caller's\n" and resident.served(p.pid)
    p, code, out, _ = resident.run(*RUN, busybox_image, "sh", "-c", "ulimit -n", prefix=("prlimit", "--nofile=777"))
    assert out == "777\n" and resident.served(p.pid)
    p, code, out, _ = resident.run("ps", "-a", "-q")
    assert (code, out) == (0, "") and resident.served(p.pid)  # --rm left nothing


@pytest.fixture
def cgroups(tmp_path) -> Iterator[list[str]]:
    """A cgroup of this test's in the unified (v2) hierarchy and in the v1 pids one, removed at teardown."""
    name = f"dy-resident-{os.getpid()}-{os.urandom(3).hex()}"
    made = [os.path.join(root, name) for root in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup/pids")
            if os.path.isdir(root)]
    for path in made:
        os.mkdir(path)
    yield made
    for path in made:
        wait_for(lambda path=path: not Path(path, "cgroup.procs").read_text().strip(), PATIENCE, "the cgroup empties")
        os.rmdir(path)


def _context(pid: int) -> dict[str, object]:
    """What a CLI process inherits from its caller, as /proc shows it."""
    status = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {"cwd": os.readlink(f"/proc/{pid}/cwd"), "umask": status["Umask"], "ignored": status["SigIgn"],
            "limits": Path(f"/proc/{pid}/limits").read_text(), "cgroup": Path(f"/proc/{pid}/cgroup").read_text(),
            "nice": os.getpriority(os.PRIO_PROCESS, pid), "cpus": os.sched_getaffinity(pid),
            "oom": Path(f"/proc/{pid}/oom_score_adj").read_text(),
            "fds": [os.readlink(f"/proc/{pid}/fd/{n}") for n in range(3)]}


def test_the_child_takes_on_the_callers_context_and_sigint_ends_it_as_it_ends_the_cli(
        resident, busybox_image, tmp_path, cgroups):
    resident.warm()

    def caller() -> None:  # (in the caller, before it execs the launcher)
        for path in cgroups:
            Path(path, "cgroup.procs").write_text(str(os.getpid()))
        resource.setrlimit(resource.RLIMIT_NOFILE, (777, 888))
        os.nice(3)
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        Path("/proc/self/oom_score_adj").write_text("123")
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)

    codes = {}
    for mode in ("0", "1"):
        p = resident.popen(*RUN, busybox_image, "sleep", "30", env={"DOCKYARD_RESIDENT": mode}, cwd=tmp_path,
                           umask=0o027, preexec_fn=caller)
        wait_for(lambda: "sleep" in resident.run("ps")[2], PATIENCE, "the container runs")
        if mode == "1":
            child = resident.served(p.pid)
            assert child
            theirs, mine = _context(p.pid), _context(child)
            # (The client, once its command began, handles the signals it forwards: USR1 too.)
            assert int(str(mine.pop("ignored")), 16) >> (signal.SIGUSR1 - 1) & 1
            del theirs["ignored"]
            assert mine == theirs
            assert theirs["cwd"] == str(tmp_path) and theirs["umask"] == "0027" and "777" in str(theirs["limits"])
            assert all(path.removeprefix("/sys/fs/cgroup/unified").removeprefix("/sys/fs/cgroup/pids")
                       in str(theirs["cgroup"]) for path in cgroups)
        else:
            assert resident.served(p.pid) is None
        p.send_signal(signal.SIGINT)
        codes[mode] = p.wait(timeout=60)
    assert codes["1"] == codes["0"]


def test_killing_the_client_kills_its_command(resident, busybox_image):
    resident.warm()
    p = resident.popen(*RUN, busybox_image, "sleep", "30")
    child = wait_for(lambda: resident.served(p.pid), PATIENCE, "the command is served")
    p.kill()
    p.wait()
    wait_for(lambda: gone(int(child)), PATIENCE, "the child is killed with its client")


def test_sigtstp_stops_client_and_command_and_sigcont_resumes_both(resident, busybox_image):
    resident.warm()
    # Its own process group, whose parent (this test) is in another of the same session: not orphaned, so the
    # kernel carries out a stop by SIGTSTP (pytest itself may run in an orphaned one, as under CI).
    p = resident.popen(*RUN, busybox_image, "sh", "-c", "sleep 1; echo done", process_group=0)
    child = int(wait_for(lambda: resident.served(p.pid), PATIENCE, "the command is served"))
    p.send_signal(signal.SIGTSTP)
    wait_for(lambda: process_state(p.pid) == "T" and process_state(child) == "T", PATIENCE, "both stop")
    p.send_signal(signal.SIGCONT)
    out, _ = p.communicate(timeout=60)
    assert (p.returncode, out) == (0, b"done\n")


def test_sigtstp_in_an_orphaned_process_group_stops_neither(resident, busybox_image):
    """Where the kernel discards a stop by SIGTSTP (an orphaned process group: a new session's, here), the CLI run
    directly would go on, and so do the client and the command it was served."""
    resident.warm()
    p = resident.popen(*RUN, busybox_image, "sh", "-c", "sleep 2; echo done", start_new_session=True)
    child = int(wait_for(lambda: resident.served(p.pid), PATIENCE, "the command is served"))
    p.send_signal(signal.SIGTSTP)
    out, _ = p.communicate(timeout=60)
    assert (p.returncode, out) == (0, b"done\n")
    assert gone(child)


def test_the_commands_served_each_run_through_the_server(resident, busybox_image):
    resident.warm()

    def served(*args: str) -> str:
        p, code, out, err = resident.run(*args)
        assert code == 0, f"{args}: {err}"
        assert resident.served(p.pid), args
        return out

    assert "Version:" in served("version")
    cid = served("create", "--name", "c1", "--network", "none", busybox_image, "sh", "-c", "echo up; sleep 30")
    served("start", "c1")
    assert "c1" in served("ps")
    wait_for(lambda: "up" in resident.run("logs", "c1")[2], PATIENCE, "the container logs")
    assert served("logs", "c1") == "up\n"
    assert cid.strip() in served("inspect", "c1")
    served("kill", "c1")
    assert served("wait", "c1").strip() == "137"
    served("start", "c1")
    served("stop", "-t", "0", "c1")
    served("rm", "c1")
    served("tag", busybox_image, "other:tag")
    assert "other" in served("images")
    served("rmi", "other:tag")
    # The same commands spelled through their groups.
    served("image", "tag", busybox_image, "other:tag")
    assert "other" in served("image", "ls")
    assert "other:tag" in json.loads(served("image", "inspect", "other:tag"))[0]["RepoTags"]
    served("image", "rm", "other:tag")
    served("container", "create", "--name", "c2", "--network", "none", busybox_image, "true")
    assert "c2" in served("container", "ls", "-a")
    served("container", "rm", "c2")
    p, code, _, err = resident.run(*RUN, "--no-such-flag", busybox_image)  # a usage error, printed by the child
    assert code == 125 and err.count("unrecognized arguments") == 1 and resident.served(p.pid)


def test_pull_and_push_are_served(resident, busybox_image, tmp_path):
    resident.warm()
    registry = start_distribution(tmp_path / "distribution")
    try:
        ref = f"{registry.host}/served/busybox:1"
        for args in (("tag", busybox_image, ref), ("push", ref), ("rmi", ref), ("pull", ref)):
            p, code, out, err = resident.run(*args)
            assert code == 0, f"{args}: {err}"
            assert resident.served(p.pid), args
        assert ref in resident.run("images", "--format", "{{.Repository}}:{{.Tag}}")[2]
        p, code, _, err = resident.run("pull", f"{registry.host}/served/missing:1")  # the error line, from the child
        assert code != 0 and err.count("\n") == 1 and resident.served(p.pid)
    finally:
        registry.stop()


def _served_and_direct(resident: Resident, *args: str, env: dict | None = None,
                       **kw) -> tuple[tuple[int, str, str], tuple[int, str, str]]:
    """(status, stdout, stderr) of a command served, then of the same command run directly."""
    p, *served = resident.run(*args, env=env, **kw)
    assert resident.served(p.pid), (args, served)
    d, *direct = resident.run(*args, env={**(env or {}), "DOCKYARD_RESIDENT": "0"}, **kw)
    assert resident.served(d.pid) is None
    return (served[0], served[1], served[2]), (direct[0], direct[1], direct[2])


def _build_context(tmp_path: Path, dockerfile: str, **files: str) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    for name, text in {"Dockerfile": dockerfile, **files}.items():
        (ctx / name).write_text(text)
    return ctx


def test_a_served_build_makes_the_image_a_direct_one_makes(resident, busybox_image, tmp_path):
    resident.warm()
    ctx = _build_context(tmp_path, "FROM busybox\nCOPY f /f\nRUN cat /f /f > /g\n", f="copied\n")
    served, direct = _served_and_direct(resident, *BUILD, "--no-cache", str(ctx), env=EPOCH)
    assert served[0] == 0 and served == direct and served[1].startswith("sha256:"), served
    # The no-op rebuild (what the server has imported for): every step from the cache, the same image.
    p, code, _, err = resident.run("build", "--network", "none", "--progress", "plain", str(ctx), env=EPOCH)
    assert code == 0 and resident.served(p.pid), err
    assert err.count(" CACHED") == 2 and served[1].strip() in err


def test_a_served_build_takes_its_dockerfile_or_its_context_from_stdin(resident, busybox_image, tmp_path):
    resident.warm()
    dockerfile = "FROM busybox\nCOPY f /f\nRUN grep -qx from-the-context /f\n"
    ctx = _build_context(tmp_path, "FROM busybox\n", f="from-the-context\n")
    served, direct = _served_and_direct(resident, *BUILD, "--no-cache", "-f", "-", str(ctx), env=EPOCH,
                                        input=dockerfile.encode())
    assert served[0] == 0 and served == direct, served
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tf:
        tf.add(ctx / "f", "f")
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tf.addfile(info, io.BytesIO(dockerfile.encode()))
    from_tar, direct = _served_and_direct(resident, *BUILD, "--no-cache", "-", env=EPOCH, input=archive.getvalue())
    assert from_tar[0] == 0 and from_tar == direct and from_tar[1] == served[1], from_tar
    alone, direct = _served_and_direct(resident, *BUILD, "--no-cache", "-", env=EPOCH,
                                       input=b"FROM busybox\nRUN echo alone > /alone\n")
    assert alone[0] == 0 and alone == direct, alone


@pytest.mark.parametrize(("dockerfile", "args"), [
    ("FROM busybox\nRUN exit 3\n", ()),  # a RUN fails
    ("FROM busybox\nFROBNICATE\n", ()),  # the Dockerfile does not parse
    ("FROM busybox\n", ("--platform", "nonsense")),  # a flag's value is checked before any work
    ("FROM busybox\n", ("--no-such-flag",)),  # a usage error
])
def test_a_failing_served_build_exits_and_reports_as_a_direct_one(resident, busybox_image, tmp_path, dockerfile,
                                                                   args):
    resident.warm()
    ctx = _build_context(tmp_path, dockerfile)
    served, direct = _served_and_direct(resident, *BUILD, *args, str(ctx))
    assert served[0] != 0 and served[0] == direct[0]
    assert served[2].count("rror:") == direct[2].count("rror:") == 1, served[2]
    assert served[2].splitlines()[-1] == direct[2].splitlines()[-1]


def _run_cgroups(pids: set[int]) -> set[str]:
    """The cgroup paths of the build's RUN containers these processes are in."""
    found = set()
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        except FileNotFoundError:
            continue
        found |= {line.split(":", 2)[2] for line in lines if "/dockyard/build-" in line}
    return found


def _read_until(fd: int, marker: bytes) -> bytes:
    """What `fd` gives up to and with `marker`; fails at its end without it."""
    seen = bytearray()

    def arrived() -> bool:
        if select.select([fd], [], [], 0.5)[0]:
            chunk = os.read(fd, 65536)
            assert chunk, seen.decode()
            seen.extend(chunk)
        return marker in seen

    wait_for(arrived, PATIENCE, f"{marker!r} is written")
    return bytes(seen)


def _interrupt_build(resident: Resident, ctx: Path, store_root: str, mode: str, signum: int) -> tuple[int, str]:
    """`signum` to a build (served or not: `mode` is DOCKYARD_RESIDENT) while its RUN sleeps: its status and last
    line, once checked that the RUN's processes, cgroups and the build's mounts are gone."""
    p = resident.popen("build", "--network", "none", "--progress", "plain", "--no-cache", str(ctx),
                       env={"DOCKYARD_RESIDENT": mode}, stdin=subprocess.DEVNULL)
    cli = p.pid if mode == "0" else int(wait_for(lambda: resident.served(p.pid), PATIENCE, "the build is served"))
    assert p.stderr is not None
    seen = _read_until(p.stderr.fileno(), b"42 sleeps")
    procs = descendants(cli)
    cgroups = _run_cgroups(procs)
    assert cgroups, procs  # (the RUN's own, to be gone after)
    p.send_signal(signum)
    _, rest = p.communicate(timeout=PATIENCE)
    assert [pid for pid in procs if not gone(pid)] == []
    assert [path for path in cgroups for hierarchy in os.listdir("/sys/fs/cgroup")
            if os.path.exists(f"/sys/fs/cgroup/{hierarchy}{path}")] == []
    with open("/proc/self/mountinfo") as f:
        assert [line for line in f if store_root in line] == []
    return p.returncode, (seen + rest).decode().strip().splitlines()[-1]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_a_served_build_as_a_direct_one_and_leaves_nothing(resident, busybox_image, tmp_path,
                                                                          store_root, signum):
    resident.warm()
    # (The progress shows the RUN's command line first: its output is told apart by what the shell computes.)
    ctx = _build_context(tmp_path, "FROM busybox\nRUN echo $((6 * 7)) sleeps; sleep 30\n")
    direct = _interrupt_build(resident, ctx, store_root, "0", signum)
    assert _interrupt_build(resident, ctx, store_root, "1", signum) == direct == (130, "Error: cancelled")


def test_a_served_builds_relative_secret_path_is_the_callers(resident, busybox_image, tmp_path):
    resident.warm()
    ctx = _build_context(tmp_path, "FROM busybox\nRUN --mount=type=secret,id=s,required=true grep -qx hush "
                                   "/run/secrets/s\n")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "s").write_text("hush\n")
    p, code, _, err = resident.run(*BUILD, "--no-cache", "--secret", "id=s,src=secrets/s", str(ctx), cwd=tmp_path)
    assert code == 0 and resident.served(p.pid), err
    p, code, _, err = resident.run(*BUILD, "--no-cache", "--secret", "id=s,src=secrets/s", str(ctx), cwd=ctx)
    assert code == 1 and resident.served(p.pid) and "no such file: secrets/s" in err


def test_a_build_under_another_personality_is_served_under_it(resident, busybox_image, tmp_path):
    """A child keeps its server's personality: a caller under `setarch linux32` reaches a server it started, under
    its own, so a RUN there sees i686 as in a direct run. The image is amd64 either way: the machine a 64-bit
    interpreter runs as, as buildah's GOARCH is."""
    if os.uname().machine != "x86_64":
        pytest.skip("linux32 is an x86_64 personality")
    native = resident.warm()
    ctx = _build_context(tmp_path, "FROM busybox\nRUN uname -m > /machine\n")
    linux32 = (tool("setarch"), "linux32")
    args = (*BUILD, "--no-cache", str(ctx))
    first, code, out, err = resident.run(*args, env=EPOCH, prefix=linux32)  # its first: directly, starting one
    assert code == 0 and resident.served(first.pid) is None, err
    wait_for(lambda: [s for s in resident.servers() if s != native], PATIENCE, "a linux32 server listens")
    served, direct = _served_and_direct(resident, *args, env=EPOCH, prefix=linux32)
    assert served[0] == 0 and served == direct and served[1] == out, served
    p, code, image, _ = resident.run("inspect", out.strip())
    assert code == 0 and json.loads(image)[0]["Architecture"] == "amd64"
    p, code, native_out, _ = resident.run(*args, env=EPOCH)
    assert code == 0 and resident.served(p.pid) and native_out != out  # /machine says x86_64 there


@pytest.mark.parametrize(("args", "asked"), [
    (("info",), False), ((*RUN, "-t", "busybox:latest", "true"), True), (("image", "history", "busybox:latest"), True),
    (("container", "exec", "nothing", "true"), True), (("image",), True)])
def test_commands_not_served_run_directly(resident, busybox_image, args, asked):
    """A command word not served is never asked about; `run -t`, a group's subcommand not served and a group named
    alone are refused once parsed."""
    resident.warm()
    p, code, out, err = resident.run(*args)
    direct = resident.run(*args, env={"DOCKYARD_RESIDENT": "0"})
    assert resident.served(p.pid) is None
    assert ("not served" in resident.refused(p.pid)) == asked
    assert (code, out.count("\n"), err) == (direct[1], direct[2].count("\n"), direct[3])


def test_a_command_naming_a_descriptor_of_its_own_runs_directly(resident, busybox_image):
    """Only fds 0-2 reach the server's child: a path through /dev/fd (bash's <(...)) would name nothing there."""
    resident.warm()
    p = subprocess.Popen(["bash", "-c", f"exec {resident.launcher} {' '.join(RUN)} --env-file <(echo FROM_FD=1) "
                                        f"{busybox_image} env"],
                         env=resident.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = p.communicate(timeout=PATIENCE)
    assert p.returncode == 0 and "FROM_FD=1" in out.decode(), err
    assert resident.served(p.pid) is None


def test_interactive_with_a_terminal_for_stdin_runs_directly(resident, busybox_image):
    resident.warm()
    leader, follower = os.openpty()
    try:
        p = resident.popen(*RUN, "-i", busybox_image, "head", "-n1", stdin=follower)
        os.write(leader, b"typed\n")
        out, err = p.communicate(timeout=PATIENCE)
    finally:
        os.close(leader)
        os.close(follower)
    assert p.returncode == 0 and out == b"typed\n", err
    assert resident.served(p.pid) is None and "not served" in resident.refused(p.pid)


SECCOMP = ("import os, sys, pyseccomp\n"
           "f = pyseccomp.SyscallFilter(pyseccomp.ALLOW)\n"
           "f.add_rule(pyseccomp.ERRNO(1), 'acct')\n"
           "f.load()\n"
           "os.execv(sys.argv[1], sys.argv[1:])\n")


# A caller asking the server directly, by its socket: a real request (`dockyard version`, with fds 0-2 and its cwd);
# prints the answer's hex.
ASK = ("import os, socket, sys\n"
       "from dockyard.resident import REQUEST, frame\n"
       "s = socket.socket(socket.AF_UNIX)\n"
       "s.connect(sys.argv[1])\n"
       "words = [b'dockyard', b'version', b'PATH=/usr/bin:/bin']\n"
       "cwd = os.open('.', os.O_PATH)\n"
       "fds = b''.join(fd.to_bytes(4, sys.byteorder) for fd in (0, 1, 2, cwd))\n"
       "s.sendmsg([frame(REQUEST, (2).to_bytes(4, 'big') + b'\\0'.join(words))], "
       "[(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])\n"
       "print(s.recv(100).hex())\n")


@pytest.mark.parametrize(("prefix", "differs"), [
    (("unshare", "-m"), "ns/mnt"),
    (("capsh", "--drop=cap_sys_boot", "--", "-c", 'exec "$0" "$@"'), "CapBnd"),
    (("setpriv", "--no-new-privs"), "NoNewPrivs"),
    ((sys.executable, "-c", SECCOMP), "Seccomp"),
])
def test_a_restricted_caller_is_never_served(resident, busybox_image, prefix, differs):
    # Each caller is root, but bounded more narrowly than the server: asking it must gain nothing. Asked directly,
    # the server refuses; through the launcher, the command runs in the caller's own process (its bounds name
    # another server, which it starts: one as bounded as itself).
    resident.warm()
    prefix = (tool(prefix[0]), *prefix[1:])
    asking = subprocess.run([*prefix, sys.executable, "-c", ASK, _socket_path(resident)], capture_output=True,
                            env={**resident.env, "PYTHONPATH": str(REPO)}, timeout=60, check=True)
    assert bytes.fromhex(asking.stdout.decode()) == frame(NOT_SERVED)
    assert differs in "\n".join(line for line in resident.lines() if "refused" in line)
    p, code, out, err = resident.run(*RUN, busybox_image, "echo", "hi", prefix=prefix)
    assert (code, out) == (0, "hi\n"), err
    assert resident.served(p.pid) is None


def test_a_changed_source_makes_the_server_refuse_and_exit(tmp_path, resident, busybox_image):
    # A non-editable copy of our packages with its own launcher: a module of it changes under the server.
    site = tmp_path / "site"
    for name in ("dockyard", "builder", "registry", "runner", "compose"):
        shutil.copytree(REPO / name, site / name, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "bin2").mkdir()
    resident.launcher = launcher.write(str(tmp_path / "bin2"), str(site))
    server = resident.warm()
    p, code, _, _ = resident.run("version")
    assert code == 0 and resident.served(p.pid)
    module = site / "dockyard" / "errors.py"
    st = module.stat()
    os.utime(module, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    p, code, out, _ = resident.run("version")
    assert code == 0 and "Version:" in out and resident.served(p.pid) is None
    wait_for(lambda: gone(server), PATIENCE, "the stale server exits")


def test_a_server_that_cannot_start_is_not_started_by_every_command(tmp_path, resident, busybox_image):
    # A broken install: a `runner` first on sys.path that fails to import. `version` runs directly without it; the
    # server, which imports every area, dies before it listens.
    broken = tmp_path / "broken"
    (broken / "runner").mkdir(parents=True)
    (broken / "runner" / "__init__.py").write_text("raise ImportError('broken on purpose')\n")
    (tmp_path / "bin2").mkdir()
    resident.launcher = str(tmp_path / "bin2" / "dockyard")
    Path(resident.launcher).write_bytes(launcher.script(sys.executable, [str(broken), *launcher.search_path(str(REPO))]))
    os.chmod(resident.launcher, 0o755)
    _, code, out, err = resident.run("version")
    assert code == 0 and "Version:" in out, err
    wait_for(lambda: "broken on purpose" in resident.log.read_text() if resident.log.exists() else False,
             PATIENCE, "the started server fails")
    [marker] = [Path(resident.directory, n) for n in os.listdir(resident.directory) if n.endswith(".starting")]
    started = marker.stat().st_mtime_ns
    for _ in range(3):  # none of these starts another (each would have stamped the marker first)
        _, code, out, _ = resident.run("version")
        assert code == 0 and "Version:" in out
    assert marker.stat().st_mtime_ns == started
    os.utime(marker, (0, 0))  # as if the failed start were long ago: the next command tries again
    _, code, _, _ = resident.run("version")
    assert code == 0 and marker.stat().st_mtime_ns > started
    assert not resident.servers()


def test_a_user_other_than_root_has_its_server_in_xdg_runtime_dir(resident, busybox_image):
    # uid 1000 in a user namespace of its own (mapped to root outside, so it can still read this interpreter):
    # geteuid() is not 0, so the socket directory is $XDG_RUNTIME_DIR/dockyard, which the server must find too.
    # One namespace for both commands: another would be other bounds, so another server.
    runtime = Path(tempfile.mkdtemp(prefix="dy-xdg-"))  # (short: see the fixture)
    env = {k: v for k, v in resident.env.items() if k != "DOCKYARD_RESIDENT_DIR"}
    script = (f"{resident.launcher} version && "
              f"until [ -S {runtime}/dockyard/*.sock ]; do sleep 0.1; done && "
              f"exec {resident.launcher} version")
    try:
        p = subprocess.Popen(["unshare", "--user", "--map-user=1000", "--map-group=1000", "sh", "-c", script],
                             env={**env, "XDG_RUNTIME_DIR": str(runtime)}, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        out, err = p.communicate(timeout=PATIENCE)
        assert p.returncode == 0 and out.decode().count("Client: Dockyard") == 2, err
        assert resident.served(p.pid)  # the second: `exec` made it the process we started
        assert any(n.endswith(".sock") for n in os.listdir(runtime / "dockyard"))
    finally:
        shutil.rmtree(runtime)


def test_an_idle_server_exits(resident, busybox_image):
    resident.env["DOCKYARD_RESIDENT_IDLE"] = "0.5"
    server = resident.warm()
    wait_for(lambda: gone(server), PATIENCE, "the idle server exits")
    assert not any(n.endswith(".sock") for n in os.listdir(resident.directory))


def _socket_path(resident: Resident) -> str:
    return os.path.join(resident.directory, next(n for n in os.listdir(resident.directory) if n.endswith(".sock")))


@pytest.mark.parametrize("garbage", [
    b"\xff\xff\xff\xff",  # a length beyond any message
    (FRAME_MAX + 1).to_bytes(4, "big") + REQUEST,
    frame(REQUEST, b"\0\0\0\x01dockyard")[:7],  # truncated, then the client hangs up
    frame(REQUEST, b"\0\0\0\x01dockyard\0ENV=1"),  # a request without its descriptors
    frame(b"Z", b"what"),
    frame(REQUEST, b"\0\0\0\x09a\0b"),  # more argv than words
])
def test_garbage_closes_that_session_only(resident, busybox_image, garbage):
    server = resident.warm()
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(_socket_path(resident))
        s.sendall(garbage)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(60)
        assert s.recv(100) == b""  # closed without an answer
    p, code, _, _ = resident.run("version")
    assert code == 0 and resident.served(p.pid) and not gone(server)


@pytest.mark.parametrize("spoil", ["mode", "owner", "symlink"])
def test_a_socket_directory_others_could_write_is_not_used(resident, busybox_image, tmp_path, spoil):
    if spoil == "mode":
        os.chmod(resident.directory, 0o755)
    elif spoil == "owner":
        os.chown(resident.directory, 65534, 65534)
    else:
        link = tmp_path / "link"
        link.symlink_to(resident.directory)
        resident.env["DOCKYARD_RESIDENT_DIR"] = str(link)
    p, code, out, _ = resident.run("version")
    assert code == 0 and "Version:" in out
    p, code, out, _ = resident.run("version")
    assert code == 0 and resident.served(p.pid) is None
    assert not resident.servers() and os.listdir(resident.directory) == []


def test_a_socket_directory_that_cannot_be_made_runs_directly(resident, busybox_image):
    resident.env["DOCKYARD_RESIDENT_DIR"] = "/proc/dockyard"  # (nobody can make a directory in /proc)
    for _ in range(2):
        p, code, out, err = resident.run("version")
        assert (code, err) == (0, "") and "Version:" in out
    assert not resident.servers()


def test_disabled_never_connects_nor_starts(resident, busybox_image):
    resident.env["DOCKYARD_RESIDENT"] = "0"
    _, code, _, _ = resident.run("version")
    assert code == 0 and not resident.servers() and os.listdir(resident.directory) == []
