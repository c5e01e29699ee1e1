"""``slimspec bench``: measured latency of one or more models beside their MACs.

Each model is made deployable (plain, gates/masks folded, BN folded unless ``fold_bn=False``)
and timed in each runtime at each batch size with :func:`slimspec.latency.measure_model`
(``torch.utils.benchmark``: warm-up, median, interquartile range). For two models the
report gives the measured speed-up next to the MAC ratio, and how much of the MAC ratio the
speed-up reaches (1.0 = latency falls exactly as MACs do).

Models are compared on one input: models whose specs take different inputs are refused unless
``input_shape`` (``--input C,H,W``) says which input to time them all on. Every request is
checked before anything is allocated (threads, run time, a batch's memory); a timing whose
spread (IQR) exceeds its median is reported as a warning: the machine was too busy to trust it.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..document import Spec
from ..ir import count_macs, count_params
from ..errors import SlimspecError
from ..latency import prepare_runner, time_interleaved, torch_threads
from ..latency.measure import check_batch_memory
from ..latency.table import LatencyTable, table_for_spec
from ..latency.timing import LatencyError, check_threads
from ..model import build
from ..nn import SpecNet
from ..utils.tables import format_table
from .deploy import load_deployable


@dataclass
class BenchModel:
    label: str
    model: SpecNet
    params: int
    macs: int


@dataclass
class BenchReport:
    models: list[dict[str, Any]]
    rows: list[dict[str, Any]]  # one per (model, runtime, batch)
    ratios: list[dict[str, Any]] = field(default_factory=list)  # first model vs each other
    threads: int | None = None
    warnings: list[str] = field(default_factory=list)  # timings too spread to trust (IQR > median)

    def as_dict(self) -> dict[str, Any]:
        return {"models": self.models, "threads": self.threads, "rows": self.rows, "ratios": self.ratios,
                "warnings": self.warnings}

    def table(self) -> str:
        lines = [format_table(["model", "params", "MACs"],
                              [[m["label"], f"{m['params']:,}", f"{m['macs']:,}"] for m in self.models])]
        lines.append("")
        lines.append(format_table(
            ["model", "runtime", "batch", "median ms", "IQR ms", "min ms", "runs"],
            [[r["model"], r["runtime"], str(r["batch"]), f"{r['median_ms']:.3f}", f"{r['iqr_ms']:.3f}",
              f"{r['min_ms']:.3f}", str(r["runs"])] for r in self.rows]))
        if self.ratios:
            lines.append("")
            lines.append(format_table(
                ["vs", "runtime", "batch", "speed-up", "MAC ratio", "of MAC ratio", "speed-up of minima"],
                [[f"{r['base']} / {r['model']}", r["runtime"], str(r["batch"]), f"{r['speedup']:.2f}x",
                  f"{r['mac_ratio']:.2f}x", f"{r['fraction_of_mac_ratio']:.2f}", f"{r['speedup_of_minima']:.2f}x"]
                 for r in self.ratios]))
        return "\n".join(lines)


def _label(source: Any, model: SpecNet, taken: set[str]) -> str:
    label = Path(str(source)).stem if isinstance(source, (str, os.PathLike)) else model.spec.name
    base, n = label, 2
    while label in taken:
        label, n = f"{base}#{n}", n + 1
    taken.add(label)
    return label


def load_bench_models(sources: list[str | os.PathLike | Spec | SpecNet], *, fold_bn: bool = True,
                      seed: int = 0, input_shape: tuple[int, ...] | None = None) -> list[BenchModel]:
    """Deployable models for weights files, spec files / stock names (seeded random weights) or models.

    With ``input_shape`` every model is rebuilt for that input (its weights unchanged) when its
    spec takes another one; a network that cannot take it is refused in one line.
    """
    taken: set[str] = set()
    out = []
    for source in sources:
        reference, model = load_deployable(source, fold_bn=fold_bn, seed=seed)
        label = _label(source, model, taken)
        if input_shape is not None and tuple(model.ir.input_shape) != tuple(input_shape):
            model = _at_input(reference, tuple(input_shape), label, fold_bn)
        ir = model.ir
        out.append(BenchModel(label, model, count_params(ir), count_macs(ir)))
    return out


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(v) for v in shape)


def _at_input(reference: SpecNet, input_shape: tuple[int, ...], label: str, fold_bn: bool) -> SpecNet:
    """``reference`` (eval mode) with its spec's input replaced, same weights, made deployable."""
    from .deploy import deployable

    spec = reference.spec
    refused = f"{label}: takes {_shape(spec.ir.input_shape)} inputs and cannot run on {_shape(input_shape)} (--input)"
    try:
        model = build(Spec.from_data({**spec.data, "input": list(input_shape)}), reference.mode, seed=0)
    except SlimspecError as exc:
        raise LatencyError(f"{refused}: {exc.lines()[0].removeprefix('error: ')}") from None
    state, wanted = reference.state_dict(), model.state_dict()
    for key, tensor in state.items():
        if key in wanted and wanted[key].shape != tensor.shape:
            raise LatencyError(f"{refused}: its {key} is {_shape(tuple(tensor.shape))}, the network on that input "
                               f"needs {_shape(tuple(wanted[key].shape))}")
    model.load_state_dict(state)
    return deployable(model.eval(), fold_bn=fold_bn)


def check_bench_options(*, batches: tuple[int, ...], runtimes: tuple[str, ...], threads: int | None,
                        min_run_time: float, rounds: int) -> None:
    """Refuse what bench cannot honour before any model is loaded (one line each)."""
    check_threads(threads)
    if not isinstance(min_run_time, (int, float)) or isinstance(min_run_time, bool) \
            or not math.isfinite(min_run_time) or min_run_time <= 0:
        raise LatencyError(f"min_run_time must be a finite number of seconds > 0, got {min_run_time!r}")
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 1:
        raise LatencyError(f"rounds must be an integer >= 1, got {rounds!r}")
    if not batches or any(not isinstance(b, int) or isinstance(b, bool) or b < 1 for b in batches):
        raise LatencyError(f"batch sizes must be integers >= 1, got {list(batches)!r}")
    if not runtimes:
        raise LatencyError("give at least one runtime")


def check_same_input(models: list[BenchModel]) -> None:
    """Models timed side by side must take the same input, or their ratios compare nothing."""
    shapes = {tuple(m.model.ir.input_shape) for m in models}
    if len(shapes) > 1:
        listed = ", ".join(f"{m.label} {_shape(m.model.ir.input_shape)}" for m in models)
        raise LatencyError(f"the models take different inputs ({listed}): their latencies do not compare; "
                           f"give --input C,H,W to time them all on one input")


def bench(sources: list[str | os.PathLike | Spec | SpecNet], *, batches: tuple[int, ...] = (1, 32),
          runtimes: tuple[str, ...] = ("eager",), threads: int | None = None, fold_bn: bool = True,
          min_run_time: float = 0.2, rounds: int = 3, seed: int = 0,
          input_shape: tuple[int, ...] | None = None) -> BenchReport:
    """Time every model in every runtime at every batch size; ratios of the first model to the others.

    Models are timed in ``rounds`` alternating rounds (median of rounds), so load from other
    processes affects all of them alike. Models must take the same input, or ``input_shape``
    says which one to time them all on (MACs are then counted at that input too). A batch
    whose tensors would not fit in the memory available is refused before it is allocated.
    """
    check_bench_options(batches=batches, runtimes=runtimes, threads=threads, min_run_time=min_run_time,
                        rounds=rounds)
    with torch_threads(threads):
        models = load_bench_models(sources, fold_bn=fold_bn, seed=seed, input_shape=input_shape)
        check_same_input(models)
        for m in models:
            for batch in batches:
                check_batch_memory(m.model.ir, batch, m.label)
        rows = []
        for runtime in runtimes:
            for batch in batches:
                runners = [prepare_runner(m.model, m.model.ir.input_shape, batch_size=batch, runtime=runtime,
                                          threads=threads, seed=seed) for m in models]
                timings = time_interleaved(runners, rounds=rounds, min_run_time=min_run_time, threads=threads)
                rows += [{"model": m.label, "runtime": runtime, "batch": batch, **t.as_dict()}
                         for m, t in zip(models, timings)]
    warnings = [f"warning: {r['model']} ({r['runtime']}, batch {r['batch']}): the timings spread more than "
                f"their median (IQR {r['iqr_ms']:.3f} ms > median {r['median_ms']:.3f} ms): the machine is busy; "
                f"do not trust this row (rerun with --threads 1 or a longer --min-run-time)"
                for r in rows if r["iqr_ms"] > r["median_ms"]]
    ratios = []
    base = models[0]
    by_key = {(r["model"], r["runtime"], r["batch"]): r for r in rows}
    for other in models[1:]:
        for runtime in runtimes:
            for batch in batches:
                a, b = by_key[(base.label, runtime, batch)], by_key[(other.label, runtime, batch)]
                speedup, mac_ratio = a["median_ms"] / b["median_ms"], base.macs / other.macs
                ratios.append({"base": base.label, "model": other.label, "runtime": runtime, "batch": batch,
                               "speedup": speedup, "mac_ratio": mac_ratio,
                               "fraction_of_mac_ratio": speedup / mac_ratio,
                               "speedup_of_minima": a["min_ms"] / b["min_ms"]})
    summary = [{"label": m.label, "spec": m.model.spec.name, "input": list(m.model.ir.input_shape),
                "params": m.params, "macs": m.macs} for m in models]
    return BenchReport(summary, rows, ratios, threads, warnings)


def profile_table(spec: str | os.PathLike | Spec, *, runtime: str = "eager", batch: int = 1,
                  threads: int | None = None, out: str | os.PathLike | None = None, force: bool = False,
                  progress=None, min_run_time: float | None = None) -> tuple[LatencyTable, Path]:
    """``bench --profile``: the spec's latency table (cached per machine), also written to ``out``.

    Profiled on one thread unless ``threads`` says otherwise; ``min_run_time`` is the seconds
    spent on each sampled width (default: the table's own).
    """
    from ..utils.fileio import OutputTransaction

    check_bench_options(batches=(batch,), runtimes=(runtime,), threads=threads,
                        min_run_time=0.02 if min_run_time is None else min_run_time, rounds=1)
    options = {} if min_run_time is None else {"min_run_time": min_run_time}
    with OutputTransaction(force=force) as outputs:  # an existing --out is refused before profiling
        target = outputs.reserve(out) if out is not None else None
        table, path = table_for_spec(spec, runtime=runtime, batch=batch, threads=threads, force=force,
                                     progress=progress, **options)
        if target is not None:
            outputs.write(target, table.to_json())
            path = target
    return table, path
