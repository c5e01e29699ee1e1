"""Multi-process training through ``torchrun`` (DistributedDataParallel).

``torchrun --nproc_per_node N ...`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` joins the process group (nccl
on CUDA, gloo on CPU). Each rank trains on its shard of the train split; DDP averages the
gradients during ``backward()``, so regularizers applied afterwards (the BN L1 subgradient,
APG on gates) see the same gradients on every rank and the replicas stay identical.
Metrics are summed over ranks (:func:`all_reduce_sum`); only rank 0 writes files and prints.
Every rank is seeded alike, so the global RNG (dropout) is the same on all ranks and the
single ``state.pt`` written by rank 0 restores all of them on resume (a shared file system
for ``run_dir`` is assumed).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..errors import TrainingError


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job; ``world_size == 1`` means no process group."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool = False  # True if init_distributed created the process group

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when unset)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def env_rank() -> int:
    """``RANK`` from the environment (0 when unset): this process's rank under torchrun, before any process group."""
    return int(os.environ.get("RANK", "0") or 0)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> ``cuda`` if available else ``cpu``; ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` if present.

    A device this machine does not have is a one-line :class:`~slimspec.errors.TrainingError`.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise TrainingError(f"--device {name}: not a device (expected auto, cpu, cuda, cuda:N or mps)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"--device {name}: CUDA is not available on this machine (use --device cpu or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise TrainingError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise TrainingError(f"--device {name}: MPS is not available on this machine (use --device cpu or auto)")
    return device


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the torchrun process group if ``WORLD_SIZE > 1``; else a single-process DistInfo.

    CUDA: backend nccl, device ``cuda:LOCAL_RANK``. CPU: backend gloo. An already initialized
    process group is reused (and not destroyed by :func:`cleanup_distributed`).
    """
    world_size = env_world_size()
    if world_size <= 1:
        return DistInfo(0, 1, 0, resolve_device(device))
    rank = env_rank()
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    base = resolve_device(device)
    if base.type == "cuda":
        target = torch.device("cuda", local_rank)
        torch.cuda.set_device(target)
        backend = "nccl"
    else:
        target, backend = torch.device("cpu"), "gloo"
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
        owns = True
    return DistInfo(rank, world_size, local_rank, target, owns)


def cleanup_distributed(info: DistInfo, *, finished: bool = False) -> None:
    """Destroy the process group if :func:`init_distributed` created it; after a ``finished`` run every rank
    first waits for the others (a rank tearing gloo down while a peer still talks to it can abort)."""
    if info.owns_group and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def wrap_model(model: nn.Module, info: DistInfo) -> nn.Module:
    """``DistributedDataParallel(model)`` when distributed, else ``model`` unchanged."""
    if not info.distributed:
        return model
    ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def all_reduce_sum(values: Sequence[float] | torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a vector of metrics (loss sums, correct counts, ...) over ranks; float64 result."""
    tensor = torch.as_tensor(values, dtype=torch.float64)
    if not info.distributed:
        return tensor
    comm = tensor.to(info.device)
    dist.all_reduce(comm, op=dist.ReduceOp.SUM)
    return comm.cpu()


@torch.no_grad()
def broadcast_buffers(model: nn.Module, info: DistInfo, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (BN running statistics) to every rank.

    DDP broadcasts buffers at the start of each forward, so after the last training step
    each rank's BN statistics include its own final batch; this re-synchronizes them.
    """
    if not info.distributed:
        return
    for buffer in model.buffers():
        dist.broadcast(buffer, src=src)


def barrier(info: DistInfo) -> None:
    """Wait for all ranks (no-op when not distributed)."""
    if info.distributed:
        dist.barrier()
