"""What a build shows and where its result goes: BuildKit-style step lines (`#N [stage k/n] RUN …`, output
lines prefixed `#N`), a live view for terminals, buildx's rawjson, and the --output exporters (local rootfs,
docker/oci archives)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
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
        self._announce(n, label)
        return n

    def _announce(self, n: int, label: str) -> None:
        self._print(f"#{n} {label}")

    def close(self) -> None:
        """The build is over (the live view draws its last state)."""

    def line(self, n: int, text: str) -> None:
        """One line a step printed."""
        self.lines(n, [text])

    def lines(self, n: int, texts: list[str]) -> None:
        """Lines a step printed, written in one go (a RUN may print millions)."""
        self.tails.setdefault(n, deque(maxlen=_TAIL_LINES)).extend(texts[-_TAIL_LINES:])
        self._show_lines(n, texts)

    def _show_lines(self, n: int, texts: list[str]) -> None:
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


def _now() -> str:
    """An RFC 3339 timestamp with nanoseconds, as Go's time.Time marshals."""
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


class RawJsonProgress(Progress):
    """buildx's --progress=rawjson: one JSON status object (BuildKit's SolveStatus: vertexes, logs, warnings)
    per line and update; log data is base64, as Go marshals bytes."""

    def __init__(self, out: TextIO | None = None):
        super().__init__("plain", out)
        self._vertexes: dict[int, dict[str, object]] = {}

    def _emit(self, status: dict[str, object]) -> None:
        self._print(json.dumps(status, separators=(",", ":")))

    def _announce(self, n: int, label: str) -> None:
        digest = "sha256:" + hashlib.sha256(f"{os.getpid()}:{n}:{label}".encode()).hexdigest()
        self._vertexes[n] = {"digest": digest, "name": label, "started": _now()}
        self._emit({"vertexes": [self._vertexes[n]]})

    def _show_lines(self, n: int, texts: list[str]) -> None:
        data = base64.b64encode("".join(t + "\n" for t in texts).encode()).decode()
        self._emit({"logs": [{"vertex": self._vertexes[n]["digest"], "stream": 1, "data": data,
                              "timestamp": _now()}]})

    def _finish(self, n: int, cached: bool) -> None:
        vertex = self._vertexes[n]
        vertex["completed"] = _now()
        if cached:
            vertex["cached"] = True
        self._emit({"vertexes": [vertex]})

    def cached(self, n: int) -> None:
        self._finish(n, True)

    def done(self, n: int) -> None:
        self._finish(n, False)

    def message(self, text: str) -> None:
        self._emit({"warnings": [{"level": 1, "short": base64.b64encode(text.encode()).decode()}]})


@dataclass
class _Row:
    """One step of the live view."""

    label: str
    started: float
    ended: float | None = None
    cached: bool = False


class TtyProgress(Progress):
    """BuildKit's tty view: a header with the elapsed time and the steps done, one line per step (the running
    ones with their last output lines), redrawn in place several times a second."""

    SHOWN_LINES = 6

    def __init__(self, out: TextIO | None = None):
        super().__init__("plain", out)
        self._rows: dict[int, _Row] = {}
        self._messages: list[str] = []
        self._drawn = 0
        self._began = time.monotonic()
        self._closed = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="progress-tty", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._closed.wait(0.2):
            self._draw()

    def _announce(self, n: int, label: str) -> None:
        self._rows[n] = _Row(label, time.monotonic())
        self._draw()

    def _show_lines(self, n: int, texts: list[str]) -> None:
        self._draw()

    def cached(self, n: int) -> None:
        self._rows[n].ended, self._rows[n].cached = time.monotonic(), True
        self._draw()

    def done(self, n: int) -> None:
        self._rows[n].ended = time.monotonic()
        self._draw()

    def message(self, text: str) -> None:
        self._messages.append(text)

    def _render(self, final: bool) -> list[str]:
        now = time.monotonic()
        rows = list(self._rows.items())
        finished = sum(1 for _, r in rows if r.ended is not None)
        state = " FINISHED" if final and finished == len(rows) else ""
        lines = [f"[+] Building {now - self._began:.1f}s ({finished}/{len(rows)}){state}"]
        for n, row in rows:
            if row.cached:
                lines.append(f" => CACHED {row.label}")
                continue
            lines.append(f" => {row.label}  {(row.ended or now) - row.started:.1f}s")
            if row.ended is None:
                lines += [f" => => # {t}" for t in list(self.tails.get(n, ()))[-self.SHOWN_LINES:]]
        width = max(20, shutil.get_terminal_size().columns - 1)
        return [line[:width] for line in lines]

    def _draw(self, final: bool = False) -> None:
        with self._lock:
            lines = self._render(final)
            up = f"\x1b[{self._drawn}F" if self._drawn else ""
            self.out.write(up + "".join(f"{line}\x1b[K\n" for line in lines) + "\x1b[J")
            self.out.flush()
            self._drawn = len(lines)

    def close(self) -> None:
        self._closed.set()
        self._ticker.join()
        self._draw(final=True)
        for text in self._messages:
            self.out.write(text + "\n")
        self.out.flush()


def make_progress(mode: str, out: TextIO | None = None) -> Progress:
    """The view for --progress auto|tty|plain|rawjson|quiet (auto: tty on a terminal, else plain)."""
    out = out or sys.stderr
    if mode == "auto":
        mode = "tty" if out.isatty() else "plain"
    if mode == "tty":
        return TtyProgress(out)
    if mode == "rawjson":
        return RawJsonProgress(out)
    return Progress("quiet" if mode == "quiet" else "plain", out)


def export_local(store: Store, image: Image, dest: str) -> None:
    """Write the image's root filesystem into the directory `dest` (layers applied in order); of a multi-platform
    image, each platform's into its own subdirectory, named as BuildKit does (dest/linux_arm64/)."""
    from dockyard.image import Platform
    from dockyard.layers import apply_layer

    if image.index:
        for platform, desc in store.index_children(image.index):
            child = store.image(desc.digest)
            named = platform or Platform.of(child.config)
            if named is None:
                raise DockyardError(f"index {image.index}: image {desc.digest} names no platform")
            # Parsed again: a platform is a directory name here, so only its checked form may become one.
            export_local(store, child, os.path.join(dest, str(Platform.parse(str(named))).replace("/", "_")))
        return
    os.makedirs(dest, exist_ok=True)
    for desc in image.layers:
        with store.open_blob(desc.digest) as f:
            apply_layer(f, dest)


def export_archive(store: Store, image: Image, names: list[str], kind: str, dest: str) -> None:
    """Write the image as a docker-archive or oci-archive tar to `dest` ("-": standard output); a multi-platform
    image goes whole (see dockyard.archive.save)."""
    from dockyard.archive import save

    fmt = {"docker": "docker-archive", "oci": "oci-archive"}[kind]
    save(store, [(image, names)], sys.stdout.buffer if dest == "-" else dest, fmt)


@dataclass(frozen=True)
class Output:
    """An --output: where the result goes, and the layer compression an oci/docker archive asks for."""

    kind: str
    dest: str
    compression: str | None = None


def parse_output(text: str) -> Output:
    """`type=local|oci|docker,dest=PATH[,compression=gzip|zstd]` (or a bare path: local) -> Output."""
    if "=" not in text:
        return Output("local", text)
    fields = dict(f.partition("=")[::2] for f in text.split(","))
    kind, dest = fields.pop("type", "local"), fields.pop("dest", None)
    compression = fields.pop("compression", None)
    if kind not in ("local", "oci", "docker"):
        raise DockyardError(f"--output: unsupported type {kind!r} (use local, oci or docker)")
    if not dest:
        raise DockyardError(f"--output {text}: dest=PATH is required")
    if fields:
        raise DockyardError(f"--output: unknown field(s) {', '.join(sorted(fields))}")
    if compression is not None and compression not in ("gzip", "zstd"):
        raise DockyardError(f"--output compression: unsupported {compression!r} (use gzip or zstd)")
    if compression is not None and kind == "local":
        raise DockyardError(f"--output {text}: compression applies to oci and docker outputs only")
    return Output(kind, dest, compression)


def layer_compression(outputs: list[Output], default: str) -> str:
    """The compression the build's layers get: what the outputs ask for (they must agree), else `default`."""
    asked = {o.compression for o in outputs if o.compression is not None}
    if len(asked) > 1:
        raise DockyardError(f"--output: conflicting compression={' and compression='.join(sorted(asked))}")
    return asked.pop() if asked else default
