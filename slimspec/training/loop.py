"""The training loop: SGD (+ APG on SSS gates), BN sparsity, checkpoints, exact resume.

Read top to bottom like nanoGPT's ``train.py``: :func:`train_model` (a model and a data
bundle; :func:`slimspec.training.train` is the spec-level entry above it) sets up (device, seed,
optimizers, lr schedulers), optionally restores ``state.pt``, then per epoch trains, evaluates,
steps the schedule and checkpoints. Each step is one function below it.

* Network Slimming (Liu et al. 2017): with ``sparsity > 0``, ``s*sign(gamma)`` is added to
  every BN weight's gradient after ``backward()``.
* Sparse Structure Selection (Huang & Wang 2018): with ``gates="sss"``, parameters named
  ``*.gate.weight`` are trained by :class:`~slimspec.training.apg.APG` (no weight decay), all
  other parameters by SGD with weight decay; both follow the same lr schedule
  (``torch.optim.lr_scheduler.LambdaLR`` over :func:`~slimspec.training.config.lr_factor`).
* Files in the run folder (:class:`~slimspec.training.run_folder.RunFolder`; rank 0 only),
  each written atomically every epoch, in this order:
  ``best.safetensors`` (when test accuracy improved), ``last.safetensors``, ``state.pt``
  (the commit point: model, optimizers, schedulers, scaler, epoch, best, history, RNG
  states), then ``metrics.jsonl`` (one JSON object per completed epoch, rewritten from the
  history; non-finite numbers are written as ``null``, never as bare ``NaN``).
* A non-finite training or test loss stops the run with a :class:`TrainingError` before that
  epoch is checkpointed: the run folder keeps the last good epoch.
* Batch order and augmentation depend only on ``(seed, epoch)`` (a generator reseeded every
  epoch), and the global RNGs are restored from ``state.pt``, so a run resumed at an epoch
  boundary is bit-identical to an uninterrupted one on CPU. A run killed mid-epoch resumes
  from the last completed epoch and redoes the interrupted one.
"""
from __future__ import annotations

import contextlib
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.bundle import DataBundle
from ..errors import TrainingError
from ..latency.timing import torch_threads
from ..utils.fileio import atomic_write_with
from ..utils.progress import ProgressCallback, no_progress, progress
from ..weights import load_state_into, save_weights, torch_load_reason
from .apg import APG
from .config import TrainConfig, make_scheduler, sync_lr
from .distributed import (
    DistInfo,
    all_reduce_sum,
    broadcast_buffers,
    cleanup_distributed,
    env_world_size,
    init_distributed,
    resolve_device,
    wrap_model,
)
from .run_folder import RunFolder
from .sparsity import bn_l1_subgradient_, gate_parameters, sparsity_stats

STATE_VERSION = 2  # 2: lr schedulers' state_dicts
STATE_KEYS = ("epoch", "best_accuracy", "best_epoch", "history", "gates", "config", "model", "optimizers",
              "schedulers", "scaler", "rng")

SaveWeightsFn = Callable[[nn.Module, Path], Any]


@dataclass
class TrainResult:
    """Outcome of :func:`train_model` (identical on every rank)."""

    run_dir: Path
    epochs: int  # completed epochs
    best_accuracy: float
    best_epoch: int  # 1-based; 0 if no epoch ran
    history: list[dict[str, Any]] = field(default_factory=list)
    model: nn.Module | None = field(default=None, repr=False)

    @property
    def final(self) -> dict[str, Any]:
        """The last epoch's metrics record ({} if none)."""
        return self.history[-1] if self.history else {}


def default_save_weights(model: nn.Module, path: Path) -> None:
    """Save without a spec (callers that know the spec inject their own function)."""
    save_weights(model, "", path)


# -- seeding and RNG state ----------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """Seed python ``random``, numpy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """CPU generator for the batch order/augmentation of ``epoch``: a function of (seed, epoch) only."""
    mixed = int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0]) & (2**63 - 1)
    return torch.Generator().manual_seed(mixed)


def rng_state() -> dict[str, Any]:
    """Global RNG states as plain tensors/ints (loadable with ``weights_only=True``)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["internal"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(
        (npy["name"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached"])
    )


# -- evaluation ---------------------------------------------------------------------------
def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    return torch.autocast(device.type, dtype=torch.float16) if enabled else contextlib.nullcontext()


def _model_device(model: nn.Module) -> torch.device:
    return next(iter(model.parameters()), torch.empty(0)).device


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    data: DataBundle,
    split: str = "test",
    *,
    device: torch.device | str | None = None,
    batch_size: int = 256,
    amp: bool = False,
    dist_info: DistInfo | None = None,
    progress: ProgressCallback = no_progress,
) -> dict[str, float]:
    """Mean cross-entropy ``loss`` and top-1 ``accuracy`` (percent) of ``model`` on ``split``.

    With ``dist_info`` and a sharded bundle, each rank evaluates its shard and the sums are
    all-reduced, so every rank returns the same numbers. Restores the model's train/eval mode.
    ``progress(1)`` is called after each batch.
    """
    target = torch.device(device) if device is not None else _model_device(model)
    info = dist_info or DistInfo(0, 1, 0, target)
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=target)
    correct = torch.zeros((), dtype=torch.int64, device=target)
    count = 0
    for x, y in data.batches(split, batch_size, device=target):
        with _autocast(target, amp):
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").double()
        correct += (logits.argmax(1) == y).sum()
        count += len(y)
        progress(1)
    model.train(was_training)
    loss_total, correct_total, count_total = all_reduce_sum([float(loss_sum), float(correct), count], info).tolist()
    count_total = max(count_total, 1.0)
    return {
        "loss": loss_total / count_total,
        "accuracy": 100.0 * correct_total / count_total,
        "count": int(count_total),
    }


# -- checkpoints and logs -----------------------------------------------------------------
def save_state(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` of plain dicts/tensors, atomically."""
    atomic_write_with(path, lambda tmp: torch.save(state, tmp))


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``state.pt`` with ``weights_only=True`` (no arbitrary unpickling).

    An unreadable, truncated, empty or foreign file, or one of another state version, is a
    one-line :class:`TrainingError` naming the file.
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch.load on a damaged file raises many kinds (EOFError, RuntimeError, KeyError...)
        reason = torch_load_reason(exc)[:160]  # no advice to unpickle, no terminal escapes
        raise TrainingError(f"{path}: not a readable training state ({reason}); the file is damaged "
                            "(start over with --force)") from None
    if not isinstance(state, dict):
        raise TrainingError(f"{path}: not a slimspec training state")
    if state.get("version") != STATE_VERSION:
        raise TrainingError(f"{path}: training state version {state.get('version')!r}, this slimspec reads version "
                            f"{STATE_VERSION} (written by another slimspec version; start over with --force)")
    missing = [key for key in STATE_KEYS if key not in state]
    if missing:
        raise TrainingError(f"{path}: training state lacks {', '.join(missing)}")
    return state


def _format_epoch(record: dict[str, Any], epochs: int) -> str:
    parts = [
        f"epoch {record['epoch']:>{len(str(epochs))}}/{epochs}",
        f"loss {record['train_loss']:.4f}",
        f"train {record['train_accuracy']:6.2f}%",
        f"test {record['test_accuracy']:6.2f}% (best {record['best_accuracy']:.2f}%)",
        f"lr {record['lr']:.4g}",
    ]
    if record["bn_channels"]:
        parts.append(f"bn<{record['sparsity_eps']:g} {100 * record['bn_small']:.1f}%")
    if record["gates"]:
        parts.append(f"gates=0 {100 * record['gates_zero']:.1f}%")
    parts.append(f"{record['time']:.1f}s")
    return " | ".join(parts)


# -- the run's state between steps ----------------------------------------------------------
@dataclass
class Run:
    """What the steps of one training run share: model, optimizers, schedules, counters."""

    model: nn.Module
    config: TrainConfig
    folder: RunFolder
    save_fn: SaveWeightsFn
    info: DistInfo
    optimizers: list[torch.optim.Optimizer]
    schedulers: list[torch.optim.lr_scheduler.LambdaLR]
    scaler: torch.amp.GradScaler
    amp: bool
    channels_last: bool
    net: nn.Module | None = None  # the model as trained (DDP-wrapped under torchrun)
    start_epoch: int = 0
    best_accuracy: float = -1.0
    best_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    writer: Any = None  # tensorboard SummaryWriter (rank 0, --tensorboard)

    @property
    def device(self) -> torch.device:
        return self.info.device

    def say(self, text: str) -> None:
        if self.info.is_main and not self.config.quiet:
            print(text, flush=True)

    def result(self) -> TrainResult:
        return TrainResult(self.folder.path, len(self.history), max(self.best_accuracy, 0.0), self.best_epoch,
                           self.history, self.model)


# -- the loop -----------------------------------------------------------------------------
def train_model(
    model: nn.Module,
    data: DataBundle,
    config: TrainConfig | None = None,
    run_dir: str | os.PathLike = "runs/train",
    *,
    save_weights_fn: SaveWeightsFn | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train ``model`` on ``data`` per ``config``, checkpointing into the run folder ``run_dir``.

    ``save_weights_fn(model, path)`` writes ``last``/``best`` weights (inject one that embeds
    the spec). ``resume=True`` continues from the folder's ``state.pt`` if it exists. Under
    ``torchrun`` (``WORLD_SIZE > 1``) trains with DistributedDataParallel.
    """
    config = config or TrainConfig()
    info = init_distributed(config.device) if env_world_size() > 1 else DistInfo(0, 1, 0, resolve_device(config.device))
    finished = False
    try:
        with torch_threads(config.threads or None), _deterministic(config.deterministic):  # restored after
            result = _train(model, data, config, RunFolder(run_dir), save_weights_fn or default_save_weights, resume,
                            info)
        finished = True
        return result
    finally:
        cleanup_distributed(info, finished=finished)


@contextlib.contextmanager
def _deterministic(enabled: bool):
    """``torch.use_deterministic_algorithms(True, warn_only=True)`` inside the block, the caller's setting after."""
    if not enabled:
        yield
        return
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def _train(model: nn.Module, data: DataBundle, config: TrainConfig, folder: RunFolder, save_fn: SaveWeightsFn,
           resume: bool, info: DistInfo) -> TrainResult:
    run = _setup(model, config, folder, save_fn, info)
    if resume:
        _restore(run)
    data = data.to(run.device)
    if info.distributed:
        data = data.shard(info.rank, info.world_size)
    run.net = wrap_model(model, info)
    run.writer = _open_tensorboard(run)
    try:
        for epoch in range(run.start_epoch, config.epochs):
            started = time.perf_counter()
            lr = run.optimizers[0].param_groups[0]["lr"]
            totals = _train_epoch(run, data, epoch)
            record = _evaluate_epoch(run, data, epoch, lr, totals, started)
            for scheduler in run.schedulers:
                scheduler.step()
            _checkpoint(run, record)
            run.say(_format_epoch(record, config.epochs))
    finally:
        if run.writer is not None:
            run.writer.close()
    return run.result()


def _setup(model: nn.Module, config: TrainConfig, folder: RunFolder, save_fn: SaveWeightsFn, info: DistInfo) -> Run:
    """Seeds, the model on its device, optimizers and their lr schedules."""
    seed_everything(config.seed)
    device = info.device
    amp = device.type == "cuda" and config.amp != "off"
    channels_last = device.type == "cuda" and config.channels_last != "off"
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    gates = gate_parameters(model) if config.gates == "sss" else []
    if config.gates == "sss" and not gates:
        raise TrainingError("gates='sss' but the model has no '*.gate.weight' parameters (build it in gated mode)")
    gate_ids = {id(p) for p in gates}
    others = [p for p in model.parameters() if p.requires_grad and id(p) not in gate_ids]
    optimizers: list[torch.optim.Optimizer] = [
        torch.optim.SGD(others, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                        nesterov=config.nesterov)
    ]
    if gates:
        optimizers.append(APG(gates, lr=config.lr, gamma=config.apg_gamma, momentum=config.apg_momentum))
    schedulers = [make_scheduler(opt, config) for opt in optimizers]
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    return Run(model, config, folder, save_fn, info, optimizers, schedulers, scaler, amp, channels_last)


def _restore(run: Run) -> None:
    """Load ``state.pt`` (if any) into the run: weights, optimizers, schedules, scaler, RNGs, counters.

    The saved options are authoritative: any that differ from ``run.config`` (other than more
    epochs, the device, threads and logging) is refused, listing each difference.
    """
    path = run.folder.state
    if not path.is_file():
        run.say(f"no {path.name} in {run.folder}; starting from scratch")
        return
    state = load_state(path)
    changes = run.config.resume_changes(state["config"])
    if changes:
        listed = ", ".join(f"{name} {new!r} (saved {old!r})" for name, (old, new) in changes.items())
        raise TrainingError(f"{path}: cannot resume with other options: {listed}")
    if state["gates"] != run.config.gates or len(state["optimizers"]) != len(run.optimizers):
        raise TrainingError(f"{path}: saved with gates={state['gates']!r}, cannot resume with {run.config.gates!r}")
    load_state_into(run.model, state["model"], source=str(path))
    for opt, opt_state, scheduler, scheduler_state in zip(run.optimizers, state["optimizers"], run.schedulers,
                                                            state["schedulers"]):
        opt.load_state_dict(opt_state)
        scheduler.load_state_dict(scheduler_state)
        sync_lr(scheduler)  # the lr of the next epoch under this config (more epochs stretch the schedule)
    if run.amp and state["scaler"]:
        run.scaler.load_state_dict(state["scaler"])
    set_rng_state(state["rng"])
    run.start_epoch, run.best_accuracy, run.best_epoch = state["epoch"], state["best_accuracy"], state["best_epoch"]
    run.history = list(state["history"])
    run.say(f"resuming {run.folder} after epoch {run.start_epoch}/{run.config.epochs} (best {run.best_accuracy:.2f}%)")


def _train_epoch(run: Run, data: DataBundle, epoch: int) -> tuple[float, float, float]:
    """One pass over this rank's shuffled, augmented train split; (loss sum, correct, count) over all ranks."""
    config, device, model, net = run.config, run.device, run.model, run.net
    assert net is not None
    batches = data.batches("train", config.batch_size, shuffle=True, augment=config.augment, device=device,
                           generator=epoch_generator(config.seed, epoch), drop_last=config.drop_last)
    total = data.num_batches("train", config.batch_size, config.drop_last)
    net.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    count = 0
    show = run.info.is_main and not config.quiet
    with progress(total=total, desc=f"epoch {epoch + 1}/{config.epochs}", enabled=show, unit="batch") as bar:
        for step, (x, y) in enumerate(batches):
            if run.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(device, run.amp):
                logits = net(x)
                loss = F.cross_entropy(logits, y)
            for opt in run.optimizers:
                opt.zero_grad(set_to_none=True)
            run.scaler.scale(loss).backward()  # DDP all-reduces gradients here
            if run.amp:
                for opt in run.optimizers:
                    run.scaler.unscale_(opt)
            if config.sparsity > 0:
                bn_l1_subgradient_(model, config.sparsity)  # Network Slimming, on averaged grads
            for opt in run.optimizers:
                run.scaler.step(opt)
            run.scaler.update()
            loss_sum += loss.detach().double() * len(y)
            correct += (logits.detach().argmax(1) == y).sum()
            count += len(y)
            logged = show and config.log_every > 0 and step % config.log_every == 0
            bar.update(1, (lambda loss=loss.detach(): f"loss {loss.item():.4f}") if logged else None)  # .item() only when drawn
    loss_total, correct_total, count_total = all_reduce_sum([float(loss_sum), float(correct), count], run.info).tolist()
    broadcast_buffers(model, run.info)  # identical BN running stats on every rank
    return loss_total, correct_total, count_total


def _evaluate_epoch(run: Run, data: DataBundle, epoch: int, lr: float, totals: tuple[float, float, float],
                    started: float) -> dict[str, Any]:
    """Test metrics and the epoch's record; a non-finite loss stops the run before it is checkpointed."""
    loss_sum, correct, count = totals
    test = evaluate_model(run.model, data, "test", device=run.device, batch_size=run.config.test_batch_size, amp=run.amp,
                    dist_info=run.info)
    train_loss = loss_sum / max(count, 1.0)
    for what, value in (("training", train_loss), ("test", test["loss"])):
        if not math.isfinite(value):
            kept = (f"{run.folder} keeps the last good checkpoint (epoch {epoch})" if epoch > 0
                    else "no checkpoint was written")
            raise TrainingError(f"epoch {epoch + 1}: the {what} loss is {value} (lr {lr:g}); training stopped, "
                                f"{kept}; try a lower --lr")
    improved = test["accuracy"] > run.best_accuracy
    if improved:
        run.best_accuracy, run.best_epoch = test["accuracy"], epoch + 1
    record = {
        "epoch": epoch + 1,
        "lr": lr,
        "train_loss": train_loss,
        "train_accuracy": 100.0 * correct / max(count, 1.0),
        "test_loss": test["loss"],
        "test_accuracy": test["accuracy"],
        "best_accuracy": run.best_accuracy,
        "best_epoch": run.best_epoch,
        "sparsity_eps": run.config.sparsity_eps,
        **sparsity_stats(run.model, run.config.sparsity_eps),
        "time": time.perf_counter() - started,
    }
    run.history.append(record)
    return record


def _checkpoint(run: Run, record: dict[str, Any]) -> None:
    """Rank 0 writes best (if improved), last, state.pt (the commit point), metrics, tensorboard."""
    if not run.info.is_main:
        return
    folder = run.folder
    folder.path.mkdir(parents=True, exist_ok=True)
    if run.best_epoch == record["epoch"]:
        run.save_fn(run.model, folder.best)
    run.save_fn(run.model, folder.last)
    save_state(folder.state, {
        "version": STATE_VERSION,
        "epoch": record["epoch"],
        "best_accuracy": run.best_accuracy,
        "best_epoch": run.best_epoch,
        "history": run.history,
        "gates": run.config.gates,
        "config": run.config.to_dict(),
        "model": {k: v.detach().cpu() for k, v in run.model.state_dict().items()},
        "optimizers": [opt.state_dict() for opt in run.optimizers],
        "schedulers": [scheduler.state_dict() for scheduler in run.schedulers],
        "scaler": run.scaler.state_dict() if run.amp else {},
        "rng": rng_state(),
    })
    folder.write_metrics(run.history)
    if run.writer is not None:
        from .tensorboard import log_epoch

        log_epoch(run.writer, record, run.model)


def _open_tensorboard(run: Run) -> Any:
    """A SummaryWriter on the run folder's ``tensorboard/`` (rank 0, ``config.tensorboard``), else None."""
    if not run.config.tensorboard or not run.info.is_main:
        return None
    from .tensorboard import open_writer

    return open_writer(run.folder.tensorboard, first_step=run.start_epoch + 1)
