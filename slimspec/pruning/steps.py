"""The steps both prune paths share (the model path in :mod:`.api`, the file path in :mod:`.filewise`):
scores checked, the decision (a ratio, threshold, percent or target), the new spec with its provenance."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace

import torch

from ..document import Spec, spec_from_text
from ..families import get_family, to_ir
from ..ir import IR, count_macs, count_params
from ..specio.yamlio import update_spec_text
from ..utils.progress import progress
from ..utils.text import listing
from ..weights import nonfinite
from .criteria import Criterion, PruneError, ScoreContext
from .options import AUTO, PruneOptions
from .policy import Decision, decide, fraction_search, pattern_check
from .provenance import provenance_block
from .report import degenerate_notes
from .targets import TargetContext, get_target
from .unstructured import WeightScorer


def new_sizes(decision: Decision) -> dict[str, int]:
    return {path: len(keep) for path, keep in decision.kept.items()}


def new_spec_data(parent: Spec, decision: Decision) -> tuple[dict, IR]:
    ir = parent.ir
    sizes = new_sizes(decision)
    selects = {path: tuple(ir.slots[path].index[i] for i in keep)  # type: ignore[index]
               for path, keep in decision.kept.items() if ir.slots[path].kind == "select"}
    selects.update({path: decision.kept[slot.view[0]]  # a view: its parent's kept positions (a slice's new bounds)
                    for path, slot in ir.slots.items() if slot.view is not None})
    family = get_family(parent.arch)
    data = family.write(dict(parent.data), ir, sizes, selects)
    data.pop("pruned", None)
    return data, to_ir(family, data)


def check_finite(state: Mapping[str, torch.Tensor]) -> None:
    """Refuse weights holding NaN or inf (a diverged run): every score computed from them would lie."""
    bad = nonfinite(state)
    if bad:
        raise PruneError(f"the weights hold NaN or inf values in {listing(bad, 8)} (a diverged run?); "
                         "prune a good checkpoint instead")


def checked_scores(criterion, ctx: ScoreContext, options: PruneOptions, parent: Spec):
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
                new_ir = new_spec_data(parent, decide(ir, scores, options.policy(criterion, ratio=r)))[1]
                value = metric.measure(new_ir, context) / base
                step(1, f"ratio {r:.4f} -> {name} {value:.4f}")
                return value

            policy = options.policy(criterion, ratio=fraction_search(fraction, goal))
        decision = decide(ir, scores, policy)
        metric.reached(base, metric.measure(new_spec_data(parent, decision)[1], context), context)
        return decision, policy.ratio
    if policy.empty:
        raise PruneError(f"method '{options.method}' needs --ratio, --target or --threshold (or a plan)")
    return decide(ir, scores, policy), policy.ratio


def choose_rounded(parent: Spec, scores, options: PruneOptions, criterion, context: TargetContext
                   ) -> tuple[Decision, float | None, str]:
    """``round_to: auto``: the decision made with the kept counts rounded up to each multiple, those networks
    timed in this machine's runtime (:func:`slimspec.latency.rounding.probe`) and the chosen one, with the
    probe's note; ``options.round_to`` becomes the chosen multiple (the provenance records the integer)."""
    from ..latency.rounding import MULTIPLES, probe  # timing: imported only when asked to probe

    made = {}
    for multiple in MULTIPLES:
        try:
            made[multiple] = choose(parent, scores, replace(options, round_to=multiple), criterion, context)
        except PruneError:  # a target this multiple cannot reach (rounded up, too wide): not a candidate
            if multiple == 1:
                raise
    networks = {m: spec_from_text(update_spec_text(parent.text, new_spec_data(parent, decision)[0]),
                                  f"{parent.name} (rounded to {m})") for m, (decision, _) in made.items()}
    choice = probe(networks, runtime=options.target_options.get("latency_runtime"),  # None: the fastest here
                   threads=options.target_options.get("threads"))
    options.round_to = choice.multiple
    return (*made[choice.multiple], choice.describe())


def from_file_reason(weights: object, criterion: Criterion, options: PruneOptions) -> str | None:
    """Why this prune needs a model (None: it can run from the file)."""
    if not isinstance(weights, (str, os.PathLike)):
        return "the weights are a model, not a file"
    if criterion.needs_model or criterion.reads_calibration:
        return f"method '{criterion.name}' runs the model on data"
    if not criterion.structured and not isinstance(criterion, WeightScorer):  # weight masks: one tensor at a time
        return f"method '{criterion.name}' masks single weights (it scores them all at once)"
    if options.fold_bias and criterion.structured:
        return "fold_bias changes the readers of removed channels (it needs the whole state)"
    return None


def prunable_from_file(weights: object, criterion: Criterion, options: PruneOptions) -> bool:
    return from_file_reason(weights, criterion, options) is None


def check_patterns(ir: IR, options: PruneOptions, criterion: Criterion) -> None:
    """Every exclude/override pattern of a channel prune names a slot (weight masks match excludes against
    layers instead: :func:`~slimspec.pruning.unstructured.scored_weights`)."""
    if criterion.structured:
        pattern_check(ir, options.exclude, "exclude")
        pattern_check(ir, list(options.overrides), "overrides")


def ignored_notes(options: PruneOptions, criterion: Criterion, source_mode: str) -> list[str]:
    """A warning for each option this prune would ignore (none is ignored silently)."""
    notes = []
    if options.calibration and not criterion.reads_calibration:
        notes.append(f"warning: calibration data ({options.calibration}) is read by method 'attention' only; "
                     f"'{criterion.name}' scores the weights alone, so it was not loaded")
    if not criterion.structured:
        shaping = [f"{key}={value}" for key, value in options.channel_shaping().items()]
        if shaping:
            notes.append(f"warning: {', '.join(shaping)} shape{'s' if len(shaping) == 1 else ''} the channels a "
                         f"prune removes; '{criterion.name}' masks single weights and removes no channel: ignored")
    if options.binary_gates and source_mode != "gated":
        notes.append(f"warning: binary_gates applies to weights trained with gates; these are {source_mode}: ignored")
    return notes


def describe(parent: Spec, scores, options: PruneOptions, criterion: Criterion, weights_sha: str | None,
             notes: list[str]) -> tuple[Spec, Decision, tuple[int, int], tuple[int, int], list[str]]:
    """Decide on ``scores`` and write the new spec (parent's form and layout, provenance block):
    ``(new spec, decision, params before/after, MACs before/after, notes)``. Both prune paths share it."""
    ir = parent.ir
    context = TargetContext(options=dict(options.target_options))
    if options.round_to == AUTO:
        decision, ratio, rounding = choose_rounded(parent, scores, options, criterion, context)
        notes = notes + [rounding]
    else:
        decision, ratio = choose(parent, scores, options, criterion, context)
    data, new_ir = new_spec_data(parent, decision)
    params, macs = (count_params(ir), count_params(new_ir)), (count_macs(ir), count_macs(new_ir))
    data["pruned"] = provenance_block(parent, options, decision, scope=options.scope or criterion.default_scope,
                                      weights_sha=weights_sha, params=params, macs=macs, ratio=ratio,
                                      measured=context.provenance)
    new_spec = spec_from_text(update_spec_text(parent.text, data), f"{parent.source or parent.name} (pruned)")
    return new_spec, decision, params, macs, notes + degenerate_notes(ir, scores, decision, options.min_channels)
