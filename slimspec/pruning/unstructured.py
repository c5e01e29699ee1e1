"""Unstructured pruning: weight masks instead of narrower layers (``magnitude``).

The spec keeps its widths (only the provenance block is added); the pruned weights are
zeroed and a ``weight_mask`` buffer per conv/linear travels with them, so the weights file
builds in ``masked`` mode and stays pruned through fine-tuning.
"""
from __future__ import annotations

import torch

from ..model import build
from ..document import Spec, spec_from_text
from ..ir import count_macs, count_params
from ..specio.yamlio import update_spec_text
from ..weights import load_state_into
from ..errors import PruneError
from .options import PruneOptions
from .policy import Decision, fraction_search, keep_count
from .provenance import provenance_block
from .report import SlotRow
from .result import PruneResult



def _masks(scores: dict[str, torch.Tensor], ratio: float, scope: str) -> dict[str, torch.Tensor]:
    """0/1 masks removing the lowest scores, per tensor (``layer``) or over all tensors (``global``).

    Ties are pruned in storage order (stable sort), so masks are deterministic.
    """
    groups = [[name] for name in scores] if scope == "layer" else [list(scores)]
    masks: dict[str, torch.Tensor] = {}
    for names in groups:
        flat = torch.cat([scores[n].flatten() for n in names])
        keep = torch.ones_like(flat)
        drop = flat.numel() - keep_count(flat.numel(), ratio)
        keep[torch.sort(flat, stable=True).indices[:drop]] = 0
        for name, part in zip(names, keep.split([scores[n].numel() for n in names])):
            masks[name] = part.view_as(scores[name])
    return masks


def prune_weights(parent: Spec, model: torch.nn.Module, state: dict[str, torch.Tensor],
                  scores: dict[str, torch.Tensor], options: PruneOptions, weights_sha: str | None) -> PruneResult:
    """Mask the lowest-scored weights (per tensor or globally) to a ratio or a params target."""
    if getattr(model, "mode", "plain") == "gated":
        raise PruneError("magnitude pruning of gated weights: prune the gates first (method 'gate')")
    scope = options.scope or "global"
    total = count_params(parent.ir)
    prunable = sum(s.numel() for s in scores.values())
    ratio = options.ratio
    if options.target:
        (metric, goal), = options.target.items()
        if metric != "params":
            raise PruneError("magnitude pruning keeps every layer's width: only a 'params' target applies")
        ratio = fraction_search(lambda r: (total - (prunable - keep_count(prunable, r))) / total, goal)
    if ratio is None:
        raise PruneError("method 'magnitude' needs --ratio or --target params=FRACTION")
    masks = _masks(scores, ratio, scope)
    remaining = total - sum(int((m == 0).sum()) for m in masks.values())
    macs = count_macs(parent.ir)
    decision = Decision({path: tuple(range(slot.size)) for path, slot in parent.ir.slots.items()}, None)
    data = dict(parent.data)
    data["pruned"] = provenance_block(parent, options, decision, scope=scope, weights_sha=weights_sha,
                                      params=(total, remaining), macs=(macs, macs), ratio=ratio)
    new_spec = spec_from_text(update_spec_text(parent.text, data), f"{parent.source or parent.name} (pruned)")
    new_model = build(new_spec, "masked")
    new_state = {k: v.clone() for k, v in state.items()}
    for name, mask in masks.items():
        new_state[name] = new_state[name] * mask.to(new_state[name].dtype)
        new_state[f"{name}_mask"] = mask.to(new_state[name].dtype)
    load_state_into(new_model, {k: new_state.get(k, v) for k, v in new_model.state_dict().items()}, "magnitude")
    rows = [SlotRow(name, "weights", int(m.numel()), int(m.sum())) for name, m in masks.items()]
    return PruneResult(new_spec, new_model, parent, rows, decision, options, (total, remaining), (macs, macs),
                       [f"{100 * (1 - remaining / total):.1f}% of parameters masked (widths unchanged)"], model)
