"""The one timing loop the benchmarks share."""

from __future__ import annotations

import time


def timed(fn, runs: int, warmup: int = 1) -> list[float]:
    """Wall seconds of `runs` calls of fn(), after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times
