"""Content digests (`algo:hex`): parsing, hashing streams, and verifying writers."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Protocol

from dockyard.errors import DigestMismatch, DockyardError

if TYPE_CHECKING:
    import hashlib

# Lengths per the OCI image spec's registered algorithms.
ALGORITHMS = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)\Z")
_HEX_RE = re.compile(r"[a-f0-9]+")
# The unit a stream is read, hashed and written by. A pull's threads each hold a few buffers of it, and every page of
# a fresh buffer costs a page fault (~3 us on this VM), the first time in each process: at 1 MiB a pull in a new
# process faulted in ~50 MB (`mixed`, 100 MB: 14k faults; at 256 KiB 4k, and the same pull 5% faster).
CHUNK = 256 << 10


def new_hash(algorithm: str, data: bytes = b"") -> hashlib._Hash:
    """A hash object of `algorithm` (hashlib, which loads OpenSSL, is imported on first use: `run` needs none)."""
    import hashlib

    return hashlib.new(algorithm, data)


class Reader(Protocol):
    """A byte stream to read: a file, or a wrapper that hashes, tees or decompresses on the way."""

    def read(self, n: int, /) -> bytes: ...


class InvalidDigest(DockyardError):
    """A string is not a well-formed digest of a supported algorithm."""


@dataclass(frozen=True, order=True)
class Digest:
    """A content digest such as sha256:abc…"""

    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse and validate `algo:hex`; only sha256 and sha512 are accepted."""
        m = _DIGEST_RE.match(text or "")
        if not m:
            raise InvalidDigest(f"invalid digest: {text!r}")
        algo, hexpart = m.group(1), m.group(2)
        if algo not in ALGORITHMS:
            raise InvalidDigest(f"unsupported digest algorithm: {algo!r}")
        if len(hexpart) != ALGORITHMS[algo] or not _HEX_RE.fullmatch(hexpart):
            raise InvalidDigest(f"invalid digest: {text!r}")
        return cls(algo, hexpart)

    @classmethod
    def of_bytes(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        """Digest of an in-memory byte string."""
        return cls(algorithm, new_hash(algorithm, data).hexdigest())

    @classmethod
    def of_file(cls, path: str, algorithm: str = "sha256") -> Digest:
        """Digest of a file's content, read in chunks."""
        with open(path, "rb") as f:
            return cls.of_stream(f, algorithm)[0]

    @classmethod
    def of_stream(cls, stream: Reader, algorithm: str = "sha256") -> tuple[Digest, int]:
        """Digest and size of everything left in a stream."""
        h = new_hash(algorithm)
        size = 0
        while chunk := stream.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
        return cls(algorithm, h.hexdigest()), size

    def hasher(self) -> hashlib._Hash:
        """A fresh hash object of this digest's algorithm."""
        return new_hash(self.algorithm)

    @property
    def short(self) -> str:
        """The 12-hex-digit form docker shows as an ID."""
        return self.hex[:12]

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


class HashingReader:
    """Wrap a binary stream, hashing and counting every byte read through it."""

    def __init__(self, stream: Reader, algorithm: str = "sha256"):
        self._stream = stream
        self._hash = new_hash(algorithm)
        self.algorithm = algorithm
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        self._hash.update(data)
        self.size += len(data)
        return data

    def readinto(self, buf) -> int:
        n = self._stream.readinto(buf)  # type: ignore[attr-defined]  # offered only over streams that have it
        if n:
            self._hash.update(memoryview(buf)[:n])
            self.size += n
        return n

    def digest(self) -> Digest:
        """The digest of what has been read so far."""
        return Digest(self.algorithm, self._hash.hexdigest())


class HashingWriter:
    """Wrap a binary sink, hashing and counting every byte written through it."""

    def __init__(self, sink: BinaryIO, algorithm: str = "sha256"):
        self._sink = sink
        self._hash = new_hash(algorithm)
        self.algorithm = algorithm
        self.size = 0

    def write(self, data) -> int:
        self._hash.update(data)
        self.size += len(data)
        return self._sink.write(data)

    def flush(self) -> None:
        self._sink.flush()

    def digest(self) -> Digest:
        """The digest of what has been written so far."""
        return Digest(self.algorithm, self._hash.hexdigest())


def verify(expected: Digest, actual: Digest, what: str, size: int | None = None,
           actual_size: int | None = None) -> None:
    """Raise DigestMismatch naming `what` unless digest (and size, when given) match."""
    if expected != actual:
        raise DigestMismatch(f"digest mismatch for {what}: expected {expected}, got {actual}")
    if size is not None and actual_size is not None and size != actual_size:
        raise DigestMismatch(f"size mismatch for {what}: expected {size} bytes, got {actual_size}")


def chain_ids(diff_ids: Iterable[Digest]) -> list[Digest]:
    """Chain IDs per the image spec: ChainID(n) = sha256(ChainID(n-1) + " " + DiffID(n))."""
    out: list[Digest] = []
    for d in diff_ids:
        out.append(d if not out else Digest.of_bytes(f"{out[-1]} {d}".encode()))
    return out
