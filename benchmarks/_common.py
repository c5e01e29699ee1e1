"""Shared helpers for the benchmark scripts: side-by-side interleaved timing, and running cases one by one."""
from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path


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


def run_cases(cases: Iterable[str], run: Callable[[str, Path], dict], report: Callable[[dict], str],
              as_json: bool) -> None:
    """``run(case, work folder)`` for each case in a fresh temporary folder; each report printed as it comes,
    or all results as JSON at the end."""
    results = []
    for case in cases:
        with tempfile.TemporaryDirectory() as work:
            result = run(case, Path(work))
        results.append(result)
        if not as_json:
            print(report(result), flush=True)
    if as_json:
        print(json.dumps(results, indent=2))
