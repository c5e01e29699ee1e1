"""Latency of a model in a runtime at a batch size: the one measurement bench, demo and tables use."""
from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

import torch

from .runtimes import get_runtime
from .timing import Timing, time_call, torch_threads


def prepare_runner(model: torch.nn.Module, input_shape: tuple[int, ...], *, batch_size: int = 1,
                   runtime: str = "eager", threads: int | None = None, device: str | torch.device = "cpu",
                   seed: int = 0) -> Callable[[], object]:
    """A zero-argument forward pass of eval-mode ``model`` on a seeded random batch, in ``runtime``."""
    model.eval().to(device)
    x = torch.randn(batch_size, *input_shape, generator=torch.Generator().manual_seed(seed)).to(device)
    with torch_threads(threads):
        return get_runtime(runtime).prepare(model, x, threads)


def _sync(device: str | torch.device) -> Callable[[], None] | None:
    return torch.cuda.synchronize if torch.device(device).type == "cuda" else None


def measure_model(model: torch.nn.Module, input_shape: tuple[int, ...], *, batch_size: int = 1,
                  runtime: str = "eager", threads: int | None = None, min_run_time: float = 0.2,
                  warmup: int = 3, device: str | torch.device = "cpu", seed: int = 0) -> Timing:
    """Time one forward pass of ``model`` on a seeded random ``batch_size`` x ``input_shape`` batch.

    The model is put in eval mode (and restored afterwards); ``runtime`` is a registered
    runtime name (eager, channels-last, onnxruntime).
    """
    was_training = model.training
    try:
        run = prepare_runner(model, input_shape, batch_size=batch_size, runtime=runtime, threads=threads,
                             device=device, seed=seed)
        return time_call(run, min_run_time=min_run_time, warmup=warmup, threads=threads, sync=_sync(device))
    finally:
        model.train(was_training)


def time_interleaved(runners: Sequence[Callable[[], object]], *, rounds: int = 3, min_run_time: float = 0.2,
                     threads: int | None = None) -> list[Timing]:
    """Time several runners in alternating rounds (so a busy spell slows all alike); median of rounds."""
    per_round = max(min_run_time / rounds, 0.01)
    samples: list[list[Timing]] = [[] for _ in runners]
    for _ in range(rounds):
        for i, run in enumerate(runners):
            samples[i].append(time_call(run, min_run_time=per_round, threads=threads))
    return [Timing(statistics.median(t.median_ms for t in ts), statistics.median(t.iqr_ms for t in ts),
                   sum(t.runs for t in ts), min(t.min_ms for t in ts)) for ts in samples]
