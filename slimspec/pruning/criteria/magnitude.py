"""``magnitude`` — unstructured weight pruning by |w| (Han et al. 2015, "Learning both Weights
and Connections"; the seeds' masked Linear/Conv2d on MNIST).

Individual conv/linear weights with the smallest magnitude are masked (globally or per
layer). Widths stay as they are: the masks travel with the weights as ``weight_mask``
buffers and the model builds in ``masked`` mode. Each weight is scored on its own
(:meth:`Magnitude.weight_score`), so a weights file prunes one tensor at a time, from the file.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from ...ir import IR
from .base import Criterion, ScoreContext, Scores, register_criterion


@register_criterion
class Magnitude(Criterion):
    name = "magnitude"
    default_scope = "global"
    structured = False

    def weight_names(self, ir: IR) -> list[str]:
        """The weights it scores (every conv's and linear's), in the order their scores are pooled."""
        return [f"{node.name}.weight" for node in ir.nodes_of("conv", "linear")]

    def weight_score(self, state: Mapping[str, torch.Tensor], name: str) -> torch.Tensor:
        """|w| of one weight, in float32 (masked weights score 0, so they stay pruned)."""
        weight = state[name].float().abs()
        mask = state.get(f"{name}_mask")
        return weight * mask if mask is not None else weight

    def score(self, ctx: ScoreContext) -> Scores:
        """Parameter name -> |w| (see :meth:`weight_score`)."""
        return {name: self.weight_score(ctx.state, name) for name in self.weight_names(ctx.ir)}
