"""Figures papers show, from slimspec's own artifacts (PNG or SVG by the output's suffix).

* :func:`plot_gammas` — histogram of channel scores (BN |gamma| for ``slimming``, gates,
  L1 norms...), global or per layer, log-scale counts, with the threshold ``slimspec prune``
  would use for the same options drawn (Liu et al. 2017, "Network Slimming", Fig. 4).
* :func:`plot_widths` — per-slot widths of two specs side by side (from the specs alone).
* :func:`plot_sensitivity` — accuracy vs pruning ratio per layer, from ``slimspec
  sensitivity --json`` (Li et al. 2017, "Pruning Filters for Efficient ConvNets", Fig. 2).
* :func:`plot_training` — training curves from run folders' ``metrics.jsonl``.
* :func:`plot_tradeoff` — accuracy vs MACs (or params, or latency) across runs.

Each ``*_data`` function returns exactly what its figure draws, so it can be checked
without looking at pixels. matplotlib is imported lazily (an optional extra: ``pip install
'slimspec[plot]'``) and only through its object API (``Figure`` + the Agg canvas): no pyplot,
no global backend switch. Files are written atomically and never clobbered unless asked.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..document import Spec, load_spec, spec_from_text
from ..errors import SlimspecError, TrainingError
from ..training.run_folder import RunFolder, read_metrics
from ..utils.fileio import atomic_write_with, check_writable, note_input

FORMATS = {".png": "png", ".svg": "svg"}
SUMMARY_FILE = "summary.json"  # written by slimspec.workflows.demo
WIDTH_KINDS = ("channel", "select", "stream")


# --------------------------------------------------------------------------------------------
# plumbing: matplotlib on demand, output checks, atomic save
# --------------------------------------------------------------------------------------------
def _figure(width: float, height: float) -> Any:
    """A matplotlib Figure on the Agg canvas (no pyplot); MissingExtraError without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        from ..errors import MissingExtraError

        raise MissingExtraError("slimspec plot", "plot", "matplotlib") from None
    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _output(out: str | os.PathLike, overwrite: bool) -> tuple[Path, str]:
    """Check the output path before any work: known suffix, not clobbering."""
    path = Path(out)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise SlimspecError(f"{path}: unsupported figure format '{path.suffix or '(none)'}' "
                            f"(use {' or '.join(FORMATS)})")
    check_writable(path, overwrite)
    return path, fmt


def _save(fig: Any, path: Path, fmt: str, overwrite: bool) -> Path:
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}  # reproducible bytes
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, format=fmt, metadata=metadata), overwrite=overwrite)
    return path


def _read_json(path: Path) -> Any:
    note_input(path)  # an input of the command: no output of it may replace this file
    if not path.is_file():
        raise SlimspecError(f"{path}: no such file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SlimspecError(f"{path}: not JSON ({exc})") from None


# --------------------------------------------------------------------------------------------
# channel scores and the threshold (Network Slimming Fig. 4)
# --------------------------------------------------------------------------------------------
@dataclass
class ScoreData:
    """Channel scores of the slots the policy decides on, and where it cuts.

    ``threshold`` is the policy's global threshold (channels scoring ``<=`` it are pruned;
    None for per-layer policies), the ``threshold`` ``slimspec prune`` reports for the same
    options; ``slot_thresholds`` is each slot's highest pruned score. ``ratio`` is the ratio
    applied (given, or found for a target).
    """

    method: str
    scores: dict[str, list[float]]
    threshold: float | None = None
    slot_thresholds: dict[str, float | None] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)
    ratio: float | None = None
    name: str = ""  # the spec's name
    amount: str = ""  # what set the threshold, unless given: "ratio 0.5", "percent 0.7", "target macs=0.5: ratio 0.4123"

    @property
    def values(self) -> list[float]:
        return [v for slot in self.scores.values() for v in slot]

    @property
    def pruned(self) -> int:
        return sum(len(v) for v in self.scores.values()) - sum(self.kept.values())


def score_data(weights: str | os.PathLike, method: str | None = None, *, plan: str | os.PathLike | Mapping | None = None,
               **options: Any) -> ScoreData:
    """Score every channel of ``weights`` with criterion ``method`` and decide as ``slimspec prune`` would.

    ``plan`` and the keyword ``options`` are :func:`slimspec.prune`'s (ratio, target,
    threshold, percent, scope, min_channels, round_to, exclude, overrides, prune_stream,
    target_options), with the same meanings; the decision is prune's own (``choose``), so
    ``threshold`` is the one prune reports. ``method`` defaults to the plan's, else slimming;
    with no amount and no default threshold (e.g. ``l1``) nothing is cut.
    """
    from ..model import load_model
    from ..pruning.steps import choose
    from ..pruning.criteria import ScoreContext, get_criterion
    from ..pruning.options import PruneOptions
    from ..pruning.policy import candidate_slots, decide, pattern_check
    from ..pruning.targets import TargetContext

    if method is None and plan is None:
        method = "slimming"
    opts = PruneOptions.resolve(plan, method=method, **options)
    criterion = get_criterion(opts.method)
    model, spec = load_model(weights)
    ir = spec.ir
    pattern_check(ir, opts.exclude, "exclude")
    pattern_check(ir, list(opts.overrides), "overrides")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    raw = criterion.score(ScoreContext(ir, state, model, seed=opts.seed))
    policy = opts.policy(criterion)
    slots = candidate_slots(ir, raw, policy)
    if not slots:
        raise SlimspecError(f"{weights}: method '{opts.method}' scores no prunable channel of {spec.name}")
    scores = {path: [float(v) for v in raw[path].flatten().tolist()] for path in slots}
    if opts.target or not policy.empty:
        decision, ratio = choose(spec, raw, opts, criterion, TargetContext(options=dict(opts.target_options)))
    else:  # nothing to cut: the histogram alone
        decision, ratio = decide(ir, raw, policy), None
    slot_thresholds: dict[str, float | None] = {}
    kept: dict[str, int] = {}
    for path in slots:
        keep = set(decision.kept[path])
        dropped = [s for i, s in enumerate(scores[path]) if i not in keep]
        slot_thresholds[path] = max(dropped) if dropped else None
        kept[path] = len(keep)
    if opts.target:
        (name, goal), = opts.target.items()
        amount = f"target {name}={goal:g}: ratio {ratio:.4g}"
    elif policy.percent is not None:
        amount = f"percent {policy.percent:g}"
    else:  # a given threshold speaks for itself
        amount = f"ratio {ratio:g}" if ratio is not None and policy.threshold is None else ""
    return ScoreData(opts.method, scores, decision.threshold, slot_thresholds, kept, ratio, spec.name, amount)


def histogram(values: Sequence[float], bins: int = 50) -> tuple[list[int], list[float]]:
    """Counts and edges over ``[min(0, lo), hi]`` in ``bins`` equal bins (numpy's rule: last bin closed)."""
    import numpy as np

    lo, hi = min(0.0, min(values)), max(values)
    counts, edges = np.histogram(np.asarray(values, dtype=np.float64), bins=bins, range=(lo, hi if hi > lo else lo + 1))
    return counts.tolist(), edges.tolist()


def _score_label(method: str) -> str:
    return {"slimming": "|BN gamma|", "gate": "gate value", "sss": "gate value", "l1": "filter L1 norm"}.get(
        method, f"{method} score")


def _draw_hist(ax: Any, values: Sequence[float], bins: int, cut: float | None, label: str | None) -> None:
    counts, edges = histogram(values, bins)
    ax.stairs(counts, edges, fill=True, color="#4878a8", alpha=0.85)
    ax.set_yscale("log")
    from matplotlib.ticker import LogFormatter

    ax.yaxis.set_major_formatter(LogFormatter())  # plain 1, 10, 100 (and 2, 5 ... when few decades)
    ax.yaxis.set_minor_formatter(LogFormatter())
    if cut is not None:
        ax.axvline(cut, color="#c0392b", linestyle="--", linewidth=1.2, label=label)


def plot_gammas(weights: str | os.PathLike, out: str | os.PathLike, *, method: str | None = None,
                per_layer: bool = False, bins: int = 50, overwrite: bool = False,
                plan: str | os.PathLike | Mapping | None = None, **options: Any) -> Path:
    """Histogram of channel scores with the threshold ``slimspec prune`` would use (Network Slimming Fig. 4).

    ``plan`` and ``options`` are :func:`slimspec.prune`'s, as in :func:`score_data`.
    """
    path, fmt = _output(out, overwrite)
    data = score_data(weights, method, plan=plan, **options)
    xlabel = _score_label(data.method)
    total = sum(len(v) for v in data.scores.values())
    what = f" ({data.amount})" if data.amount else ""
    if not per_layer:
        fig = _figure(7, 4)
        ax = fig.add_subplot()
        cut = data.threshold  # printed as prune prints it (``threshold %.6g``)
        label = f"threshold {cut:.6g}: {data.pruned:,} of {total:,} channels pruned{what}" if cut is not None else None
        _draw_hist(ax, data.values, bins, cut, label)
        if label:
            ax.legend(loc="upper right", fontsize=8)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("channels (log scale)")
        ax.set_title(f"{data.name} ({Path(weights).name}): {xlabel} of {total:,} channels in {len(data.scores)} slots")
    else:
        names = list(data.scores)
        cols = min(4, len(names))
        rows = math.ceil(len(names) / cols)
        fig = _figure(3.2 * cols, 2.3 * rows)
        axes = fig.subplots(rows, cols, squeeze=False)
        for ax, name in zip(axes.flat, names):
            cut = data.threshold if data.threshold is not None else data.slot_thresholds[name]
            _draw_hist(ax, data.scores[name], min(bins, 30), cut, None)
            ax.set_title(f"{name}: keeps {data.kept[name]}/{len(data.scores[name])}", fontsize=8)
            ax.tick_params(which="both", labelsize=7)
        for ax in list(axes.flat)[len(names):]:
            ax.set_visible(False)
        fig.suptitle(f"{data.name} ({Path(weights).name}): {xlabel} per slot (log counts; dashed: pruning threshold)", fontsize=10)
    return _save(fig, path, fmt, overwrite)


# --------------------------------------------------------------------------------------------
# widths before / after (specs alone)
# --------------------------------------------------------------------------------------------
def spec_of(source: str | os.PathLike | Spec) -> Spec:
    """A spec from a YAML file, a stock name, or a weights file's embedded spec (no tensors read)."""
    if isinstance(source, Spec):
        return source
    path = Path(source)
    if path.suffix == ".safetensors":
        from ..weights import embedded_spec_text, read_metadata

        return spec_from_text(embedded_spec_text(read_metadata(path), path), str(path))
    return load_spec(source)


@dataclass
class WidthData:
    """Per-slot widths of spec A (``before``) and spec B (``after``); 0 where a spec lacks the slot."""

    slots: list[str]
    before: list[int]
    after: list[int]
    names: tuple[str, str]


def width_data(spec_a: str | os.PathLike | Spec, spec_b: str | os.PathLike | Spec) -> WidthData:
    a, b = spec_of(spec_a), spec_of(spec_b)
    slots = [p for p, s in a.ir.slots.items() if s.kind in WIDTH_KINDS]
    slots += [p for p, s in b.ir.slots.items() if s.kind in WIDTH_KINDS and p not in a.ir.slots]

    def size(spec: Spec, path: str) -> int:
        return spec.ir.slots[path].size if path in spec.ir.slots else 0

    names = (a.name, b.name)
    if a.name == b.name:  # a pruned spec keeps its parent's name: label by file instead
        names = tuple(Path(str(s)).stem if not isinstance(s, Spec) else f"{s.name} ({i})"
                      for i, s in zip("AB", (spec_a, spec_b)))
    return WidthData(slots, [size(a, p) for p in slots], [size(b, p) for p in slots], names)


def plot_widths(spec_a: str | os.PathLike | Spec, spec_b: str | os.PathLike | Spec, out: str | os.PathLike, *,
                overwrite: bool = False) -> Path:
    """Bars of every slot's width in two specs (e.g. the parent and its pruned child)."""
    path, fmt = _output(out, overwrite)
    data = width_data(spec_a, spec_b)
    n = len(data.slots)
    fig = _figure(max(6.0, 0.38 * n + 2), 4)
    ax = fig.add_subplot()
    xs = list(range(n))
    label_a, label_b = data.names if data.names[0] != data.names[1] else (f"{data.names[0]} (A)", f"{data.names[1]} (B)")
    ax.bar([x - 0.2 for x in xs], data.before, width=0.4, label=f"{label_a}: {sum(data.before):,}", color="#9bb5d0")
    ax.bar([x + 0.2 for x in xs], data.after, width=0.4, label=f"{label_b}: {sum(data.after):,}", color="#2e5f8a")
    ax.set_xticks(xs, data.slots, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("channels")
    ax.set_title(f"widths per slot: {label_a} vs {label_b}")
    ax.legend(fontsize=8)
    return _save(fig, path, fmt, overwrite)


# --------------------------------------------------------------------------------------------
# sensitivity (Li et al. Fig. 2)
# --------------------------------------------------------------------------------------------
def sensitivity_data(source: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """The validated ``slimspec sensitivity --json`` document (a path or the dict itself)."""
    where = "sensitivity" if isinstance(source, Mapping) else str(source)
    doc = source if isinstance(source, Mapping) else _read_json(Path(source))
    if not isinstance(doc, Mapping) or not isinstance(doc.get("slots"), Mapping) or not isinstance(doc.get("ratios"), list):
        raise SlimspecError(f"{where}: not a 'slimspec sensitivity --json' result (needs 'ratios' and 'slots')")
    if not doc["slots"]:
        raise SlimspecError(f"{where}: slots: empty, nothing to plot")
    for slot, row in doc["slots"].items():
        if not isinstance(row, Mapping) or not all(isinstance(v, (int, float)) for v in row.values()):
            raise SlimspecError(f"{where}: slots.{slot}: expected {{ratio: accuracy}}")
    return dict(doc)


def plot_sensitivity(source: str | os.PathLike | Mapping[str, Any], out: str | os.PathLike, *,
                     overwrite: bool = False) -> Path:
    """Accuracy vs ratio, one curve per slot, baseline dashed (Li et al. 2017, Fig. 2)."""
    path, fmt = _output(out, overwrite)
    doc = sensitivity_data(source)
    fig = _figure(7.5, 4.5)
    ax = fig.add_subplot()
    for slot, row in doc["slots"].items():
        points = sorted((float(r), float(a)) for r, a in row.items())
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, linewidth=1, label=slot)
    if isinstance(doc.get("baseline"), (int, float)):
        ax.axhline(doc["baseline"], color="black", linestyle="--", linewidth=1, label=f"unpruned {doc['baseline']:.1f}%")
    ax.set_xlabel("fraction of the slot's channels pruned")
    ax.set_ylabel("test accuracy % (no fine-tuning)")
    ax.set_title(f"pruning sensitivity per slot ({doc.get('method', '?')}, {doc.get('data', '?')})")
    ax.legend(fontsize=6, ncol=max(1, math.ceil(len(doc["slots"]) / 14)), loc="lower left")
    return _save(fig, path, fmt, overwrite)


# --------------------------------------------------------------------------------------------
# training curves
# --------------------------------------------------------------------------------------------
def training_data(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The per-epoch records of a run folder's ``metrics.jsonl`` (or of that file itself); at least one."""
    path = Path(run_dir)
    return RunFolder(path).read_metrics() if path.is_dir() else read_metrics(path)


TRAINING_PANELS = (
    ("accuracy %", ("test_accuracy", "train_accuracy")),
    ("loss", ("test_loss", "train_loss")),
    ("BN |gamma| < eps (fraction)", ("bn_small",)),
)


def plot_training(run_dirs: Sequence[str | os.PathLike], out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Accuracy, loss and BN sparsity per epoch for one or more run folders."""
    path, fmt = _output(out, overwrite)
    if not run_dirs:
        raise SlimspecError("plot training: give at least one run folder")
    runs = {str(run): training_data(run) for run in run_dirs}
    labels = _short_labels(list(runs))
    panels = [(title, keys) for title, keys in TRAINING_PANELS
              if any(k in r for records in runs.values() for r in records for k in keys)]
    fig = _figure(4.2 * len(panels), 3.6)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, keys) in zip(axes, panels):
        for color, (run, records) in enumerate(runs.items()):
            for style, key in zip(("-", ":"), keys):
                points = [(r["epoch"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
                if points:
                    ax.plot([p[0] for p in points], [p[1] for p in points], style, color=f"C{color}",
                            label=f"{labels[run]} ({key.split('_')[0]})" if len(keys) > 1 else labels[run])
        ax.set_xlabel("epoch")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7)
    return _save(fig, path, fmt, overwrite)


def _short_labels(paths: Sequence[str]) -> dict[str, str]:
    """Folder names, or the last two path parts where names repeat."""
    names = [Path(p).name or p for p in paths]
    if len(set(names)) == len(names):
        return dict(zip(paths, names))
    return {p: "/".join(Path(p).parts[-2:]) for p in paths}


# --------------------------------------------------------------------------------------------
# accuracy vs cost across runs
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TradeoffPoint:
    label: str
    accuracy: float
    macs: int
    params: int
    latency_ms: float | None = None


def _run_point(folder: Path) -> TradeoffPoint:
    from ..ir import count_macs, count_params

    run = RunFolder(folder)
    records = run.read_metrics()
    spec = spec_of(run.weights())
    last = records[-1]
    accuracy = last.get("test_accuracy")
    if not isinstance(accuracy, (int, float)):
        raise TrainingError(f"{run.metrics}: last epoch has no test_accuracy")
    return TradeoffPoint(folder.name, float(accuracy), count_macs(spec.ir), count_params(spec.ir),
                         last.get("latency_ms"))


def tradeoff_data(sources: Sequence[str | os.PathLike]) -> list[TradeoffPoint]:
    """One point per run folder (last epoch's test accuracy; MACs of its spec), three per demo summary."""
    points: list[TradeoffPoint] = []
    for source in sources:
        path = Path(source)
        summary = path / SUMMARY_FILE if path.is_dir() else path
        if summary.name == SUMMARY_FILE and summary.is_file():
            doc = _read_json(summary)
            rows = {k: v for k, v in doc.items() if isinstance(v, dict) and {"accuracy", "macs", "params"} <= set(v)} \
                if isinstance(doc, dict) else {}
            if not rows:
                raise SlimspecError(f"{summary}: no models with accuracy, macs and params")
            prefix = f"{summary.parent.name}/" if len(sources) > 1 else ""
            points += [TradeoffPoint(prefix + label, float(r["accuracy"]), int(r["macs"]), int(r["params"]),
                                     r.get("latency_ms")) for label, r in rows.items()]
        elif path.is_dir():
            points.append(_run_point(path))
        else:
            raise SlimspecError(f"{path}: not a run folder ({RunFolder.METRICS}) or a demo {SUMMARY_FILE}")
    return points


TRADEOFF_AXES = {"macs": "MACs", "params": "parameters", "latency": "latency ms (CPU, batch 1)"}


def plot_tradeoff(sources: Sequence[str | os.PathLike], out: str | os.PathLike, *, x: str = "macs",
                  overwrite: bool = False) -> Path:
    """Accuracy vs MACs (``x="params"``, ``"latency"``) across run folders and demo summaries."""
    path, fmt = _output(out, overwrite)
    if x not in TRADEOFF_AXES:
        raise SlimspecError(f"x: expected one of {', '.join(TRADEOFF_AXES)}, got '{x}'")
    if not sources:
        raise SlimspecError("plot tradeoff: give at least one run folder or summary.json")
    points = tradeoff_data(sources)
    key = "latency_ms" if x == "latency" else x
    missing = [p.label for p in points if getattr(p, key) is None]
    if missing:
        raise SlimspecError(f"{missing[0]}: no latency recorded (use --x macs or params)")
    fig = _figure(6, 4.2)
    ax = fig.add_subplot()
    for i, p in enumerate(points):
        ax.scatter([getattr(p, key)], [p.accuracy], color=f"C{i % 10}", s=36, zorder=3)
        ax.annotate(p.label, (getattr(p, key), p.accuracy), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
    ax.margins(x=0.15, y=0.1)
    ax.set_xlabel(TRADEOFF_AXES[x])
    ax.set_ylabel("test accuracy %")
    ax.set_title(f"accuracy vs {TRADEOFF_AXES[x]}")
    ax.grid(True, alpha=0.3)
    return _save(fig, path, fmt, overwrite)


PLOTS = {"gammas": plot_gammas, "widths": plot_widths, "sensitivity": plot_sensitivity,
         "training": plot_training, "tradeoff": plot_tradeoff}

__all__ = ["PLOTS", "ScoreData", "TradeoffPoint", "WidthData", "histogram", "plot_gammas", "plot_sensitivity",
           "plot_tradeoff", "plot_training", "plot_widths", "score_data", "sensitivity_data", "spec_of",
           "training_data", "tradeoff_data", "width_data"]
