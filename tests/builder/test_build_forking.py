"""A build starts its containers from a single-threaded fork server (forking a process with threads may deadlock
the child; Python 3.12 warns), which is gone once the build is."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from support import FORK_WARNINGS, REPO, process_state

PARALLEL = ("FROM busybox AS a\nRUN echo a > /a\nRUN echo a2 >> /a\n"
            "FROM busybox AS b\nRUN echo b > /b\nRUN echo b2 >> /b\n"
            "FROM busybox\nCOPY --from=a /a /a\nCOPY --from=b /b /b\nRUN cat /a /b > /ab\n")


def _with_root(store_root: str) -> list[int]:
    """Pids of live processes started with DOCKYARD_ROOT=store_root in their environment."""
    found = []
    needle = f"DOCKYARD_ROOT={store_root}".encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if needle in env and process_state(int(pid)) not in (None, "Z", "X"):
            found.append(int(pid))
    return found


def test_parallel_stages_fork_no_threaded_process(context, build, inspect):
    ctx = context({"Dockerfile": PARALLEL})
    res = build(ctx, "--no-cache", "-t", "forked", env={"PYTHONWARNINGS": FORK_WARNINGS})
    assert "multi-threaded" not in res.err
    assert inspect.read("forked", "ab") == "a\na2\nb\nb2\n"


def test_fork_server_is_gone_after_the_build(context, store_root, build):
    ctx = context({"Dockerfile": "FROM busybox\nRUN sleep 1\n"})
    proc = subprocess.Popen([sys.executable, "-m", "dockyard", "build", "-q", str(ctx)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "DOCKYARD_ROOT": store_root})
    helpers: list[int] = []
    deadline = time.monotonic() + 60
    while not helpers and proc.poll() is None and time.monotonic() < deadline:
        helpers = [pid for pid in _with_root(store_root) if pid != proc.pid]  # the server, a shim
        time.sleep(0.02)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert helpers, "no fork server seen during the RUN"
    assert _with_root(store_root) == []
    failed = context({"Dockerfile": "FROM busybox\nRUN exit 3\n"})
    assert "exit code 3" in build(failed, check=False).err
    assert _with_root(store_root) == []


def test_a_run_with_more_mount_sources_than_one_message_carries_is_refused(context, build):
    # Each bind source travels to the fork server as a descriptor; past the kernel's 253 per message a request
    # would arrive truncated and mount the wrong objects: it must be refused instead.
    binds = " ".join(f"--mount=type=bind,source=f,target=/m{i}" for i in range(260))
    ctx = context({"f": "x", "Dockerfile": f"FROM busybox\nRUN {binds} cat /m0 /m259\n"})
    res = build(ctx, "--no-cache", check=False)
    assert res.code == 1 and "too many mount sources (260; at most 249)" in res.err
    assert "Traceback" not in res.err
    few = " ".join(f"--mount=type=bind,source=f,target=/m{i}" for i in range(100))
    ctx = context({"f": "x", "Dockerfile": f"FROM busybox\nRUN {few} cat /m0 /m99 > /out\n"})
    build(ctx, "--no-cache", "-t", "manybinds")


# What only a step that misses the cache needs: a fully cached rebuild loads none of it, so forks no server.
MISS_ONLY = {"runner.forkserver", "runner.rootfs", "builder.copy", "builder.views", "builder.fetch", "builder.sbom",
             "http.client", "ctypes"}


def test_a_fully_cached_rebuild_loads_no_sandbox_and_forks_no_server(context, build):
    ctx = context({"f": "x", "Dockerfile": "FROM busybox\nRUN echo a > /a\nCOPY f /f\nWORKDIR /w\nENV A=1\n"})
    first = build(ctx, "-q")
    again = build(ctx, "-q", env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert again.out == first.out
    loaded = {line.rsplit("|", 1)[1].strip() for line in again.err.splitlines() if line.startswith("import time:")}
    assert "builder.build" in loaded
    assert not loaded & MISS_ONLY


def test_a_server_forked_after_other_steps_forks_no_threaded_process(context, build, inspect):
    # The fork server is forked at its first need: here the COPY's layer commit, before the WORKDIR's and the RUN.
    ctx = context({"f": "x\n", "Dockerfile": "FROM busybox\nCOPY f /f\nWORKDIR /new\nRUN cat /f > out\n"})
    res = build(ctx, "--no-cache", "-t", "late", env={"PYTHONWARNINGS": FORK_WARNINGS})
    assert "multi-threaded" not in res.err
    assert inspect.read("late", "new/out") == "x\n"


def test_the_fork_server_waits_for_joined_threads_to_leave_the_kernel():
    # join() returns before a thread's own exit (before 3.13), so a fork server started right after a pull's threads
    # were joined, or its request deadlines' thread ended, could copy one of them. The kernel's count of threads is
    # read as each fork is made, by a hook registered first so that it runs last (after the deadlines' hook).
    code = """if True:
        import os, socket, threading
        seen = []
        os.register_at_fork(before=lambda: seen.append(len(os.listdir("/proc/self/task"))))
        from registry.client.connections import Watchdog
        from runner.forkserver import ForkServer
        def work():
            bytearray(4 << 20); sum(range(20000))
        a, b = socket.socketpair()
        for i in range(200):
            threads = [threading.Thread(target=work) for _ in range(6)]
            for t in threads: t.start()
            for t in threads: t.join()
            if i % 2:  # a request answered: the deadlines' thread lives until the fork
                Watchdog(a, 30).cancel()
            ForkServer.start().close()
        print(max(seen), len(seen))
    """
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert (p.returncode, p.stdout) == (0, "1 200\n"), p.stderr
