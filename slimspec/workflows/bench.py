"""``slimspec bench``: measured latency of one or more models beside their MACs.

Each model is made deployable (plain, gates/masks folded, BN folded unless ``fold_bn=False``)
and timed in each runtime at each batch size with :func:`slimspec.latency.measure_model`
(``torch.utils.benchmark``: warm-up, median, interquartile range). For two models the
report gives the measured speed-up next to the MAC ratio, and how much of the MAC ratio the
speed-up reaches (1.0 = latency falls exactly as MACs do).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..document import Spec
from ..ir import count_macs, count_params
from ..latency import prepare_runner, time_interleaved, torch_threads
from ..latency.table import LatencyTable, table_for_spec
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

    def as_dict(self) -> dict[str, Any]:
        return {"models": self.models, "threads": self.threads, "rows": self.rows, "ratios": self.ratios}

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
                      seed: int = 0) -> list[BenchModel]:
    """Deployable models for weights files, spec files / stock names (seeded random weights) or models."""
    taken: set[str] = set()
    out = []
    for source in sources:
        _, model = load_deployable(source, fold_bn=fold_bn, seed=seed)
        ir = model.ir
        out.append(BenchModel(_label(source, model, taken), model, count_params(ir), count_macs(ir)))
    return out


def bench(sources: list[str | os.PathLike | Spec | SpecNet], *, batches: tuple[int, ...] = (1, 32),
          runtimes: tuple[str, ...] = ("eager",), threads: int | None = None, fold_bn: bool = True,
          min_run_time: float = 0.2, rounds: int = 3, seed: int = 0) -> BenchReport:
    """Time every model in every runtime at every batch size; ratios of the first model to the others.

    Models are timed in ``rounds`` alternating rounds (median of rounds), so load from other
    processes affects all of them alike.
    """
    with torch_threads(threads):
        models = load_bench_models(sources, fold_bn=fold_bn, seed=seed)
        rows = []
        for runtime in runtimes:
            for batch in batches:
                runners = [prepare_runner(m.model, m.model.ir.input_shape, batch_size=batch, runtime=runtime,
                                          threads=threads, seed=seed) for m in models]
                timings = time_interleaved(runners, rounds=rounds, min_run_time=min_run_time, threads=threads)
                rows += [{"model": m.label, "runtime": runtime, "batch": batch, **t.as_dict()}
                         for m, t in zip(models, timings)]
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
    summary = [{"label": m.label, "spec": m.model.spec.name, "params": m.params, "macs": m.macs} for m in models]
    return BenchReport(summary, rows, ratios, threads)


def profile_table(spec: str | os.PathLike | Spec, *, runtime: str = "eager", batch: int = 1,
                  threads: int | None = None, out: str | os.PathLike | None = None, force: bool = False,
                  progress=None) -> tuple[LatencyTable, Path]:
    """``bench --profile``: the spec's latency table (cached per machine), also written to ``out``."""
    from ..utils.fileio import OutputTransaction

    with OutputTransaction(force=force) as outputs:  # an existing --out is refused before profiling
        target = outputs.reserve(out) if out is not None else None
        table, path = table_for_spec(spec, runtime=runtime, batch=batch, threads=threads, force=force,
                                     progress=progress)
        if target is not None:
            outputs.write(target, table.to_json())
            path = target
    return table, path
