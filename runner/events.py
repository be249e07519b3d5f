"""The event journal of a store (`<root>/events.jsonl`): container and image events, appended by anyone."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

MAX_BYTES = 8 << 20  # the journal is trimmed to its newer half past this size


def _path(root: str) -> str:
    return os.path.join(root, "events.jsonl")


def append(root: str, kind: str, action: str, obj_id: str, name: str = "", attributes: dict | None = None) -> None:
    """Record one event (kind: container, image, volume, network); one O_APPEND write, so writers never interleave."""
    t = time.time_ns()
    attrs = {**({"name": name} if name else {}), **(attributes or {})}
    event = {"Type": kind, "Action": action, "Actor": {"ID": obj_id, "Attributes": attrs},
             "status": action, "id": obj_id, "from": attrs.get("image", ""), "scope": "local",
             "time": t // 10**9, "timeNano": t}
    path = _path(root)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, (json.dumps(event) + "\n").encode())
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if size > MAX_BYTES:
        _trim(path)


def _trim(path: str) -> None:
    from dockyard.fsutil import atomic_write, locked

    with locked(path + ".lock"):
        with open(path, "rb") as f:
            data = f.read()
        if len(data) > MAX_BYTES:
            half = data[len(data) // 2:]
            atomic_write(path, half[half.find(b"\n") + 1:])


def matches(event: dict, filters: dict[str, list[str]]) -> bool:
    """docker's --filter keys: type, event, container, image, label-less subset."""
    for key, values in filters.items():
        if key == "type" and event["Type"] not in values:
            return False
        if key in ("event", "status") and event["Action"] not in values:
            return False
        if key in ("container", "volume", "network", "image"):
            if key != "image" and event["Type"] != key:
                return False
            names = {event["id"], event["id"][:12], event["Actor"]["Attributes"].get("name", "")}
            if key == "image":
                names.add(event["Actor"]["Attributes"].get("image", ""))
            if not names & set(values) and not any(event["id"].startswith(v) for v in values):
                return False
    return True


def read(root: str, since_ns: int = 0, until_ns: int | None = None, follow: bool = False,
         filters: dict[str, list[str]] | None = None) -> Iterator[dict]:
    """Events in order, from `since_ns`; with follow, keep waiting for new ones (until `until_ns`)."""
    from runner import jsonl  # (here: appending, which every `run` does, needs none of it)

    path = _path(root)
    while not os.path.exists(path):
        if not follow:
            return
        time.sleep(0.1)
    with open(path, "rb") as f:
        for ev in jsonl.follow(f, lambda: follow and (until_ns is None or time.time_ns() <= until_ns), 0.1):
            if until_ns is not None and ev["timeNano"] > until_ns:
                return
            if ev["timeNano"] >= since_ns and matches(ev, filters or {}):
                yield ev
