"""``random`` — the baseline every criterion must beat: uniform random scores, seeded."""
from __future__ import annotations

import torch

from .base import Criterion, ScoreContext, Scores, register_criterion


@register_criterion
class RandomScores(Criterion):
    name = "random"
    default_scope = "layer"
    uses_seed = True

    def score(self, ctx: ScoreContext) -> Scores:
        generator = torch.Generator().manual_seed(ctx.seed)
        return {path: torch.rand(slot.size, generator=generator) for path, slot in ctx.ir.slots.items()
                if slot.prunable}
