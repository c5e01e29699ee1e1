"""``--fold-bias``: a removed channel's constant output folded into the layer that reads it.

Network Slimming's ``prune_model_keep_size`` idea (the Darknet pruners' ``test_prune.py``): a
channel whose BN gamma is ~0 outputs the constant act(beta); removing it drops that constant
unless the consumer absorbs it.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from ..ir import IR
from .sources import slot_sources


def fold_removed_bias(ir: IR, state: Mapping[str, torch.Tensor], kept: Mapping[str, tuple[int, ...]]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Fold the constant output of removed channels into the next layer (``--fold-bias``).

    A channel whose BN gamma is ~0 outputs the constant ReLU(beta). Instead of dropping that
    constant with the channel, add its contribution W[:, j] * c_j (summed over the kernel) to
    the consumer's following BN running mean (subtracted) or to its bias. Exact for linear
    consumers and for conv pixels away from zero-padded borders. Returns the new state and
    the consumers that could not absorb it (no BN and no bias).
    """
    new = {k: v.clone() for k, v in state.items()}
    skipped: list[str] = []
    sources = slot_sources(ir)
    followers = {node.inputs[0]: node for node in ir.nodes if node.op == "bn"}
    for slot, keep in kept.items():
        removed = sorted(set(range(ir.slots[slot].size)) - set(keep))
        bns = [s for s in sources.get(slot, []) if s.kind == "bn"]
        if not removed or len(bns) != 1:
            continue
        beta = state[f"{bns[0].node}.bias"].float()[list(bns[0].positions)]
        const = torch.relu(beta)[removed]
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
