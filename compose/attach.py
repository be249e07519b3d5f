"""`up` in the foreground: follow every container's log until they exit, Ctrl-C stops them (twice: kills)."""

from __future__ import annotations

import queue
from typing import TYPE_CHECKING

from compose import labels
from compose.logs import Printer, follow_in_thread, short_name

if TYPE_CHECKING:
    from compose.engine import Compose
    from dockyard.api.containers import Container

INTERRUPTED = 130  # docker compose's status after Ctrl-C


def run(compose: Compose, containers: list[Container], printer: Printer, abort_on_exit: bool = False,
        exit_code_from: str | None = None, timeout: float | None = None) -> int:
    """Print the containers' logs as they come; the exit status as docker compose's `up` computes it."""
    abort_on_exit = abort_on_exit or exit_code_from is not None  # --exit-code-from implies the abort
    ended: queue.Queue[Container] = queue.Queue()
    printer.register(containers)
    running, status = len(containers), 0
    try:
        for c in containers:
            follow_in_thread(c, printer, on_end=ended.put)
        while running:
            try:
                c = ended.get(timeout=0.2)  # a timed get so Ctrl-C reaches this thread
            except queue.Empty:
                continue
            running -= 1
            c.reload()
            code = c.attrs["State"]["ExitCode"]
            printer.note(f"{short_name(c, compose.project.name)} exited with code {code}")
            if abort_on_exit:
                printer.note("Aborting on container exit...")
                _stop_all(compose, containers, timeout)
                status = code
                break
    except KeyboardInterrupt:
        printer.note("Gracefully stopping... (press Ctrl+C again to force)")
        try:
            _stop_all(compose, containers, timeout)
        except KeyboardInterrupt:
            for c in containers:
                c.reload()
                if c.status in ("running", "paused", "restarting"):
                    c.kill()
        return INTERRUPTED
    if exit_code_from is not None:
        chosen = [c for c in containers if c.labels.get(labels.SERVICE) == exit_code_from]
        for c in chosen:
            c.reload()
        status = chosen[0].attrs["State"]["ExitCode"] if chosen else 0
    return status


def _stop_all(compose: Compose, containers: list[Container], timeout: float | None) -> None:
    """Stop every container still running, dependents first."""
    kwargs = {"timeout": timeout} if timeout is not None else {}
    compose.act("stop", sorted({c.labels.get(labels.SERVICE, "") for c in containers}), **kwargs)
