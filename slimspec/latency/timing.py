"""Timing one callable the same way everywhere: ``torch.utils.benchmark`` (warm-up, median, IQR).

``slimspec bench``, ``slimspec demo``, the latency table (``bench --profile``) and the
benchmark scripts all time through :func:`time_call`, so their numbers are comparable.
"""
from __future__ import annotations

from collections.abc import Callable
import logging
import statistics
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Iterator

import torch

from ..errors import SlimspecError


class LatencyError(SlimspecError, ValueError):
    """A timing request that cannot be honoured (bad thread count, batch, run time, inputs): one line."""


def threads_problem(threads: object) -> str | None:
    """Why ``threads`` is no CPU thread count for torch, or None (a count >= 1, or None: the default).

    The one rule for ``--threads`` / ``threads=`` everywhere: train, finetune, eval, demo,
    bench, prune, sensitivity and export (the CLI's one ``--threads`` option applies it too).
    """
    if threads is None or (isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1):
        return None
    return f"threads must be an integer >= 1, got {threads!r}"


def check_threads(threads: object) -> int | None:
    """``threads`` if :func:`threads_problem` finds nothing, else :class:`LatencyError`."""
    if problem := threads_problem(threads):
        raise LatencyError(problem)
    return threads  # type: ignore[return-value]


@dataclass(frozen=True)
class Timing:
    """Median, interquartile range and minimum of one call, in milliseconds, over ``runs`` blocks.

    On a machine shared with other processes the minimum is the least disturbed measurement.
    """

    median_ms: float
    iqr_ms: float
    runs: int
    min_ms: float = float("nan")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _benchmark_module():
    """``torch.utils.benchmark``, imported on first use without its CUDA_HOME warning on CPU-only hosts."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        from torch.utils import benchmark
    finally:
        logger.setLevel(level)
    return benchmark


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(threads)`` (unchanged when None); a bad count is refused."""
    if check_threads(threads) is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def time_call(fn: Callable[[], object], *, min_run_time: float = 0.2, warmup: int = 3,
              threads: int | None = None, sync: Callable[[], None] | None = None,
              block_s: float = 2e-3, min_blocks: int = 10) -> Timing:
    """Time ``fn()`` with a ``torch.utils.benchmark.Timer`` after ``warmup`` calls.

    Calls are grouped into blocks of about ``block_s`` seconds (so the timer's own overhead
    does not count for short calls); blocks are measured for at least ``min_run_time``
    seconds and ``min_blocks`` blocks (three blocks suffice once five times ``min_run_time``
    has passed, for calls that take long). The median and interquartile range are over blocks,
    per call, so a block slowed by another process shifts the IQR, not the median.
    """
    with torch_threads(threads):
        for _ in range(warmup):
            fn()
        if sync is not None:
            sync()
            call = lambda: (fn(), sync())  # noqa: E731
        else:
            call = fn
        timer = _benchmark_module().Timer(stmt="call()", globals={"call": call},
                                num_threads=threads or torch.get_num_threads())
        probe = [timer.timeit(1).median for _ in range(2)]
        number = max(1, int(block_s / max(min(probe), 1e-9)))
        times: list[float] = probe if number == 1 else []  # slow calls: the probes are blocks too
        spent = sum(probe)
        # at least ``min_blocks`` blocks, unless a few blocks already took five times the budget
        while spent < min_run_time or (len(times) < min_blocks and (spent < 5 * min_run_time or len(times) < 3)):
            block = timer.timeit(number).median  # seconds per call over ``number`` calls
            times.append(block)
            spent += block * number
    q1, median, q3 = statistics.quantiles(times, n=4) if len(times) > 1 else (times[0],) * 3
    return Timing(median * 1e3, (q3 - q1) * 1e3, len(times), min(times) * 1e3)
