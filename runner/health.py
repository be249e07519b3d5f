"""HEALTHCHECK: a running container's check command run every interval, docker's Health object recorded."""

from __future__ import annotations

import functools
import threading

from dockyard.errors import DockyardError
from runner.containers import Container, Containers, now


def enabled(hc: dict) -> bool:
    """Whether a Healthcheck config asks for checks (not absent, not NONE)."""
    return (hc.get("Test") or ["NONE"])[0] != "NONE"


def loop(root: str, cid: str, hc: dict, stop: threading.Event) -> None:
    """Run the healthcheck every Interval while the container runs; record docker's Health object."""
    import tempfile

    from runner import events
    from runner import exec as exec_

    test = hc["Test"]
    cmd = list(test[1:]) if test[0] == "CMD" else ["/bin/sh", "-c", test[1]]
    interval = (hc.get("Interval") or 30 * 10**9) / 1e9
    retries = hc.get("Retries") or 3
    store = Containers(root)
    store.update(cid, lambda x: setattr(x, "health", {"Status": "starting", "FailingStreak": 0, "Log": []}))
    while not stop.wait(interval):
        c = store.load(cid)
        if c.status != "running":
            continue
        start = now()
        with tempfile.TemporaryFile() as out:
            try:
                code = exec_.exec_in(root, c, cmd, output=out.fileno())
            except DockyardError as e:
                code = getattr(e, "exit_code", 1)
                out.write(str(e).encode())
            out.seek(0)
            text = out.read(4096).decode(errors="replace")
        if stop.is_set():
            return
        c = store.update(cid, functools.partial(_record, start=start, code=code, text=text, retries=retries))
        assert c.health is not None  # _record set it
        events.append(root, "container", f"health_status: {c.health['Status']}", cid, c.name, {"image": c.image})


def _record(x: Container, start: str, code: int, text: str, retries: int) -> None:
    """Add one check's result to the container's Health (the last 5 kept) and update its status."""
    h = x.health or {"Status": "starting", "FailingStreak": 0, "Log": []}
    h["Log"] = [*h["Log"], {"Start": start, "End": now(), "ExitCode": code, "Output": text}][-5:]
    if code == 0:
        h["Status"], h["FailingStreak"] = "healthy", 0
    else:
        h["FailingStreak"] += 1
        if h["FailingStreak"] >= retries:
            h["Status"] = "unhealthy"
    x.health = h
