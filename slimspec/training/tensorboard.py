"""``train --tensorboard``: per-epoch scalars and BN-|gamma| histograms for TensorBoard.

Scalars (step = 1-based epoch, the same numbers as ``metrics.jsonl``): ``train/loss``,
``train/accuracy``, ``test/loss``, ``test/accuracy``, ``lr``, and the sparsity statistics
(``sparsity/bn_small``, ``sparsity/gates_zero``) when the model has BN layers or gates.
Histograms: the BN scales of each BatchNorm layer (``bn_gamma/<layer>``) and all of them
together (``bn_gamma/all``) — the distribution Network Slimming (Liu et al. 2017, Fig. 4)
watches collapse towards zero under sparsity training. Needs the ``tensorboard`` extra.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import MissingExtraError

SCALARS = {  # tag -> metrics.jsonl key
    "train/loss": "train_loss",
    "train/accuracy": "train_accuracy",
    "test/loss": "test_loss",
    "test/accuracy": "test_accuracy",
    "lr": "lr",
}


def require_tensorboard() -> Any:
    """``torch.utils.tensorboard.SummaryWriter``, or :class:`MissingExtraError` naming the extra."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise MissingExtraError("train --tensorboard", "tensorboard", "tensorboard") from None
    return SummaryWriter


def open_writer(log_dir: Path, first_step: int = 1) -> Any:
    """A ``SummaryWriter`` on ``log_dir``; events of an earlier run at steps >= ``first_step`` are purged."""
    return require_tensorboard()(str(log_dir), purge_step=first_step)


def log_epoch(writer: Any, record: dict[str, Any], model: nn.Module) -> None:
    """Write one epoch's scalars and BN-gamma histograms, then flush (the epoch is on disk)."""
    step = int(record["epoch"])
    for tag, key in SCALARS.items():
        writer.add_scalar(tag, record[key], step)
    if record.get("bn_channels"):
        writer.add_scalar("sparsity/bn_small", record["bn_small"], step)
    if record.get("gates"):
        writer.add_scalar("sparsity/gates_zero", record["gates_zero"], step)
    gammas = []
    for name, module in model.named_modules():
        if isinstance(module, _BatchNorm) and module.weight is not None:
            values = module.weight.detach().abs().float().cpu()
            gammas.append(values)
            writer.add_histogram(f"bn_gamma/{name}", values, step)
    if gammas:
        writer.add_histogram("bn_gamma/all", torch.cat(gammas), step)
    writer.flush()
