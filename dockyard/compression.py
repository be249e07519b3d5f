"""Layer compression: sniff the format from magic bytes, stream-decompress, stream-compress."""

from __future__ import annotations

import bz2
import contextlib
import io
import lzma
import os
import struct
import zlib
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO, Protocol

from zlib_ng import zlib_ng

from dockyard.digest import CHUNK, Reader
from dockyard.errors import DockyardError

if TYPE_CHECKING:
    from concurrent.futures import Future

# zlib level 1-3 use deflate's fast matcher: on layer-like data level 3 runs about twice as fast
# as Go's default (6) for output only a few percent larger, which is the better trade on the build
# hot path; callers wanting docker-sized blobs pass level=6.
GZIP_LEVEL = 3
ZSTD_LEVEL = 3
_GZIP_BLOCK = 1 << 20
_GZIP_WINDOW = 32 << 10  # deflate's maximum back-reference distance
# zlib's window bits for a gzip wrapper: zlib itself parses the header and checks each member's CRC and size.
_GZIP_WBITS = 16 + zlib.MAX_WBITS
# Input per gzip decompress call: small after a member ends (zlib copies what follows the member, so a stream
# of tiny members costs little), doubling up to 1 MiB within a member (few calls, so the GIL is seldom retaken).
_GZIP_SLICE_MIN = 16 << 10
# Bounded input per zstd decompress call: zstd's decompressobj has no output limit, so small
# input slices keep a hostile high-ratio frame from ballooning memory in one call.
_ZSTD_SLICE = 16 << 10

_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
)
SNIFF_BYTES = 6
# zlib-ng's stub declares `error` as an instance; it is the exception class its decompressors raise.
_ZLIB_ERROR: type[Exception] = zlib_ng.error  # type: ignore[assignment]


class CompressionError(DockyardError):
    """Compressed data is corrupt, truncated, or of an unsupported kind."""


def sniff(head: bytes) -> str:
    """Name the compression of a stream from its first bytes: gzip, zstd, bzip2, xz or none."""
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    return "none"


def decompressed(stream: Reader) -> BinaryIO:
    """A readable stream of the plain bytes of `stream`, whose compression is sniffed, not consumed."""
    head = _read_head(stream, SNIFF_BYTES)
    # The sniffed bytes are served again first, so nothing is lost whatever the stream supports.
    plain = io.BufferedReader(_Raw(stream, head), CHUNK)
    kind = sniff(head)
    if kind == "none":
        return plain
    inner: _Decompressor
    if kind == "gzip":
        inner = _GzipReader(plain)
    elif kind == "bzip2":
        inner = bz2.BZ2File(plain, "rb")
    elif kind == "xz":
        inner = lzma.LZMAFile(plain, "rb")  # noqa: SIM115 (the returned reader owns it)
    else:
        inner = _ZstdReader(plain)
    return io.BufferedReader(_Checked(inner, kind), CHUNK)


def _read_head(stream: Reader, n: int) -> bytes:
    """The first n bytes (fewer only at end of stream), however short the stream's reads are."""
    head = b""
    while len(head) < n:
        more = stream.read(n - len(head))
        if not more:
            break
        head += more
    return head


class _Raw(io.RawIOBase):
    """Adapt anything with read() (a HashingReader, an HTTP body) for io.BufferedReader, after `head`."""

    def __init__(self, stream: Reader, head: bytes):
        self._stream = stream
        self._head = head

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        if self._head:
            n = min(len(buf), len(self._head))
            buf[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        if hasattr(self._stream, "readinto"):
            return self._stream.readinto(buf)
        data = self._stream.read(len(buf))
        buf[:len(data)] = data
        return len(data)


class _Decompressor(Protocol):
    """What _Checked wraps: a reader of decompressed bytes."""

    def readinto(self, buf: memoryview, /) -> int: ...


class _Checked(io.RawIOBase):
    """Turn a decompressor's many exception types into one CompressionError naming the format."""

    def __init__(self, inner: _Decompressor, kind: str):
        self._inner = inner
        self._kind = kind

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        try:
            return self._inner.readinto(buf)
        except EOFError:
            raise CompressionError(f"{self._kind} data is truncated") from None
        except (_ZLIB_ERROR, lzma.LZMAError) as e:
            raise CompressionError(f"corrupt {self._kind} data: {e}") from None
        except OSError as e:
            # Decompressors (BadGzipFile, bz2) raise OSError without errno; real I/O errors have one.
            if e.errno is not None:
                raise
            raise CompressionError(f"corrupt {self._kind} data: {e}") from None


class _GzipReader(io.RawIOBase):
    """Multi-member gzip decoder in big steps (gzip.GzipFile decodes 8 KiB at a time, taking the GIL back each
    time, which costs dearly beside other threads); zero padding after a member is skipped, as gzip(1) does."""

    def __init__(self, source: io.BufferedIOBase):
        self._source = source
        self._obj: zlib_ng._Decompress | None = zlib_ng.decompressobj(_GZIP_WBITS)
        self._buf: bytearray | None = None  # for the reads after a first full one
        self._in = memoryview(b"")  # the last read from the source; zlib has been given it up to _pos
        self._pos = 0
        self._slice = _GZIP_SLICE_MIN

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        if not len(buf):
            return 0  # a max_length of 0 would mean no limit to zlib
        while True:
            if self._pos == len(self._in):
                self._in, self._pos = self._refill(), 0
                if not self._in:
                    if self._obj is None:
                        return 0
                    raise EOFError
            if self._obj is None:  # between members
                head = bytes(self._in[self._pos:self._pos + _GZIP_SLICE_MIN])
                zeros = len(head) - len(head.lstrip(b"\0"))
                self._pos += zeros
                if zeros == len(head):
                    continue
                self._obj, self._slice = zlib_ng.decompressobj(_GZIP_WBITS), _GZIP_SLICE_MIN
            data = self._in[self._pos:self._pos + self._slice]
            out = self._obj.decompress(data, len(buf))
            # At a member's end what follows it is in unused_data (unconsumed_tail may repeat it).
            left = len(self._obj.unused_data if self._obj.eof else self._obj.unconsumed_tail)
            self._pos += len(data) - left
            if self._obj.eof:
                self._obj = None
            elif not left:
                self._slice = min(2 * self._slice, CHUNK)
            if out:
                buf[:len(out)] = out
                return len(out)

    def _refill(self) -> memoryview:
        """The source's next bytes: a small stream's one read as it comes, a big one's further reads into one
        buffer (a fresh one per read faulted in and zeroed new pages each time)."""
        if self._buf is None:
            data = self._source.read(CHUNK)
            if len(data) == CHUNK:
                self._buf = bytearray(CHUNK)
            return memoryview(data)
        return memoryview(self._buf)[:self._source.readinto(self._buf)]


class _ZstdReader(io.RawIOBase):
    """Multi-frame zstd decoder that, unlike zstandard's stream_reader, notices truncation."""

    def __init__(self, source: BinaryIO):
        import zstandard  # ~5 ms to import: only for zstd layers

        self._source = source
        self._dctx = zstandard.ZstdDecompressor()
        self._error = zstandard.ZstdError
        self._obj = self._dctx.decompressobj()
        self._pending = b""
        self._out = b""
        self._pos = 0
        self._started = False

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        while self._pos >= len(self._out):
            if not self._fill():
                return 0
        n = min(len(buf), len(self._out) - self._pos)
        buf[:n] = self._out[self._pos:self._pos + n]
        self._pos += n
        return n

    def _fill(self) -> bool:
        """Decode the next slice of input; False at a clean end of the last frame."""
        if not self._pending:
            self._pending = self._source.read(CHUNK)
            if not self._pending:
                if self._started and not self._obj.eof:
                    raise EOFError
                return False
        if self._obj.eof:
            # A finished frame with more input after it: the next frame (pzstd/concatenated output).
            self._obj = self._dctx.decompressobj()
        piece, self._pending = self._pending[:_ZSTD_SLICE], self._pending[_ZSTD_SLICE:]
        self._started = True
        try:
            self._out = self._obj.decompress(piece)
        except self._error as e:
            raise CompressionError(f"corrupt zstd data: {e}") from None
        if self._obj.eof and self._obj.unused_data:
            self._pending = self._obj.unused_data + self._pending
        self._pos = 0
        return True


@contextlib.contextmanager
def compressor(sink: BinaryIO, kind: str, level: int | None = None) -> Iterator[BinaryIO]:
    """Yield a writer compressing into `sink`; leaving the block writes the trailer, `sink` stays open."""
    if kind == "none":
        yield sink
        return
    if kind == "gzip":
        gz = _ParallelGzip(sink, GZIP_LEVEL if level is None else level)
        try:
            yield gz  # type: ignore[misc]
        except BaseException:
            gz.abandon()
            raise
        gz.close()
        return
    if kind == "zstd":
        import zstandard

        # A frame checksum, so corruption is caught on read as it is with gzip's CRC.
        cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL if level is None else level,
                                        write_checksum=True)
        writer = cctx.stream_writer(sink, closefd=False)
        yield writer
        writer.close()
        return
    raise CompressionError(f"unsupported compression for writing: {kind!r}")


class _ParallelGzip:
    """A single-member gzip writer that deflates 1 MiB blocks on all CPUs, pigz-style.

    Each block is primed with the previous 32 KiB as its dictionary and ends in a sync flush, so
    the output is one ordinary deflate stream, compressing like serial gzip; it depends only on the
    input and level, never on the thread count, keeping blobs reproducible. zlib releases the GIL
    while it deflates, so the threads really run in parallel.
    """

    def __init__(self, sink: BinaryIO, level: int):
        self._sink = sink
        self._level = level
        self._buf = bytearray()
        self._crc = 0
        self._size = 0
        self._dict = b""
        from concurrent.futures import ThreadPoolExecutor  # with the logging it imports, ~8 ms: only to write

        workers = os.cpu_count() or 1
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="gzip") if workers > 1 else None
        self._window = 2 * workers  # blocks in flight: enough to keep every CPU busy, bounded memory
        self._pending: deque[Future[bytes] | bytes] = deque()
        # Header: deflate, no flags, mtime 0, XFL 0, OS unknown (255) - no name, no time: reproducible.
        sink.write(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")

    def write(self, data) -> int:
        self._buf += data
        if len(self._buf) >= _GZIP_BLOCK:
            view = memoryview(self._buf)
            end = len(view) - len(view) % _GZIP_BLOCK
            for start in range(0, end, _GZIP_BLOCK):
                self._block(bytes(view[start:start + _GZIP_BLOCK]), last=False)
            view.release()
            del self._buf[:end]
        return len(data)

    def flush(self) -> None:
        """Nothing to do: blocks are only complete at 1 MiB or at close."""

    def close(self) -> None:
        """Deflate the rest, write every block in order, then the CRC/size trailer."""
        self._block(bytes(self._buf), last=True)
        self._buf = bytearray()
        while self._pending:
            self._sink.write(self._result(self._pending.popleft()))
        self._sink.write(struct.pack("<II", self._crc, self._size & 0xFFFFFFFF))
        self.abandon()

    def abandon(self) -> None:
        """Stop the worker threads (after an error, nothing more is written)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _block(self, block: bytes, last: bool) -> None:
        self._crc = zlib.crc32(block, self._crc)
        self._size += len(block)
        if self._pool is None:
            self._pending.append(_deflate(block, self._dict, self._level, last))
        else:
            self._pending.append(self._pool.submit(_deflate, block, self._dict, self._level, last))
        self._dict = block[-_GZIP_WINDOW:]
        while len(self._pending) > self._window:
            self._sink.write(self._result(self._pending.popleft()))

    @staticmethod
    def _result(item: Future[bytes] | bytes) -> bytes:
        return item if isinstance(item, bytes) else item.result()


def _deflate(block: bytes, zdict: bytes, level: int, last: bool) -> bytes:
    """Raw deflate of one block, primed with the previous window, ending byte-aligned (or final)."""
    if zdict:
        c = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, zdict=zdict)
    else:
        c = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(block) + c.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)
