"""Shared timing helper for the benchmark scripts (side-by-side, interleaved, median)."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def compare(fns: dict[str, Callable[[], object]], rounds: int = 7, repeat: int = 5) -> dict[str, float]:
    """Median seconds per call of each function, measured interleaved so load affects all alike."""
    for fn in fns.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(repeat):
                fn()
            samples[name].append((time.perf_counter() - start) / repeat)
    return {name: statistics.median(values) for name, values in samples.items()}
