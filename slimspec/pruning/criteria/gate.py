"""``gate`` (alias ``sss``) — Huang & Wang 2018, "Data-Driven Sparse Structure Selection".

Channels (and, on residual nets, whole blocks) are scored by their learned gate (a per-channel scale trained with APG, which drives
unneeded gates exactly to zero). By default every channel whose gate is zero is removed
(threshold 0: a channel is kept only if its gate is > 0); a ratio or target ranks by gate.
Needs weights trained in ``gated`` mode.
"""
from __future__ import annotations

from .base import Criterion, PruneError, ScoreContext, Scores, mean_over_sources, register_criterion


@register_criterion
class GateCriterion(Criterion):
    name = "gate"
    default_scope = "global"
    default_threshold = 0.0
    prunes_blocks = True
    needs_gates = True

    def score(self, ctx: ScoreContext) -> Scores:
        scores = mean_over_sources(
            ctx, "gate",
            lambda src: ctx.state[f"{src.node}.weight"].float().abs()[list(src.positions)]
            if f"{src.node}.weight" in ctx.state else None,
        )
        if not scores:
            raise PruneError("method 'gate' needs weights trained with gates (slimspec train --gates sss)")
        return scores


@register_criterion
class SSS(GateCriterion):
    name = "sss"
