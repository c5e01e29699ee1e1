"""``slimspec.prune``: trained weights + spec + method -> new spec + transplanted weights.

Flow: score channels per slot (criterion) -> decide kept channels (policy) -> write the new
spec in the parent's own form and layout (family + comment-preserving YAML) -> transplant
the weights by name and kept index -> load them into a model built from the new spec.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from ..document import Spec, load_spec
from ..families import get_family
from ..model import build_from_state, load_model
from ..nn import SpecNet
from ..utils.fileio import sha256_file
from .criteria import PruneError, ScoreContext, get_criterion
from .fold_bias import fold_removed_bias
from .options import PruneOptions
from .policy import keep_count
from .report import slot_rows
from .result import PruneResult
from .steps import (check_finite, check_patterns, checked_scores, describe, from_file_reason, ignored_notes, new_sizes,
                    prunable_from_file)
from .transplant import fold_gates, transplant
from .unstructured import prune_weights


def _calibration_batches(options: PruneOptions, spec: Spec) -> Iterable[torch.Tensor] | None:
    if not options.calibration:
        return None
    from ..data import get_dataset

    data = get_dataset(options.calibration, input_shape=tuple(spec.ir.input_shape), data_dir=options.data_dir,
                       seed=options.seed)
    batches = []
    for images, _ in data.batches("train", options.calibration_batch_size, shuffle=False, augment=False):
        batches.append(images)
        if len(batches) >= options.calibration_batches:
            break
    return batches


def _load_source(weights: str | os.PathLike | torch.nn.Module, spec: Spec | str | os.PathLike | None,
                 input_shape: Sequence[int] | None):
    """``(model, spec, cpu state, weights sha256)`` from a weights file, a slimspec model or any module."""
    weights_sha = None
    if isinstance(weights, SpecNet) or (isinstance(weights, torch.nn.Module) and spec is not None):
        model, parent = weights, load_spec(spec if spec is not None else weights.spec)  # type: ignore[union-attr]
    elif isinstance(weights, torch.nn.Module):  # your own nn.Module: traced into a spec first
        from ..interop.fx_trace import from_module  # torch.fx: imported only for a module

        parent, model = from_module(weights, input_shape)
    else:
        model, parent = load_model(weights, spec)
        weights_sha = sha256_file(weights)
    return model, parent, {k: v.detach().cpu() for k, v in model.state_dict().items()}, weights_sha


def prune(weights: str | os.PathLike | torch.nn.Module, method: str | None = None, *,
          spec: Spec | str | os.PathLike | None = None, plan: str | os.PathLike | Mapping | None = None,
          input_shape: Sequence[int] | None = None, from_file: bool | None = None, **overrides: Any) -> PruneResult:
    """Prune trained weights with ``method`` and a ratio / target / threshold (or a plan file).

    A weights file pruned by a data-free structured criterion (l1, slimming, gate, random,
    attention-weight; without ``fold_bias``) or by ``magnitude`` (unstructured masks) is pruned
    from the file (:mod:`.filewise`): no model is built, ``result.model`` is made on first
    access and ``result.save`` streams the weights. ``from_file=False`` forces the model path,
    ``True`` refuses anything else.

    ``weights`` is a weights file, a model built by slimspec, or any ``nn.Module`` (traced into
    a spec first, see :func:`slimspec.from_module`; ``input_shape`` = ``(C, H, W)``, guessed
    when not given). Keyword options are those of :class:`PruneOptions` (ratio, target,
    threshold, percent, scope, min_channels, round_to, exclude, overrides, prune_stream,
    calibration, seed, fold_bias, binary_gates); explicit keywords override the plan's values.
    """
    options = PruneOptions.resolve(plan, method=method, **overrides)
    criterion = get_criterion(options.method)
    if from_file is not False and prunable_from_file(weights, criterion, options):
        from .filewise import prune_file

        return prune_file(weights, options, criterion, spec=spec)
    if from_file:
        raise PruneError(f"cannot prune from the file: {from_file_reason(weights, criterion, options)}")
    model, parent, state, weights_sha = _load_source(weights, spec, input_shape)
    check_finite(state)
    ir = parent.ir
    check_patterns(ir, options, criterion)
    ignored = ignored_notes(options, criterion, getattr(model, "mode", "plain"))
    calibration = _calibration_batches(options, parent) if criterion.reads_calibration else None
    ctx = ScoreContext(ir, state, model, calibration, options.seed)
    if not criterion.structured:
        result = prune_weights(parent, model, state, criterion.score(ctx), options, weights_sha)
        result.notes[:0] = ignored
        return result

    # 1. score, 2. decide, 3. write the new spec in the parent's form and layout
    scores = checked_scores(criterion, ctx, options, parent)
    new_spec, decision, params, macs, notes = describe(parent, scores, options, criterion, weights_sha, ignored)

    # 4. transplant: gates folded into their BN first; optionally the removed channels' bias
    source_mode = getattr(model, "mode", "plain")
    if source_mode == "gated":
        binary = options.binary_gates or any(getattr(m, "binary", False) for m in model.modules())
        state = fold_gates(ir, state, binary=binary)
    renames = get_family(parent.arch).renames(parent.data, ir, new_sizes(decision))

    mode = "masked" if source_mode == "masked" else "plain"
    with torch.device("meta"):  # the pruned network's tensor names, without allocating it
        target_keys = set(SpecNet(new_spec, mode).state_dict())

    def transplanted(source_state: dict[str, torch.Tensor]) -> torch.nn.Module:
        new_state = transplant(ir, source_state, decision.kept, target_keys, renames)
        return build_from_state(new_spec, new_state, mode, source="transplant").train(model.training)

    variants: dict[str, torch.nn.Module] = {}
    if options.fold_bias:
        variants["bias dropped"] = transplanted(state)
        state, skipped = fold_removed_bias(ir, state, decision.kept)
        if skipped:
            notes.append(f"fold-bias: no BN or bias to absorb removed channels in {', '.join(skipped)}")
    return PruneResult(new_spec, transplanted(state), parent, slot_rows(ir, decision.kept), decision, options,
                       params, macs, notes, model, variants)


__all__ = ["prune", "PruneResult", "PruneError", "keep_count"]
