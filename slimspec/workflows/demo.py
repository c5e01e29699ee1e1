"""``slimspec demo``: the whole loop, offline, on scikit-learn's 8x8 digits.

Sparsity training (Network Slimming's L1 on BN gammas) -> slimming prune to a MACs target ->
fine-tune from the transplanted weights; then params, MACs, accuracy and measured CPU latency
for the original, the pruned (before fine-tuning) and the fine-tuned model, and the spec diff.
Everything lands in one folder, with ``summary.json`` and the figures (``gammas.png``: BN |gamma|
histogram with the pruning threshold, ``widths.png``, ``training.png``, ``tradeoff.png``) when
matplotlib is installed. Progress goes to stderr (:mod:`slimspec.utils.progress`).
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import torch

from ..data import get_dataset
from ..model import build, load_model
from ..document import Spec, load_spec
from ..ir import count_macs, count_params
from ..pruning.api import prune
from ..pruning.criteria import ScoreContext, get_criterion
from ..pruning.options import parse_target
from ..report.diff import format_diff, spec_diff
from ..utils.tables import format_table
from ..training.api import evaluate, finetune, train
from ..training.config import threads_problem
from ..training.latency import measure_latency
from ..training.run_folder import RunFolder
from ..errors import MissingExtraError, TrainingError
from ..latency import torch_threads
from ..report import plots
from ..utils.fileio import atomic_write
from ..utils.progress import Progress, progress
from ..utils.text import plural

STAGES = ("training", "pruning", "fine-tuning", "measuring", "plotting")  # progress counts an epoch or a stage as one step
METHOD = "slimming"  # the demo's pruning criterion
DATA = "digits"


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and any(out.iterdir()) and not force:
        raise FileExistsError(f"{out}: exists and is not empty (use --force to overwrite, or --out DIR)")


def run_demo(out: str | os.PathLike = "slimspec-demo", *, spec: str = "digits_vgg", epochs: int = 30,
             finetune_epochs: int = 20, sparsity: float = 1e-3, target_macs: float = 0.5, lr: float = 0.1,
             finetune_lr: float = 0.01, seed: int = 0, force: bool = False, verbose: bool = False,
             threads: int | None = None, quiet: bool = False, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the demo into ``out``; ``threads`` sets torch's CPU threads for the whole run (restored after).

    A spec the demo cannot take to the end (no BatchNorm for the slimming prune, not fit for the
    digits) is refused before anything is written or trained. A demo that fails leaves no folder
    that blocks the rerun: what it wrote into a folder it made (or found empty) is removed.
    """
    _check_options(epochs, finetune_epochs, sparsity, target_macs, lr, finetune_lr, threads)
    with torch_threads(threads):
        with progress(total=epochs + finetune_epochs + 3, desc="demo", enabled=not quiet, unit="step") as bar:
            def said(line: str) -> None:  # a terminal bar is cleared while our lines print
                with bar.suspended():
                    say(line)

            return _run(Path(out), spec, epochs, finetune_epochs, sparsity, target_macs, lr, finetune_lr, seed, force,
                        verbose, said, bar)


def _check_options(epochs: int, finetune_epochs: int, sparsity: float, target_macs: float, lr: float,
                   finetune_lr: float, threads: int | None) -> None:
    """Refuse what would fail (or mean nothing) only after minutes of training."""
    if problem := threads_problem(threads):
        raise TrainingError(f"--{problem}")
    for name, value in (("epochs", epochs), ("finetune-epochs", finetune_epochs)):
        if value < 1:
            raise TrainingError(f"--{name} must be at least 1, got {value}")
    for name, value in (("lr", lr), ("finetune-lr", finetune_lr)):
        if not (math.isfinite(value) and value > 0):
            raise TrainingError(f"--{name} must be a positive number, got {value}")
    if not (math.isfinite(sparsity) and sparsity >= 0):
        raise TrainingError(f"--sparsity must be a non-negative number, got {sparsity}")
    parse_target({"macs": target_macs})  # the same range check prune applies


def _checked_spec(spec: str) -> Spec:
    """The demo's spec, refused in one line when the demo could not take it to the end (checked untrained)."""
    parent = load_spec(spec)
    model = build(parent, "plain", seed=0)
    scores = get_criterion(METHOD).score(ScoreContext(parent.ir, model.state_dict(), model))
    if not any(parent.ir.slots[path].prunable for path in scores):
        raise TrainingError(f"--spec {spec}: the demo prunes with '{METHOD}', which needs BatchNorm after the "
                            f"prunable layers, and {parent.name} has none; choose a spec with BatchNorm "
                            f"(e.g. digits_vgg)")
    dataset = get_dataset(DATA, input_shape=parent.ir.input_shape)
    if dataset.num_classes != parent.ir.num_classes:
        raise TrainingError(f"--spec {spec}: the demo trains on {DATA} ({dataset.num_classes} classes) but "
                            f"{parent.name} has num_classes: {parent.ir.num_classes}")
    return parent


def _run(out: Path, spec: str, epochs: int, finetune_epochs: int, sparsity: float, target_macs: float, lr: float,
         finetune_lr: float, seed: int, force: bool, verbose: bool, say: Callable[[str], None],
         bar: Progress) -> dict[str, Any]:
    _check_out(out, force)
    parent = _checked_spec(spec)
    created = not out.exists()
    empty = created or not any(out.iterdir())
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _stages(out, parent, epochs, finetune_epochs, sparsity, target_macs, lr, finetune_lr, seed, verbose,
                       say, bar)
    except BaseException:
        if empty:  # only what this demo wrote: a folder the user filled (reused with --force) is left alone
            _remove_written(out, created)
        raise


def _remove_written(out: Path, created: bool) -> None:
    """Remove a failed demo's files, so the rerun is not refused for a non-empty folder."""
    if created:
        shutil.rmtree(out, ignore_errors=True)
        return
    for entry in list(out.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _stages(out: Path, parent: Spec, epochs: int, finetune_epochs: int, sparsity: float, target_macs: float,
            lr: float, finetune_lr: float, seed: int, verbose: bool, say: Callable[[str], None],
            bar: Progress) -> dict[str, Any]:
    parent_path = out / f"{parent.name}.yaml"
    atomic_write(parent_path, parent.text)
    torch.manual_seed(seed)

    trained_run, finetuned_run = RunFolder(out / "train"), RunFolder(out / "finetune")
    bar.set_status(STAGES[0])
    say(f"[1/3] training {parent.name} on digits for {plural(epochs, 'epoch')} with BN sparsity {sparsity:g} ...")
    trained = train(parent_path, "digits", trained_run, epochs=epochs, sparsity=sparsity, lr=lr, seed=seed,
                    quiet=not verbose, force=True)
    say(f"      test accuracy {trained.final['test_accuracy']:.2f}%")

    bar.update(epochs, STAGES[1])
    say(f"[2/3] slimming prune to {target_macs:.0%} of the MACs ...")
    result = prune(trained_run.last, METHOD, target={"macs": target_macs}, seed=seed)
    pruned_path, pruned_weights = result.save(out / f"{parent.name}_pruned.yaml", overwrite=True)
    say(result.table())

    bar.update(1, STAGES[2])
    say(f"[3/3] fine-tuning the pruned network for {plural(finetune_epochs, 'epoch')} ...")
    finetune(pruned_path, "digits", finetuned_run, epochs=finetune_epochs, lr=finetune_lr, seed=seed,
             quiet=not verbose, force=True)

    bar.update(finetune_epochs, STAGES[3])
    rows: dict[str, dict[str, Any]] = {}
    for label, weights in [("original", trained_run.last), ("pruned", pruned_weights),
                           ("finetuned", finetuned_run.last)]:
        model, model_spec = load_model(weights)
        rows[label] = {
            "weights": str(weights),
            "params": count_params(model_spec.ir),
            "macs": count_macs(model_spec.ir),
            "accuracy": round(evaluate(model, "digits")["accuracy"], 2),
            "latency_ms": round(measure_latency(model, model_spec.ir.input_shape), 4),
        }
    diff = spec_diff(load_spec(parent_path), load_spec(pruned_path))
    summary = {
        **rows,
        "spec": parent.name,
        "data": "digits",
        "settings": {"epochs": epochs, "finetune_epochs": finetune_epochs, "sparsity": sparsity,
                     "target_macs": target_macs, "seed": seed},
        "macs_reduction_percent": round(100 * (1 - rows["finetuned"]["macs"] / rows["original"]["macs"]), 2),
        "accuracy_change_points": round(rows["finetuned"]["accuracy"] - rows["original"]["accuracy"], 2),
        "diff": diff,
    }
    atomic_write(out / plots.SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    bar.update(1, STAGES[4])
    figures = _plots(out, trained_run, finetuned_run, parent_path, pruned_path, result.decision.threshold, say)
    bar.update(1)

    table = format_table(
        ["model", "params", "MACs", "accuracy %", "latency ms (CPU, batch 1)"],
        [[label, f"{r['params']:,}", f"{r['macs']:,}", f"{r['accuracy']:.2f}", f"{r['latency_ms']:.3f}"]
         for label, r in rows.items()],
    )
    say("")
    say(table)
    say("")
    say(format_diff(diff))
    say(f"\nMACs -{summary['macs_reduction_percent']:.1f}%, accuracy {summary['accuracy_change_points']:+.2f} points "
        f"after fine-tuning. Artifacts in {out}/ ({plots.SUMMARY_FILE}, specs, weights, {RunFolder.METRICS}"
        f"{', ' + ', '.join(figures) if figures else ''}).")
    return summary


def _plots(out: Path, trained: RunFolder, finetuned: RunFolder, parent: Path, pruned: Path, threshold: float | None,
           say: Callable[[str], None]) -> list[str]:
    """The demo's figures; skipped with a note when matplotlib (the ``plot`` extra) is missing."""
    try:
        paths = [
            plots.plot_gammas(trained.last, out / "gammas.png", method="slimming", threshold=threshold, overwrite=True),
            plots.plot_widths(parent, pruned, out / "widths.png", overwrite=True),
            plots.plot_training([trained.path, finetuned.path], out / "training.png", overwrite=True),
            plots.plot_tradeoff([out], out / "tradeoff.png", overwrite=True),
        ]
    except MissingExtraError as exc:
        say(f"plots skipped: {exc}")
        return []
    return [p.name for p in paths]
