"""Training: the loop, Network Slimming's BN sparsity, SSS gates with APG, torchrun DDP.

``train``, ``resume``, ``finetune`` and ``evaluate`` work on specs, weights files, dataset
names and run folders (the same functions as ``slimspec.train`` ...); ``train_model`` and
``evaluate_model`` are the loop under them, on a model and a data bundle. Names are imported
on first use, so the torch-free :class:`RunFolder` loads without torch.
"""
from __future__ import annotations

from typing import Any

_LAZY = {
    "train": "api", "resume": "api", "finetune": "api", "evaluate": "api", "make_config": "api",
    "scratch_epochs": "api",
    "TrainResult": "loop", "train_model": "loop", "evaluate_model": "loop", "default_save_weights": "loop",
    "epoch_generator": "loop", "load_state": "loop",
    "RunFolder": "run_folder", "read_metrics": "run_folder",
    "TrainConfig": "config", "lr_at": "config", "lr_factor": "config", "make_scheduler": "config",
    "APG": "apg",
    "DistInfo": "distributed", "all_reduce_sum": "distributed", "cleanup_distributed": "distributed",
    "init_distributed": "distributed", "resolve_device": "distributed",
    "bn_l1_subgradient_": "sparsity", "bn_weights": "sparsity", "gate_parameters": "sparsity",
    "sparsity_stats": "sparsity",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'slimspec.training' has no attribute {name!r}")
