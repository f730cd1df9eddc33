"""Timing shared by the benchmark scripts (run as ``python benchmarks/bench_*.py``, which puts
this folder on the import path)."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_time(run: Callable[[], object], repeats: int) -> float:
    """Shortest wall time in seconds of ``repeats`` calls (the least disturbed by other load)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)
