"""``attention`` and ``attention-weight`` — activation-attention channel importance.

For a feature map A of shape [C, H, W], the attention map is F(A) = sum_i |A_i| over channels,
normalized by its L2 norm. Channel j's score is sum |F(A)/||F(A)|| - F(A\\j)/||F(A\\j)|| |:
how much the layer's attention map changes without it (the seeds' attention-based pruning of
VGG-19-BN, after Zagoruyko & Komodakis 2017's activation-based attention). ``attention``
averages it over calibration batches, read at each slot's output (after BN and ReLU);
``attention-weight`` computes the same on |W| of the producing filters, data-free, treating
each filter [C_in, k, k] as one channel's map (a channel selection, which no filter produces,
uses the weights that read it). For a fully connected slot (no spatial map),
``attention`` scores a feature by its mean absolute activation.
"""
from __future__ import annotations

import torch

from .base import Criterion, PruneError, ScoreContext, Scores, mean_over_sources, register_criterion, weight_row_scores


def attention_change(maps: torch.Tensor) -> torch.Tensor:
    """maps [N, C, P] (non-negative) -> [N, C] change of the normalized attention map per removed channel."""
    total = maps.sum(1, keepdim=True)  # [N, 1, P]
    without = total - maps  # [N, C, P]
    eps = torch.finfo(maps.dtype).tiny
    full = total / total.norm(dim=2, keepdim=True).clamp_min(eps)
    part = without / without.norm(dim=2, keepdim=True).clamp_min(eps)
    return (full - part).abs().sum(2)


@register_criterion
class Attention(Criterion):
    name = "attention"
    default_scope = "global"
    reads_calibration = True
    needs_model = True

    @torch.no_grad()
    def score(self, ctx: ScoreContext) -> Scores:
        if ctx.calibration is None:
            raise PruneError("method 'attention' needs calibration data (--data NAME or a plan's calibration)")
        gate_nodes = [n for n in ctx.ir.nodes if n.op == "gate"]
        modules = dict(ctx.model.named_modules())
        sums: dict[str, torch.Tensor] = {}
        count = 0
        handles = []

        def hook_for(node_name: str):
            def hook(module, inputs, output):
                act = inputs[0].detach().float().abs()
                n, c = act.shape[:2]
                score = attention_change(act.reshape(n, c, -1)) if act.dim() == 4 else act
                total = score.sum(0).cpu()
                sums[node_name] = sums[node_name] + total if node_name in sums else total
            return hook

        for node in gate_nodes:
            handles.append(modules[node.name].register_forward_hook(hook_for(node.name)))
        was_training = ctx.model.training
        ctx.model.eval()
        device = next(ctx.model.parameters()).device
        try:
            for batch in ctx.calibration:
                ctx.model(batch.to(device))
                count += batch.shape[0]
        finally:
            for handle in handles:
                handle.remove()
            ctx.model.train(was_training)
        if count == 0:
            raise PruneError("calibration data gave no batches")
        return mean_over_sources(  # block gates (whole residual blocks) are not activation-scored
            ctx, "gate", lambda src: sums[src.node][list(src.positions)] / count if src.node in sums else None)


@register_criterion
class AttentionWeight(Criterion):
    name = "attention-weight"
    default_scope = "layer"

    def score(self, ctx: ScoreContext) -> Scores:
        return weight_row_scores(ctx, lambda rows: attention_change(rows.unsqueeze(0))[0])
