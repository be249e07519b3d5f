"""Commands timed in alternating rounds, so that load from elsewhere falls on every series alike; their medians."""

from __future__ import annotations

import statistics
from collections.abc import Callable


def alternate(series: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Each series' times (s) over `rounds` rounds, every round timing each series once, in order."""
    times: dict[str, list[float]] = {name: [] for name in series}
    for _ in range(rounds):
        for name, run in series.items():
            times[name].append(run())
    return times


def report(times: dict[str, list[float]]) -> dict[str, float]:
    """Print each series' median, quartiles and minimum (ms); return the medians (s)."""
    width = max(map(len, times), default=0)
    medians: dict[str, float] = {}
    for name, t in times.items():
        median = medians[name] = statistics.median(t)
        q1, _, q3 = statistics.quantiles(t, n=4) if len(t) > 1 else [median] * 3
        print(f"{name:{width}s}  median {median * 1000:7.1f} ms  (quartiles {q1 * 1000:.1f} to {q3 * 1000:.1f}, "
              f"min {min(t) * 1000:.1f})")
    return medians
