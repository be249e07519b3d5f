"""A container's json-file log (docker's format): the writer the monitor feeds, and the reader of `logs`."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC
from typing import TYPE_CHECKING, BinaryIO

from runner.containers import Containers, now

if TYPE_CHECKING:
    from datetime import datetime

    from runner.attach import Hub

LOG_CHUNK = 16 * 1024  # a pipe read; a line longer than this is logged in pieces, as docker does
BLOCK = 64 * 1024  # what the backwards reader reads at a time


def log_path(root: str, cid: str) -> str:
    return os.path.join(Containers(root).path(cid), f"{cid}-json.log")


def size(root: str, cid: str) -> int:
    """The log's length now (0 before the first output): where following from now starts."""
    try:
        return os.path.getsize(log_path(root, cid))
    except FileNotFoundError:
        return 0


class JsonLog:
    """docker's json-file log: one {"log","stream","time"} object per line."""

    def __init__(self, path: str):
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.lock = threading.Lock()

    def write(self, stream: str, text: str) -> None:
        line = json.dumps({"log": text, "stream": stream, "time": now()}) + "\n"
        with self.lock:
            os.write(self.fd, line.encode())

    def close(self) -> None:
        os.close(self.fd)


def pump(fd: int, stream: str, log: JsonLog | None, tee: int | None, hub: Hub | None = None) -> None:
    """Copy a container output fd into the log (whole lines), to `tee` and to attached clients (`hub`), until EOF
    (or EIO on a pty)."""
    pending = b""
    while True:
        try:
            chunk = os.read(fd, LOG_CHUNK)
        except OSError:  # EIO: the pty's other side is closed
            chunk = b""
        if not chunk:
            break
        if tee is not None:
            try:
                os.write(tee, chunk)
            except OSError:
                tee = None
        if hub is not None:
            hub.send(stream, chunk)
        if log is None:
            continue
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            log.write(stream, line.decode(errors="replace") + "\n")
        if len(pending) >= LOG_CHUNK:
            log.write(stream, pending.decode(errors="replace"))
            pending = b""
    if pending and log is not None:
        log.write(stream, pending.decode(errors="replace"))
    os.close(fd)


# --- reading ---


def reverse_lines(f: BinaryIO, end: int) -> Iterator[bytes]:
    """The lines of f before offset `end`, last first, reading blocks backwards (a tail costs what it shows)."""
    pos, carry = end, b""
    while pos > 0:
        step = min(BLOCK, pos)
        pos -= step
        f.seek(pos)
        data = f.read(step) + carry
        # Unless at the file's start, the first line may begin in the block before: carry it into that round.
        cut = data.find(b"\n") + 1 if pos > 0 else 0
        if pos > 0 and not cut:
            carry = data
            continue
        carry, body = data[:cut], data[cut:]
        *lines, last = body.split(b"\n")  # not splitlines(): that also splits at \r
        if last:
            yield last
        for line in reversed(lines):
            yield line + b"\n"


def _parse(raw: bytes) -> dict | None:
    try:
        entry = json.loads(raw)
    except ValueError:
        return None
    return entry if isinstance(entry, dict) and "log" in entry else None


def read(root: str, cid: str, tail: int | None = None, since: str | None = None, until: str | None = None,
         follow: bool = False) -> Iterator[dict]:
    """The log's entries in order: the last `tail` (None: all) of those from `since` on, ending before one later
    than `until` (RFC 3339 strings); with follow, then the new ones until the container stops."""
    path = log_path(root, cid)
    offset = 0
    try:
        # Opened apart from `with f:` below so that a missing log (no output yet) is told from errors in reading.
        f = open(path, "rb")  # noqa: SIM115
    except FileNotFoundError:
        f = None
    if f is not None:
        with f:
            offset = os.fstat(f.fileno()).st_size
            if tail is None:
                f.seek(0)
                picked: Iterable[dict] = (e for e in map(_parse, iter(f.readline, b""))
                                          if e and not (since and e["time"] < since))
            else:
                last: list[dict] = []
                for raw in reverse_lines(f, offset) if tail else ():
                    e = _parse(raw)
                    if e is None:
                        continue
                    if since and e["time"] < since:
                        break  # the log is in time order: nothing before this one is newer
                    last.append(e)
                    if len(last) == tail:
                        break
                last.reverse()
                picked = last
            for e in picked:
                if until and e["time"] > until:
                    return
                yield e
    if follow:
        yield from follow_from(root, cid, offset, until)


def follow_from(root: str, cid: str, offset: int = 0, until: str | None = None) -> Iterator[dict]:
    """Entries from byte `offset` on, waiting for more while the container runs (or is about to)."""
    import time

    from runner import jsonl

    store = Containers(root)

    def running() -> bool:
        c = store.load(cid)
        return c.running or c.status == "created"

    path = log_path(root, cid)
    while not os.path.exists(path):
        if not running():
            return
        time.sleep(0.02)
    with open(path, "rb") as f:
        f.seek(offset)
        for entry in jsonl.follow(f, running):
            if until and entry["time"] > until:
                return
            yield entry


def write_entry(entry: dict, timestamps: bool = False) -> None:
    """One log entry to our stdout or stderr (its stream's), as `logs` and an attached start print it."""
    import sys

    out = sys.stdout.buffer if entry.get("stream") != "stderr" else sys.stderr.buffer
    out.write((f"{entry['time']} {entry['log']}" if timestamps else entry["log"]).encode())
    out.flush()


def timestamp(when: str | int | float | datetime | None) -> str | None:
    """docker's --since/--until: RFC 3339, a unix time, a duration before now (42m) or a datetime; as RFC 3339."""
    at = moment(when)
    return None if at is None else at.strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def moment(when: str | int | float | datetime | None) -> datetime | None:
    """docker's --since/--until (as `timestamp` takes them) as an aware datetime in UTC; None when not given."""
    if when is None or when == "":
        return None
    from datetime import datetime, timedelta

    from dockyard.errors import DockyardError

    at: datetime | None
    if isinstance(when, datetime):
        at = when
    elif isinstance(when, (int, float)) or when.replace(".", "", 1).isdigit():
        at = datetime.fromtimestamp(float(when), UTC)
    else:
        from dockyard.changes import parse_duration
        from dockyard.image import parse_time

        try:
            at = datetime.now(UTC) - timedelta(microseconds=parse_duration(when) / 1000)
        except DockyardError:
            at = parse_time(when)
    if at is None:
        raise DockyardError(f"invalid time {when!r}")
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC)
