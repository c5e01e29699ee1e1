"""``--round-to auto``: the channel multiple this machine's runtime runs fastest, found by a quick probe.

CPU convolution kernels block channels by the SIMD width (oneDNN and ONNX Runtime's MLAS: 8
floats with AVX2, 16 with AVX-512), so a layer pruned to 77 channels may run no faster, or
slower, than one of 80. The probe takes the network's heaviest prunable conv (most MACs),
samples pruned widths of it (:data:`FRACTIONS` of both its widths) and times the layer with
both widths rounded up to each candidate multiple (:data:`MULTIPLES`), in alternating rounds,
at batch 1 and :data:`PROBE_BATCH`, on the thread count the prune runs with. The multiple
whose rounded layers take the least time (summed over the samples, each batch size weighted
alike) wins; rounding up costs MACs, so a larger multiple must be faster, not merely as fast
(ties go to the smaller one). The latency table (``bench --profile``) samples widths at
1/8..1/2, 3/4 and all of a layer, too coarse to see multiples of 8, so the probe times its
own widths. The answer is cached per machine, thread count, runtime and layer shape.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import torch

from ..ir import IR
from ..utils.fileio import atomic_write, sha256_bytes
from .timing import time_call
from .table import Machine, NetworkLayer, _layer_runner, cache_dir, network_layers

MULTIPLES = (1, 4, 8, 16, 32)
FRACTIONS = (0.31, 0.47, 0.63)  # pruned widths the probe samples: odd fractions of the full widths
PROBE_BATCH = 8
ROUNDS = 3
TIE = 0.03  # a larger multiple must be this much faster to win


@dataclass(frozen=True)
class RoundChoice:
    """The chosen multiple, each candidate's time relative to no rounding, and what was probed."""

    multiple: int
    relative: dict[int, float]
    layer: str
    runtime: str
    threads: int

    def describe(self) -> str:
        times = ", ".join(f"{m}: {t:.2f}" for m, t in self.relative.items())
        return (f"round-to auto: {self.multiple} (layer {self.layer} rounded up to each multiple, time relative to "
                f"unrounded: {times}; {self.runtime}, {self.threads} thread{'s' if self.threads != 1 else ''}, "
                f"batch 1 and {PROBE_BATCH})")


def _ceil(width: int, multiple: int, full: int) -> int:
    return min(full, int(math.ceil(width / multiple) * multiple))


def heaviest_layer(ir: IR) -> tuple[str, NetworkLayer] | None:
    """The prunable conv with the most MACs (its output prunable), or None."""
    layers = {name: layer for name, layer in network_layers(ir).items()
              if layer.shape.op == "conv" and not layer.cout_fixed and (layer.shape.groups or 1) == 1}
    if not layers:
        return None

    def macs(item: tuple[str, NetworkLayer]) -> int:
        _, layer = item
        h, w = layer.shape.hw or (1, 1)
        return layer.cin * layer.cout * (layer.shape.kernel or 1) ** 2 * h * w // (layer.shape.stride or 1) ** 2
    return max(layers.items(), key=macs)


def _minima(runners, min_run_time: float, threads: int) -> list[float]:
    """Each runner's fastest block (ms) over :data:`ROUNDS` alternating rounds of a few short blocks."""
    best = [math.inf] * len(runners)
    for _ in range(ROUNDS):
        for i, run in enumerate(runners):
            timing = time_call(run, min_run_time=min_run_time, warmup=1, threads=threads, min_blocks=3)
            best[i] = min(best[i], timing.min_ms)
    return best


def probe(ir: IR, *, runtime: str = "eager", threads: int | None = None, min_run_time: float = 0.01,
          use_cache: bool = True) -> RoundChoice:
    """Probe (or read from the cache) the fastest multiple for ``ir``'s heaviest conv on this machine."""
    threads = threads or torch.get_num_threads()
    found = heaviest_layer(ir)
    if found is None:
        return RoundChoice(1, {1: 1.0}, "-", runtime, threads)
    name, layer = found
    key = json.dumps([Machine.current(threads).as_dict(), runtime, layer.shape.as_dict(), layer.cin, layer.cout,
                      layer.cin_fixed, MULTIPLES, FRACTIONS, PROBE_BATCH], sort_keys=True)
    path = cache_dir() / f"round-{sha256_bytes(key)[:16]}.json"
    if use_cache and path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return RoundChoice(int(data["multiple"]), {int(m): float(t) for m, t in data["relative"].items()},
                               name, runtime, threads)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # unreadable: probe again
    pairs = {m: [(layer.cin if layer.cin_fixed else _ceil(max(1, round(layer.cin * f)), m, layer.cin),
                  _ceil(max(1, round(layer.cout * f)), m, layer.cout)) for f in FRACTIONS] for m in MULTIPLES}
    distinct = sorted({pair for sample in pairs.values() for pair in sample})
    relative = dict.fromkeys(MULTIPLES, 0.0)
    for batch in (1, PROBE_BATCH):
        runners = [_layer_runner(layer.shape, cin, cout, runtime, batch, threads) for cin, cout in distinct]
        times = dict(zip(distinct, _minima(runners, min_run_time, threads)))
        base = sum(times[pair] for pair in pairs[1])
        for m in MULTIPLES:
            relative[m] += sum(times[pair] for pair in pairs[m]) / base / 2
    best = 1
    for m in MULTIPLES:  # ascending: a larger multiple must beat the best so far by TIE
        if relative[m] < relative[best] * (1 - TIE):
            best = m
    choice = RoundChoice(best, {m: round(t, 4) for m, t in relative.items()}, name, runtime, threads)
    if use_cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, json.dumps({"multiple": best, "relative": choice.relative, "key": json.loads(key)},
                                          indent=1))
        except OSError:
            pass  # a cache that cannot be written is only slower next time
    return choice


__all__ = ["RoundChoice", "probe", "heaviest_layer", "MULTIPLES"]
