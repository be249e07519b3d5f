"""Turning a step's upperdir into a layer without making the next step wait for compression.

The upperdir is written once as a plain tar (hashing it gives the diff_id the next step's config needs) and
moved into the store's layer cache, ready as the next lowerdir; the tar is compressed into a blob in the
background, so the next RUN overlaps with it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from dockyard.digest import Digest, HashingWriter, chain_ids, verify
from dockyard.image import Descriptor
from dockyard.store import Store

Layer = Descriptor | Future  # a stored layer, or one still being compressed (a Future of its Descriptor)


def resolved(layers: Sequence[Layer]) -> list[Descriptor]:
    """The descriptors, waiting for layers still being compressed (their failure is raised here)."""
    return [layer.result() if isinstance(layer, Future) else layer for layer in layers]


def settled(layers: Sequence[Layer]) -> bool:
    """Whether every layer is stored (none pending, none failed)."""
    return all(not isinstance(x, Future) or (x.done() and not x.cancelled() and x.exception() is None)
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
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="layer-blob")

    def commit(self, upper: str, lower_diff_ids: list[Digest]) -> tuple[Digest, Future]:
        """Diff `upper` (which the store takes over as an unpacked layer); returns its diff_id and the blob to be."""
        from dockyard.layers import write_diff

        fd, tar = tempfile.mkstemp(prefix="diff-", dir=self.scratch)
        try:
            with os.fdopen(fd, "wb") as f:
                w = HashingWriter(f)
                write_diff(upper, w, source_date_epoch=self.epoch)  # type: ignore[arg-type]
            diff_id = w.digest()
            self.store.adopt_layer_dir(upper, chain_ids([*lower_diff_ids, diff_id])[-1])
            return diff_id, self._pool.submit(self._compress, tar, diff_id)
        except BaseException:
            os.unlink(tar)
            raise

    def _compress(self, tar: str, diff_id: Digest) -> Descriptor:
        from dockyard.layers import compress_layer

        try:
            with open(tar, "rb") as src, self.store.temp_path("layer-") as tmp:
                blob = compress_layer(src, tmp, self.compression)
                verify(diff_id, blob.diff_id, f"layer {diff_id}")
                self.store.adopt_blob(tmp, blob.digest, self.added)
            return Descriptor(blob.media_type, blob.digest, blob.size)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tar)

    def close(self) -> None:
        """Finish every queued blob, also after a failure or a cancellation: each is a finished step's layer,
        whose cache record must survive (fixing the failing step must not re-run the one before it)."""
        self._pool.shutdown(wait=True)
