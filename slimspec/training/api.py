"""Training from specs: ``train``, ``resume``, ``finetune`` (from pruned weights), Scratch-E/B, ``evaluate``.

A run folder (:class:`~slimspec.training.run_folder.RunFolder`) holds the spec, ``run.json``
(data and config, enough to resume), best/last weights, ``state.pt`` and ``metrics.jsonl``;
it is locked while a run uses it. :func:`resume` continues a run with the options it was
started with (more epochs, another device, threads and logging aside). The model-level loop
under these is :func:`~slimspec.training.loop.train_model`. Scratch-E and Scratch-B retrain a
pruned architecture from random init (Liu et al. 2019, "Rethinking the Value of Network Pruning"); Scratch-B
scales the epochs by MACs(parent) / MACs(pruned) so both get the same compute budget.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from ..model import build, load_model
from ..nn import SpecNet
from ..data import get_dataset
from ..document import Spec, load_spec
from ..errors import TrainingError
from ..ir import count_macs
from ..latency import torch_threads
from ..utils.fileio import note_input, reads_inputs, weights_beside
from ..utils.progress import progress
from ..weights import save_weights
from .config import TrainConfig, threads_problem
from .distributed import env_rank, resolve_device
from .loop import TrainResult, evaluate_model, train_model
from .run_folder import RunFolder
from .tensorboard import require_tensorboard

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


RUN_KEYS = ("data", "data_dir", "binary_gates", "weights", "scratch", "reference")  # run.json beside the config


@reads_inputs  # every file read is an input: a --force restart never deletes one (see claim_run_dir)
def train(spec: Spec | str | os.PathLike, data: str = "digits", run_dir: str | os.PathLike = "runs/train", *,
          weights: str | os.PathLike | None = None, gates: str | None = None, binary_gates: bool = False,
          scratch: str | None = None, reference: Spec | str | os.PathLike | None = None, force: bool = False,
          data_dir: str | None = None, download: bool = False, seed: int = 0, **config_values: Any) -> TrainResult:
    """Train a spec on a registered dataset; every TrainConfig field is a keyword (epochs, lr, sparsity...).

    The run folder is locked for the whole run: a second run on the same folder is refused at
    once, and a folder holding a finished or killed run needs ``force`` (start over) or
    :func:`resume` (continue it). ``force`` refuses, before deleting anything, when the spec,
    the weights or the reference is one of the old run's files (``RUN/best.safetensors``).
    """
    spec = load_spec(spec)
    config = make_config(gates=gates, seed=seed, **config_values)
    resolve_device(config.device)  # a missing GPU is reported before anything is read
    reference_spec = load_spec(reference) if reference is not None else None
    if scratch:
        config.epochs = scratch_epochs(config.epochs, scratch, spec, reference_spec)
        weights = None
    note_input(weights)  # read once the folder is claimed: named now, so a --force reset refuses to delete it
    record = {"data": data, "data_dir": data_dir, "binary_gates": binary_gates,
              "weights": str(weights) if weights else None, "scratch": scratch,
              "reference": reference_spec.sha256 if scratch and reference_spec else None, "config": config.to_dict()}
    return _run(spec, RunFolder(run_dir), record, config, download=download, force=force, resume=False)


@reads_inputs
def resume(run_dir: str | os.PathLike, spec: Spec | str | os.PathLike | None = None, **changes: Any) -> TrainResult:
    """Continue a killed (or finished) run from its folder: spec, data and options are read from it.

    The saved options are authoritative. ``changes`` (keywords as for :func:`train`; None =
    not given) may only repeat them, ask for more ``epochs``, or change how the run executes
    (``device``, ``threads``, ``quiet``, ``tensorboard``, ``download``); anything else is refused
    with one line listing every difference.
    """
    folder = RunFolder(run_dir)
    record, saved_spec = folder.read_run()
    saved_config = dict(record["config"])
    given = {k: v for k, v in changes.items() if v is not None}
    download = bool(given.pop("download", False))
    differences = []
    if spec is not None and not _is_file(spec, folder.spec) and load_spec(spec).text != saved_spec.text:
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
        raise TrainingError(f"{folder.record}: config does not fit this slimspec version ({exc})") from None
    _refuse_changes(folder, config, saved_config, differences)
    resolve_device(config.device)
    return _run(saved_spec, folder, {**record, "config": config.to_dict()}, config, download=download, force=False,
                resume=True)


def _is_file(source: Spec | str | os.PathLike, path: Path) -> bool:
    """Whether ``source`` names the file ``path`` (the run's own spec.yaml: the same by definition, and rewritten)."""
    try:
        return not isinstance(source, Spec) and path.is_file() and os.path.samefile(source, path)
    except (OSError, TypeError, ValueError):
        return False


def _run(spec: Spec, folder: RunFolder, record: dict[str, Any], config: TrainConfig, *, download: bool, force: bool,
         resume: bool) -> TrainResult:
    """Claim the folder, write ``spec.yaml`` and ``run.json`` (``record``), train; a failed fresh run leaves nothing."""
    if config.tensorboard:
        require_tensorboard()
    main = env_rank() == 0  # under torchrun only rank 0 writes (and claims the folder)
    created = not folder.path.exists()
    binary_gates = bool(record.get("binary_gates"))
    try:
        with folder.claim(force=force, resume=resume) if main else contextlib.nullcontext():
            fresh = not folder.record.exists()
            try:
                data = record["data"]
                dataset = get_dataset(data, data_dir=record.get("data_dir"), download=download,
                                      input_shape=spec.ir.input_shape, seed=config.seed)
                if spec.ir.num_classes is None:
                    raise TrainingError(f"spec {spec.name} returns its 'outputs' ({', '.join(spec.ir.outputs)}), not "
                                        "class scores: train trains classifiers (train a detector with its own loss "
                                        "on slimspec.build(spec))")
                if dataset.num_classes != spec.ir.num_classes:
                    raise TrainingError(f"{data} has {dataset.num_classes} classes but spec {spec.name} has "
                                        f"num_classes: {spec.ir.num_classes}")
                model = _initial_model(spec, record.get("weights"), config.gates, binary_gates, config.seed)
                if main:
                    folder.write_run(spec.text, record)
                return train_model(model, dataset, config, folder, save_weights_fn=_weights_saver(spec, binary_gates),
                                   resume=resume)
            except BaseException:
                if main and fresh and not folder.state.exists():  # nothing trained: no half-made run
                    folder.discard_run()
                raise
    except BaseException:
        if main and created:
            with contextlib.suppress(OSError):
                folder.path.rmdir()  # only if this run made it and left it empty
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


def _refuse_changes(folder: RunFolder, config: TrainConfig, saved: dict[str, Any], differences: list[str]) -> None:
    """One line listing every option that differs from the saved run (see ``TrainConfig.resume_changes``)."""
    found = list(differences)
    for name, (old, new) in config.resume_changes(saved).items():
        hint = " (more epochs only)" if name == "epochs" else ""
        found.append(f"--{name.replace('_', '-')} {new!r}{hint} (the run has {old!r})")
    if found:
        raise TrainingError(f"{folder}: --resume continues the run with its own options; these differ: "
                            + "; ".join(found))


def default_weights_for(spec: Spec) -> Path:
    """The weights ``prune`` wrote next to a pruned spec file."""
    if not spec.source or spec.source.startswith("<"):
        raise TrainingError("give --weights: the spec was not read from a file")
    path = weights_beside(spec.source)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no weights next to the spec (give --weights)")
    return path


@reads_inputs
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
    threads while it runs (the previous setting is restored); ``quiet=False`` shows progress on stderr.
    """
    if problem := threads_problem(threads):
        raise TrainingError(problem)
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
    with torch_threads(threads), progress(total=total, desc=f"eval {data} {split}", enabled=not quiet,
                                          unit="batch") as bar:
        return evaluate_model(model, dataset, split, device=target, batch_size=batch_size, progress=bar)
