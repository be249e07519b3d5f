"""`dockyard run` forks its containers' inits while it has no thread (forking with threads alive can deadlock the
child; Python 3.12 warns): in the foreground and in a detached monitor."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from ctrkit import type_until
from support import FORK_WARNINGS, wait_for

from runner.containers import Containers


def test_run_forks_no_threaded_process(ctr, store_root):
    env = {"PYTHONWARNINGS": FORK_WARNINGS}
    res = ctr("run", "--network", "none", "busybox", "echo", "foreground", env=env)  # supervised: log, pumps
    assert (res.out, "multi-threaded" in res.err) == ("foreground\n", False), res.err
    cid = ctr("run", "-d", "--network", "none", "busybox", "echo", "detached", env=env).out.strip()
    assert ctr("wait", cid).out.strip() == "0"
    assert ctr("logs", cid).out == "detached\n"
    with open(Containers(store_root).path(cid, "monitor.log")) as f:
        assert "multi-threaded" not in f.read()


def _monitor_log(store_root: str, name_or_id: str, ctr) -> str:
    cid = ctr("inspect", "-f", "{{.Id}}", name_or_id).out.strip()
    with open(Containers(store_root).path(cid, "monitor.log")) as f:
        return f.read()


def test_health_checks_and_restarts_fork_no_threaded_process(ctr, store_root):
    # Checks run while the pumps run, and each restart forks while the last run's check may still be going.
    ctr("run", "-d", "--name", "checked", "--network", "none", "--restart", "on-failure:2", "--health-cmd", "true",
        "--health-interval", "100ms", "busybox", "sh", "-c", "sleep 0.6; exit 3", env={"PYTHONWARNINGS": FORK_WARNINGS})
    wait_for(lambda: ctr("inspect", "-f", "{{.State.Status}} {{.RestartCount}}", "checked").out == "exited 2\n")
    health = json.loads(ctr("inspect", "checked").out)[0]["State"]["Health"]
    assert 0 in [check["ExitCode"] for check in health["Log"]], health  # one may be cut short by the exit
    assert "multi-threaded" not in _monitor_log(store_root, "checked", ctr)


def test_attach_hub_forks_no_threaded_process(ctr, store_root):
    # -i: the monitor serves attach.sock with threads that live across the restarts; each run reads one line.
    ctr("run", "-d", "-i", "--name", "hub", "--network", "none", "--restart", "on-failure:2", "busybox", "sh", "-c",
        "read x; echo got:$x; exit 1", env={"PYTHONWARNINGS": FORK_WARNINGS})
    r = ctr("attach", "hub", input=b"a\nb\nc\n", check=False)
    assert (r.code, r.out) == (1, "got:a\ngot:b\ngot:c\n"), r.err
    assert "multi-threaded" not in _monitor_log(store_root, "hub", ctr)


def test_run_it_forks_no_threaded_process(ctr, store_root):
    # run -it copies our terminal to the container's in a thread, which lives across the restart.
    master, slave = os.openpty()
    p = subprocess.Popen([sys.executable, "-m", "dockyard", "run", "-i", "-t", "--network", "none", "--restart",
                          "on-failure:1", "busybox", "sh", "-c", "read x; echo got:$x; exit 1"],
                         stdin=slave, stdout=slave, stderr=subprocess.PIPE,
                         env={**os.environ, "DOCKYARD_ROOT": store_root, "PYTHONWARNINGS": FORK_WARNINGS})
    os.close(slave)
    try:
        for line in (b"a", b"b"):
            seen = type_until(master, line, b"got:" + line, 2)
            assert b"got:" + line in seen, seen
        assert p.wait(20) == 1
        assert "multi-threaded" not in p.stderr.read().decode()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
