"""Wall-clock timing of warm calls: the median of repeated runs, alone or interleaved with others."""
from __future__ import annotations

import statistics
import time
from typing import Callable


def median_ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``fn`` in milliseconds after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def interleaved_median_ms(fns: dict[str, Callable[[], object]], repeats: int, block: int = 5) -> dict[str, float]:
    """Median wall time in ms of each of ``fns`` over ``repeats`` timed calls, taken in alternating
    blocks of ``block`` calls, so that a shared machine speeding up or slowing down during the run
    affects all of them alike. The first call of each block is untimed: it pays for switching
    runtimes (TensorFlow's and LiteRT's worker threads keep spinning briefly after their work)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    while any(len(t) < repeats for t in times.values()):
        for name, fn in fns.items():
            fn()
            for _ in range(min(block, repeats - len(times[name]))):
                start = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(t) for name, t in times.items()}
