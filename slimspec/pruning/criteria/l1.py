"""``l1`` — Li et al. 2017, "Pruning Filters for Efficient ConvNets".

A filter's importance is the sum of the absolute values of its kernel weights. Norms are
not comparable across layers, so the default scope is per layer. Slots produced by several
layers (residual streams) average the norms of every producing filter. A channel selection
(pre-activation ResNet, DenseNet) has no producing filter of its own; it is scored by the L1
norm of the weights that read it (the consumer's input-channel slices).
"""
from __future__ import annotations

from .base import Criterion, ScoreContext, Scores, register_criterion, weight_row_scores


@register_criterion
class L1Norm(Criterion):
    name = "l1"
    default_scope = "layer"

    def score(self, ctx: ScoreContext) -> Scores:
        return weight_row_scores(ctx, lambda rows: rows.sum(1))
