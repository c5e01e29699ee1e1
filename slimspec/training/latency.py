"""CPU/GPU forward latency for training reports; timed by :mod:`slimspec.latency` like ``slimspec bench``."""
from __future__ import annotations

import torch

from ..latency import measure_model


def measure_latency(model: torch.nn.Module, input_shape: tuple[int, ...], *, batch_size: int = 1,
                    warmup: int = 10, min_run_time: float = 0.2, device: str | torch.device = "cpu",
                    threads: int | None = None, runtime: str = "eager") -> float:
    """Median milliseconds of one eval-mode forward pass (``torch.utils.benchmark``, after warm-up)."""
    return measure_model(model, input_shape, batch_size=batch_size, runtime=runtime, threads=threads,
                         min_run_time=min_run_time, warmup=warmup, device=device).median_ms
