"""``--fold-bias``: a removed channel's constant output folded into the layer that reads it.

Network Slimming's ``prune_model_keep_size`` idea (the Darknet pruners' ``test_prune.py``,
Lam1360/YOLOv3-model-pruning ``utils/prune_utils.py``): a channel whose BN gamma is ~0 outputs the
constant act(beta); removing it drops that constant unless the consumer absorbs it. The activation
is the one the IR applies after the BN (``leaky_relu`` with its slope in a Darknet model: leaky(beta),
not relu(beta)), computed by the op's own module.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from ..ir import IR, Node
from ..ir.ops import OPS
from .sources import slot_sources

_NOT_APPLIED = ("gate", "blockgate")  # gates are folded into the BN before this runs


def _readers(ir: IR) -> dict[str, list[Node]]:
    found: dict[str, list[Node]] = {}
    for node in ir.nodes:
        for name in node.inputs:
            found.setdefault(name, []).append(node)
    return found


def channel_constant(ir: IR, bn: str, beta: torch.Tensor, readers: Mapping[str, list[Node]]) -> torch.Tensor | None:
    """What a channel whose BN outputs ``beta`` carries on: ``beta`` through the element-wise ops that follow
    the BN (activations, identities: each op's own module in eval mode), up to the first op that is not one.
    ``None`` when the path branches before that (the readers would see different constants)."""
    from ..nn.layers import PlainLayers
    from ..nn.net import make_module

    value, name = beta, bn
    while True:
        after = readers.get(name, [])
        element_wise = [n for n in after if OPS[n.op].identity and n.op not in _NOT_APPLIED]
        if not element_wise:
            return value
        if len(after) != 1:
            return None
        node = after[0]
        with torch.no_grad():
            value = make_module(ir, node, PlainLayers()).eval()(value.view(1, -1, 1, 1)).view(-1)
        name = node.name


def fold_removed_bias(ir: IR, state: Mapping[str, torch.Tensor],
                      kept: Mapping[str, tuple[int, ...]]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Fold the constant output of removed channels into the next layer (``--fold-bias``).

    A channel whose BN gamma is ~0 outputs the constant act(beta) (:func:`channel_constant`: the
    activation after the BN in the IR). Instead of dropping that constant with the channel, add
    its contribution W[:, j] * c_j (summed over the kernel) to the consumer's following BN running mean (subtracted) or to its bias. Exact for linear
    consumers and for conv pixels away from zero-padded borders. Returns the new state and
    the consumers that could not absorb it (no BN and no bias), and the BNs whose output branches
    before its activation (nothing folded for them).
    """
    new = {k: v.clone() for k, v in state.items()}
    skipped: list[str] = []
    sources = slot_sources(ir)
    followers = {node.inputs[0]: node for node in ir.nodes if node.op == "bn"}
    readers = _readers(ir)
    for slot, keep in kept.items():
        removed = sorted(set(range(ir.slots[slot].size)) - set(keep))
        bns = [s for s in sources.get(slot, []) if s.kind == "bn"]
        if not removed or len(bns) != 1:
            continue
        beta = state[f"{bns[0].node}.bias"].float()
        after = channel_constant(ir, bns[0].node, beta, readers)
        if after is None:
            skipped.append(bns[0].node)
            continue
        const = after[list(bns[0].positions)][removed]
        for consumer in (s for s in sources.get(slot, []) if s.kind == "consumer"):
            node = ir.node(consumer.node)
            weight = state[f"{node.name}.weight"].float()
            cols = [consumer.positions[r] for r in removed]
            delta = (weight[:, cols].flatten(2).sum(2) if weight.dim() == 4 else weight[:, cols]) @ const
            follower = followers.get(node.name)
            if follower is not None:
                new[f"{follower.name}.running_mean"] = new[f"{follower.name}.running_mean"] - delta
            elif f"{node.name}.bias" in new:
                new[f"{node.name}.bias"] = new[f"{node.name}.bias"] + delta
            else:
                skipped.append(node.name)
    return new, skipped
