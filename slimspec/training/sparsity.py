"""Sparsity regularizers and statistics: BN-gamma L1 (Network Slimming) and SSS gates.

Network Slimming (Liu et al., "Learning Efficient Convolutional Networks through Network
Slimming", ICCV 2017) adds ``s * sum |gamma|`` over all BatchNorm scales to the loss; its
subgradient ``s * sign(gamma)`` is added to the gradients after ``backward()``. Here that is
one ``torch._foreach_add_`` over every BN weight of the model (the list is cached per model).
Gates (Huang & Wang 2018, Sparse Structure Selection) are parameters named ``*.gate.weight``
and are trained by :class:`slimspec.training.apg.APG` instead.
"""
from __future__ import annotations

import weakref

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..nn.layers import Gate

GATE_SUFFIX = "gate.weight"

_BN_CACHE: weakref.WeakKeyDictionary[nn.Module, list[nn.Parameter]] = weakref.WeakKeyDictionary()


def _unwrap(model: nn.Module) -> nn.Module:
    """The wrapped module of DistributedDataParallel / DataParallel, else ``model``."""
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model


def bn_weights(model: nn.Module) -> list[nn.Parameter]:
    """Scale parameters (gamma) of every affine BatchNorm layer, in module order."""
    return [m.weight for m in _unwrap(model).modules() if isinstance(m, _BatchNorm) and m.weight is not None]


def gate_parameters(model: nn.Module) -> list[nn.Parameter]:
    """SSS gate parameters: the weight of every :class:`slimspec.nn.Gate` module, plus (for
    models built elsewhere) parameters named ``gate.weight`` or ``*.gate.weight``."""
    model = _unwrap(model)
    found = {id(m.weight): m.weight for m in model.modules() if isinstance(m, Gate)}
    for name, p in model.named_parameters():
        if name == GATE_SUFFIX or name.endswith("." + GATE_SUFFIX):
            found.setdefault(id(p), p)
    order = {id(p): i for i, p in enumerate(model.parameters())}
    return sorted(found.values(), key=lambda p: order[id(p)])


def bn_l1_subgradient_(model: nn.Module, s: float) -> None:
    """Add ``s * sign(gamma)`` to the gradient of every BN weight, in one foreach call.

    Call after ``backward()`` (and after ``GradScaler.unscale_``) and before the optimizer
    step, as Network Slimming's ``updateBN``. The BN list is cached per model object; BN
    weights without a gradient are skipped.
    """
    if s == 0.0:
        return
    model = _unwrap(model)
    params = _BN_CACHE.get(model)
    if params is None:
        params = _BN_CACHE[model] = bn_weights(model)
    with_grad = [p for p in params if p.grad is not None]
    if not with_grad:
        return
    with torch.no_grad():
        signs = torch._foreach_sign([p.detach() for p in with_grad])
        torch._foreach_add_([p.grad for p in with_grad], signs, alpha=s)


@torch.no_grad()
def sparsity_stats(model: nn.Module, eps: float = 1e-2) -> dict[str, float | int]:
    """Fraction of BN gammas with ``|gamma| < eps`` and of gates exactly zero (with counts)."""
    gammas = bn_weights(model)
    gates = gate_parameters(model)
    bn_total = sum(p.numel() for p in gammas)
    gate_total = sum(p.numel() for p in gates)
    bn_small = sum(int((p.detach().abs() < eps).sum()) for p in gammas)
    gate_zero = sum(int((p.detach() == 0).sum()) for p in gates)
    return {
        "bn_channels": bn_total,
        "bn_small": bn_small / bn_total if bn_total else 0.0,
        "gates": gate_total,
        "gates_zero": gate_zero / gate_total if gate_total else 0.0,
    }
