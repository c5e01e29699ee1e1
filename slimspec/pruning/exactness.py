"""The exactness check: the pruned plain network computes what the original computes with the
removed channels masked (eval mode), the invariant the design rests on (DESIGN.md, section 2).

``prune --check`` runs it before anything is written; it builds the masked original and the
pruned model and runs one seeded random batch through both, so it costs about two model
builds and two forward passes: on by default where that is cheap (:data:`CHEAP_PARAMS`).
"""
from __future__ import annotations

import torch

from ..errors import PruneError
from ..model import build
from ..nn import SpecNet
from .masking import apply_channel_masks
from .result import PruneResult
from .transplant import fold_gates

# ``--check`` is on by default for sources up to this many parameters (16 MB in float32):
# both models and one batch fit in well under a second and a few times the weights' memory.
CHEAP_PARAMS = 4_000_000
ATOL, RTOL = 1e-4, 1e-4


def check_is_cheap(result: PruneResult) -> bool:
    return result.params[0] <= CHEAP_PARAMS


def masked_original(result: PruneResult) -> torch.nn.Module:
    """The source network built in ``masked`` mode, its removed channels masked (gates folded first)."""
    source = result.source_model
    parent = result.parent
    state = {k: v.detach() for k, v in source.state_dict().items()}
    if getattr(source, "mode", "plain") == "gated":
        binary = result.options.binary_gates or any(getattr(m, "binary", False) for m in source.modules())
        state = fold_gates(parent.ir, state, binary=binary)
    masked = build(parent, "masked", seed=0)
    missing, unexpected = masked.load_state_dict(state, strict=False)
    if unexpected or any(not key.endswith("mask") for key in missing):
        raise PruneError(f"--check: the source's tensors do not fit its masked network ({missing or unexpected})")
    return apply_channel_masks(masked, parent.ir, result.decision.kept).eval()


@torch.no_grad()
def check_exact(result: PruneResult, batch: int = 2, seed: int = 0) -> float:
    """Largest difference between the pruned model's and the masked original's outputs on one random batch.

    Raises :class:`PruneError` past ``ATOL + RTOL * |expected|`` (a transplant bug, never the
    user's input). With ``fold_bias`` the exact variant is the one with the bias dropped.
    """
    if not result.options or not isinstance(result.source_model, SpecNet):
        raise PruneError("--check: the source is not a slimspec network")
    pruned = result.variants.get("bias dropped", result.model)
    was_training = pruned.training
    x = torch.randn(batch, *result.parent.ir.input_shape, generator=torch.Generator().manual_seed(seed))
    expected = masked_original(result)(x)
    actual = pruned.eval()(x)
    pruned.train(was_training)
    outputs = zip(expected, actual) if isinstance(expected, (tuple, list)) else [(expected, actual)]
    worst = 0.0
    for want, got in outputs:
        if want.shape != got.shape:
            raise PruneError(f"--check: the pruned network outputs {tuple(got.shape)}, the original {tuple(want.shape)}")
        worst = max(worst, float((want - got).abs().max()) if want.numel() else 0.0)
        if not torch.allclose(got, want, atol=ATOL, rtol=RTOL):
            raise PruneError(f"--check: the pruned network's outputs differ from the masked original's by {worst:.3g} "
                             f"(tolerance {ATOL:g} + {RTOL:g} x |output|); nothing was written")
    return worst
