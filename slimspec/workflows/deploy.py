"""The deployable form of any slimspec model: plain layers, masks and gates folded, BN folded.

Gated models (SSS, Huang & Wang 2018) fold their non-negative gates into the BN that scales
the same channels (``pruning.transplant.fold_gates``); masked models multiply their weight
masks in and fold their 0/1 channel masks the same way; then every BN that follows a
conv/linear is folded into it (``latency.fold``). Outputs equal the source model's in eval mode.
"""
from __future__ import annotations

import os

import torch

from ..document import Spec
from ..latency.fold import fold_batchnorm
from ..model import build, load_model
from ..nn import SpecNet
from ..pruning.transplant import fold_gates
from ..weights import load_state_into


def plain_state(model: SpecNet) -> dict[str, torch.Tensor]:
    """The state dict of the plain model that computes what ``model`` computes (eval mode)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    ir = model.ir
    if model.mode == "masked":
        for key in [k for k in state if k.endswith(".weight_mask")]:
            weight = key[: -len("_mask")]
            state[weight] = state[weight] * state.pop(key)
        for node in ir.nodes_of("gate", "blockgate"):  # channel masks: 0/1 gates
            if f"{node.name}.mask" in state:
                state[f"{node.name}.weight"] = state.pop(f"{node.name}.mask")
        return fold_gates(ir, state, binary=True)
    if model.mode == "gated":
        binary = any(getattr(m, "binary", False) for m in model.modules())
        return fold_gates(ir, state, binary=binary)
    return state


def deployable(model: SpecNet, *, fold_bn: bool = True) -> SpecNet:
    """A new plain, eval-mode copy of ``model`` with gates/masks (and, by default, BN) folded in."""
    plain = build(model.spec, "plain", seed=0)
    load_state_into(plain, plain_state(model), f"{model.spec.name} (deployable)")
    plain.eval()
    if fold_bn:
        fold_batchnorm(plain)
    return plain


def load_deployable(source: str | os.PathLike | Spec | SpecNet, *, fold_bn: bool = True,
                    seed: int = 0) -> tuple[SpecNet, SpecNet]:
    """``(reference, deployable)`` for a weights file, a spec (seeded random weights) or a model.

    ``reference`` is the model as built/loaded, in eval mode.
    """
    if isinstance(source, SpecNet):
        model = source
    elif isinstance(source, Spec) or not str(source).endswith(".safetensors"):
        model = build(source, seed=seed)
    else:
        model = load_model(source)[0]
    model.eval()
    return model, deployable(model, fold_bn=fold_bn)
