"""Transfer progress: per-layer bars on a TTY (as docker shows them), plain lines otherwise, or nothing."""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # rich is imported when the first bar is drawn
    from rich.progress import Progress as Bars
    from rich.progress import TaskID


class Progress:
    """Reports nothing; the base of the visible kinds and what `-q` uses."""

    def message(self, text: str) -> None:
        """A line about the whole operation (e.g. the final digest)."""

    def start(self, key: str, status: str, total: int | None = None) -> None:
        """A layer's transfer begins (`Pushing`, `Downloading`)."""

    def advance(self, key: str, n: int) -> None:
        """`n` more bytes of a layer moved."""

    def rewind(self, key: str, done: int) -> None:
        """A retried transfer restarts from `done` bytes."""

    def finish(self, key: str, status: str) -> None:
        """A layer is done: `Pushed`, `Already exists`, `Mounted from …`, `Pull complete`."""

    def close(self) -> None:
        """Stop drawing the current image's rows (they stay on screen); later calls start new ones."""


class PlainProgress(Progress):
    """One line per layer event, for logs and pipes."""

    def __init__(self, out: TextIO):
        self.out = out
        self._lock = threading.Lock()

    def _line(self, text: str) -> None:
        with self._lock:
            print(text, file=self.out, flush=True)

    def message(self, text: str) -> None:
        self._line(text)

    def start(self, key: str, status: str, total: int | None = None) -> None:
        self._line(f"{key}: {status}")

    def finish(self, key: str, status: str) -> None:
        self._line(f"{key}: {status}")


class RichProgress(Progress):
    """Live per-layer bars with bytes and rate; each image's rows stay on screen with their final status."""

    def __init__(self, out: TextIO):
        from rich.console import Console

        self.console = Console(file=out)
        self.bars: Bars | None = None
        self.tasks: dict[str, TaskID] = {}
        self._lock = threading.Lock()

    def _task(self, key: str, total: int | None = None) -> tuple[Bars, TaskID]:
        from rich.progress import BarColumn, DownloadColumn, TextColumn, TransferSpeedColumn
        from rich.progress import Progress as Bars

        with self._lock:
            if self.bars is None:
                self.bars = Bars(TextColumn("{task.fields[key]}: {task.description:<22}"), BarColumn(bar_width=40),
                                 DownloadColumn(), TransferSpeedColumn(), console=self.console)
                self.bars.start()
            if key not in self.tasks:
                self.tasks[key] = self.bars.add_task("Waiting", key=key, total=total)
            return self.bars, self.tasks[key]

    def message(self, text: str) -> None:
        self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def start(self, key: str, status: str, total: int | None = None) -> None:
        bars, task = self._task(key, total)
        bars.update(task, description=status, total=total)

    def advance(self, key: str, n: int) -> None:
        bars, task = self._task(key)
        bars.advance(task, n)

    def rewind(self, key: str, done: int) -> None:
        bars, task = self._task(key)
        bars.update(task, completed=done)

    def finish(self, key: str, status: str) -> None:
        bars, task = self.bars, self.tasks.get(key)
        state = next((t for t in bars.tasks if t.id == task), None) if bars and task is not None else None
        if bars is None or state is None or not state.completed:
            # Nothing moved (already there, mounted): a plain line instead of an empty bar.
            if bars is not None and state is not None:
                bars.update(state.id, visible=False)
            self.message(f"{key}: {status}")
            return
        bars.update(state.id, description=status, completed=state.total or state.completed,
                    total=state.total or state.completed)

    def close(self) -> None:
        with self._lock:
            if self.bars is not None:
                self.bars.stop()
            self.bars, self.tasks = None, {}


def make_progress(quiet: bool, out: TextIO | None = None) -> Progress:
    """Nothing for -q, bars on a terminal, plain lines otherwise."""
    out = out or sys.stdout
    if quiet:
        return Progress()
    if out.isatty():
        return RichProgress(out)
    return PlainProgress(out)
