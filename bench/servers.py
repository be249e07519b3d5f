"""What the registry benches share about the servers they start: waiting until one answers."""

from __future__ import annotations

import http.client
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
