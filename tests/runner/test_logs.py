"""The json-file log reader: tail by reading backwards, since/until, on a log too big to read whole cheaply."""

from __future__ import annotations

import io
import json
import os
import random

from runner import logs


def _big_log(root: str, cid: str, count: int) -> list[dict]:
    """A log of `count` entries with increasing times (written as the monitor writes them)."""
    os.makedirs(os.path.join(root, "containers", cid))
    entries = [{"log": f"line {i} " + "x" * (i % 300) + "\n", "stream": "stderr" if i % 7 == 0 else "stdout",
                "time": f"2026-01-01T00:{i // 60000 % 60:02d}:{i // 1000 % 60:02d}.{i % 1000:03d}000000Z"}
               for i in range(count)]
    with open(logs.log_path(root, cid), "wb") as f:
        f.writelines((json.dumps(e) + "\n").encode() for e in entries)
    return entries


def _bytes_read() -> int:
    """What this process has read by system calls so far (the kernel's count, not a clock)."""
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("rchar:"))


def test_tail_reads_backwards_from_the_end(tmp_path):
    cid = "c" * 64
    entries = _big_log(str(tmp_path), cid, 200_000)  # ~40 MB
    assert os.path.getsize(logs.log_path(str(tmp_path), cid)) > 30 << 20
    before = _bytes_read()
    assert list(logs.read(str(tmp_path), cid, tail=5)) == entries[-5:]
    assert _bytes_read() - before < 1 << 20  # a few blocks, not the whole file
    assert list(logs.read(str(tmp_path), cid, tail=0)) == []
    assert list(logs.read(str(tmp_path), cid, tail=3000)) == entries[-3000:]
    since = entries[-10]["time"]
    assert list(logs.read(str(tmp_path), cid, tail=100, since=since)) == entries[-10:]
    until = entries[-3]["time"]
    assert list(logs.read(str(tmp_path), cid, tail=5, until=until)) == entries[-5:-2]
    assert list(logs.read(str(tmp_path), cid, since=entries[-2]["time"])) == entries[-2:]
    assert sum(1 for _ in logs.read(str(tmp_path), cid)) == len(entries)


def test_reverse_lines_across_block_edges(monkeypatch):
    monkeypatch.setattr(logs, "BLOCK", 7)
    rng = random.Random(1)
    for _ in range(300):
        lines = [rng.choice([b"x", b"\r", b"{}"]) * rng.randint(0, 20) + b"\n" for _ in range(rng.randint(0, 30))]
        if rng.random() < 0.3:
            lines.append(b"partial")  # a line still being written
        data = b"".join(lines)
        assert list(logs.reverse_lines(io.BytesIO(data), len(data))) == lines[::-1]


def test_no_log_yet(tmp_path):
    assert list(logs.read(str(tmp_path), "d" * 64, tail=3)) == []
    assert logs.size(str(tmp_path), "d" * 64) == 0
