"""The multiplexed log printer: each container's lines prefixed `web-1  | `, coloured per container on a TTY."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from dockyard.api.containers import Container

# docker compose's rotation: the plain ANSI colours, then their bright forms.
COLORS = [f"\033[{code}m" for code in (36, 33, 32, 35, 34, "36;1", "33;1", "32;1", "35;1", "34;1")]
RESET = "\033[0m"


def short_name(container: Container, project: str) -> str:
    """The name compose prints for a container: `web-1` for `<project>-web-1`, else its own name."""
    return container.name.removeprefix(f"{project}-")


@dataclass
class Printer:
    """Writes whole lines of several containers to one stream, each behind its padded, coloured prefix."""

    out: TextIO
    project: str
    color: bool = False
    prefix: bool = True
    width: int = 0
    _colors: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, containers: Iterable[Container]) -> None:
        """Widen the prefix column for these containers and give each its colour."""
        for c in containers:
            name = short_name(c, self.project)
            self.width = max(self.width, len(name))
            self._colors.setdefault(c.name, COLORS[len(self._colors) % len(COLORS)])

    def line(self, container: Container, text: str) -> None:
        """Print one line of the container's output."""
        text = text.rstrip("\n")
        if self.prefix:
            head = f"{short_name(container, self.project).ljust(self.width)}  | "
            if self.color:
                head = f"{self._colors.get(container.name, COLORS[0])}{head}{RESET}"
            text = head + text
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()

    def note(self, text: str) -> None:
        """A line of compose's own (an exit, a stop), unprefixed."""
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()


def lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Whole lines out of a stream of byte chunks (a last unterminated line too)."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *done, pending = pending.split(b"\n")
        for raw in done:
            yield raw.decode(errors="replace")
    if pending:
        yield pending.decode(errors="replace")


def show(containers: list[Container], printer: Printer, follow: bool = False, tail: str = "all",
         timestamps: bool = False) -> None:
    """`logs`: each container's log (with follow, until every container stops or Ctrl-C)."""
    printer.register(containers)
    if not follow:
        for c in containers:
            for text in lines([c.logs(tail=tail, timestamps=timestamps)]):
                printer.line(c, text)
        return
    threads = [follow_in_thread(c, printer, tail=tail, timestamps=timestamps) for c in containers]
    for t in threads:
        while t.is_alive():
            t.join(0.2)  # a timed join so Ctrl-C reaches the main thread


def follow_in_thread(c: Container, printer: Printer, tail: str = "all", timestamps: bool = False,
                     on_end: Callable[[Container], None] | None = None) -> threading.Thread:
    """Stream one container's log to the printer on a daemon thread; `on_end(c)` when its log ends (it stopped)."""
    def run() -> None:
        try:
            for text in lines(c.logs(stream=True, follow=True, tail=tail, timestamps=timestamps)):
                printer.line(c, text)
        finally:
            if on_end:
                on_end(c)

    t = threading.Thread(target=run, name=f"logs-{c.name}", daemon=True)
    t.start()
    return t
