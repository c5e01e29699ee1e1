"""One config object for training (Network Slimming defaults) and the lr schedules.

Defaults follow Liu et al. 2017 (Network Slimming) on CIFAR: 160 epochs, batch 64, SGD lr
0.1, momentum 0.9, weight decay 1e-4, lr x0.1 at 50% and 75% of the epochs. ``schedule="li"``
keeps the lr constant (as Li et al. 2017 fine-tune); ``"cosine"`` anneals it to zero.
``sparsity`` is Network Slimming's ``s`` (L1 on BN gammas); ``gates="sss"`` trains SSS gates
with APG (Huang & Wang 2018) at L1 weight ``apg_gamma``, following the same lr schedule.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any
from ..errors import TrainingError

SCHEDULES = ("slimming", "li", "cosine")
TRI_STATE = ("auto", "on", "off")


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

    def __post_init__(self) -> None:
        if isinstance(self.amp, bool):
            self.amp = "on" if self.amp else "off"
        if isinstance(self.channels_last, bool):
            self.channels_last = "on" if self.channels_last else "off"
        self.milestones = tuple(float(m) for m in self.milestones)
        problems = []
        if self.epochs < 0:
            problems.append(f"epochs must be >= 0, got {self.epochs}")
        if self.batch_size < 1 or self.test_batch_size < 1:
            problems.append("batch sizes must be positive")
        if self.lr < 0 or self.weight_decay < 0 or self.sparsity < 0 or self.apg_gamma < 0:
            problems.append("lr, weight_decay, sparsity and apg_gamma must be >= 0")
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


def lr_factor(config: TrainConfig, epoch: int) -> float:
    """Multiplier of ``config.lr`` during 0-based ``epoch``.

    slimming: ``lr_decay ** k`` with k = milestones reached (``epoch >= m * epochs``);
    li: 1; cosine: ``0.5 * (1 + cos(pi * epoch / epochs))``.
    """
    if config.schedule == "li" or config.epochs == 0:
        return 1.0
    if config.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * epoch / config.epochs))
    reached = sum(1 for m in config.milestones if epoch >= m * config.epochs)
    return config.lr_decay**reached


def lr_at(config: TrainConfig, epoch: int) -> float:
    """Learning rate during 0-based ``epoch``."""
    return config.lr * lr_factor(config, epoch)
