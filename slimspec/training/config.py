"""One config object for training (Network Slimming defaults) and the lr schedules.

Defaults follow Liu et al. 2017 (Network Slimming) on CIFAR: 160 epochs, batch 64, SGD lr
0.1, momentum 0.9, weight decay 1e-4, lr x0.1 at 50% and 75% of the epochs. ``schedule="li"``
keeps the lr constant (as Li et al. 2017 fine-tune); ``"cosine"`` anneals it to zero.
``sparsity`` is Network Slimming's ``s`` (L1 on BN gammas); ``gates="sss"`` trains SSS gates
with APG (Huang & Wang 2018) at L1 weight ``apg_gamma``, following the same lr schedule.

Each schedule is a closed-form factor of the epoch, run by ``torch.optim.lr_scheduler.LambdaLR``
(:func:`make_scheduler`): the lr of epoch ``e`` is exactly ``lr * factor(e)``, whatever the
history, so a resumed run (or one given more epochs) gets the same values as a fresh one.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from ..errors import TrainingError
from ..latency.timing import threads_problem  # the one rule for threads (training, evaluate, demo, bench, prune, ...)

TRI_STATE = ("auto", "on", "off")
# options that may differ when a run is resumed: they change how it runs, not what it computes
RESUMABLE_CHANGES = ("epochs", "device", "quiet", "log_every", "threads", "tensorboard")
FINITE = ("lr", "momentum", "weight_decay", "sparsity", "apg_gamma", "apg_momentum", "lr_decay", "sparsity_eps")


@dataclass
class TrainConfig:
    """Everything the training loop needs besides the model, the data and the run folder."""

    epochs: int = 160
    batch_size: int = 64  # per process under torchrun
    test_batch_size: int = 256
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    schedule: str = "slimming"  # slimming | li | cosine
    milestones: tuple[float, ...] = (0.5, 0.75)  # fractions of epochs (slimming schedule)
    lr_decay: float = 0.1  # factor at each milestone
    sparsity: float = 0.0  # Network Slimming s: s*sign(gamma) added to BN gradients
    gates: str | None = None  # None | "sss"
    apg_gamma: float = 0.0  # APG L1 weight on gates
    apg_momentum: float = 0.9
    augment: bool = True
    drop_last: bool = False
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "auto"  # auto (on only on CUDA) | on | off
    channels_last: str = "auto"  # auto (CUDA only) | on | off
    deterministic: bool = False  # torch.use_deterministic_algorithms(True, warn_only=True)
    quiet: bool = False
    log_every: int = 10  # progress-bar refresh of the running loss, in batches
    sparsity_eps: float = 1e-2  # |gamma| below this counts as "small" in the stats
    threads: int | None = None  # torch.set_num_threads (None: torch's default)
    tensorboard: bool = False  # log scalars and BN-gamma histograms to run_dir/tensorboard

    def __post_init__(self) -> None:
        if isinstance(self.amp, bool):
            self.amp = "on" if self.amp else "off"
        if isinstance(self.channels_last, bool):
            self.channels_last = "on" if self.channels_last else "off"
        self.milestones = tuple(float(m) for m in self.milestones)
        problems = [f"{name} must be a finite number, got {getattr(self, name)}" for name in FINITE
                    if not isinstance(getattr(self, name), (int, float)) or not math.isfinite(getattr(self, name))]
        if problems:
            raise TrainingError("TrainConfig: " + "; ".join(problems))
        if self.epochs < 0:
            problems.append(f"epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1 or self.test_batch_size < 1:
            problems.append("batch sizes must be positive")
        if self.lr < 0 or self.weight_decay < 0 or self.sparsity < 0 or self.apg_gamma < 0:
            problems.append("lr, weight_decay, sparsity and apg_gamma must be >= 0")
        if not 0 <= self.momentum < 1 or not 0 <= self.apg_momentum < 1:
            problems.append(f"momentum must be in [0, 1), got {self.momentum} (apg_momentum {self.apg_momentum})")
        if problem := threads_problem(self.threads):
            problems.append(problem)
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule must be one of {', '.join(SCHEDULES)}, got '{self.schedule}'")
        if self.gates not in (None, "sss"):
            problems.append(f"gates must be None or 'sss', got '{self.gates}'")
        for name in ("amp", "channels_last"):
            if getattr(self, name) not in TRI_STATE:
                problems.append(f"{name} must be one of {', '.join(TRI_STATE)}, got '{getattr(self, name)}'")
        if problems:
            raise TrainingError("TrainConfig: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain-data copy (lists instead of tuples), for state files and logs."""
        data = asdict(self)
        data["milestones"] = list(self.milestones)
        return data


    def resume_changes(self, saved: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
        """Options that differ from a saved run's config and may not change on resume: ``{name: (saved, now)}``.

        More epochs than the saved run's are allowed; fewer are a difference.
        """
        now = self.to_dict()
        changes = {}
        for name in (f.name for f in fields(self)):
            if name not in saved:  # an option newer than the run: its default applies
                continue
            old, new = saved[name], now[name]
            if name == "epochs" and new >= old:
                continue
            if name != "epochs" and (name in RESUMABLE_CHANGES or old == new):
                continue
            changes[name] = (old, new)
        return changes


# -- lr schedules: closed-form factors of the 0-based epoch ------------------------------------
def _slimming(config: TrainConfig, epoch: int) -> float:
    """Liu et al. 2017: ``lr_decay ** k`` with k = milestones reached (``epoch >= m * epochs``)."""
    return config.lr_decay ** sum(1 for m in config.milestones if epoch >= m * config.epochs)


def _constant(config: TrainConfig, epoch: int) -> float:
    """Li et al. 2017 fine-tuning: a constant lr."""
    return 1.0


def _cosine(config: TrainConfig, epoch: int) -> float:
    """Loshchilov & Hutter 2017 (SGDR, one cycle): ``0.5 * (1 + cos(pi * epoch / epochs))``."""
    return 0.5 * (1.0 + math.cos(math.pi * epoch / config.epochs))


SCHEDULES: dict[str, Callable[[TrainConfig, int], float]] = {"slimming": _slimming, "li": _constant, "cosine": _cosine}


def lr_factor(config: TrainConfig, epoch: int) -> float:
    """Multiplier of ``config.lr`` during 0-based ``epoch`` (1 when there are no epochs)."""
    return 1.0 if config.epochs == 0 else SCHEDULES[config.schedule](config, epoch)


def lr_at(config: TrainConfig, epoch: int) -> float:
    """Learning rate during 0-based ``epoch``."""
    return config.lr * lr_factor(config, epoch)


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` setting every group's lr to ``lr * lr_factor(config, epoch)``; ``step()`` once per epoch."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: lr_factor(config, epoch))


def sync_lr(scheduler: torch.optim.lr_scheduler.LambdaLR) -> None:
    """Set the optimizer's lr to the schedule's value at ``scheduler.last_epoch`` (after a restore)."""
    for group, base, factor in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base * factor(scheduler.last_epoch)
