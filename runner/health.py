"""HEALTHCHECK: a running container's check command run every interval, docker's Health object recorded.

Each check is a fresh process (`python -m runner.healthcheck`): the monitor that runs the loop has threads, and
exec forks, which must not happen in a threaded process (the child may deadlock); subprocess execs at once.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import threading
import time

from runner.containers import Container, Containers, now

_OUTPUT_LIMIT = 4096  # bytes of a check's output kept in the Health log (docker keeps 4 KiB too)


def enabled(hc: dict) -> bool:
    """Whether a Healthcheck config asks for checks (not absent, not NONE)."""
    return (hc.get("Test") or ["NONE"])[0] != "NONE"


def starting() -> dict:
    """docker's Health object of a container whose checks have just begun."""
    return {"Status": "starting", "FailingStreak": 0, "Log": []}


def loop(root: str, cid: str, hc: dict, stop: threading.Event) -> None:
    """Run the healthcheck every Interval while the container runs; record docker's Health object."""
    from runner import events

    test = hc["Test"]
    cmd = list(test[1:]) if test[0] == "CMD" else ["/bin/sh", "-c", test[1]]
    interval = (hc.get("Interval") or 30 * 10**9) / 1e9
    timeout = (hc.get("Timeout") or 30 * 10**9) / 1e9
    start_period = (hc.get("StartPeriod") or 0) / 1e9
    begun = time.monotonic()  # the loop starts with the container
    retries = hc.get("Retries") or 3
    store = Containers(root)
    while not stop.wait(interval):
        c = store.load(cid)
        if c.status != "running":
            continue
        start, since_start = now(), time.monotonic() - begun
        result = _check(root, cid, cmd, timeout, stop)
        if result is None:  # stopped meanwhile
            return
        code, text = result
        c = store.update(cid, functools.partial(_record, start=start, code=code, text=text, retries=retries,
                                                forgive=since_start < start_period))
        assert c.health is not None  # _record set it
        events.append(root, "container", f"health_status: {c.health['Status']}", cid, c.name, {"image": c.image})


def _record(x: Container, start: str, code: int, text: str, retries: int, forgive: bool) -> None:
    """Add one check's result to the container's Health (the last 5 kept) and update its status; `forgive`: a
    failure within the start period, before any success, does not count."""
    h = x.health or starting()
    h["Log"] = [*h["Log"], {"Start": start, "End": now(), "ExitCode": code, "Output": text}][-5:]
    if code == 0:
        h["Status"], h["FailingStreak"] = "healthy", 0
    elif h["Status"] != "starting" or not forgive:
        h["FailingStreak"] += 1
        if h["FailingStreak"] >= retries:
            h["Status"] = "unhealthy"
    x.health = h


def _check(root: str, cid: str, cmd: list[str], timeout: float, stop: threading.Event) -> tuple[int, str] | None:
    """One check in its own process: (exit code, its output's start), docker's -1 past `timeout`; None when `stop`
    came first. Either way our process is killed (a command it started in the container is left, as docker does)."""
    import tempfile

    deadline = time.monotonic() + timeout
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen([sys.executable, "-m", "runner.healthcheck", root, cid, json.dumps(cmd)],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out, close_fds=True)
        while proc.poll() is None:
            if stop.wait(0.05) or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                return None if stop.is_set() else (-1, f"Health check exceeded timeout ({timeout:g}s)")
        out.seek(0)
        return proc.returncode, out.read(_OUTPUT_LIMIT).decode(errors="replace")
