"""The training loop: SGD (+ APG on SSS gates), BN sparsity, checkpoints, exact resume.

Read top to bottom like nanoGPT's ``train.py``: pick the device, seed, build optimizers,
optionally restore ``state.pt``, then per epoch set the lr, train, evaluate, checkpoint.

* Network Slimming (Liu et al. 2017): with ``sparsity > 0``, ``s*sign(gamma)`` is added to
  every BN weight's gradient after ``backward()``.
* Sparse Structure Selection (Huang & Wang 2018): with ``gates="sss"``, parameters named
  ``*.gate.weight`` are trained by :class:`~slimspec.training.apg.APG` (no weight decay), all
  other parameters by SGD with weight decay; both follow the same lr schedule.
* Files in ``run_dir`` (rank 0 only), each written atomically every epoch, in this order:
  ``best.safetensors`` (when test accuracy improved), ``last.safetensors``, ``state.pt``
  (the commit point: model, optimizers, scaler, epoch, best, history, RNG states), then
  ``metrics.jsonl`` (one JSON object per completed epoch, rewritten from the history).
* Batch order and augmentation depend only on ``(seed, epoch)`` (a generator reseeded every
  epoch), and the global RNGs are restored from ``state.pt``, so a run resumed at an epoch
  boundary is bit-identical to an uninterrupted one on CPU. A run killed mid-epoch resumes
  from the last completed epoch and redoes the interrupted one.
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..data.tensors import TensorDataBundle
from ..utils.fileio import atomic_write, atomic_write_with
from ..weights import load_state_into, save_weights
from .apg import APG
from .config import TrainConfig, lr_at
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
from .sparsity import bn_l1_subgradient_, gate_parameters, sparsity_stats
from ..errors import TrainingError

STATE_FILE = "state.pt"
LAST_FILE = "last.safetensors"
BEST_FILE = "best.safetensors"
METRICS_FILE = "metrics.jsonl"
STATE_VERSION = 1

SaveWeightsFn = Callable[[nn.Module, Path], Any]


@dataclass
class TrainResult:
    """Outcome of :func:`train` (identical on every rank)."""

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
def evaluate(
    model: nn.Module,
    data: TensorDataBundle,
    split: str = "test",
    *,
    device: torch.device | str | None = None,
    batch_size: int = 256,
    amp: bool = False,
    dist_info: DistInfo | None = None,
) -> dict[str, float]:
    """Mean cross-entropy ``loss`` and top-1 ``accuracy`` (percent) of ``model`` on ``split``.

    With ``dist_info`` and a sharded bundle, each rank evaluates its shard and the sums are
    all-reduced, so every rank returns the same numbers. Restores the model's train/eval mode.
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
    model.train(was_training)
    loss_total, correct_total, count_total = all_reduce_sum([float(loss_sum), float(correct), count], info).tolist()
    count_total = max(count_total, 1.0)
    return {
        "loss": loss_total / count_total,
        "accuracy": 100.0 * correct_total / count_total,
        "count": int(count_total),
    }


# -- checkpoints --------------------------------------------------------------------------
def save_state(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` of plain dicts/tensors, atomically."""
    atomic_write_with(path, lambda tmp: torch.save(state, tmp))


def load_state(path: Path) -> dict[str, Any]:
    """Read a ``state.pt`` with ``weights_only=True`` (no arbitrary unpickling)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise TrainingError(f"{path}: not a slimspec training state (version {STATE_VERSION})")
    return state


def write_metrics(path: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite ``metrics.jsonl`` from the history: one JSON object per completed epoch."""
    atomic_write(path, "".join(json.dumps(record, sort_keys=True) + "\n" for record in history))


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


# -- one epoch ----------------------------------------------------------------------------
def _train_epoch(
    net: nn.Module,
    model: nn.Module,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    optimizers: list[torch.optim.Optimizer],
    scaler: torch.amp.GradScaler,
    config: TrainConfig,
    device: torch.device,
    amp: bool,
    channels_last: bool,
    bar: tqdm,
) -> tuple[float, int, int]:
    """Train over ``batches``; returns this rank's (loss sum, correct, count)."""
    net.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    count = 0
    for step, (x, y) in enumerate(batches):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(device, amp):
            logits = net(x)
            loss = F.cross_entropy(logits, y)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()  # DDP all-reduces gradients here
        if amp:
            for opt in optimizers:
                scaler.unscale_(opt)
        if config.sparsity > 0:
            bn_l1_subgradient_(model, config.sparsity)  # Network Slimming, on averaged grads
        for opt in optimizers:
            scaler.step(opt)
        scaler.update()
        loss_sum += loss.detach().double() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        count += len(y)
        bar.update(1)
        if not bar.disable and config.log_every > 0 and step % config.log_every == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    return float(loss_sum), int(correct), count


# -- the loop -----------------------------------------------------------------------------
def train(
    model: nn.Module,
    data: TensorDataBundle,
    config: TrainConfig | None = None,
    run_dir: str | os.PathLike = "runs/train",
    *,
    save_weights_fn: SaveWeightsFn | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train ``model`` on ``data`` per ``config``, checkpointing into ``run_dir``.

    ``save_weights_fn(model, path)`` writes ``last``/``best`` weights (inject one that embeds
    the spec). ``resume=True`` continues from ``run_dir/state.pt`` if it exists. Under
    ``torchrun`` (``WORLD_SIZE > 1``) trains with DistributedDataParallel.
    """
    config = config or TrainConfig()
    run_dir = Path(run_dir)
    save_fn = save_weights_fn or default_save_weights
    info = init_distributed(config.device) if env_world_size() > 1 else DistInfo(0, 1, 0, resolve_device(config.device))
    try:
        return _train(model, data, config, run_dir, save_fn, resume, info)
    finally:
        cleanup_distributed(info)


def _train(
    model: nn.Module,
    data: TensorDataBundle,
    config: TrainConfig,
    run_dir: Path,
    save_fn: SaveWeightsFn,
    resume: bool,
    info: DistInfo,
) -> TrainResult:
    device = info.device
    amp = device.type == "cuda" and config.amp != "off"
    channels_last = device.type == "cuda" and config.channels_last != "off"
    if config.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    seed_everything(config.seed)
    say = print if info.is_main and not config.quiet else (lambda *a, **k: None)

    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    gates = gate_parameters(model) if config.gates == "sss" else []
    if config.gates == "sss" and not gates:
        raise TrainingError("gates='sss' but the model has no '*.gate.weight' parameters (build it in gated mode)")
    gate_ids = {id(p) for p in gates}
    others = [p for p in model.parameters() if p.requires_grad and id(p) not in gate_ids]
    optimizers: list[torch.optim.Optimizer] = [
        torch.optim.SGD(
            others,
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
            nesterov=config.nesterov,
        )
    ]
    if gates:
        optimizers.append(APG(gates, lr=config.lr, gamma=config.apg_gamma, momentum=config.apg_momentum))
    scaler = torch.amp.GradScaler(device.type, enabled=amp)

    start_epoch, best_accuracy, best_epoch = 0, -1.0, 0
    history: list[dict[str, Any]] = []
    state_path = run_dir / STATE_FILE
    if resume and state_path.is_file():
        state = load_state(state_path)
        if state["gates"] != config.gates or len(state["optimizers"]) != len(optimizers):
            raise TrainingError(f"{state_path}: saved with gates={state['gates']!r}, cannot resume with {config.gates!r}")
        load_state_into(model, state["model"], source=str(state_path))
        for opt, opt_state in zip(optimizers, state["optimizers"]):
            opt.load_state_dict(opt_state)
        if amp and state["scaler"]:
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        start_epoch, best_accuracy, best_epoch = state["epoch"], state["best_accuracy"], state["best_epoch"]
        history = list(state["history"])
        say(f"resuming {run_dir} after epoch {start_epoch}/{config.epochs} (best {best_accuracy:.2f}%)")
    elif resume:
        say(f"no {STATE_FILE} in {run_dir}; starting from scratch")

    data = data.to(device)
    if info.distributed:
        data = data.shard(info.rank, info.world_size)
    net = wrap_model(model, info)
    show_bar = info.is_main and not config.quiet and sys.stdout.isatty()

    for epoch in range(start_epoch, config.epochs):
        lr = lr_at(config, epoch)
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = lr
        started = time.perf_counter()
        batches = data.batches(
            "train",
            config.batch_size,
            shuffle=True,
            augment=config.augment,
            device=device,
            generator=epoch_generator(config.seed, epoch),
            drop_last=config.drop_last,
        )
        total = data.num_batches("train", config.batch_size, config.drop_last)
        with tqdm(total=total, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False, disable=not show_bar) as bar:
            local = _train_epoch(net, model, batches, optimizers, scaler, config, device, amp, channels_last, bar)
        loss_sum, correct, count = all_reduce_sum(local, info).tolist()
        broadcast_buffers(model, info)  # identical BN running stats on every rank
        test = evaluate(model, data, "test", device=device, batch_size=config.test_batch_size, amp=amp, dist_info=info)
        stats = sparsity_stats(model, config.sparsity_eps)
        improved = test["accuracy"] > best_accuracy
        if improved:
            best_accuracy, best_epoch = test["accuracy"], epoch + 1
        record = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": loss_sum / max(count, 1.0),
            "train_accuracy": 100.0 * correct / max(count, 1.0),
            "test_loss": test["loss"],
            "test_accuracy": test["accuracy"],
            "best_accuracy": best_accuracy,
            "best_epoch": best_epoch,
            "sparsity_eps": config.sparsity_eps,
            **stats,
            "time": time.perf_counter() - started,
        }
        history.append(record)
        if info.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            if improved:
                save_fn(model, run_dir / BEST_FILE)
            save_fn(model, run_dir / LAST_FILE)
            save_state(
                state_path,
                {
                    "version": STATE_VERSION,
                    "epoch": epoch + 1,
                    "best_accuracy": best_accuracy,
                    "best_epoch": best_epoch,
                    "history": history,
                    "gates": config.gates,
                    "config": config.to_dict(),
                    "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                    "optimizers": [opt.state_dict() for opt in optimizers],
                    "scaler": scaler.state_dict() if amp else {},
                    "rng": rng_state(),
                },
            )
            write_metrics(run_dir / METRICS_FILE, history)
        say(_format_epoch(record, config.epochs), flush=True)

    return TrainResult(
        run_dir=run_dir,
        epochs=len(history),
        best_accuracy=max(best_accuracy, 0.0),
        best_epoch=best_epoch,
        history=history,
        model=model,
    )
