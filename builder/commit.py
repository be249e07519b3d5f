"""Turning a step's upperdir into a layer without making the next step wait for compression.

The upperdir is written once as a plain tar (hashing it gives the diff_id the next step's config needs) and
moved into the store's layer cache, ready as the next lowerdir; a background thread compresses the tar into a
blob, following it while it is still being written, so compression overlaps both the diff and the next step."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TypeAlias

from dockyard.digest import Digest, HashingWriter, chain_ids, verify
from dockyard.image import Descriptor
from dockyard.mediatypes import OCI_LAYER_FOR
from dockyard.store import Store

if TYPE_CHECKING:  # concurrent.futures (and its logging) loads with the first commit, never on a cached build
    from concurrent.futures import Future, ThreadPoolExecutor

Layer: TypeAlias = "Descriptor | Future"  # a stored layer, or one still being compressed (a Future of its Descriptor)
_BUFFER = 1 << 20  # the diff reaches the spool (and wakes the compressor) in pieces this big


def resolved(layers: Sequence[Layer]) -> list[Descriptor]:
    """The descriptors, waiting for layers still being compressed (their failure is raised here)."""
    return [layer if isinstance(layer, Descriptor) else layer.result() for layer in layers]


def settled(layers: Sequence[Layer]) -> bool:
    """Whether every layer is stored (none pending, none failed)."""
    return all(isinstance(x, Descriptor) or (x.done() and not x.cancelled() and x.exception() is None)
               for x in layers)


class Committer:
    """Commits upperdirs as layers; blobs are compressed one at a time on a background thread."""

    def __init__(self, store: Store, compression: str, source_date_epoch: int | None, added: set[Digest],
                 scratch: str):
        self.store = store
        self.scratch = scratch  # holds the plain tars until compressed (removed by the caller at the end)
        self.compression = compression
        self.epoch = source_date_epoch
        self.added = added
        self._pools: dict[str, ThreadPoolExecutor] = {}  # made by the first commit

    def commit(self, upper: str, lower_diff_ids: list[Digest], contents: Mapping[str, bytes] | None = None,
               in_memory: bool = False, previous: tuple[Digest, Descriptor] | None = None) -> tuple[Digest, Future]:
        """Diff `upper` (which the store takes over as an unpacked layer); returns its diff_id and the blob to be.
        `contents`: files' bytes known already, by their path in `upper` (see write_diff). `in_memory`: `upper` is
        on a tmpfs; the store gets a copy of it on disk, and only if it lacks the layer. `previous`: a stored layer
        (diff_id, blob) the step made before, whose blob is taken when the diff_id is the same: compression depends
        on nothing else, so it would be the same."""
        from dockyard.layers import write_diff

        spool = _Spool(self.scratch)
        # With a previous blob, likely the one (a --no-cache rebuild), compression waits for the diff to tell.
        blob = self._pool("layer-blob").submit(self._compress, spool) if previous is None else None
        try:
            w = HashingWriter(io.BufferedWriter(spool, _BUFFER))
            write_diff(upper, w, source_date_epoch=self.epoch, contents=contents)  # type: ignore[arg-type]
            w.flush()
            diff_id = w.digest()
            spool.finish(diff_id)
        except BaseException:
            spool.finish(None)  # the compressor gives up; the blob's failure is never asked for
            if blob is None:
                spool.remove()
            raise
        if blob is None:
            assert previous is not None
            if previous[0] == diff_id and previous[1].media_type == OCI_LAYER_FOR.get(self.compression):
                spool.remove()
                from concurrent.futures import Future

                blob = Future()
                blob.set_result(previous[1])
            else:
                blob = self._pool("layer-blob").submit(self._compress, spool)
        chain = chain_ids([*lower_diff_ids, diff_id])[-1]
        if not in_memory:
            self.store.adopt_layer_dir(upper, chain, discard=self._discard)
        elif not os.path.isdir(self.store.layer_dir(chain)):
            from builder.views import copy_upper

            # The diffed tree itself, from memory: its sources (the context) are not read again.
            disk = tempfile.mkdtemp(prefix="upper-", dir=self.scratch)
            try:
                copy_upper(upper, disk)
                self.store.adopt_layer_dir(disk, chain, discard=self._discard)
            except BaseException:
                shutil.rmtree(disk, ignore_errors=True)
                raise
        return diff_id, blob

    def _compress(self, spool: _Spool) -> Descriptor:
        from dockyard.layers import compress_layer

        try:
            with self.store.temp_path("layer-") as tmp:
                blob = compress_layer(spool, tmp, self.compression)
                assert spool.diff_id is not None  # the spool ended cleanly (a failed diff raises in read)
                verify(spool.diff_id, blob.diff_id, f"layer {spool.diff_id}")
                self.store.adopt_blob(tmp, blob.digest, self.added)
            return Descriptor(blob.media_type, blob.digest, blob.size)
        finally:
            spool.remove()

    def _discard(self, path: str) -> None:
        """Remove a duplicate of a stored layer directory off the build's path: moved aside at once (the step's
        directory is removed right after), deleted on a background thread."""
        aside = tempfile.mkdtemp(prefix="trash-", dir=self.scratch)
        os.rename(path, os.path.join(aside, "layer"))
        self._pool("layer-trash").submit(shutil.rmtree, aside, True)

    def close(self) -> None:
        """Finish every queued blob, also after a failure or a cancellation: each is a finished step's layer,
        whose cache record must survive (fixing the failing step must not re-run the one before it)."""
        for pool in self._pools.values():
            pool.shutdown(wait=True)

    def _pool(self, name: str) -> ThreadPoolExecutor:
        """The one-thread pool `name` (blob compression, or removal of duplicate layers), made on first use."""
        pool = self._pools.get(name)
        if pool is None:
            from concurrent.futures import ThreadPoolExecutor

            pool = self._pools[name] = ThreadPoolExecutor(1, thread_name_prefix=name)
        return pool


class _Spool(io.RawIOBase):
    """A plain layer tar in a scratch file, which the compressor reads while the diff is still writing it: the
    writer never waits for the reader (the file holds what is not compressed yet), the reader waits at the end
    of what is written until more comes or the writer finishes."""

    def __init__(self, scratch: str):
        self.fd, self._path = tempfile.mkstemp(prefix="diff-", dir=scratch)
        self._reader = os.open(self._path, os.O_RDONLY | os.O_CLOEXEC)
        self._cond = threading.Condition()
        self._written = 0
        self._read = 0
        self._ended = False
        self.diff_id: Digest | None = None  # set when the diff ended cleanly

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        """The writer's side (under a buffer, so a wake-up per megabyte at most)."""
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view):]
        with self._cond:
            self._written += len(data)
            self._cond.notify()
        return len(data)

    def finish(self, diff_id: Digest | None) -> None:
        """The writer is done: cleanly with the tar's digest, or after a failure (None)."""
        with self._cond:
            self.diff_id, self._ended = diff_id, True
            self._cond.notify()

    def read(self, n: int = -1) -> bytes:
        """Up to `n` written bytes, waiting for the writer at the end of what it wrote; b"" when it finished."""
        from dockyard.layers import LayerError

        with self._cond:
            while self._read == self._written and not self._ended:
                self._cond.wait()
            if self._ended and self.diff_id is None:
                raise LayerError("the layer diff failed")
            left = self._written - self._read
            n = left if n < 0 else min(n, left)
        data = os.pread(self._reader, n, self._read) if n else b""
        self._read += len(data)
        return data

    def remove(self) -> None:
        """Remove the file (the reader's side, once it is done with it)."""
        os.close(self.fd)
        os.close(self._reader)
        os.unlink(self._path)
