"""What the registry benches share about the servers they start: waiting until one answers, the CPU it used."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

# A proxy's answers while no server behind it is up yet (HAProxy: 503); any other answer, 401 included, means up.
_GATEWAY_ERRORS = frozenset({502, 503, 504})


def wait_up(url: str, proc: subprocess.Popen, timeout: float = 60, log: Path | None = None) -> None:
    """Return once the server at `url` answers GET /v2/; exit (with the tail of its `log`, if any) when `proc` ends
    or `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    tail = (lambda: ": " + log.read_text(errors="replace")[-2000:]) if log else (lambda: "")
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{url} exited with {proc.returncode}{tail()}")
        conn = http.client.HTTPConnection(urllib.parse.urlsplit(url).netloc, timeout=1)
        try:
            conn.request("GET", "/v2/")
            if conn.getresponse().status not in _GATEWAY_ERRORS:
                return
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        time.sleep(0.1)
    sys.exit(f"{url} did not start{tail()}")


def process_cpu(pid: int, children: bool = True, reaped: bool = False) -> float:
    """CPU seconds a process has used so far: with `children`, its live child processes' too (gunicorn's workers);
    with `reaped`, its children's that have exited and been waited for (a resident server's per-command forks)."""
    pids = [pid, *(Path(f"/proc/{pid}/task/{pid}/children").read_text().split() if children else ())]
    ticks = 0
    for p in pids:
        fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
        if reaped and p == pid:
            ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")
