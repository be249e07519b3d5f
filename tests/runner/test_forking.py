"""`dockyard run` forks its containers' inits while it has no thread (forking with threads alive can deadlock the
child; Python 3.12 warns): in the foreground and in a detached monitor."""

from __future__ import annotations

from support import FORK_WARNINGS

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
