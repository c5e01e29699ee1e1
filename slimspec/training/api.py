"""Training from specs: ``train``, ``finetune`` (from pruned weights), Scratch-E/B, ``evaluate``.

A run folder holds ``spec.yaml`` (the architecture), ``run.json`` (data and config, enough to
resume), ``best``/``last.safetensors`` (weights with the spec embedded), ``state.pt`` (exact
resume state) and ``metrics.jsonl``; it is locked while a run uses it. A resumed run keeps the
options it was started with (more epochs, another device, threads and logging aside). Scratch-E and Scratch-B retrain a pruned architecture
from random init (Liu et al. 2019, "Rethinking the Value of Network Pruning"); Scratch-B
scales the epochs by MACs(parent) / MACs(pruned) so both get the same compute budget.
"""
from __future__ import annotations

import contextlib
import json
import os
from contextlib import nullcontext
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from ..model import build, load_model
from ..nn import SpecNet
from ..data import get_dataset
from ..document import Spec, load_spec, spec_from_text
from ..ir import count_macs
from ..utils.fileio import atomic_write, claim_run_dir
from ..utils.progress import progress
from ..weights import save_weights
from .config import TrainConfig
from .distributed import resolve_device
from .loop import BEST_FILE, LAST_FILE, METRICS_FILE, STATE_FILE, TrainResult, json_safe
from .loop import evaluate as evaluate_model, train as train_loop
from .tensorboard import require_tensorboard
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
    """Scratch-E keeps the epochs; Scratch-B scales them by MACs(reference) / MACs(spec).

    The reference must be the parent the spec was pruned from (its ``pruned.parent_sha256``,
    or an earlier parent in ``pruned.history``): any other spec would scale by a meaningless ratio.
    """
    if kind.upper() == "E":
        return epochs
    if kind.upper() != "B":
        raise TrainingError(f"scratch: expected E or B, got '{kind}'")
    if reference is None:
        raise TrainingError("scratch B needs the unpruned parent spec (--reference PARENT.yaml)")
    check_reference(spec, reference)
    return int(round(epochs * count_macs(reference.ir) / count_macs(spec.ir)))


def check_reference(spec: Spec, reference: Spec) -> None:
    """Refuse a Scratch-B reference that is not one of the parents recorded in the spec's ``pruned:`` block."""
    block = spec.data.get("pruned")
    name = spec.source or spec.name
    if not isinstance(block, dict) or not block.get("parent_sha256"):
        raise TrainingError(f"{name}: --scratch B needs a pruned spec (no pruned.parent_sha256 recording its parent)")
    parents = [block, *[h for h in block.get("history") or [] if isinstance(h, dict)]]
    if reference.sha256 not in {p.get("parent_sha256") for p in parents}:
        raise TrainingError(f"--reference {reference.source or reference.name}: not the spec {name} was pruned from "
                            f"(pruned.parent {block.get('parent')!r}, sha256 {str(block['parent_sha256'])[:12]}...)")


# what a run folder holds (a forced restart deletes exactly these names)
RUN_FILES = (RUN_FILE, SPEC_FILE, STATE_FILE, LAST_FILE, BEST_FILE, METRICS_FILE)
RUN_KEYS = ("data", "data_dir", "binary_gates", "weights", "scratch", "reference")  # run.json beside the config


def train(spec: Spec | str | os.PathLike, data: str = "digits", run_dir: str | os.PathLike = "runs/train", *,
          weights: str | os.PathLike | None = None, gates: str | None = None, binary_gates: bool = False,
          scratch: str | None = None, reference: Spec | str | os.PathLike | None = None, resume: bool = False,
          force: bool = False, data_dir: str | None = None, download: bool = False, seed: int = 0,
          **config_values: Any) -> TrainResult:
    """Train a spec on a registered dataset; every TrainConfig field is a keyword (epochs, lr, sparsity...).

    The run folder is locked for the whole run: a second run on the same folder is refused at
    once, and a folder holding a finished or killed run needs ``resume`` or ``force``.
    """
    spec = load_spec(spec)
    run_dir = Path(run_dir)
    config = make_config(gates=gates, seed=seed, **config_values)
    resolve_device(config.device)  # a missing GPU is reported before any data is read
    reference_spec = load_spec(reference) if reference is not None else None
    if scratch:
        config.epochs = scratch_epochs(config.epochs, scratch, spec, reference_spec)
        weights = None
    if config.tensorboard:
        require_tensorboard()
    main = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 writes (and claims the folder)
    created = not run_dir.exists()
    try:
        with claim_run_dir(run_dir, force=force, resume=resume, run_files=RUN_FILES) if main else nullcontext():
            fresh = not (run_dir / RUN_FILE).exists()
            try:
                dataset = get_dataset(data, data_dir=data_dir, download=download, input_shape=spec.ir.input_shape,
                                      seed=seed)
                if dataset.num_classes != spec.ir.num_classes:
                    raise TrainingError(f"{data} has {dataset.num_classes} classes but spec {spec.name} has "
                                        f"num_classes: {spec.ir.num_classes}")
                model = _initial_model(spec, weights, gates, binary_gates, seed)
                if main:
                    record = {"spec": SPEC_FILE, "data": data, "data_dir": data_dir, "binary_gates": binary_gates,
                              "weights": str(weights) if weights else None, "scratch": scratch,
                              "reference": reference_spec.sha256 if scratch and reference_spec else None,
                              "config": config.to_dict()}
                    _write_run_files(run_dir, spec, config, record, resume)
                return train_loop(model, dataset, config, run_dir, save_weights_fn=_weights_saver(spec, binary_gates),
                                  resume=resume)
            except BaseException:
                if main and fresh and not (run_dir / STATE_FILE).exists():  # nothing trained: no half-made run
                    for name in (RUN_FILE, SPEC_FILE):
                        (run_dir / name).unlink(missing_ok=True)
                raise
    except BaseException:
        if main and created:
            with contextlib.suppress(OSError):
                run_dir.rmdir()  # only if this run made it and left it empty
        raise


def _initial_model(spec: Spec, weights: str | os.PathLike | None, gates: str | None, binary_gates: bool,
                   seed: int) -> SpecNet:
    """The model training starts from: ``weights`` loaded into ``spec``, or a seeded random init."""
    if weights is None:
        return build(spec, "gated" if gates == "sss" else "plain", binary_gates=binary_gates, seed=seed)
    model, _ = load_model(weights, spec, binary_gates=binary_gates)
    if gates == "sss" and model.mode != "gated":
        raise TrainingError("--gates sss needs a gated model; start from a spec, not plain weights")
    return model


def _write_run_files(run_dir: Path, spec: Spec, config: TrainConfig, record: dict[str, Any], resume: bool) -> None:
    """``spec.yaml`` and ``run.json``; a resumed run keeps its record (more epochs etc. are written into it)."""
    if resume and (run_dir / RUN_FILE).exists():
        saved, _ = read_run(run_dir)
        _refuse_changes(run_dir, config, saved["config"])
        record = {**saved, "config": config.to_dict()}
    atomic_write(run_dir / SPEC_FILE, spec.text)
    write_run_record(run_dir, record)


def _refuse_changes(run_dir: Path, config: TrainConfig, saved: dict[str, Any], differences: list[str] = ()) -> None:
    """One line listing every option that differs from the saved run (see ``TrainConfig.resume_changes``)."""
    found = list(differences)
    for name, (old, new) in config.resume_changes(saved).items():
        hint = " (more epochs only)" if name == "epochs" else ""
        found.append(f"--{name.replace('_', '-')} {new!r}{hint} (the run has {old!r})")
    if found:
        raise TrainingError(f"{run_dir}: --resume continues the run with its own options; these differ: "
                            + "; ".join(found))


def write_run_record(run_dir: Path, record: dict[str, Any]) -> None:
    """``run.json``: valid JSON always (non-finite numbers become null)."""
    atomic_write(run_dir / RUN_FILE, json.dumps(json_safe(record), indent=2, allow_nan=False) + "\n")


def read_run(run_dir: str | os.PathLike) -> tuple[dict[str, Any], Spec]:
    """``run.json`` and the spec of a run folder; a missing, damaged or foreign file is a one-line error naming it."""
    run_dir = Path(run_dir)
    path = run_dir / RUN_FILE
    if not path.is_file():
        raise TrainingError(f"{run_dir}: not a slimspec run folder (no {RUN_FILE})")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise TrainingError(f"{path}: not readable as JSON ({exc})") from None
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict) or "data" not in record:
        raise TrainingError(f"{path}: not a slimspec run record (no 'config' and 'data')")
    spec_path = run_dir / str(record.get("spec") or SPEC_FILE)
    try:
        text = spec_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainingError(f"{spec_path}: cannot read the run's spec ({exc.__class__.__name__})") from None
    return record, spec_from_text(text, str(spec_path))


def resume(run_dir: str | os.PathLike, spec: Spec | str | os.PathLike | None = None, **changes: Any) -> TrainResult:
    """Continue a killed (or finished) run from its folder: spec, data and options are read from it.

    The saved options are authoritative. ``changes`` (keywords as for :func:`train`; None =
    not given) may only repeat them, ask for more ``epochs``, or change how the run executes
    (``device``, ``threads``, ``quiet``, ``tensorboard``); anything else is refused with one
    line listing every difference.
    """
    run_dir = Path(run_dir)
    record, saved_spec = read_run(run_dir)
    saved_config = dict(record["config"])
    given = {k: v for k, v in changes.items() if v is not None}
    given.pop("download", None)
    differences = []
    if spec is not None and load_spec(spec).text != saved_spec.text:
        differences.append(f"SPEC {spec} (the run trained {saved_spec.name} in {saved_spec.source})")
    if given.get("reference") is not None:
        given["reference"] = load_spec(given["reference"]).sha256
    for key in RUN_KEYS:
        value = given.pop(key, record.get(key))
        if value != record.get(key):
            differences.append(f"--{key.replace('_', '-')} {value!r} (the run has {record.get(key)!r})")
    unknown = sorted(set(given) - set(saved_config) - {f.name for f in fields(TrainConfig)})
    if unknown:
        raise TrainingError(f"unknown training option(s): {', '.join(unknown)}")
    try:
        config = TrainConfig(**{**saved_config, "milestones": tuple(saved_config.get("milestones", ())), **given})
    except TypeError as exc:
        raise TrainingError(f"{run_dir / RUN_FILE}: config does not fit this slimspec version ({exc})") from None
    _refuse_changes(run_dir, config, saved_config, differences)
    values = config.to_dict()
    values["milestones"] = tuple(values["milestones"])
    return train(saved_spec, record["data"], run_dir, weights=record.get("weights"),
                 binary_gates=bool(record.get("binary_gates")), resume=True, data_dir=record.get("data_dir"),
                 **values)


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
             data_dir: str | None = None, download: bool = False, device: str = "auto", batch_size: int = 256,
             spec: Spec | str | os.PathLike | None = None, threads: int | None = None,
             quiet: bool = True) -> dict[str, float]:
    """Loss and accuracy (percent) of a weights file (or a built model) on a dataset split.

    ``spec`` builds weights saved without an embedded spec; ``threads`` sets torch's CPU
    threads; ``quiet=False`` shows progress on stderr.
    """
    if threads is not None:
        if threads < 1:
            raise TrainingError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    target = resolve_device(device)
    if isinstance(weights, SpecNet):
        model, model_spec = weights, weights.spec
    elif isinstance(weights, torch.nn.Module):
        raise TrainingError("evaluate() takes a weights file or a model built by slimspec (import others first)")
    else:
        model, model_spec = load_model(weights, load_spec(spec) if spec is not None else None)
    dataset = get_dataset(data, data_dir=data_dir, download=download, input_shape=model_spec.ir.input_shape)
    model.to(target)
    total = dataset.num_batches(split, batch_size)
    with progress(total=total, desc=f"eval {data} {split}", enabled=not quiet, unit="batch") as bar:
        return evaluate_model(model, dataset, split, device=target, batch_size=batch_size, progress=bar)
