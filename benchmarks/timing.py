"""Timing shared by the benchmark scripts (run as ``python benchmarks/bench_*.py``, which puts
this folder on the import path)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence


def best_time(run: Callable[[], object], repeats: int) -> float:
    """Shortest wall time in seconds of ``repeats`` calls (the least disturbed by other load)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def best_times(runs: Sequence[Callable[[], object]], repeats: int) -> list[float]:
    """Shortest wall time of each of ``runs``, called in turn ``repeats`` times: alternating
    spreads the machine's changing load over every alternative, where one after the other
    would hand one of them the quiet minute."""
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for run, spent in zip(runs, times, strict=True):
            start = time.perf_counter()
            run()
            spent.append(time.perf_counter() - start)
    return [min(spent) for spent in times]
