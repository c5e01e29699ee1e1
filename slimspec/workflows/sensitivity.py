"""Per-layer pruning sensitivity (Li et al. 2017, Figure 2).

Prune one slot at a time at several ratios (every other slot untouched), and measure the
accuracy of each pruned network without fine-tuning. Layers whose accuracy falls off early
are the sensitive ones Li et al. skip or prune less; the table is the evidence behind a plan.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from ..model import load_model
from ..data import get_dataset
from ..errors import DataError, PruneError
from ..latency.timing import check_threads, torch_threads
from ..training.loop import evaluate_model
from ..pruning.api import prune
from ..pruning.criteria import get_criterion
from ..pruning.options import PruneOptions
from ..pruning.patterns import matches
from ..pruning.policy import pattern_check
from ..utils.progress import progress

DEFAULT_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def sensitivity(weights: str | os.PathLike, data: str, *, method: str = "l1",
                ratios: Sequence[float] = DEFAULT_RATIOS, slots: Sequence[str] = (), limit: int | None = None,
                data_dir: str | None = None, device: str = "cpu", quiet: bool = False, threads: int | None = None,
                **options: Any) -> dict[str, Any]:
    """Accuracy (percent, test split) after pruning each slot alone at each ratio.

    ``slots`` are spec-path patterns (default: every channel or selection slot); ``limit``
    evaluates on the first N test images; other keywords go to :func:`prune` (e.g. calibration).
    Progress goes to stderr (a bar on a terminal, a status line every 10 s otherwise) unless ``quiet``;
    ``threads`` sets torch's CPU threads while it runs (the same rule as everywhere, restored after).
    """
    check_threads(threads)
    with torch_threads(threads):
        return _sensitivity(weights, data, method=method, ratios=ratios, slots=slots, limit=limit,
                            data_dir=data_dir, device=device, quiet=quiet, **options)


def _sensitivity(weights: str | os.PathLike, data: str, *, method: str, ratios: Sequence[float],
                 slots: Sequence[str], limit: int | None, data_dir: str | None, device: str, quiet: bool,
                 **options: Any) -> dict[str, Any]:
    if not ratios:
        raise PruneError("sensitivity: give at least one ratio")
    base = PruneOptions.resolve(method=method, **options)  # what every prune below gets, checked before any work
    criterion = get_criterion(base.method)
    for ratio in ratios:  # each ratio checked by the policy that will apply it
        base.policy(criterion, ratio=float(ratio))
    if limit is not None and limit < 1:
        raise DataError(f"sensitivity: --limit must be at least 1, got {limit}")
    model, spec = load_model(weights)
    pattern_check(spec.ir, list(slots), "slot")
    bundle = get_dataset(data, data_dir=data_dir, input_shape=spec.ir.input_shape)
    if limit is not None:
        bundle = bundle.limit(limit)
    target = torch.device(device)
    baseline = evaluate_model(model.to(target), bundle, device=target)["accuracy"]
    chosen = [path for path, slot in spec.ir.slots.items() if slot.kind in ("channel", "select")
              and (not slots or any(matches(p, path) for p in slots))]
    if not chosen:
        raise PruneError("sensitivity: no channel or selection slot to analyse"
                         + (f" matches {', '.join(slots)}" if slots else ""))
    table: dict[str, dict[str, float]] = {}
    with progress(total=len(chosen) * len(ratios), desc="sensitivity", enabled=not quiet, unit="prune") as bar:
        for path in chosen:
            row = {}
            for ratio in ratios:
                result = prune(model.cpu(), method, overrides={path: ratio}, **options)
                row[f"{ratio:g}"] = evaluate_model(result.model.to(target), bundle, device=target)["accuracy"]
                bar.update(1, f"{path} at {ratio:g}: {row[f'{ratio:g}']:.1f}%")
            table[path] = row
    return {"weights": str(weights), "data": data, "method": method, "baseline": baseline,
            "ratios": [float(r) for r in ratios], "slots": table}
