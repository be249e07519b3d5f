"""Reading a JSON-lines file that another process appends to (container logs, the event journal)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO


def follow(f: BinaryIO, more: Callable[[], bool], poll: float = 0.05) -> Iterator[dict]:
    """Objects of complete lines from f's position; at the end, wait while more() says the writer goes on.

    Once more() is false, one last pass picks up lines written before the writer said it was done.
    """
    pending = b""
    last_pass = False
    while True:
        line = f.readline()
        if line.endswith(b"\n"):
            line, pending = pending + line, b""
            try:
                yield json.loads(line)
            except ValueError:
                pass
            continue
        pending += line
        if last_pass:
            return
        if not more():
            last_pass = True
            continue
        time.sleep(poll)
