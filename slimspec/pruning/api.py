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

from ..document import Spec, load_spec, spec_from_text
from ..families import get_family, to_ir
from ..ir import IR, count_macs, count_params
from ..model import build_from_state, load_model
from ..nn import SpecNet
from ..specio.yamlio import update_spec_text
from ..utils.fileio import sha256_file
from ..utils.progress import progress
from ..utils.text import listing
from ..weights import nonfinite
from .criteria import Criterion, PruneError, ScoreContext, get_criterion
from .options import PruneOptions
from .policy import Decision, decide, fraction_search, keep_count, pattern_check
from .provenance import provenance_block
from .report import degenerate_notes, slot_rows
from .result import PruneResult
from .targets import TargetContext, get_target
from .fold_bias import fold_removed_bias
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


def _sizes(decision: Decision) -> dict[str, int]:
    return {path: len(keep) for path, keep in decision.kept.items()}


def _new_ir(parent: Spec, decision: Decision) -> tuple[dict, IR]:
    ir = parent.ir
    sizes = _sizes(decision)
    selects = {path: tuple(ir.slots[path].index[i] for i in keep)  # type: ignore[index]
               for path, keep in decision.kept.items() if ir.slots[path].kind == "select"}
    family = get_family(parent.arch)
    data = family.write(dict(parent.data), ir, sizes, selects)
    data.pop("pruned", None)
    return data, to_ir(family, data)


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


def _check_finite(state: Mapping[str, torch.Tensor]) -> None:
    """Refuse weights holding NaN or inf (a diverged run): every score computed from them would lie."""
    bad = nonfinite(state)
    if bad:
        raise PruneError(f"the weights hold NaN or inf values in {listing(bad, 8)} (a diverged run?); "
                         "prune a good checkpoint instead")


def _checked_scores(criterion, ctx: ScoreContext, options: PruneOptions, parent: Spec):
    scores = criterion.score(ctx)
    ir = parent.ir
    if not any(ir.slots[path].prunable for path in scores):
        raise PruneError(f"method '{options.method}' found nothing to score in {parent.name} "
                         f"(e.g. 'slimming' needs BatchNorm after the prunable layers)")
    for path, values in scores.items():
        if values.numel() != ir.slots[path].size:
            raise PruneError(f"{options.method}: {path} scored {values.numel()} channels, expected {ir.slots[path].size}")
    return scores


def choose(parent: Spec, scores, options: PruneOptions, criterion, context: TargetContext) -> tuple[Decision, float | None]:
    """The decision ``prune`` makes on ``scores``, and the ratio it applied (None for a threshold or percent).

    The options' ratio, threshold or percent, or, for a target metric, the smallest ratio
    whose network measures the target fraction of ``parent``'s (``context`` holds what the
    metric loaded). ``slimspec plot gammas`` draws the same decision.
    """
    ir = parent.ir
    policy = options.policy(criterion)
    if options.target:
        (name, goal), = options.target.items()
        metric = get_target(name)
        metric.prepare(ir, context)
        base = metric.measure(ir, context)

        with progress(desc=f"searching the ratio for {name}={goal:g}", enabled=options.progress) as step:
            def fraction(r: float) -> float:
                new_ir = _new_ir(parent, decide(ir, scores, options.policy(criterion, ratio=r)))[1]
                value = metric.measure(new_ir, context) / base
                step(1, f"ratio {r:.4f} -> {name} {value:.4f}")
                return value

            policy = options.policy(criterion, ratio=fraction_search(fraction, goal))
        decision = decide(ir, scores, policy)
        metric.reached(base, metric.measure(_new_ir(parent, decision)[1], context), context)
        return decision, policy.ratio
    if policy.empty:
        raise PruneError(f"method '{options.method}' needs --ratio, --target or --threshold (or a plan)")
    return decide(ir, scores, policy), policy.ratio


def from_file_reason(weights: object, criterion: Criterion, options: PruneOptions) -> str | None:
    """Why this prune needs a model (None: it can run from the file)."""
    if not isinstance(weights, (str, os.PathLike)):
        return "the weights are a model, not a file"
    if criterion.needs_model or criterion.reads_calibration:
        return f"method '{criterion.name}' runs the model on data"
    if not criterion.structured:
        return f"method '{criterion.name}' masks single weights (it scores them all at once)"
    if options.fold_bias:
        return "fold_bias changes the readers of removed channels (it needs the whole state)"
    return None


def prunable_from_file(weights: object, criterion: Criterion, options: PruneOptions) -> bool:
    return from_file_reason(weights, criterion, options) is None


def _ignored_notes(options: PruneOptions, criterion: Criterion, source_mode: str) -> list[str]:
    """A warning for each option this prune would ignore (none is ignored silently)."""
    notes = []
    if options.calibration and not criterion.reads_calibration:
        notes.append(f"warning: calibration data ({options.calibration}) is read by method 'attention' only; "
                     f"'{criterion.name}' scores the weights alone, so it was not loaded")
    if options.binary_gates and source_mode != "gated":
        notes.append(f"warning: binary_gates applies to weights trained with gates; these are {source_mode}: ignored")
    return notes


def describe(parent: Spec, scores, options: PruneOptions, criterion: Criterion, weights_sha: str | None,
             notes: list[str]) -> tuple[Spec, Decision, tuple[int, int], tuple[int, int], list[str]]:
    """Decide on ``scores`` and write the new spec (parent's form and layout, provenance block):
    ``(new spec, decision, params before/after, MACs before/after, notes)``. Both prune paths share it."""
    ir = parent.ir
    rounding = options.resolve_round_to(ir)  # round_to: auto -> an integer, before any decision
    notes = notes + ([rounding] if rounding else [])
    context = TargetContext(options=dict(options.target_options))
    decision, ratio = choose(parent, scores, options, criterion, context)
    data, new_ir = _new_ir(parent, decision)
    params, macs = (count_params(ir), count_params(new_ir)), (count_macs(ir), count_macs(new_ir))
    data["pruned"] = provenance_block(parent, options, decision, scope=options.scope or criterion.default_scope,
                                      weights_sha=weights_sha, params=params, macs=macs, ratio=ratio,
                                      measured=context.provenance)
    new_spec = spec_from_text(update_spec_text(parent.text, data), f"{parent.source or parent.name} (pruned)")
    return new_spec, decision, params, macs, notes + degenerate_notes(ir, scores, decision, options.min_channels)


def prune(weights: str | os.PathLike | torch.nn.Module, method: str | None = None, *,
          spec: Spec | str | os.PathLike | None = None, plan: str | os.PathLike | Mapping | None = None,
          input_shape: Sequence[int] | None = None, from_file: bool | None = None, **overrides: Any) -> PruneResult:
    """Prune trained weights with ``method`` and a ratio / target / threshold (or a plan file).

    A weights file pruned by a data-free structured criterion (l1, slimming, gate, random,
    attention-weight; without ``fold_bias``) is pruned from the file (:mod:`.filewise`): no
    model is built, ``result.model`` is made on first access and ``result.save`` streams the
    weights. ``from_file=False`` forces the model path, ``True`` refuses anything else.

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
    _check_finite(state)
    ir = parent.ir
    pattern_check(ir, options.exclude, "exclude")
    pattern_check(ir, list(options.overrides), "overrides")
    ignored = _ignored_notes(options, criterion, getattr(model, "mode", "plain"))
    calibration = _calibration_batches(options, parent) if criterion.reads_calibration else None
    ctx = ScoreContext(ir, state, model, calibration, options.seed)
    if not criterion.structured:
        result = prune_weights(parent, model, state, criterion.score(ctx), options, weights_sha)
        result.notes[:0] = ignored
        return result

    # 1. score, 2. decide, 3. write the new spec in the parent's form and layout
    scores = _checked_scores(criterion, ctx, options, parent)
    new_spec, decision, params, macs, notes = describe(parent, scores, options, criterion, weights_sha, ignored)

    # 4. transplant: gates folded into their BN first; optionally the removed channels' bias
    source_mode = getattr(model, "mode", "plain")
    if source_mode == "gated":
        binary = options.binary_gates or any(getattr(m, "binary", False) for m in model.modules())
        state = fold_gates(ir, state, binary=binary)
    renames = get_family(parent.arch).renames(parent.data, ir, _sizes(decision))

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
