"""What a build shows and where its result goes: BuildKit-style step lines (`#N [stage k/n] RUN …`, output
lines prefixed `#N`), and the --output exporters (local rootfs, docker/oci archives)."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import TextIO

from dockyard.errors import DockyardError
from dockyard.image import Image
from dockyard.store import Store

_TAIL_LINES = 40  # what a quiet build still shows of a failing step


class Progress:
    """Step and output lines; `quiet` keeps each step's output tail only, to show when it fails."""

    def __init__(self, mode: str = "plain", out: TextIO | None = None):
        self.quiet = mode == "quiet"
        self.out = out or sys.stderr
        self._lock = threading.Lock()
        self._count = 0
        self._started: dict[int, float] = {}
        self.tails: dict[int, deque[str]] = {}

    def _print(self, text: str) -> None:
        if self.quiet:
            return
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()

    def step(self, label: str) -> int:
        """Announce a step; returns its number."""
        with self._lock:
            self._count += 1
            n = self._count
        self._started[n] = time.monotonic()
        self._print(f"#{n} {label}")
        return n

    def line(self, n: int, text: str) -> None:
        """One line a step printed."""
        self.lines(n, [text])

    def lines(self, n: int, texts: list[str]) -> None:
        """Lines a step printed, written in one go (a RUN may print millions)."""
        self.tails.setdefault(n, deque(maxlen=_TAIL_LINES)).extend(texts[-_TAIL_LINES:])
        self._print("\n".join(f"#{n} {t}" for t in texts))

    def cached(self, n: int) -> None:
        self._print(f"#{n} CACHED")

    def done(self, n: int) -> None:
        self._print(f"#{n} DONE {time.monotonic() - self._started.get(n, time.monotonic()):.1f}s")

    def message(self, text: str) -> None:
        self._print(text)

    def failed(self, n: int) -> str:
        """The output tail of a failed step (for quiet builds, which printed nothing)."""
        return "\n".join(self.tails.get(n, ()))

    @contextlib.contextmanager
    def stream(self, n: int) -> Iterator[int]:
        """A write fd whose lines become `#n` output lines; drained fully before the block ends."""
        r, w = os.pipe()

        def pump() -> None:
            rest = b""
            try:
                while chunk := os.read(r, 1 << 16):
                    *complete, rest = (rest + chunk).split(b"\n")
                    if complete:
                        self.lines(n, [c.decode("utf-8", "replace") for c in complete])
                if rest:
                    self.lines(n, [rest.decode("utf-8", "replace")])
            finally:
                os.close(r)

        reader = threading.Thread(target=pump, name=f"step-{n}-output", daemon=True)
        reader.start()
        try:
            yield w
        finally:
            os.close(w)  # the container has exited: ours is the last write end
            reader.join()


def export_local(store: Store, image: Image, dest: str) -> None:
    """Write the image's root filesystem into the directory `dest` (layers applied in order)."""
    from dockyard.layers import apply_layer

    os.makedirs(dest, exist_ok=True)
    for desc in image.layers:
        with store.open_blob(desc.digest) as f:
            apply_layer(f, dest)


def export_archive(store: Store, image: Image, names: list[str], kind: str, dest: str) -> None:
    """Write the image as a docker-archive or oci-archive tar to `dest` ("-": standard output)."""
    from dockyard.archive import save

    fmt = {"docker": "docker-archive", "oci": "oci-archive"}[kind]
    save(store, [(image, names)], sys.stdout.buffer if dest == "-" else dest, fmt)


def parse_output(text: str) -> tuple[str, str]:
    """`type=local|oci|docker,dest=PATH` (or a bare path: local) -> (type, dest)."""
    if "=" not in text:
        return "local", text
    fields = dict(f.partition("=")[::2] for f in text.split(","))
    kind, dest = fields.pop("type", "local"), fields.pop("dest", None)
    if kind not in ("local", "oci", "docker"):
        raise DockyardError(f"--output: unsupported type {kind!r} (use local, oci or docker)")
    if not dest:
        raise DockyardError(f"--output {text}: dest=PATH is required")
    if fields:
        raise DockyardError(f"--output: unknown field(s) {', '.join(sorted(fields))}")
    return kind, dest
