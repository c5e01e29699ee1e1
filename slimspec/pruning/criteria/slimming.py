"""``slimming`` — Liu et al. 2017, "Learning Efficient Convolutional Networks through Network Slimming".

A channel's importance is |gamma|, the scaling factor of the BatchNorm that normalizes it,
trained with an L1 penalty (``slimspec train --sparsity``). One global threshold over all
prunable BNs is the default. A channel selection (pre-activation ResNet, DenseNet) is scored
by the gammas of the BN in front of it; a residual stream by the mean over its BNs.
"""
from __future__ import annotations

from .base import Criterion, ScoreContext, Scores, mean_over_sources, register_criterion


@register_criterion
class Slimming(Criterion):
    name = "slimming"
    default_scope = "global"

    def score(self, ctx: ScoreContext) -> Scores:
        return mean_over_sources(
            ctx, "bn", lambda src: ctx.state[f"{src.node}.weight"].float().abs()[list(src.positions)]
        )
