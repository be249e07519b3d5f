"""The background loops of this process (webhook sender, retention scheduler, replication worker, event flusher,
metrics flusher): started here at most once per process and key, woken here, and all stopped here (a worker's
graceful stop, the interpreter's exit, a test's teardown), so none outlives what it serves."""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TypeVar

log = logging.getLogger("registry")
T = TypeVar("T")

# How long stop_all waits for each loop's current step (a webhook being sent, a batch being written).
STOP_TIMEOUT = 10.0


def off_event_loop(call: Callable[[], T]) -> T:
    """`call()` where its blocking calls (SQLite's writes and fsyncs) stall no request: in a gevent worker, whose
    loops are greenlets of the one event loop serving every connection, on a thread of that loop's pool."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None or not monkey.is_module_patched("threading"):
        return call()
    from gevent import get_hub
    return get_hub().threadpool.apply(call)


@dataclass(eq=False)
class Loop:
    """One background loop: `step` runs, then, unless it returned something true (more work waiting), waits
    `interval` seconds or until woken; `final` runs once after the last step when the loop is stopped."""

    name: str
    step: Callable[[], object]
    interval: float
    final: Callable[[], object] | None = None
    stopped: bool = False
    woken: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def wake(self) -> None:
        """Run the next step now."""
        self.woken.set()

    def _run(self) -> None:
        while not self.stopped:
            try:
                busy = self.step()
            except Exception:  # a database hiccup must not end the loop for the life of the process
                log.exception("%s", self.name)
                busy = False
            if not busy and not self.stopped:
                self.woken.wait(self.interval)
                self.woken.clear()
        if self.final is not None:
            try:
                self.final()
            except Exception:
                log.exception("%s: last run", self.name)


_loops: dict[Hashable, Loop] = {}
_lock = threading.Lock()
# Counts stop_all()s and forks: one who started loops under an older epoch (the app's gate) starts them again.
epoch = 1


def ensure(key: Hashable, name: str, step: Callable[[], object], interval: float,
           final: Callable[[], object] | None = None) -> Loop:
    """This process's loop for `key`, started with `step` if there is none running."""
    with _lock:
        loop = _loops.get(key)
        if loop is not None and not loop.stopped:
            return loop
        loop = _loops[key] = Loop(name, step, interval, final)
    # Started outside the lock: under gevent, starting a thread yields, and the lock (made before the worker's
    # monkey-patching) would then block the whole worker for a greenlet that wants it too.
    loop.thread = threading.Thread(target=loop._run, name=name, daemon=True)
    loop.thread.start()
    return loop


def wake(key: Hashable) -> None:
    """Wake the loop for `key`, if this process runs one."""
    loop = _loops.get(key)
    if loop is not None:
        loop.wake()


def stop_all(timeout: float = STOP_TIMEOUT) -> list[str]:
    """Stop every loop of this process and wait for each to end (its `final` run), then any loop such a run
    started; a later `ensure` starts anew. The names of loops still running after `timeout` (a step that hangs)."""
    global epoch
    hung: list[str] = []
    while True:
        with _lock:
            loops = list(_loops.values())
            _loops.clear()
            epoch += 1
        if not loops:
            return hung
        for loop in loops:
            loop.stopped = True
            loop.wake()
        for loop in loops:
            if loop.thread is not None and loop.thread is not threading.current_thread():
                loop.thread.join(timeout)
                if loop.thread.is_alive():
                    log.warning("background loop %s did not stop within %g s", loop.name, timeout)
                    hung.append(loop.name)


def _forget_after_fork() -> None:
    """A forked child runs none of its parent's loops (threads do not survive fork): it starts its own."""
    global _lock, epoch
    epoch += 1
    for loop in _loops.values():
        loop.stopped = True
    _loops.clear()
    _lock = threading.Lock()  # the parent may have held it at the fork


os.register_at_fork(after_in_child=_forget_after_fork)
atexit.register(stop_all)
