"""Training: the loop, Network Slimming's BN sparsity, SSS gates with APG, torchrun DDP."""
from .apg import APG
from .config import TrainConfig, lr_at, lr_factor, make_scheduler
from .distributed import DistInfo, all_reduce_sum, cleanup_distributed, init_distributed, resolve_device
from .loop import TrainResult, default_save_weights, epoch_generator, evaluate, load_state, train
from .sparsity import bn_l1_subgradient_, bn_weights, gate_parameters, sparsity_stats

__all__ = [
    "APG",
    "DistInfo",
    "TrainConfig",
    "TrainResult",
    "all_reduce_sum",
    "bn_l1_subgradient_",
    "bn_weights",
    "cleanup_distributed",
    "default_save_weights",
    "epoch_generator",
    "evaluate",
    "gate_parameters",
    "init_distributed",
    "load_state",
    "lr_at",
    "lr_factor",
    "make_scheduler",
    "resolve_device",
    "sparsity_stats",
    "train",
]
