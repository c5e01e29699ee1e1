"""The deployable form of any slimspec model: plain layers, masks and gates folded, BN folded.

Gated models (SSS, Huang & Wang 2018) fold their non-negative gates into the BN that scales
the same channels (``pruning.transplant.fold_gates``); masked models multiply their weight
masks in and fold their 0/1 channel masks the same way; then every BN that follows a
conv/linear is folded into it (``latency.fold``). Outputs equal the source model's in eval mode.

Only the tensors folding changes are new: the rest are the source's own, handed over
(:func:`reference_then_deployable`, for export) or copied once (:func:`deployable`). From a
weights file, the reference model runs on the memory-mapped file itself and the deployable
one's tensors are then copied off it one at a time (each one's pages handed back as the next
is read), so the two models are never held at once.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch

from ..document import Spec
from ..ir import IR
from ..latency.fold import fold_batchnorm
from ..model import build, build_from_state, load_model
from ..nn import SpecNet
from ..pruning.transplant import fold_gates, gate_fold_keys

Source = str | os.PathLike | Spec | SpecNet


def plain_tensors(ir: IR, state: dict[str, torch.Tensor], mode: str, binary: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of the plain model that computes what a ``mode`` model holding ``state`` computes (eval mode).

    ``state`` is taken over (changed in place and returned): a tensor folding leaves alone stays
    the very tensor given, one it changes is replaced by a new one, so no second copy of the
    state is made. ``binary``: gates fold as 0/1 (masks always do).
    """
    if mode == "masked":
        for key in [k for k in state if k.endswith(".weight_mask")]:
            weight = key[: -len("_mask")]
            state[weight] = state[weight] * state.pop(key)
        for node in ir.nodes_of("gate", "blockgate"):  # channel masks: 0/1 gates
            if f"{node.name}.mask" in state:
                state[f"{node.name}.weight"] = state.pop(f"{node.name}.mask")
        binary = True
    elif mode != "gated":
        return state
    folded = fold_gates(ir, {key: state.pop(key) for key in gate_fold_keys(ir, state)}, binary=binary)
    state.update(folded)
    return state


def _binary(model: SpecNet) -> bool:
    return any(getattr(m, "binary", False) for m in model.modules())


def _plain_model(spec: Spec, state: dict[str, torch.Tensor], mode: str, binary: bool, source: str) -> SpecNet:
    """The plain eval-mode model around ``plain_tensors(state)`` (BN unfolded); ``state`` is taken over and emptied,
    so folding BN later replaces a layer's tensors without an old reference keeping them alive."""
    tensors = plain_tensors(spec.ir, state, mode, binary)
    try:
        return build_from_state(spec, tensors, "plain", source=source).eval()
    finally:
        tensors.clear()


def deployable(model: SpecNet, *, fold_bn: bool = True, share: bool = False) -> SpecNet:
    """A new plain, eval-mode model computing what ``model`` computes, gates/masks (and, by default, BN) folded in.

    Its tensors are copies; ``share=True`` hands it ``model``'s own tensors where folding leaves them alone
    (no copy: neither model may then be changed in place while the other is used).
    """
    state = {k: v.detach().cpu() if share else v.detach().cpu().clone() for k, v in model.state_dict().items()}
    plain = _plain_model(model.spec, state, model.mode, _binary(model), f"{model.spec.name} (deployable)")
    if fold_bn:
        fold_batchnorm(plain)
    return plain


def _is_weights_file(source: Source) -> bool:
    return not isinstance(source, (Spec, SpecNet)) and str(source).endswith(".safetensors")


def load_reference(source: Source, *, seed: int = 0) -> SpecNet:
    """The model as built/loaded (eval mode): a model itself, a weights file, or a spec with seeded random weights."""
    if isinstance(source, SpecNet):
        model = source
    elif not _is_weights_file(source):
        model = build(source, seed=seed)
    else:
        model = load_model(source)[0]
    return model.eval()


def load_deployable(source: Source, *, fold_bn: bool = True, seed: int = 0,
                    share: bool = False) -> tuple[SpecNet, SpecNet]:
    """``(reference, deployable)`` for a weights file, a spec (seeded random weights) or a model.

    ``reference`` is the model as built/loaded, in eval mode; ``share``: see :func:`deployable`.
    """
    model = load_reference(source, seed=seed)
    return model, deployable(model, fold_bn=fold_bn, share=share)


def reference_then_deployable(source: Source, inputs: Callable[[tuple[int, ...]], torch.Tensor], *,
                              seed: int = 0) -> tuple[torch.Tensor, Any, SpecNet]:
    """``(x, reference(x), deployable)`` with the reference and the deployable model never both held.

    The reference (the model as built/loaded, eval mode) is run on ``x = inputs(its input shape)``
    and let go; only then is the deployable (plain, gates and masks folded, BN not) made, from a
    weights file's tensors copied one at a time off the mapped file, else from the reference's own
    tensors (a model passed in stays the caller's, its tensors shared, never changed).
    """
    from ..pruning.filewise import open_source

    mapped = None
    if _is_weights_file(source):
        spec, mapped, mode, binary = open_source(source)  # type: ignore[arg-type]
        reference = build_from_state(spec, mapped, mode, binary_gates=binary, source=str(source))  # views: no copy
    else:
        reference = load_reference(source, seed=seed)
    spec, mode, binary = reference.spec, reference.mode, _binary(reference)
    x = inputs(tuple(spec.ir.input_shape))
    with torch.no_grad():
        expected = reference.eval()(x)
    if mapped is None:
        state = {k: v.detach().cpu() for k, v in reference.state_dict().items()}
        del reference
        return x, expected, _plain_model(spec, state, mode, binary, f"{spec.name} (deployable)")
    del reference
    with mapped:  # each tensor copied, then its pages handed back before the next is read
        state = {name: mapped[name].clone() for name in mapped}
        mapped.release()
    return x, expected, _plain_model(spec, state, mode, binary, str(source))
