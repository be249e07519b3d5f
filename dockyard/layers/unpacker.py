"""Unpack a layer while its blob is still arriving: the bytes read from the source are handed to a thread (or,
through a Tee, to any sink)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from dockyard.digest import CHUNK, Digest, Reader
from dockyard.layers.apply import apply_layer

# Chunks queued ahead of the unpacker before the source's reader waits: bounds memory when unpacking is slower.
_DEPTH = 8
# Buffers kept for the next layers (at most _DEPTH): the bytes fed pass through the same few pages, where a fresh
# buffer per read could fault in and zero new ones each time (~3 us a page on this VM).
_spare: list[bytearray] = []
_spare_lock = threading.Lock()


class _Stopped(Exception):
    """Raised inside the unpacking thread when its input is abandoned (the download failed)."""


class StreamUnpacker:
    """Applies a layer, in overlay form, into an empty `root` on its own thread from the bytes `feed` hands
    over (a Tee's sink); `finish` gives its diff_id or raises why it would not unpack."""

    def __init__(self, root: str):
        self._chunks: deque[tuple[bytearray, memoryview]] = deque()  # a buffer, and the bytes fed into it
        self._free: list[bytearray] = []  # buffers consumed, to be filled again
        self._buffers = 0  # taken from the spares or made, at most _DEPTH
        self._held: bytearray | None = None  # the buffer of the chunk being consumed
        self._head = memoryview(b"")  # the unread rest of the chunk being consumed
        self._cond = threading.Condition()
        self._ended = False  # no more input: the reader sees end of stream
        self._stopped = False  # input abandoned: the reader raises
        self._done = False  # the thread has returned
        self._diff_id: Digest | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(root,), name="layer-unpack", daemon=True)
        self._thread.start()

    def feed(self, data: bytes | memoryview) -> None:
        """Hand over the next bytes (copied: the caller's buffer may be reused), waiting while the unpacker is far
        behind.

        Once the unpack has failed, input is dropped: the blob is still read whole, so a blob that is not its
        digest is reported as such (the more exact fault) before the unpack's error.
        """
        with self._cond:
            while not self._free and self._buffers >= _DEPTH and not self._done:
                self._cond.wait()
            if self._done:
                return
            buf = self._free.pop() if self._free else self._take_buffer()
        n = len(data)
        if len(buf) < n:
            buf = bytearray(n)
        memoryview(buf)[:n] = data  # (a bytearray's own slice assignment would copy `data` once more first)
        with self._cond:
            if not self._done:
                self._chunks.append((buf, memoryview(buf)[:n]))
                self._cond.notify_all()

    def _take_buffer(self) -> bytearray:
        """One more buffer for this layer: a spare, or a new one."""
        self._buffers += 1
        with _spare_lock:
            return _spare.pop() if _spare else bytearray(CHUNK)

    def finish(self) -> Digest:
        """End the input, wait for the unpack; the layer's diff_id, or its failure raised."""
        with self._cond:
            self._ended = True
            self._cond.notify_all()
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._diff_id is not None
        return self._diff_id

    def abort(self) -> None:
        """Abandon the input and wait for the thread to stop (its partial tree is the caller's to remove)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join()

    def _run(self, root: str) -> None:
        try:
            self._diff_id = apply_layer(self, root, overlay=True)  # type: ignore[arg-type]
        except _Stopped:
            pass
        except BaseException as e:  # handed to finish(), in the thread that owns the pull
            self._error = e
        finally:
            with self._cond:
                self._done = True
                if self._held is not None:
                    self._free.append(self._held)
                self._free.extend(buf for buf, _ in self._chunks)
                with _spare_lock:
                    _spare.extend(self._free[:_DEPTH - len(_spare)])
                self._chunks.clear()
                self._free.clear()
                self._held, self._head = None, memoryview(b"")
                self._cond.notify_all()

    def readinto(self, buf) -> int:
        """The reading side, for the unpacking thread: the next bytes fed, 0 at the end of the input."""
        if not self._head:
            with self._cond:
                while not self._chunks and not self._ended and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    raise _Stopped()
                if not self._chunks:
                    return 0
                if self._held is not None:
                    self._free.append(self._held)
                self._held, self._head = self._chunks.popleft()
                self._cond.notify_all()
        n = min(len(buf), len(self._head))
        buf[:n] = self._head[:n]
        self._head = self._head[n:]
        return n

    def read(self, n: int) -> bytes:
        buf = bytearray(n)
        got = self.readinto(buf)
        return bytes(buf[:got])


class Tee:
    """A stream whose every byte read is also handed to `sink`: bytes from read, a view of the caller's buffer
    (valid only during the call) from readinto."""

    def __init__(self, source: Reader, sink: Callable[[bytes | memoryview], object]):
        self._source = source
        self._sink = sink

    def readinto(self, buf) -> int:
        if hasattr(self._source, "readinto"):
            n = self._source.readinto(buf)
        else:
            data = self._source.read(len(buf))
            n = len(data)
            buf[:n] = data
        if n:
            self._sink(memoryview(buf)[:n])
        return n

    def read(self, n: int = -1) -> bytes:
        data = self._source.read(n)
        if data:
            self._sink(data)
        return data
