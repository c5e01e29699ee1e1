"""Fold inference-mode BatchNorm into the conv/linear in front of it (a plain SpecNet, in place).

``BN(W x + b) = (s W) x + s (b - mean) + beta`` with ``s = gamma / sqrt(var + eps)``
(Ioffe & Szegedy 2015, eval mode). Only a BN whose input is a conv/linear output read by
nothing else is folded; pre-activation BNs (PreResNet, DenseNet) stay as they are.
"""
from __future__ import annotations

import torch
from torch import nn

from ..nn import SpecNet


def _fold_into(layer: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> None:
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps) if bn.affine else \
        1.0 / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias.detach() if bn.affine else torch.zeros_like(bn.running_mean)
    weight = layer.weight.detach()
    bias = layer.bias.detach() if layer.bias is not None else torch.zeros_like(bn.running_mean)
    layer.weight = nn.Parameter(weight * scale.view(-1, *([1] * (weight.dim() - 1))))
    layer.bias = nn.Parameter((bias - bn.running_mean) * scale + shift)


@torch.no_grad()
def fold_batchnorm(model: SpecNet) -> list[str]:
    """Fold every foldable BN of a plain ``model`` into its producer; return the folded BN names.

    The BN modules are replaced by ``nn.Identity`` and the model is put in eval mode.
    """
    if model.mode != "plain":
        raise ValueError(f"fold_batchnorm needs a plain model, got mode '{model.mode}'")
    model.eval()
    ir = model.ir
    readers: dict[str, int] = {}
    for node in ir.nodes:
        for name in node.inputs:
            readers[name] = readers.get(name, 0) + 1
    folded: dict[str, nn.Module] = {}
    for node in ir.nodes_of("bn"):
        producer = ir.node(node.inputs[0])
        if producer.op not in ("conv", "linear") or readers.get(producer.name) != 1:
            continue
        _fold_into(model.get_submodule(producer.name), model.get_submodule(node.name))
        identity = nn.Identity()
        parent, _, leaf = node.name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, identity)
        folded[node.name] = identity
    model._program = [(name, folded.get(name, fn), inputs, frees) for name, fn, inputs, frees in model._program]
    return list(folded)
