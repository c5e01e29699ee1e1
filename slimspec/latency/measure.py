"""Latency of a model in a runtime at a batch size: the one measurement bench, demo and tables use."""
from __future__ import annotations

import math
import os
import statistics
from collections.abc import Callable, Sequence

import torch

from ..ir import IR
from .runtimes import get_runtime
from .timing import LatencyError, Timing, time_call, torch_threads

FLOAT_BYTES = 4


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (``MemAvailable``), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def batch_memory(ir: IR, batch: int) -> int:
    """Bytes one forward pass of ``batch`` samples needs at least: its input and its two largest tensors."""
    sizes = sorted((math.prod(node.shape) for node in ir.nodes), reverse=True)[:2]
    return batch * FLOAT_BYTES * (math.prod(ir.input_shape) + sum(sizes))


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def check_batch_memory(ir: IR, batch: int, label: str | None = None) -> None:
    """Refuse a batch whose forward pass cannot fit in the memory available (before allocating it)."""
    need, have = batch_memory(ir, batch), available_memory()
    if have is not None and need > have:
        raise LatencyError(f"batch {batch}: one forward pass of {label or ir.name} needs at least {_size(need)} "
                           f"(input and activations), more than the {_size(have)} of memory available")


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
