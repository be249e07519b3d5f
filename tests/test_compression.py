"""dockyard.compression: sniffing, streaming round trips, determinism, corrupt input."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import random
import subprocess
import threading

import pytest
import zstandard

from dockyard.compression import CompressionError, compressor, decompressed, sniff

PAYLOAD = random.Random(7).randbytes(300_000) + b"layer data " * 200_000


class ReadOnly:
    """A stream with nothing but read(), like a socket body: no peek, no seek, short reads."""

    def __init__(self, data: bytes):
        self._f = io.BytesIO(data)

    def read(self, n: int = -1) -> bytes:
        # One byte at a time at first: sniffing must not depend on a full first read.
        limit = 1 if self._f.tell() < 8 else 4096
        return self._f.read(min(n, limit) if n > 0 else limit)

    def readinto(self, buf) -> int:
        data = self.read(len(buf))
        buf[:len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True


def compress(kind: str, data: bytes, level: int | None = None) -> bytes:
    sink = io.BytesIO()
    with compressor(sink, kind, level) as w:
        for i in range(0, len(data), 100_000):
            w.write(data[i:i + 100_000])
    assert not sink.closed
    return sink.getvalue()


def read_all(stream) -> bytes:
    out = bytearray()
    while chunk := stream.read(65536):
        out += chunk
    return bytes(out)


@pytest.mark.parametrize("kind,data", [
    ("gzip", gzip.compress(b"x")),
    ("zstd", zstandard.ZstdCompressor().compress(b"x")),
    ("bzip2", bz2.compress(b"x")),
    ("xz", lzma.compress(b"x")),
    ("none", b"etc/passwd\0\0\0"),
    ("none", b""),
    ("none", b"\x1f"),
])
def test_sniff(kind, data):
    assert sniff(data[:6]) == kind


@pytest.mark.parametrize("kind", ["none", "gzip", "zstd"])
def test_round_trip(kind):
    blob = compress(kind, PAYLOAD)
    assert sniff(blob[:6]) == kind
    if kind != "none":
        assert len(blob) < len(PAYLOAD) // 2
    assert read_all(decompressed(io.BytesIO(blob))) == PAYLOAD
    # A stream without peek() is wrapped, and the sniffing consumes nothing.
    assert read_all(decompressed(ReadOnly(blob))) == PAYLOAD


@pytest.mark.parametrize("kind,fn", [("bzip2", bz2.compress), ("xz", lzma.compress)])
def test_reads_bzip2_and_xz(kind, fn):
    assert read_all(decompressed(ReadOnly(fn(PAYLOAD)))) == PAYLOAD


def test_gzip_is_deterministic_without_name_or_mtime(tmp_path):
    with open(tmp_path / "named.gz", "wb") as f:  # a sink with a name must not leak it
        with compressor(f, "gzip") as w:
            w.write(PAYLOAD)
    blob = (tmp_path / "named.gz").read_bytes()
    assert blob == compress("gzip", PAYLOAD)
    flags, mtime = blob[3], blob[4:8]
    assert flags == 0 and mtime == b"\0\0\0\0"
    assert compress("gzip", PAYLOAD, level=1) != blob


def test_concatenated_members_and_frames():
    gz = compress("gzip", PAYLOAD[:1000]) + compress("gzip", PAYLOAD[1000:])
    zs = compress("zstd", PAYLOAD[:1000]) + compress("zstd", PAYLOAD[1000:])
    assert read_all(decompressed(io.BytesIO(gz))) == PAYLOAD
    assert read_all(decompressed(io.BytesIO(zs))) == PAYLOAD


def test_gzip_zero_padding_and_trailing_garbage():
    """Zero padding after a member is skipped, as gzip(1) does; anything else after one is an error."""
    padded = gzip.compress(PAYLOAD[:1000]) + bytes(70_000) + compress("gzip", PAYLOAD[1000:]) + bytes(10)
    assert read_all(decompressed(ReadOnly(padded))) == PAYLOAD
    for junk in (b"junk", bytes(5) + b"junk" * 10):  # (shorter and longer than a gzip header)
        with pytest.raises(CompressionError, match="corrupt gzip data"):
            read_all(decompressed(io.BytesIO(gzip.compress(b"x") + junk)))


@pytest.mark.parametrize("kind", ["gzip", "zstd", "xz", "bzip2"])
def test_truncated_raises(kind):
    if kind in ("gzip", "zstd"):
        blob = compress(kind, PAYLOAD)
    else:
        blob = (lzma.compress if kind == "xz" else bz2.compress)(PAYLOAD)
    for cut in (len(blob) // 2, len(blob) - 3):
        with pytest.raises(CompressionError, match=kind):
            read_all(decompressed(io.BytesIO(blob[:cut])))


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_corrupt_raises(kind):
    blob = bytearray(compress(kind, PAYLOAD))
    blob[len(blob) // 2] ^= 0xFF
    blob[len(blob) // 3] ^= 0xFF
    with pytest.raises(CompressionError) as e:
        read_all(decompressed(io.BytesIO(bytes(blob))))
    assert "\n" not in str(e.value)


def test_garbage_after_gzip_magic_raises():
    with pytest.raises(CompressionError):
        read_all(decompressed(io.BytesIO(b"\x1f\x8b" + os.urandom(100))))


def test_unknown_kind_for_writing():
    with pytest.raises(CompressionError, match="bzip2"):
        with compressor(io.BytesIO(), "bzip2"):
            pass


def test_parallel_gzip_is_plain_gzip_and_independent_of_cpu_count(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    four = compress("gzip", PAYLOAD)
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert compress("gzip", PAYLOAD) == four
    (tmp_path / "p.gz").write_bytes(four)
    plain = subprocess.run(["gzip", "-dc", str(tmp_path / "p.gz")], check=True,
                           capture_output=True).stdout
    assert plain == PAYLOAD
    assert gzip.decompress(compress("gzip", b"")) == b""


def test_error_inside_gzip_block_stops_workers():
    sink = io.BytesIO()
    with pytest.raises(RuntimeError):
        with compressor(sink, "gzip") as w:
            w.write(PAYLOAD)
            raise RuntimeError("producer failed")
    assert not any(t.name.startswith("gzip") for t in threading.enumerate())
