"""Training from specs: ``train``, ``finetune`` (from pruned weights), Scratch-E/B, ``evaluate``.

A run folder holds ``spec.yaml`` (the architecture), ``run.json`` (data and config, enough to
resume), ``best``/``last.safetensors`` (weights with the spec embedded), ``state.pt`` (exact
resume state) and ``metrics.jsonl``. Scratch-E and Scratch-B retrain a pruned architecture
from random init (Liu et al. 2019, "Rethinking the Value of Network Pruning"); Scratch-B
scales the epochs by MACs(parent) / MACs(pruned) so both get the same compute budget.
"""
from __future__ import annotations

import json
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from ..model import build, load_model
from ..nn import SpecNet
from ..data import get_dataset
from ..document import Spec, load_spec, spec_from_text
from ..ir import count_macs
from ..utils.fileio import atomic_write
from ..weights import save_weights
from .config import TrainConfig
from .loop import STATE_FILE, TrainResult, evaluate as evaluate_model, train as train_loop
from ..errors import TrainingError

RUN_FILE = "run.json"
SPEC_FILE = "spec.yaml"
SCHEDULE_PRESETS = {  # finetune schedules
    "slimming": {},  # as training: lr 0.1, x0.1 at 50% and 75% (Liu et al. 2017)
    "li": {"schedule": "li", "lr": 0.001, "epochs": 40},  # constant lr 0.001 for 40 epochs (Li et al. 2017)
}


def make_config(**values: Any) -> TrainConfig:
    """A TrainConfig from keyword values, ignoring those left as None."""
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise TrainingError(f"unknown training option(s): {', '.join(unknown)}")
    return TrainConfig(**{k: v for k, v in values.items() if v is not None})


def _weights_saver(spec: Spec, binary_gates: bool):
    meta = {"slimspec.binary_gates": "true"} if binary_gates else None
    return lambda model, path: save_weights(model, spec.text, path, metadata=meta)


def scratch_epochs(epochs: int, kind: str, spec: Spec, reference: Spec | None) -> int:
    """Scratch-E keeps the epochs; Scratch-B scales them by MACs(reference) / MACs(spec)."""
    if kind.upper() == "E":
        return epochs
    if kind.upper() != "B":
        raise TrainingError(f"scratch: expected E or B, got '{kind}'")
    if reference is None:
        raise TrainingError("scratch B needs the unpruned parent spec (--reference PARENT.yaml)")
    return int(round(epochs * count_macs(reference.ir) / count_macs(spec.ir)))


def _prepare_run(run_dir: Path, resume: bool, force: bool) -> None:
    if run_dir.exists() and (run_dir / STATE_FILE).exists() and not resume and not force:
        raise FileExistsError(f"{run_dir}: holds a previous run (use --resume to continue it or --force to start over)")


def train(spec: Spec | str | os.PathLike, data: str = "digits", run_dir: str | os.PathLike = "runs/train", *,
          weights: str | os.PathLike | None = None, gates: str | None = None, binary_gates: bool = False,
          scratch: str | None = None, reference: Spec | str | os.PathLike | None = None, resume: bool = False,
          force: bool = False, data_dir: str | None = None, download: bool = False, seed: int = 0,
          **config_values: Any) -> TrainResult:
    """Train a spec on a registered dataset; every TrainConfig field is a keyword (epochs, lr, sparsity...)."""
    spec = load_spec(spec)
    run_dir = Path(run_dir)
    _prepare_run(run_dir, resume, force)
    config = make_config(gates=gates, seed=seed, **config_values)
    if scratch:
        config.epochs = scratch_epochs(config.epochs, scratch, spec, load_spec(reference) if reference else None)
        weights = None
    dataset = get_dataset(data, data_dir=data_dir, download=download, input_shape=spec.ir.input_shape, seed=seed)
    if dataset.num_classes != spec.ir.num_classes:
        raise TrainingError(f"{data} has {dataset.num_classes} classes but spec {spec.name} has num_classes: {spec.ir.num_classes}")
    if weights is not None:
        model, _ = load_model(weights, spec, binary_gates=binary_gates)
        if gates == "sss" and model.mode != "gated":
            raise TrainingError("--gates sss needs a gated model; start from a spec, not plain weights")
    else:
        model = build(spec, "gated" if gates == "sss" else "plain", binary_gates=binary_gates, seed=seed)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun only rank 0 writes
        record = {"spec": SPEC_FILE, "data": data, "data_dir": data_dir, "binary_gates": binary_gates,
                  "weights": str(weights) if weights else None, "scratch": scratch, "config": config.to_dict()}
        _write_run_files(run_dir, spec, resume, record)
    return train_loop(model, dataset, config, run_dir, save_weights_fn=_weights_saver(spec, binary_gates), resume=resume)


def _write_run_files(run_dir: Path, spec: Spec, resume: bool, record: dict[str, Any]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(run_dir / SPEC_FILE, spec.text)
    if not resume or not (run_dir / RUN_FILE).exists():
        atomic_write(run_dir / RUN_FILE, json.dumps(record, indent=2) + "\n")


def resume(run_dir: str | os.PathLike) -> TrainResult:
    """Continue a killed run from its folder alone (spec, data and config are read from it)."""
    run_dir = Path(run_dir)
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: not a slimspec run folder (no {RUN_FILE})")
    record = json.loads(path.read_text(encoding="utf-8"))
    spec = spec_from_text((run_dir / record["spec"]).read_text(encoding="utf-8"), str(run_dir / record["spec"]))
    config = dict(record["config"])
    config["milestones"] = tuple(config["milestones"])
    return train(spec, record["data"], run_dir, weights=record.get("weights"), binary_gates=record["binary_gates"],
                 resume=True, data_dir=record.get("data_dir"), **config)


def default_weights_for(spec: Spec) -> Path:
    """The weights ``prune`` wrote next to a pruned spec file."""
    if not spec.source or spec.source.startswith("<"):
        raise TrainingError("give --weights: the spec was not read from a file")
    path = Path(spec.source).with_suffix(".safetensors")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no weights next to the spec (give --weights)")
    return path


def finetune(spec: Spec | str | os.PathLike, data: str = "digits", run_dir: str | os.PathLike = "runs/finetune", *,
             weights: str | os.PathLike | None = None, schedule: str = "slimming", **kwargs: Any) -> TrainResult:
    """Fine-tune a pruned spec from its transplanted weights (``--schedule slimming`` or ``li``)."""
    spec = load_spec(spec)
    if schedule not in SCHEDULE_PRESETS:
        raise TrainingError(f"schedule: expected one of {', '.join(SCHEDULE_PRESETS)}, got '{schedule}'")
    values = {**SCHEDULE_PRESETS[schedule], **{k: v for k, v in kwargs.items() if v is not None}}
    return train(spec, data, run_dir, weights=weights or default_weights_for(spec), **values)


def evaluate(weights: str | os.PathLike | torch.nn.Module, data: str = "digits", *, split: str = "test",
             data_dir: str | None = None, download: bool = False, device: str = "auto",
             batch_size: int = 256) -> dict[str, float]:
    """Loss and accuracy (percent) of a weights file (or a built model) on a dataset split."""
    from .distributed import resolve_device

    if isinstance(weights, SpecNet):
        model, spec = weights, weights.spec
    elif isinstance(weights, torch.nn.Module):
        raise TrainingError("evaluate() takes a weights file or a model built by slimspec (import others first)")
    else:
        model, spec = load_model(weights)
    dataset = get_dataset(data, data_dir=data_dir, download=download, input_shape=spec.ir.input_shape)
    target = resolve_device(device)
    model.to(target)
    return evaluate_model(model, dataset, split, device=target, batch_size=batch_size)
