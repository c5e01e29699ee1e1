"""``--round-to auto``: of the prune's networks rounded up to each multiple, the one this runtime runs fastest.

CPU convolution kernels block channels by the SIMD width (oneDNN and ONNX Runtime's MLAS: 8
floats with AVX2, 16 with AVX-512), and ONNX Runtime keeps a conv in its blocked NCHWc layout
only when its widths allow, reordering the tensors around every conv that does not fit. So a
layer pruned to 77 channels may run no faster, or slower, than one of 80, and a ResNet-56
block pruned from 16 to 8 channels runs *slower* than at 16 (ONNX Runtime, AVX-512: 41 ms vs
36 ms at batch 32). What a layer costs depends on its neighbours' layout, so no layer probe
predicts it; the probe times the networks themselves.

The prune decides its kept channels with the counts rounded up to each of :data:`MULTIPLES`
(:func:`slimspec.pruning.steps.describe`); the distinct networks (random weights, BatchNorm
folded) are timed in alternating rounds at batch 1 and :data:`PROBE_BATCH` on the prune's
thread count, in the runtime asked for (a latency target's ``--latency-runtime``) or else in
each runtime that runs here (eager, channels-last, ONNX Runtime when installed), each network
scored in its fastest: the runtime the pruned model will be deployed in. Rounding up only
keeps channels, so the largest multiple whose network is within :data:`TIE` of the fastest
wins: channels the runtime runs at no extra time are capacity for free, and a multiple that
costs time must save it.
ONNX Runtime is fed by a quicker exporter for the probe (:attr:`Runtime.quick`), the same
runtime and graph optimizations.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from ..document import Spec
from ..errors import MissingExtraError
from ..ir import count_macs
from ..model import build
from ..utils.fileio import atomic_write, sha256_bytes
from .fold import fold_batchnorm
from .runtimes import get_runtime, runtime_names
from .table import Machine, cache_dir
from .timing import time_call, torch_threads

MULTIPLES = (1, 4, 8, 16, 32)
PROBE_BATCH = 8
ROUNDS = 3
PROBE_FORMAT = 3  # the cache key's version: what a cached answer was measured with
TIE = 0.05  # a larger multiple wins while its network's time is within this of the fastest (the probe's repeatability)

Runner = Callable[[], object]


@dataclass(frozen=True)
class RoundChoice:
    """The chosen multiple, each multiple's network time relative to the unrounded one's, and where it was timed
    (``runtime`` empty: every multiple gave the same network, none was timed)."""

    multiple: int
    relative: dict[int, float]
    runtime: str
    threads: int
    candidates: tuple[str, ...] = ()  # the runtimes ``runtime`` was chosen from (empty: it was asked for)
    macs: dict[int, float] | None = None  # each multiple's network MACs relative to the unrounded one's

    def describe(self) -> str:
        if not self.runtime:
            return (f"round-to auto: 1 (every multiple of {', '.join(map(str, self.relative))} gives the same "
                    "network: nothing to time)")
        times = ", ".join(f"{m}: {t:.2f}" for m, t in self.relative.items())
        macs = f"; MACs {', '.join(f'{m}: {c:.2f}' for m, c in self.macs.items())}" if self.macs else ""
        where = f"{self.runtime}, the fastest of {', '.join(self.candidates)}" if self.candidates else self.runtime
        return (f"round-to auto: {self.multiple} (the pruned network rounded up to each multiple, time relative to "
                f"unrounded: {times}{macs}; {where}, {self.threads} thread{'s' if self.threads != 1 else ''}, "
                f"batch 1 and {PROBE_BATCH})")


def _runner(model: torch.nn.Module, spec: Spec, runtime: str, batch: int, threads: int) -> Runner:
    x = torch.randn(batch, *spec.ir.input_shape, generator=torch.Generator().manual_seed(0))
    with torch_threads(threads):
        return get_runtime(runtime).prepare_quick(model, x, threads)


def _deployable(spec: Spec) -> torch.nn.Module:
    model = build(spec, seed=0).eval()
    fold_batchnorm(model)
    return model


def _minima(runners: Sequence[Runner], min_run_time: float, threads: int) -> list[float]:
    """Each runner's fastest block (ms) over :data:`ROUNDS` alternating rounds of a few short blocks."""
    best = [math.inf] * len(runners)
    for _ in range(ROUNDS):
        for i, run in enumerate(runners):
            timing = time_call(run, min_run_time=min_run_time, warmup=1, threads=threads, min_blocks=3)
            best[i] = min(best[i], timing.min_ms)
    return best


def _time(specs: Sequence[Spec], runtimes: Sequence[str], threads: int, min_run_time: float
          ) -> dict[tuple[str, int, int], float]:
    """(runtime, batch, network index) -> ms; runtimes that cannot run here (a missing extra) are left out."""
    keys, runners = [], []
    for index, spec in enumerate(specs):
        model = _deployable(spec)
        for runtime in runtimes:
            try:
                prepared = [(batch, _runner(model, spec, runtime, batch, threads)) for batch in (1, PROBE_BATCH)]
            except MissingExtraError:
                continue
            for batch, run in prepared:
                keys.append((runtime, batch, index))
                runners.append(run)
    return dict(zip(keys, _minima(runners, min_run_time, threads)))


def _relative(times: Mapping[tuple[str, int, int], float], runtime: str, index: int) -> float:
    """Network ``index``'s time relative to network 0's in ``runtime``, batch 1 and the probe batch alike."""
    return sum(times[(runtime, b, index)] / times[(runtime, b, 0)] for b in (1, PROBE_BATCH)) / 2


def pick(relative: Mapping[int, float]) -> int:
    """The largest multiple whose time is within :data:`TIE` of the fastest."""
    best = min(relative.values())
    return max(m for m, t in relative.items() if t <= best * (1 + TIE))


def probe(networks: Mapping[int, Spec], *, runtime: str | None = None, threads: int | None = None,
          min_run_time: float = 0.05, use_cache: bool = True) -> RoundChoice:
    """Time the prune's network rounded up to each multiple (``networks``: multiple -> spec, 1 among them).

    ``runtime``: the one to time in; None: every runtime that runs here, the chosen network's fastest reported.
    Multiples that give the same network share its time; of those, the smallest is the one reported.
    The answer is cached per machine, thread count, runtime asked for and networks
    (``~/.cache/slimspec/latency/round-*.json``): the same prune run again does not probe again.
    """
    threads = threads or torch.get_num_threads()
    distinct: dict[str, int] = {}  # spec text -> index into specs
    specs: list[Spec] = []
    index_of: dict[int, int] = {}
    for multiple in sorted(networks):
        spec = networks[multiple]
        if spec.text not in distinct:
            distinct[spec.text] = len(specs)
            specs.append(spec)
        index_of[multiple] = distinct[spec.text]
    if index_of.get(1) != 0:
        raise ValueError("probe: the unrounded network (multiple 1) must be among the networks")
    if len(specs) == 1:
        return RoundChoice(1, dict.fromkeys(networks, 1.0), "", threads)  # nothing to time
    key = json.dumps([PROBE_FORMAT, Machine.current(threads).as_dict(), runtime, sorted(index_of.items()),
                      [sha256_bytes(spec.text) for spec in specs], PROBE_BATCH, TIE, min_run_time], sort_keys=True)
    path = cache_dir() / f"round-{sha256_bytes(key)[:16]}.json"
    if use_cache:
        cached = _read_cache(path)
        if cached is not None:
            return replace(cached, threads=threads)
    choice = _probe(specs, index_of, networks, runtime, threads, min_run_time)
    if use_cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, json.dumps({**asdict(choice), "key": json.loads(key)}, indent=1))
        except OSError:
            pass  # a cache that cannot be written is only slower next time
    return choice


def _read_cache(path: Path) -> RoundChoice | None:
    """A cached choice, or None when there is none or it cannot be read (then the probe runs again)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return RoundChoice(int(data["multiple"]), {int(m): float(t) for m, t in data["relative"].items()},
                           str(data["runtime"]), int(data["threads"]), tuple(map(str, data["candidates"])),
                           {int(m): float(c) for m, c in data["macs"].items()})
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _probe(specs: Sequence[Spec], index_of: Mapping[int, int], networks: Mapping[int, Spec], runtime: str | None,
           threads: int, min_run_time: float) -> RoundChoice:
    """Time the distinct networks in the runtime given, or in every runtime that runs here, and pick.

    Each (runtime, network) pair scores its time relative to the fastest pair at each batch size,
    the two sizes alike; a network's score is its best runtime's. The multiple is picked on those
    scores (:func:`pick`), the runtime is the chosen network's best, and the times reported are
    relative to the unrounded network's in that runtime.
    """
    asked = [get_runtime(runtime).name] if runtime is not None else runtime_names()
    times = _time(specs, asked, threads, min_run_time)
    here = tuple(dict.fromkeys(rt for rt, _, _ in times))
    fastest = {b: min(times[(rt, b, i)] for rt in here for i in range(len(specs))) for b in (1, PROBE_BATCH)}
    score = {(rt, i): sum(times[(rt, b, i)] / fastest[b] for b in fastest) / len(fastest)
             for rt in here for i in range(len(specs))}
    best_runtime = {i: min(here, key=lambda rt: (score[(rt, i)], here.index(rt))) for i in range(len(specs))}
    chosen = pick({min(m for m, i in index_of.items() if i == index): score[(best_runtime[index], index)]
                   for index in range(len(specs))})
    runtime = best_runtime[index_of[chosen]]
    relative = {m: round(_relative(times, runtime, index_of[m]), 4) for m in sorted(networks)}
    base = count_macs(specs[0].ir)
    macs = {m: round(count_macs(networks[m].ir) / base, 4) for m in sorted(networks)}
    return RoundChoice(chosen, relative, runtime, threads, here if len(asked) > 1 else (), macs)


__all__ = ["RoundChoice", "probe", "pick", "MULTIPLES", "PROBE_BATCH", "TIE"]
