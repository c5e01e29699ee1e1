"""``magnitude`` — unstructured weight pruning by |w| (Han et al. 2015, "Learning both Weights
and Connections"; the seeds' masked Linear/Conv2d on MNIST).

Individual conv/linear weights with the smallest magnitude are masked (globally or per
layer). Widths stay as they are: the masks travel with the weights as ``weight_mask``
buffers and the model builds in ``masked`` mode.
"""
from __future__ import annotations

from .base import Criterion, ScoreContext, Scores, register_criterion


@register_criterion
class Magnitude(Criterion):
    name = "magnitude"
    default_scope = "global"
    structured = False

    def score(self, ctx: ScoreContext) -> Scores:
        """Parameter name -> |w| (masked weights score 0, so they stay pruned)."""
        out: Scores = {}
        for node in ctx.ir.nodes_of("conv", "linear"):
            weight = ctx.state[f"{node.name}.weight"].float().abs()
            mask = ctx.state.get(f"{node.name}.weight_mask")
            out[f"{node.name}.weight"] = weight * mask if mask is not None else weight
        return out
