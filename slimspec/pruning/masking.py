"""Masked evaluation: zero the channels a decision removes, without changing any width.

``apply_channel_masks`` turns a ``masked``-mode model into "the original with pruned channels
zeroed": gate-position masks for slots that have one, and zeroed BN scale and shift for
residual-stream slots (every producer of a stream is followed by a BN). The pruned plain
model must compute exactly what this masked model computes (eval mode); tests check that.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from ..ir import IR
from .sources import slot_sources
from ..errors import PruneError


@torch.no_grad()
def apply_channel_masks(model: torch.nn.Module, ir: IR, kept: Mapping[str, tuple[int, ...]]) -> torch.nn.Module:
    if getattr(model, "mode", None) != "masked":
        raise PruneError("apply_channel_masks needs a model built in 'masked' mode")
    sources = slot_sources(ir)
    for slot, keep in kept.items():
        removed = sorted(set(range(ir.slots[slot].size)) - set(keep))
        if not removed:
            continue
        gates = [s for s in sources.get(slot, []) if s.kind == "gate"]
        if gates:
            for src in gates:
                model.get_submodule(src.node).mask[[src.positions[r] for r in removed]] = 0
            continue
        for src in sources.get(slot, []):
            if src.kind == "bn":
                bn = model.get_submodule(src.node)
                index = [src.positions[r] for r in removed]
                bn.weight[index] = 0
                bn.bias[index] = 0
    return model
