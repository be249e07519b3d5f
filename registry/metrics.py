"""Prometheus counters shared by all gunicorn workers: each process flushes its counts to a file under the
root at most once a second, and a scrape sums every other process's file with its own live counts (dead workers'
files keep totals monotonic).  A failed flush (disk full) keeps the counts for the next one."""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections import defaultdict
from typing import TYPE_CHECKING

from dockyard.fsutil import DiskFull, atomic_write
from registry import background

if TYPE_CHECKING:
    from registry.background import Loop

log = logging.getLogger("registry")

_FLUSH_INTERVAL = 1.0


class Metrics:
    """Per-process counters of requests (route, method, status) and bytes in/out."""

    def __init__(self, directory: str):
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        self._lock = threading.Lock()
        self._failing = False  # the last flush failed (warned once until one succeeds)
        self._reset()
        self._flusher: Loop | None = None

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._file = os.path.join(self.directory, f"{self._pid}-{uuid.uuid4().hex[:8]}.json")
        self._requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self._bytes = {"in": 0, "out": 0}
        self._dirty = False

    def _follow_fork(self) -> None:
        """In a newly forked worker, start counts and a file of its own (call with the lock held)."""
        if os.getpid() != self._pid:
            self._reset()

    def observe(self, route: str, method: str, status: str, bytes_in: int, bytes_out: int) -> None:
        """Count one finished request."""
        with self._lock:
            self._follow_fork()
            self._requests[(route, method, status)] += 1
            self._bytes["in"] += bytes_in
            self._bytes["out"] += bytes_out
            self._dirty = True
        flusher = self._flusher
        if flusher is None or flusher.stopped:  # none yet, stopped, or its parent's before a fork
            # Started outside the lock: under gevent, starting a thread switches greenlets (see background.ensure).
            self._flusher = background.ensure(("metrics-flush", id(self)), "metrics-flush", self._flush_step,
                                              _FLUSH_INTERVAL, final=self._flush_step)

    def _flush_step(self) -> None:
        try:
            self.flush()
        except (OSError, DiskFull) as e:
            # Disk full, or the directory gone or read-only: the counts wait in memory for the next round.
            if not self._failing:
                log.warning("cannot write metrics to %s (will retry): %s", self.directory, e)
            self._failing = True
        else:
            self._failing = False

    def flush(self) -> None:
        """Write this process's counters to its file if they changed."""
        with self._lock:
            if not self._dirty or os.getpid() != self._pid:
                return
            data = self._snapshot()
            self._dirty = False
            path = self._file
        try:
            atomic_write(path, json.dumps(data).encode())
        except BaseException:
            with self._lock:
                self._dirty = True
            raise

    def _snapshot(self) -> dict:
        """This process's counts as stored in its file (call with the lock held)."""
        return {"requests": [[*k, v] for k, v in self._requests.items()], "bytes": dict(self._bytes)}

    def render(self, uploads_in_progress: int) -> str:
        """The exposition text: every other process's file plus this process's live counts."""
        with self._lock:
            self._follow_fork()
            own, own_file = self._snapshot(), os.path.basename(self._file)
        stored = [own]
        for name in os.listdir(self.directory):
            if not name.endswith(".json") or name == own_file:
                continue
            try:
                with open(os.path.join(self.directory, name), encoding="utf-8") as f:
                    stored.append(json.load(f))
            except (OSError, ValueError):
                continue
        requests: dict[tuple[str, str, str], int] = defaultdict(int)
        totals = {"in": 0, "out": 0}
        for data in stored:
            for route, method, status, count in data.get("requests", []):
                requests[(route, method, status)] += count
            for k in totals:
                totals[k] += data.get("bytes", {}).get(k, 0)
        lines = ["# HELP registry_http_requests_total HTTP requests by route, method and status.",
                 "# TYPE registry_http_requests_total counter"]
        for (route, method, status), count in sorted(requests.items()):
            lines.append(f'registry_http_requests_total{{route="{_esc(route)}",method="{method}",'
                         f'status="{status}"}} {count}')
        lines += ["# HELP registry_http_request_bytes_total Request body bytes received.",
                  "# TYPE registry_http_request_bytes_total counter",
                  f"registry_http_request_bytes_total {totals['in']}",
                  "# HELP registry_http_response_bytes_total Response body bytes sent.",
                  "# TYPE registry_http_response_bytes_total counter",
                  f"registry_http_response_bytes_total {totals['out']}",
                  "# HELP registry_uploads_in_progress Open blob upload sessions.",
                  "# TYPE registry_uploads_in_progress gauge",
                  f"registry_uploads_in_progress {uploads_in_progress}", ""]
        return "\n".join(lines)


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
