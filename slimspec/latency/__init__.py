"""Measured latency: one timing function, runtimes, BN folding and per-layer latency tables.

Sits at the model level (it imports ``nn`` and ``ir``, nothing above), so training, pruning
targets and the workflows all time models the same way.
"""
from .measure import measure_model, prepare_runner, time_interleaved
from .runtimes import get_runtime, register_runtime, runtime_names
from .timing import Timing, time_call, torch_threads

__all__ = ["Timing", "time_call", "torch_threads", "measure_model", "prepare_runner", "time_interleaved", "get_runtime", "register_runtime",
           "runtime_names"]
