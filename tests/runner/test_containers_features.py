"""Volumes, exec, cp, commit, restart policies, limits, runc, user networks and the smaller commands."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile

from ctrkit import _leftovers, type_until
from support import wait_for


def _state(ctr, name: str) -> dict:
    return json.loads(ctr("inspect", name).out)[0]["State"]


def test_volumes_named_bind_anonymous_and_volumes_from(ctr, tmp_path, store_root):
    ctr("run", "--rm", "--network", "none", "-v", "data:/root", "busybox", "sh", "-c", "echo kept > /root/note")
    assert "data" in ctr("volume", "ls", "-q").out.split()
    # Seeded from the image on first use (busybox's /etc), kept after rm.
    ctr("run", "--rm", "--network", "none", "-v", "etcvol:/etc", "busybox", "true")
    vol = json.loads(ctr("volume", "inspect", "etcvol").out)[0]
    assert os.path.exists(os.path.join(vol["Mountpoint"], "passwd"))
    assert ctr("run", "--rm", "--network", "none", "-v", "data:/x", "busybox", "cat", "/x/note").out == "kept\n"
    host = tmp_path / "shared"
    host.mkdir()
    (host / "in.txt").write_text("from host\n")
    r = ctr("run", "--rm", "--network", "none", "-v", f"{host}:/mnt", "busybox", "sh", "-c", "cat /mnt/in.txt; echo back > /mnt/out.txt")
    assert r.out == "from host\n" and (host / "out.txt").read_text() == "back\n"
    r = ctr("run", "--rm", "--network", "none", "-v", f"{host}:/mnt:ro", "busybox", "sh", "-c", "echo no > /mnt/ro.txt",
            check=False)
    assert r.code != 0 and "Read-only" in r.err and not (host / "ro.txt").exists()
    r = ctr("run", "--rm", "--network", "none", "--mount", f"type=bind,source={host},target=/m,readonly",
            "--tmpfs", "/scratch", "busybox", "sh", "-c", "cat /m/in.txt; grep -c ' /scratch tmpfs' /proc/mounts")
    assert r.out == "from host\n1\n"
    # Anonymous volume, shared through --volumes-from; removed with rm -v.
    ctr("run", "--name", "owner", "--network", "none", "-v", "/shared", "busybox", "sh", "-c", "echo anon > /shared/f")
    r = ctr("run", "--rm", "--network", "none", "--volumes-from", "owner:ro", "busybox", "sh", "-c",
            "cat /shared/f; touch /shared/g", check=False)
    assert r.out == "anon\n" and r.code != 0
    anon = json.loads(ctr("inspect", "owner").out)[0]["Mounts"][0]["Name"]
    assert anon in ctr("volume", "ls", "-q").out
    assert ctr("volume", "rm", "data").code == 0
    ctr("rm", "-v", "owner")
    assert anon not in ctr("volume", "ls", "-q").out
    assert ctr("run", "--rm", "--network", "none", "--read-only", "busybox", "touch", "/x", check=False).code == 1
    ctr("volume", "create", "--label", "k=v", "made")
    assert json.loads(ctr("volume", "inspect", "made").out)[0]["Labels"] == {"k": "v"}
    ctr("create", "--name", "user", "--network", "none", "-v", "made:/m", "busybox", "true")
    assert ctr("volume", "rm", "made", check=False).code == 1  # in use
    ctr("volume", "prune", "-a")
    assert ctr("volume", "ls", "-q").out == "made\n"


def test_exec_cp_commit(ctr, tmp_path):
    ctr("run", "-d", "--name", "box", "--network", "none", "-e", "FROM_RUN=1", "busybox", "sh", "-c",
        "ln -s /etc /root/escape; mkdir /data; echo inside > /data/file; touch /ready; exec sleep 60")
    wait_for(lambda: ctr("exec", "box", "test", "-e", "/ready", check=False).code == 0)
    r = ctr("exec", "-u", "nobody", "-w", "/tmp", "-e", "X=y", "box", "sh", "-c", 'id -u; pwd; echo $X $FROM_RUN; exit 7',
            check=False)
    assert (r.code, r.out) == (7, "65534\n/tmp\ny 1\n")
    r = ctr("exec", "box", "sh", "-c", "ps -o pid,comm | grep sleep; hostname")
    assert r.out.split()[:2] == ["1", "sleep"]
    assert ctr("exec", "box", "nosuchcmd", check=False).code == 127
    ctr("exec", "-d", "box", "sh", "-c", "echo detached > /data/d")
    wait_for(lambda: ctr("exec", "box", "cat", "/data/d", check=False).out == "detached\n")
    # cp both ways; a symlink inside pointing to /etc is resolved within the container, not the host.
    src = tmp_path / "upload.txt"
    src.write_text("uploaded\n")
    ctr("cp", str(src), "box:/root/escape/")
    assert not os.path.exists("/etc/upload.txt")
    assert ctr("exec", "box", "cat", "/etc/upload.txt").out == "uploaded\n"
    ctr("cp", str(src), "box:/data/renamed.txt")
    out = tmp_path / "out"
    out.mkdir()
    ctr("cp", "box:/data", str(out))
    assert sorted(os.listdir(out / "data")) == ["d", "file", "renamed.txt"]
    ctr("cp", "box:/root/escape/passwd", str(out / "pw"))
    assert (out / "pw").read_text().startswith("root:x:0:0")
    tar = subprocess.run([*_cli(), "cp", "box:/data/file", "-"], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        assert tf.extractfile("file").read() == b"inside\n"
    def tar_of(name: str, data: bytes) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        return buf.getvalue()
    subprocess.run([*_cli(), "cp", "-", "box:/data"], input=tar_of("streamed.txt", b"via tar\n"), check=True)
    assert ctr("exec", "box", "cat", "/data/streamed.txt").out == "via tar\n"
    bad = subprocess.run([*_cli(), "cp", "-", "box:/data"], input=tar_of("../../../tmp/escaped", b"x"), capture_output=True)
    assert bad.returncode != 0 and not os.path.exists("/tmp/escaped")
    commit_id = ctr("commit", "-c", "CMD [\"cat\", \"/data/file\"]", "-m", "snap", "box", "snap:1").out.strip()
    assert commit_id.startswith("sha256:")
    assert ctr("run", "--rm", "--network", "none", "snap:1").out == "inside\n"
    assert json.loads(ctr("inspect", "snap:1").out)[0]["Config"]["Cmd"] == ["cat", "/data/file"]
    ctr("stop", "-t", "0", "box")
    ctr("cp", "box:/etc/upload.txt", str(out / "stopped.txt"))  # from a stopped container too
    assert (out / "stopped.txt").read_text() == "uploaded\n"
    exported = subprocess.run([*_cli(), "export", "box"], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(exported)) as tf:
        assert tf.extractfile("data/file").read() == b"inside\n"


def _cli() -> list[str]:
    """The argv prefix of the `dockyard` the fixture runs (for binary stdout)."""
    import sys

    return [sys.executable, "-m", "dockyard"]


def test_restart_on_failure_twice(ctr):
    ctr("run", "-d", "--name", "flaky", "--network", "none", "--restart", "on-failure:2", "busybox", "sh", "-c",
        "echo try; exit 3")
    wait_for(lambda: _state(ctr, "flaky")["Status"] == "exited" and
              json.loads(ctr("inspect", "flaky").out)[0]["RestartCount"] == 2)
    assert ctr("logs", "flaky").out == "try\ntry\ntry\n"
    assert _state(ctr, "flaky")["ExitCode"] == 3


def test_oom_and_pids_limit(ctr):
    r = ctr("run", "--name", "hog", "--network", "none", "--memory", "16m", "busybox", "sh", "-c",
            "dd if=/dev/zero of=/dev/null bs=64M count=1", check=False)
    assert r.code == 137
    assert _state(ctr, "hog")["OOMKilled"] is True
    cid = ctr("run", "-d", "--name", "storm", "--network", "none", "--pids-limit", "10", "busybox", "sh", "-c",
              "(for i in $(seq 40); do sleep 30 & done); echo spawned; exec sleep 30").out.strip()
    wait_for(lambda: "spawned" in ctr("logs", "storm").out)
    with open(f"/sys/fs/cgroup/pids/dockyard/{cid}/pids.current") as f:
        assert int(f.read()) <= 10
    assert "fork" in ctr("logs", "storm").err


def test_runc_runs_the_same_bundle(ctr):
    args = ["--rm", "--network", "none", "-h", "same", "-e", "V=1", "-w", "/tmp", "busybox", "sh", "-c",
            "echo $$ $V; pwd; hostname; cat /proc/self/status | grep CapEff; exit 4"]
    ours = ctr("run", *args, check=False)
    theirs = ctr("run", "--runtime", "runc", *args, check=False)
    assert ours.code == theirs.code == 4
    assert ours.out == theirs.out and ours.out.startswith("1 1\n/tmp\nsame\nCapEff:\t00000000a80425fb")
    cid = ctr("run", "-d", "--runtime", "runc", "--network", "none", "busybox", "sleep", "60").out.strip()
    assert ctr("exec", cid, "hostname").out == cid[:12] + "\n"  # exec finds runc's container, not runc
    assert _state(ctr, cid)["Pid"] > 0
    ctr("rm", "-f", cid)
    assert _leftovers(cid) == []


def test_user_network_names_and_links(ctr):
    ctr("network", "create", "ctrnet")
    ctr("run", "-d", "--name", "server", "--network", "ctrnet", "busybox", "sh", "-c",
        "mkdir /w && echo by-name > /w/index.html && exec httpd -f -p 80 -h /w")

    def fetch(host: str, *flags: str) -> str:
        # busybox-static's wget crashes in its resolver; nc does the request.
        return ctr("run", "--rm", *flags, "busybox", "sh", "-c", f'printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc {host} 80',
                   check=False).out
    wait_for(lambda: fetch("server", "--network", "ctrnet").endswith("\r\n\r\nby-name\n"))
    ctr("run", "-d", "--name", "legacy", "busybox", "sh", "-c",
        "mkdir /w && echo by-link > /w/index.html && exec httpd -f -p 80 -h /w")
    wait_for(lambda: fetch("alias", "--link", "legacy:alias").endswith("\r\n\r\nby-link\n"))
    assert "by-name" not in fetch("server")  # the default bridge resolves no names
    ctr("rm", "-f", "server", "legacy")
    ctr("network", "rm", "ctrnet")


def test_pause_top_rename_stats_events_prune_init_tty(ctr):
    cid = ctr("run", "-d", "--name", "worker", "--network", "none", "busybox", "sh", "-c",
              "while true; do echo tick; sleep 0.1; done").out.strip()
    assert "sh -c" in ctr("top", "worker").out
    ctr("pause", "worker")
    assert _state(ctr, "worker")["Paused"] and "(Paused)" in ctr("ps").out
    with open(f"/sys/fs/cgroup/freezer/dockyard/{cid}/freezer.state") as f:
        assert f.read().strip() == "FROZEN"
    ctr("unpause", "worker")
    ctr("rename", "worker", "renamed")
    assert ctr("ps", "--format", "{{.Names}}").out == "renamed\n"
    stats = ctr("stats", "--no-stream", "renamed").out
    assert "renamed" in stats and "/" in stats
    ctr("stop", "-t", "1", "renamed")
    assert ctr("wait", "renamed").out in ("137\n", "143\n")
    events = [json.loads(l) for l in ctr("events", "--since", "1h", "--until", "0s", "--format", "json").out.splitlines()]
    actions = [e["Action"] for e in events if e["id"] == cid]
    assert actions[:2] == ["create", "start"] and "pause" in actions and "die" in actions
    r = ctr("run", "--rm", "--network", "none", "-t", "busybox", "sh", "-c", "tty; test -t 0 && echo is-a-tty")
    assert r.out.endswith("is-a-tty\r\n")  # \r\n: a terminal's line discipline wrote it
    ctr("container", "prune", "-f")
    assert not ctr("ps", "-aq").out.strip()
    assert _leftovers(cid) == []


def test_healthcheck_start_attach_and_network_connect(ctr):
    ctr("run", "-d", "--name", "doc", "--health-cmd", "test -e /tmp/ok", "--health-interval", "100ms",
        "--health-retries", "1", "busybox", "sh", "-c", "sleep 0.5; touch /tmp/ok; exec sleep 60")
    wait_for(lambda: (_state(ctr, "doc").get("Health") or {}).get("Status") == "healthy")
    health = _state(ctr, "doc")["Health"]
    assert health["Log"][-1]["ExitCode"] == 0 and "(healthy)" in ctr("ps").out
    ctr("network", "create", "extra")
    ctr("network", "connect", "extra", "doc")
    assert "eth1" in ctr("exec", "doc", "ip", "-o", "link").out
    assert set(json.loads(ctr("inspect", "doc").out)[0]["NetworkSettings"]["Networks"]) == {"bridge", "extra"}
    ctr("network", "disconnect", "extra", "doc")
    assert "eth1" not in ctr("exec", "doc", "ip", "-o", "link").out
    ctr("rm", "-f", "doc")
    ctr("network", "rm", "extra")
    ctr("create", "--name", "later", "--network", "none", "busybox", "sh", "-c", "echo attached; exit 9")
    r = ctr("start", "-a", "later", check=False)
    assert (r.code, r.out) == (9, "attached\n")
    ctr("restart", "later")
    assert ctr("wait", "later").out == "9\n"
    assert ctr("logs", "later").out == "attached\nattached\n"


def test_healthcheck_timeout_makes_unhealthy(ctr):
    # docker's timeout: the check is given up on with exit code -1, here failing the container's only retry.
    ctr("run", "-d", "--name", "slow", "--network", "none", "--health-cmd", "sleep 5", "--health-interval", "100ms",
        "--health-timeout", "300ms", "--health-retries", "1", "busybox", "sleep", "60")
    wait_for(lambda: (_state(ctr, "slow").get("Health") or {}).get("Status") == "unhealthy")
    check = _state(ctr, "slow")["Health"]["Log"][-1]
    assert (check["ExitCode"], check["Output"]) == (-1, "Health check exceeded timeout (0.3s)")
    ctr("rm", "-f", "slow")


def test_healthcheck_start_period_forgives_failures(ctr):
    ctr("run", "--name", "src", "--network", "none", "busybox", "true")
    ctr("commit", "-c", "HEALTHCHECK --start-period=4s --interval=100ms --retries=1 CMD false", "src", "late:1")
    ctr("run", "-d", "--name", "late", "--network", "none", "late:1", "sleep", "60")
    wait_for(lambda: _state(ctr, "late")["Health"]["Log"])
    health = _state(ctr, "late")["Health"]  # failed, within its start period: not counted
    assert (health["Status"], health["FailingStreak"], health["Log"][0]["ExitCode"]) == ("starting", 0, 1), health
    wait_for(lambda: _state(ctr, "late")["Health"]["Status"] == "unhealthy")
    ctr("rm", "-f", "late", "src")


def test_attach_feeds_stdin_of_run_d_i(ctr, store_root):
    ctr("run", "-d", "-i", "--name", "reader", "--network", "none", "busybox", "sh", "-c",
        "echo ready; read line; echo got:$line; echo err:$line >&2; read again; echo then:$again")
    wait_for(lambda: ctr("logs", "reader").out == "ready\n")
    # attach follows until the container exits: this one is killed once it has seen the answer.
    first = subprocess.Popen([*_cli(), "attach", "reader"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env={**os.environ, "DOCKYARD_ROOT": store_root})
    first.stdin.write(b"one\n")
    first.stdin.close()  # our EOF is not the container's (docker's -d -i): its second read still waits
    assert _read_until(first.stdout.fileno(), b"\n") == b"got:one\n"
    assert _read_until(first.stderr.fileno(), b"\n") == b"err:one\n"  # the stream keeps stdout and stderr apart
    first.kill()
    first.wait()
    assert ctr("inspect", "-f", "{{.State.Running}}", "reader").out == "true\n"
    r = ctr("attach", "reader", input=b"two\n")
    assert (r.code, r.out) == (0, "then:two\n")
    assert ctr("inspect", "-f", "{{.State.Status}}", "reader").out == "exited\n"


def test_start_attach_interactive_of_created_i_container(ctr):
    ctr("create", "-i", "--name", "cat", "--network", "none", "busybox", "sh", "-c", "cat; echo done; exit 4")
    r = ctr("start", "-a", "-i", "cat", input=b"hello\nworld\n", check=False)
    assert (r.code, r.out) == (4, "hello\nworld\ndone\n")
    assert ctr("logs", "cat").out == "hello\nworld\ndone\n"


def test_attach_from_a_terminal_to_run_d_i_t(ctr, store_root):
    ctr("run", "-d", "-i", "-t", "--name", "shell", "--network", "none", "busybox", "sh")
    master, slave = os.openpty()
    p = subprocess.Popen([*_cli(), "attach", "shell"], stdin=slave, stdout=slave, stderr=subprocess.PIPE,
                         env={**os.environ, "DOCKYARD_ROOT": store_root})
    os.close(slave)
    try:
        # The container's pty echoes the line and sh runs it: "hi-3" is only the output's. A shell still starting
        # may flush what was typed ahead (its line editor takes the terminal with TCSAFLUSH): then type it again.
        seen = type_until(master, b"echo hi-$((1+2))", b"hi-3\r\n", 3)
        assert b"hi-3\r\n" in seen, seen
        os.write(master, b"exit 5\r")
        assert p.wait(10) == 5, p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)


def _read_until(fd: int, wanted: bytes) -> bytes:
    """What `fd` (a pipe, a terminal's master side) gives until `wanted` shows up (failing after 10 s of silence)."""
    import select

    seen = b""
    while wanted not in seen:
        assert select.select([fd], [], [], 10)[0], seen
        seen += os.read(fd, 4096)
    return seen


def test_exec_tty_gets_a_new_pty_of_the_container(ctr, store_root):
    ctr("run", "-d", "--name", "box", "--network", "none", "busybox", "sleep", "60")
    # Our stdin is a pipe, not a terminal: docker still gives the command a pty, one of the container's devpts.
    r = ctr("exec", "-t", "box", "sh", "-c", "tty; readlink /proc/self/fd/1; ls /dev/pts", input=b"")
    path, out_path, listing = r.out.split("\r\n", 2)
    assert path.startswith("/dev/pts/") and out_path == path
    assert path.rsplit("/", 1)[1] in listing.split()
    assert ctr("exec", "box", "tty", input=b"", check=False).out == "not a tty\n"
    r = ctr("exec", "-i", "-t", "box", "true", input=b"", check=False)
    assert r.code == 1 and "not a TTY" in r.err
    # Interactive, from a terminal: its size is copied, keys go through, the command's output comes back.
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    p = subprocess.Popen([*_cli(), "exec", "-i", "-t", "box", "sh", "-c", "stty size; read x; echo got:$x; exit 3"],
                         stdin=slave, stdout=slave, stderr=subprocess.PIPE, env={**os.environ, "DOCKYARD_ROOT": store_root})
    os.close(slave)
    _read_until(master, b"30 100")
    os.write(master, b"hi\r")
    _read_until(master, b"got:hi")
    assert p.wait(10) == 3, p.stderr.read()
    os.close(master)


def test_init_reaps_zombies_and_forwards_signals(ctr):
    # Our reaper is pid 1; an orphan that exits is reaped (no zombie left), the exit code is the command's.
    script = "(sleep 0.1 &); sleep 0.6; ps -o pid,stat,args; exit 3"
    r = ctr("run", "--rm", "--network", "none", "--init", "busybox", "sh", "-c", script, check=False)
    assert r.code == 3, r
    rows = [line.split(None, 2) for line in r.out.splitlines()[1:]]
    assert rows[0][0] == "1" and rows[0][2].startswith("dockyard-init -- sh -c")
    assert not [row for row in rows if row[1].startswith("Z")], r.out
    # Without --init a lone `sleep` as pid 1 ignores SIGTERM (the kernel shields pid 1), so stop must kill it;
    # with --init the reaper forwards SIGTERM and sleep dies of it: 143, not 137.
    for init, expected in ((["--init"], "143"), ([], "137")):
        ctr("run", "-d", "--network", "none", "--name", f"sleeper{len(init)}", *init, "busybox", "sleep", "600")
        ctr("stop", "-t", "2", f"sleeper{len(init)}")
        assert ctr("wait", f"sleeper{len(init)}").out.strip() == expected
        ctr("rm", f"sleeper{len(init)}")
    # Under runc the same option binds a static init from the host instead.
    r = ctr("run", "--rm", "--network", "none", "--runtime", "runc", "--init", "busybox", "cat", "/proc/1/cmdline")
    assert r.out.split("\0")[:2] == ["/dev/init", "--"]
