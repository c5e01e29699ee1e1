"""Unstructured pruning: weight masks instead of narrower layers (``magnitude``, Han et al. 2015).

The spec keeps its widths (only the provenance block is added); the pruned weights are
zeroed and a ``weight_mask`` buffer per conv/linear travels with them, so the weights file
builds in ``masked`` mode and stays pruned through fine-tuning. The model path
(:func:`prune_weights`) pools every score and sorts them (:func:`_masks`); a weights file is
pruned from the file (:mod:`.filewise`) with :class:`StreamedMasks`, the same masks made one
tensor at a time (:mod:`.radix`).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Protocol, runtime_checkable

import torch

from ..model import build
from ..document import Spec, spec_from_text
from ..ir import IR, count_macs, count_params
from ..specio.yamlio import update_spec_text
from ..utils.text import listing
from ..weights import load_state_into
from ..errors import PruneError
from .options import CHANNEL_SHAPING, PruneOptions
from .patterns import matches
from .policy import Decision, fraction_search, keep_count
from .provenance import provenance_block
from .radix import Cut, smallest
from .report import SlotRow
from .result import PruneResult


@runtime_checkable
class WeightScorer(Protocol):
    """An unstructured criterion that scores one weight tensor at a time (so it prunes from the file)."""

    def weight_names(self, ir: IR) -> list[str]:
        """The weights scored, in the order their scores are pooled."""

    def weight_score(self, state: Mapping[str, torch.Tensor], name: str) -> torch.Tensor:
        """The float32 scores of weight ``name`` of ``state``, shaped as it."""


def _masks(scores: Mapping[str, torch.Tensor], ratio: float, scope: str) -> dict[str, torch.Tensor]:
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


class StreamedMasks:
    """:func:`_masks` of the scores ``scorer`` gives ``state``'s weights, made one tensor at a time.

    ``sizes`` maps each scored weight to its element count, in pooling order. A global scope
    finds its cut first (:func:`~slimspec.pruning.radix.smallest`: three reads of every
    tensor's scores, one tensor at a time); a layer scope cuts each tensor when it is asked for.
    """

    def __init__(self, scorer: WeightScorer, state: Mapping[str, torch.Tensor], sizes: Mapping[str, int],
                 ratio: float, scope: str) -> None:
        self.scorer, self.state, self.ratio, self.scope = scorer, state, ratio, scope
        self.index = {name: i for i, name in enumerate(sizes)}
        self.cut: Cut | None = None
        if scope == "global":
            names = list(sizes)
            total = sum(sizes.values())
            self.cut = smallest(lambda i: self.scores(names[i]), len(names), total - keep_count(total, ratio))
            self.kept = {name: sizes[name] - self.cut.dropped[i] for i, name in enumerate(names)}
        else:
            self.kept = {name: keep_count(size, ratio) for name, size in sizes.items()}

    def scores(self, name: str) -> torch.Tensor:
        return self.scorer.weight_score(self.state, name)

    def mask(self, name: str) -> torch.Tensor:
        """The 0/1 float32 mask of weight ``name``, as :func:`_masks` makes it."""
        scores = self.scores(name)
        if self.cut is not None:
            return self.cut.keep(self.index[name], scores)
        return smallest(lambda _: scores, 1, scores.numel() - self.kept[name]).keep(0, scores)


def scored_weights(ir: IR, names: Sequence[str], exclude: Sequence[str]) -> list[str]:
    """``names`` less the weights of the layers an exclude pattern covers, matched against each layer's spec
    path (``stem``, ``cfg[0]``, ``stages[0].blocks[1]``, ``num_classes`` for the classifier); a pattern that
    covers none of them is refused (a typo would otherwise mask everything)."""
    if not exclude:
        return list(names)
    paths = {f"{node.name}.weight": node.at or "" for node in ir.nodes}
    for pattern in exclude:
        if not any(matches(pattern, paths[name]) for name in names):
            raise PruneError(f"exclude: pattern '{pattern}' matches no layer whose weights are masked (their spec "
                             f"paths: {listing(dict.fromkeys(paths[name] for name in names), 8)})")
    return [name for name in names if not any(matches(pattern, paths[name]) for pattern in exclude)]


def refuse_gated(mode: str) -> None:
    if mode == "gated":
        raise PruneError("magnitude pruning of gated weights: prune the gates first (method 'gate')")


def mask_ratio(options: PruneOptions, total: int, prunable: int) -> float:
    """The fraction of the ``prunable`` weights to mask: the options' ratio, or the smallest one leaving a
    ``params`` target's fraction of the network's ``total`` parameters."""
    ratio = options.ratio
    if options.target:
        (metric, goal), = options.target.items()
        if metric != "params":
            raise PruneError("magnitude pruning keeps every layer's width: only a 'params' target applies")
        ratio = fraction_search(lambda r: (total - (prunable - keep_count(prunable, r))) / total, goal)
    if ratio is None:
        raise PruneError("method 'magnitude' needs --ratio or --target params=FRACTION")
    return ratio


def masked_pair(weight: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A weight with its pruned entries zeroed, and its ``weight_mask`` buffer, both in the weight's dtype."""
    mask = mask.to(weight.dtype)
    return weight * mask, mask


def masked_spec(parent: Spec, options: PruneOptions, ratio: float, scope: str, weights_sha: str | None,
                kept: Mapping[str, tuple[int, int]], source: Mapping[str, torch.Tensor]
                ) -> tuple[Spec, Decision, list[SlotRow], tuple[int, int], tuple[int, int], list[str]]:
    """The new spec (widths unchanged, provenance added) of masks keeping ``kept[name] = (before, after)``
    weights of ``source``: ``(spec, decision, report rows, params before/after, MACs before/after, notes)``."""
    total = count_params(parent.ir)
    remaining = total - sum(before - after for before, after in kept.values())
    macs = count_macs(parent.ir)
    decision = Decision({path: tuple(range(slot.size)) for path, slot in parent.ir.slots.items()}, None)
    data = dict(parent.data)
    recorded = replace(options, **CHANNEL_SHAPING)  # what shaped the masks: not the ignored channel options
    data["pruned"] = provenance_block(parent, recorded, decision, scope=scope, weights_sha=weights_sha,
                                      params=(total, remaining), macs=(macs, macs), ratio=ratio)
    new_spec = spec_from_text(update_spec_text(parent.text, data), f"{parent.source or parent.name} (pruned)")
    rows = [SlotRow(name, "weights", before, after) for name, (before, after) in kept.items()]
    notes = [f"{100 * (1 - remaining / total):.1f}% of parameters masked (widths unchanged)",
             *unmasked_notes(source, kept)]
    return new_spec, decision, rows, (total, remaining), (macs, macs), notes


def unmasked_notes(source: Mapping[str, torch.Tensor], kept: Mapping[str, tuple[int, int]]) -> list[str]:
    """A warning when the source's own masks zero more of a weight than the new mask drops: those masked
    weights are unmasked again (the new masks replace the old; at least this many, counted per weight)."""
    back = 0
    for name, (before, after) in kept.items():
        old = source.get(f"{name}_mask")
        if old is not None:
            back += max(0, int((old == 0).sum()) - (before - after))
    if not back:
        return []
    return [f"warning: {back:,} weights the source masks are unmasked again (the new masks replace the old ones; "
            "give a ratio at least the source's to keep them masked)"]


def prune_weights(parent: Spec, model: torch.nn.Module, state: dict[str, torch.Tensor],
                  scores: dict[str, torch.Tensor], options: PruneOptions, weights_sha: str | None) -> PruneResult:
    """Mask the lowest-scored weights (per tensor or globally) to a ratio or a params target (the model path)."""
    refuse_gated(getattr(model, "mode", "plain"))
    scores = {name: scores[name] for name in scored_weights(parent.ir, list(scores), options.exclude)}
    scope = options.scope or "global"
    ratio = mask_ratio(options, count_params(parent.ir), sum(s.numel() for s in scores.values()))
    masks = _masks(scores, ratio, scope)
    new_spec, decision, rows, params, macs, notes = masked_spec(
        parent, options, ratio, scope, weights_sha, {name: (m.numel(), int(m.sum())) for name, m in masks.items()},
        state)
    new_model = build(new_spec, "masked")
    new_state = dict(state)
    for name, mask in masks.items():
        new_state[name], new_state[f"{name}_mask"] = masked_pair(state[name], mask)
    load_state_into(new_model, {k: new_state.get(k, v) for k, v in new_model.state_dict().items()}, "magnitude")
    return PruneResult(new_spec, new_model, parent, rows, decision, options, params, macs, notes, model)
