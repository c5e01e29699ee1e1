"""CPU/GPU forward latency, measured the same way for every model compared."""
from __future__ import annotations

import statistics
import time

import torch


@torch.inference_mode()
def measure_latency(model: torch.nn.Module, input_shape: tuple[int, ...], *, batch_size: int = 1,
                    warmup: int = 10, runs: int = 50, device: str | torch.device = "cpu") -> float:
    """Median milliseconds of one eval-mode forward pass on a ``batch_size`` x ``input_shape`` batch."""
    was_training = model.training
    model.eval().to(device)
    x = torch.randn(batch_size, *input_shape, device=device)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    for _ in range(warmup):
        model(x)
    sync()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model(x)
        sync()
        times.append((time.perf_counter() - start) * 1000.0)
    model.train(was_training)
    return statistics.median(times)
