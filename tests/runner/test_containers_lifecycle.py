"""`dockyard run` and the container lifecycle through the real CLI: isolation, options, exit codes, -d, stop, rm."""

from __future__ import annotations

import json
import os
import socket
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ctrkit import _leftovers, _links
from support import free_port, run_subnet, wait_for


def test_isolation_none_network(ctr, store_root):
    r = ctr("run", "--rm", "--network", "none", "busybox", "sh", "-c",
            "echo pid=$$; hostname; ls /sys/class/net; echo x > /newfile; ls /proc | grep -c '^[0-9]'")
    pid, hostname, nets, nprocs = r.out.split("\n", 3)[0], *r.out.split("\n")[1:3], r.out.split()[-1]
    assert pid == "pid=1"
    assert len(hostname) == 12 and hostname != socket.gethostname()
    assert nets == "lo"
    assert int(nprocs) <= 3  # sh, ls, grep: nothing of the host's
    # The write went to that container's (removed) upper dir, never into the image.
    assert ctr("run", "--rm", "--network", "none", "busybox", "test", "-e", "/newfile", check=False).code == 1
    assert not ctr("ps", "-aq").out.strip()


def test_rm_run_is_gone_when_it_returns_and_its_files_soon_after(ctr, store_root):
    # --rm reports the exit code before the container's files are deleted (by a detached child), yet nothing of it
    # shows by then: not in ps -a, not its name or image hold, no mount, cgroup or netns; its files go soon after.
    r = ctr("run", "--rm", "--name", "brief", "busybox", "sh", "-c", "echo x > /f; echo out; exit 7", check=False)
    assert (r.code, r.out, r.err) == (7, "out\n", "")
    assert ctr("ps", "-aq").out == "" and not os.listdir(os.path.join(store_root, "holds"))
    ctr("run", "--rm", "--name", "brief", "--network", "none", "busybox", "true")  # the name is free at once
    events = [json.loads(line) for line in
              ctr("events", "--since", "1h", "--until", "0s", "--format", "json").out.splitlines()]
    cids = [e["id"] for e in events if e["Action"] == "destroy"]
    assert len(cids) == 2 and [e["id"] for e in events if e["Action"] == "create"] == cids
    assert all(_leftovers(cid) == [] for cid in cids)
    containers = os.path.join(store_root, "containers")
    wait_for(lambda: not [n for n in os.listdir(containers) if any(cid in n for cid in cids)], 5)
    assert ctr("rmi", "busybox").code == 0  # the image is no longer held
    # What a cleanup child killed midway leaves goes with the next prune.
    leftover = Path(containers, ".removed-" + "ab" * 32, "diff")
    leftover.mkdir(parents=True)
    (leftover / "f").write_text("x")
    ctr("container", "prune", "-f")
    assert not leftover.parent.exists()


def test_env_workdir_user_entrypoint_hostname(ctr, tmp_path):
    envfile = tmp_path / "env"
    envfile.write_text("# comment\nFROM_FILE=yes\nOVER=file\n")
    r = ctr("run", "--rm", "--network", "none", "-e", "A=1", "--env-file", str(envfile), "-e", "OVER=flag",
            "-w", "/tmp/work", "-u", "nobody", "-h", "myhost", "busybox", "sh", "-c",
            'echo "$A $FROM_FILE $OVER $PATH"; pwd; id -u; id -g; hostname')
    assert r.out.split("\n")[:5] == ["1 yes flag /usr/sbin:/usr/bin:/sbin:/bin", "/tmp/work", "65534", "65534", "myhost"]
    r = ctr("run", "--rm", "--network", "none", "-u", "1:65534", "--entrypoint", "/bin/echo", "busybox", "hello")
    assert r.out == "hello\n"
    assert ctr("run", "--rm", "--network", "none", "-u", "1:65534", "busybox", "id").out.startswith("uid=1(daemon) gid=65534")
    r = ctr("run", "--rm", "--network", "none", "-u", "nosuchuser", "busybox", "true", check=False)
    assert r.code == 125 and "nosuchuser" in r.err


def test_exit_codes(ctr):
    assert ctr("run", "--rm", "--network", "none", "busybox", "sh", "-c", "exit 3", check=False).code == 3
    r = ctr("run", "--rm", "--network", "none", "busybox", "nosuchcmd", check=False)
    assert r.code == 127 and "nosuchcmd" in r.err
    assert ctr("run", "--rm", "--network", "none", "busybox", "/etc/passwd", check=False).code == 126
    r = ctr("run", "--rm", "nosuchimage", "true", check=False)
    assert r.code == 125 and "nosuchimage" in r.err
    assert ctr("run", "-d", "--network", "none", "busybox", "nosuchcmd", check=False).code == 127
    # A foreground run without --rm keeps the container and its log; its exit code is the command's.
    r = ctr("run", "--name", "fg", "--network", "none", "busybox", "sh", "-c", "echo out; echo err >&2; exit 5",
            check=False)
    assert (r.code, r.out, r.err) == (5, "out\n", "err\n")
    logs = ctr("logs", "fg")
    assert (logs.out, logs.err) == ("out\n", "err\n")
    assert ctr("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "fg").out == "exited 5\n"


def test_detached_stop_kills_after_timeout_and_rm_leaves_nothing(ctr, store_root):
    cid = ctr("run", "-d", "--name", "stubborn", "busybox", "sh", "-c",
              "trap '' TERM; echo ready; while true; do sleep 0.2; done").out.strip()
    assert len(cid) == 64
    wait_for(lambda: "ready" in ctr("logs", "stubborn").out)
    ps = ctr("ps").out
    assert cid[:12] in ps and "stubborn" in ps and "Up " in ps
    info = json.loads(ctr("inspect", "stubborn").out)[0]
    assert info["State"]["Running"] and info["State"]["Pid"] > 0 and info["Name"] == "/stubborn"
    veth = next(iter(info["NetworkSettings"]["Networks"].values()))["EndpointID"]
    assert info["NetworkSettings"]["IPAddress"].startswith(run_subnet(0, ""))
    assert _links(veth)
    ctr("stop", "-t", "1", "stubborn")
    state = json.loads(ctr("inspect", "stubborn").out)[0]["State"]
    assert (state["Status"], state["ExitCode"], state["Running"]) == ("exited", 137, False)
    assert "Exited (137)" in ctr("ps", "-a").out and cid[:12] not in ctr("ps").out
    assert not _links(veth)
    on_disk = json.loads(Path(store_root, "containers", cid, "state.json").read_text())
    assert (on_disk["status"], on_disk["state"], on_disk["id"]) == ("stopped", "exited", cid)  # runtime-spec status
    ctr("rm", "stubborn")
    assert _leftovers(cid) == []
    assert not os.path.exists(os.path.join(store_root, "containers", cid))
    assert not os.listdir(os.path.join(store_root, "holds"))
    assert ctr("inspect", "stubborn", check=False).code == 1


def test_logs_follow_and_tail(ctr):
    ctr("run", "-d", "--name", "talker", "--network", "none", "busybox", "sh", "-c",
        "for i in 1 2 3 4 5; do echo line$i; sleep 0.1; done; echo bye >&2")
    r = ctr("logs", "-f", "talker")  # returns once the container has exited
    assert r.out == "".join(f"line{i}\n" for i in range(1, 6)) and r.err == "bye\n"
    assert ctr("logs", "--tail", "2", "talker").out == "line5\n"
    stamped = ctr("logs", "-t", "talker").out.splitlines()[0]
    assert stamped.endswith(" line1") and stamped[:4].isdigit() and "T" in stamped.split()[0]
    path = json.loads(ctr("inspect", "talker").out)[0]["LogPath"]
    entry = json.loads(Path(path).read_text().splitlines()[0])
    assert entry["log"] == "line1\n" and entry["stream"] == "stdout" and entry["time"].endswith("Z")


def test_publish_reachable_on_localhost(ctr):
    port = free_port()
    ctr("run", "-d", "--name", "web", "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c",
        "mkdir /www && echo hello-from-container > /www/index.html && exec httpd -f -p 80 -h /www")
    assert ctr("port", "web").out == f"80/tcp -> 127.0.0.1:{port}\n"
    assert f"127.0.0.1:{port}->80/tcp" in ctr("ps").out

    def fetch() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=2) as resp:
                return resp.read() == b"hello-from-container\n"
        except OSError:
            return False
    wait_for(fetch)
    ctr("rm", "-f", "web")
    assert not fetch()


def test_host_network_sees_host_interfaces(ctr):
    before = set(os.listdir("/sys/class/net"))
    r = ctr("run", "--rm", "--network", "host", "busybox", "sh", "-c", "ls /sys/class/net; hostname")
    stable = before & set(os.listdir("/sys/class/net"))  # other tests on this host add and remove links meanwhile
    names = r.out.split()
    assert stable - {"lo"} and stable <= set(names[:-1])
    assert names[-1] == socket.gethostname()


def test_twenty_in_parallel(ctr):
    def start(i: int) -> str:
        return ctr("run", "-d", "--name", f"par{i}", "busybox", "sh", "-c",
                   f"echo I am {i}; hostname; exec sleep 60").out.strip()

    with ThreadPoolExecutor(20) as pool:
        ids = list(pool.map(start, range(20)))
    assert len(set(ids)) == 20
    running = ctr("ps", "-q", "--no-trunc").out.split()
    assert sorted(running) == sorted(ids)
    for i, cid in enumerate(ids):
        wait_for(lambda: ctr("logs", f"par{i}").out == f"I am {i}\n{cid[:12]}\n")
    ips = {ctr("inspect", "-f", "{{.NetworkSettings.IPAddress}}", f"par{i}").out for i in range(20)}
    assert len(ips) == 20
    ctr("rm", "-f", *ids)
    assert not ctr("ps", "-aq").out.strip()
    assert all(_leftovers(cid) == [] for cid in ids)


def test_names_ids_and_lookup(ctr):
    cid = ctr("create", "--name", "named", "--network", "none", "busybox", "true").out.strip()
    assert ctr("create", "--name", "named", "busybox", "true", check=False).code == 125
    assert ctr("inspect", "-f", "{{.Id}}", cid[:8]).out.strip() == cid
    assert ctr("inspect", "-f", "{{.State.Status}}", "/named").out == "created\n"
    other = ctr("create", "--network", "none", "busybox", "true").out.strip()
    name = ctr("inspect", "-f", "{{.Name}}", other).out.strip()
    assert name.startswith("/") and "_" in name
    ctr("start", "named")
    assert ctr("wait", "named").out == "0\n"
    # Without --type a container comes first, as in docker, even one named like the start of an image's id.
    image_id = ctr("images", "-q", "--no-trunc", "busybox").out.split()[0]
    prefixed = ctr("create", "--name", image_id[7:11], "--network", "none", "busybox", "true").out.strip()
    assert ctr("inspect", "-f", "{{.Id}}", image_id[7:11]).out.strip() == prefixed
    assert ctr("inspect", "--type", "image", "-f", "{{.Id}}", image_id[7:11]).out.strip() == image_id
    ctr("rm", cid, other, prefixed)


def test_dead_monitor_shows_exited_and_rm_cleans_up(ctr, store_root):
    cid = ctr("run", "-d", "--name", "orphan", "busybox", "sleep", "60").out.strip()
    state = json.loads(Path(store_root, "containers", cid, "state.json").read_text())
    assert state["status"] == "running" and state["ociVersion"] and state["bundle"] and state["pid"] > 0
    os.kill(state["monitor_pid"], 9)
    wait_for(lambda: "Exited" in ctr("ps", "-a").out)
    assert cid[:12] not in ctr("ps").out
    ctr("rm", "orphan")
    assert _leftovers(cid) == []


def test_stdin_caps_security_and_etc_options(ctr):
    r = ctr("run", "--rm", "-i", "--network", "none", "busybox", "sh", "-c", "cat; echo done", input=b"from stdin\n")
    assert r.out == "from stdin\ndone\n"
    r = ctr("run", "--rm", "--network", "none", "--cap-drop", "ALL", "--cap-add", "CHOWN",
            "--security-opt", "no-new-privileges", "busybox", "grep", "-E", "^(CapEff|NoNewPrivs)", "/proc/self/status")
    assert r.out.split() == ["CapEff:", "0000000000000001", "NoNewPrivs:", "1"]
    r = ctr("run", "--rm", "--add-host", "db.example:10.1.2.3", "--dns", "10.9.9.9", "--label", "team=ops",
            "--name", "etc", "busybox", "sh", "-c", "grep db.example /etc/hosts; cat /etc/resolv.conf")
    assert r.out.split()[:2] == ["10.1.2.3", "db.example"] and "nameserver 10.9.9.9" in r.out
    cid = ctr("create", "--label", "team=ops", "--network", "none", "--stop-signal", "USR1", "--memory", "64m",
              "--cpus", "0.5", "busybox", "true").out.strip()
    info = json.loads(ctr("inspect", cid).out)[0]
    assert info["Config"]["Labels"]["team"] == "ops" and info["Config"]["StopSignal"] == "USR1"
    assert info["HostConfig"]["Memory"] == 64 << 20 and info["HostConfig"]["NanoCpus"] == 500_000_000
    assert ctr("ps", "-a", "-q", "--filter", "label=team=ops").out.strip() == cid[:12]


def test_mounts_into_proc_fail_the_start_and_others_work(ctr, tmp_path):
    host = tmp_path / "x"
    host.mkdir()
    (host / "uptime").write_text("12345.67 0.00\n")
    for args, line in [
        (["-v", f"{host}:/proc"], "mount bind on /proc: refused: only a proc filesystem may be mounted on /proc"),
        (["-v", f"{host}:/proc/self/attr"], "mount bind on /proc/self/attr: refused: /proc/1/attr is inside /proc"),
        (["--tmpfs", "/proc/sys"], "mount tmpfs on /proc/sys: refused: /proc/sys is inside /proc"),
        (["--mount", f"type=bind,source={host},target=/proc/sys/kernel"],
         "mount bind on /proc/sys/kernel: refused: /proc/sys/kernel is inside /proc"),
    ]:
        r = ctr("run", "--rm", "--network", "none", *args, "busybox", "true", check=False)
        assert (r.code, r.out, r.err.strip().splitlines()) == (125, "", [f"Error: {line}"]), (args, r.err)
    r = ctr("run", "--rm", "--network", "none", "-v", f"{host}:/data", "-v", f"{host}/uptime:/proc/uptime:ro",
            "busybox", "sh", "-c", "cat /proc/uptime; ls /data")
    assert r.out == "12345.67 0.00\nuptime\n"
    assert not ctr("ps", "-aq").out.strip()
