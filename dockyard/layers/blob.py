"""Layer blobs on disk: compress a tar stream into a content-addressed file in one pass."""

from __future__ import annotations

import fcntl
import os
import threading
from dataclasses import dataclass
from typing import BinaryIO

from dockyard.compression import compressor
from dockyard.digest import Digest, HashingReader, HashingWriter, Reader
from dockyard.fsutil import WRITEBACK_STEP, atomic_file, start_writeback
from dockyard.layers.diff import write_diff
from dockyard.layers.format import LayerError
from dockyard.mediatypes import OCI_LAYER_FOR

_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
# The pipe between a layer's tar writer and its compressor, and each side's reads and writes: big, so the two threads
# seldom wake each other (one buffer each per layer written, unlike a pull's many).
_PIPE_BYTES = 1 << 20


@dataclass(frozen=True)
class LayerBlob:
    """A written layer: digest and size of the compressed blob, diff_id of the plain tar."""

    digest: Digest
    diff_id: Digest
    size: int
    media_type: str


def compress_layer(tar_stream: Reader, dest_path: str, compression: str = "gzip") -> LayerBlob:
    """Compress an uncompressed tar stream into `dest_path` atomically, hashing both sides as it goes."""
    media_type = OCI_LAYER_FOR.get(compression)
    if media_type is None:
        raise LayerError(f"unsupported layer compression: {compression!r}")
    tar = HashingReader(tar_stream)
    with atomic_file(dest_path) as f:
        blob = HashingWriter(f)
        flushed = 0
        with compressor(blob, compression) as out:  # type: ignore[arg-type]
            while chunk := tar.read(_PIPE_BYTES):
                out.write(chunk)
                if blob.size - flushed >= WRITEBACK_STEP:  # so the fsync at the end has little left to wait for
                    f.flush()
                    start_writeback(f.fileno(), flushed, blob.size - flushed)
                    flushed = blob.size
    return LayerBlob(blob.digest(), tar.digest(), blob.size, media_type)


def create_layer(src: str, dest_path: str, compression: str = "gzip",
                 source_date_epoch: int | None = None) -> LayerBlob:
    """Diff the tree `src` into a compressed blob at `dest_path`; tar and compress run concurrently."""
    rfd, wfd = os.pipe()
    try:
        fcntl.fcntl(wfd, _F_SETPIPE_SZ, _PIPE_BYTES)  # fewer wake-ups between the two threads
    except OSError:
        pass  # capped by /proc/sys/fs/pipe-max-size for unprivileged users: the default works too
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            with open(wfd, "wb", buffering=_PIPE_BYTES) as out:
                write_diff(src, out, source_date_epoch=source_date_epoch)
        except BaseException as e:  # handed to the consumer, which must not publish a short blob
            failure.append(e)

    writer = threading.Thread(target=produce, name="layer-diff", daemon=True)
    writer.start()
    try:
        with open(rfd, "rb", buffering=0) as raw:
            return compress_layer(_ProducedStream(raw, writer, failure), dest_path, compression)
    finally:
        writer.join()


class _ProducedStream:
    """The read end of the diff pipe; at EOF it waits for the writer and re-raises its failure."""

    def __init__(self, raw: BinaryIO, writer: threading.Thread, failure: list[BaseException]):
        self._raw = raw
        self._writer = writer
        self._failure = failure

    def read(self, n: int) -> bytes:
        data = self._raw.read(n)
        if not data:
            self._writer.join()
            if self._failure:
                raise self._failure[0]
        return data
