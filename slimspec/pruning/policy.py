"""Policies: from channel scores to the channels each slot keeps.

Conventions (documented in the README, tested):

* A layer of width ``n`` pruned at ratio ``r`` keeps ``floor(n * (1 - r))`` channels, as Li
  et al.'s reference code does; a global ratio prunes ``N - floor(N * (1 - r))`` of the ``N``
  channels pooled from every slot in scope.
* Channels are ranked by ``(score, slot order, position)``: among equal scores the channel
  that comes first in the network is pruned first, so results are deterministic.
* A ``threshold`` prunes every channel whose score is ``<= threshold`` (Network Slimming keeps
  ``score > threshold``; gates at exactly zero are removed with threshold 0).
* ``percent`` is Network Slimming's own rule (Liu et al. 2017, ``vggprune.py`` / ``resprune.py`` /
  ``denseprune.py``): the threshold is the pooled scores sorted ascending at position
  ``int(N * percent)``, and every channel scoring ``<= threshold`` goes — ``int(N * percent) + 1``
  channels plus every channel tied with the threshold. With ``scope: layer`` the same rule runs
  per slot. ``percent_rule: darknet`` keeps the channels scoring exactly the threshold, as the
  Darknet pruners do (Lam1360's YOLOv3 ``test_prune.py`` keeps ``ge(thre)``): one channel
  more. ``ratio`` keeps its exact-count meaning.
* ``min_channels`` (default 1) is applied last-but-one: a slot never keeps fewer than
  ``min(min_channels, width)`` channels; its best-scored channels are kept and the slot is
  reported as clamped. ``round_to`` then rounds each kept count up to a multiple.
* A slot made of a grouped convolution's groups (``Slot.parts``) keeps the same number of
  channels in every part — the count the policy chose, divided by the parts and rounded —
  each part its own best-scored channels.
* A chunk's or slice's slot (``Slot.view``) is never decided on its own: it keeps its parent's
  kept channels that fall in its range (a chunked parent's parts are the chunks', so they stay
  equal).
* Slots matching ``exclude`` are untouched; ``overrides`` give a per-slot ratio (first match
  wins) and take those slots out of the global pool; residual stream slots are pruned only
  with ``prune_stream``.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from ..ir import IR
from .criteria.base import PruneError
from .patterns import matches

SCOPES = ("global", "layer")
# how ``percent`` treats a channel scoring exactly the threshold, after the reference script whose channels it keeps
PERCENT_RULES: dict[str, Callable[[float, float], bool]] = {  # rule -> pruned(score, threshold)
    "slimming": lambda score, threshold: score <= threshold,  # Liu et al. 2017 vggprune.py: keep gt(thre)
    "darknet": lambda score, threshold: score < threshold,  # Lam1360 YOLOv3-model-pruning test_prune.py: keep ge(thre)
}


def keep_count(width: int, ratio: float) -> int:
    """Channels a layer of ``width`` keeps at ``ratio`` (Li et al.: ``int(width * (1 - ratio))``)."""
    return int(math.floor(width * (1.0 - ratio) + 1e-9))


@dataclass(frozen=True)
class PolicyConfig:
    """What the policy applies: one amount (ratio, threshold or percent) and where.

    Built from the user's options by :meth:`slimspec.pruning.options.PruneOptions.policy`;
    the values are checked here, once, whichever route built them.
    """

    ratio: float | None = None
    threshold: float | None = None
    percent: float | None = None
    percent_rule: str = "slimming"
    scope: str = "global"
    min_channels: int = 1
    round_to: int = 1
    exclude: tuple[str, ...] = ()
    overrides: tuple[tuple[str, float], ...] = ()
    prune_stream: bool = False
    prune_blocks: bool = False

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise PruneError(f"scope: expected one of {', '.join(SCOPES)}, got '{self.scope}'")
        if self.percent_rule not in PERCENT_RULES:
            raise PruneError(f"percent_rule: expected one of {', '.join(PERCENT_RULES)}, got '{self.percent_rule}'")
        for key in ("ratio", "threshold", "percent"):
            value = getattr(self, key)
            if value is not None and not math.isfinite(float(value)):
                raise PruneError(f"{key}: expected a finite number, got {value}")
        given = [key for key in ("percent", "threshold", "ratio") if getattr(self, key) is not None]
        if len(given) > 1:  # one amount: none may be silently ignored
            raise PruneError(f"give either {given[0]} or {given[1]}, not both")
        for label, value in [("ratio", self.ratio), ("percent", self.percent),
                             *[(f"overrides[{p}]", r) for p, r in self.overrides]]:
            if value is not None and not 0.0 <= value < 1.0:
                raise PruneError(f"{label}: a pruning ratio must be in [0, 1), got {value}")
        if self.min_channels < 1:
            raise PruneError(f"min_channels: must be >= 1, got {self.min_channels}")
        if self.round_to < 1:
            raise PruneError(f"round_to: must be >= 1, got {self.round_to}")

    @property
    def empty(self) -> bool:
        """No amount and no per-slot override: the policy removes nothing."""
        return self.ratio is None and self.threshold is None and self.percent is None and not self.overrides


@dataclass
class Decision:
    """Kept channel positions per slot, plus what the policy did."""

    kept: dict[str, tuple[int, ...]]
    threshold: float | None = None
    clamped: list[str] = field(default_factory=list)


def candidate_slots(ir: IR, scores: Mapping[str, torch.Tensor], config: PolicyConfig) -> list[str]:
    kinds = {"channel", "select"} | ({"stream"} if config.prune_stream else set()) | \
        ({"block"} if config.prune_blocks else set())
    return [path for path, slot in ir.slots.items()
            if slot.kind in kinds and path in scores and not any(matches(p, path) for p in config.exclude)]


def _override(path: str, config: PolicyConfig) -> float | None:
    for pattern, ratio in config.overrides:
        if matches(pattern, path):
            return ratio
    return None


def _lowest(scores: torch.Tensor, count: int) -> list[int]:
    """Positions of the ``count`` lowest scores, ties broken by position."""
    order = sorted(range(len(scores)), key=lambda i: (float(scores[i]), i))
    return order[:count]


def percent_threshold(values: Sequence[float], percent: float) -> float:
    """Network Slimming's threshold: ``sorted(values)[int(len(values) * percent)]``.

    As in ``vggprune.py``: ``y, i = torch.sort(bn); thre = y[int(total * percent)]``; the channels
    with ``score <= thre`` are removed (the reference keeps ``weight.abs().gt(thre)``).
    """
    return sorted(values)[int(len(values) * percent)]


def decide(ir: IR, scores: Mapping[str, torch.Tensor], config: PolicyConfig) -> Decision:
    """Apply the policy; returns kept positions for every slot (untouched slots keep all)."""
    pruned: dict[str, set[int]] = {}
    pool: list[str] = []
    for path in candidate_slots(ir, scores, config):
        ratio = _override(path, config)
        if ratio is not None:
            pruned[path] = set(_lowest(scores[path], ir.slots[path].size - keep_count(ir.slots[path].size, ratio)))
        else:
            pool.append(path)
    threshold = None
    if config.threshold is not None:
        threshold = config.threshold
        for path in pool:
            pruned[path] = {i for i, s in enumerate(scores[path].tolist()) if s <= config.threshold}
    elif config.percent is not None and config.scope == "layer":
        goes = PERCENT_RULES[config.percent_rule]
        for path in pool:
            values = scores[path].tolist()
            cut = percent_threshold(values, config.percent)
            pruned[path] = {i for i, s in enumerate(values) if goes(s, cut)}
    elif config.percent is not None and pool:
        goes = PERCENT_RULES[config.percent_rule]
        values = {path: scores[path].tolist() for path in pool}
        threshold = percent_threshold([s for path in pool for s in values[path]], config.percent)
        for path in pool:
            pruned[path] = {i for i, s in enumerate(values[path]) if goes(s, threshold)}
    elif config.ratio is not None and config.scope == "layer":
        for path in pool:
            size = ir.slots[path].size
            pruned[path] = set(_lowest(scores[path], size - keep_count(size, config.ratio)))
    elif config.ratio is not None and pool:
        flat = [(float(s), order, path, i) for order, path in enumerate(pool)
                for i, s in enumerate(scores[path].tolist())]
        flat.sort(key=lambda t: (t[0], t[1], t[3]))
        count = len(flat) - keep_count(len(flat), config.ratio)
        for _, _, path, i in flat[:count]:
            pruned.setdefault(path, set()).add(i)
        threshold = flat[count - 1][0] if count else None
    return _finish(ir, scores, pruned, threshold, config)


def _finish(ir: IR, scores: Mapping[str, torch.Tensor], pruned: dict[str, set[int]], threshold: float | None,
            config: PolicyConfig) -> Decision:
    kept: dict[str, tuple[int, ...]] = {}
    clamped: list[str] = []
    for path, slot in ir.slots.items():
        drop = pruned.get(path, set())
        keep = [i for i in range(slot.size) if i not in drop]
        floor = 0 if slot.kind == "block" else min(config.min_channels, slot.size)
        want = max(len(keep), floor)
        if config.round_to > 1 and drop:
            want = min(slot.size, int(math.ceil(want / config.round_to) * config.round_to))
        if want > len(keep):
            if len(keep) < floor:
                clamped.append(path)
            best_dropped = sorted(drop, key=lambda i: (-float(scores[path][i]), i))
            keep += best_dropped[: want - len(keep)]
        if slot.parts > 1 and drop:
            keep = _equal_parts(slot.size, slot.parts, keep, scores[path], at_least=config.threshold is not None)
        kept[path] = tuple(sorted(keep))
    for path, slot in ir.slots.items():  # a chunk or slice keeps its parent's kept channels in its range
        if slot.view is not None:
            parent, start, stop = slot.view
            kept[path] = tuple(p - start for p in kept[parent] if start <= p < stop)
    _keep_a_block_per_stage(ir, scores, kept)
    return Decision(kept, threshold, clamped)


def _equal_parts(size: int, parts: int, keep: list[int], scores: torch.Tensor, at_least: bool) -> list[int]:
    """As many channels as ``keep``, the same number in each of ``parts`` equal parts (a grouped conv's groups),
    each part keeping its own best-scored channels (ties by position). ``at_least`` (a threshold): every part
    keeps as many as the part that keeps most, so no channel scoring above the threshold goes."""
    width = size // parts
    counts = [sum(1 for i in keep if i // width == part) for part in range(parts)]
    each = max(counts) if at_least else max(1, (2 * len(keep) + parts) // (2 * parts))  # the mean, half up
    chosen: list[int] = []
    for part in range(parts):
        positions = range(part * width, (part + 1) * width)
        chosen += sorted(positions, key=lambda i: (-float(scores[i]), i))[:each]
    return chosen


def _keep_a_block_per_stage(ir: IR, scores: Mapping[str, torch.Tensor], kept: dict[str, tuple[int, ...]]) -> None:
    """Whole-block pruning never empties a stage: its best-gated removable block stays.

    Stages and blocks are the units slots belong to (``Slot.group``: stage, then block).
    """
    blocks: dict[str, set[str]] = {}
    gates: dict[str, list[str]] = {}
    for path, slot in ir.slots.items():
        if len(slot.group) < 2:
            continue
        stage, block = slot.group[0], slot.group[1]
        blocks.setdefault(stage, set()).add(block)
        if slot.kind == "block":
            gates.setdefault(stage, []).append(path)
    for stage, paths in gates.items():
        ungated = blocks[stage] - {ir.slots[p].group[1] for p in paths}
        if ungated or any(kept[p] for p in paths):
            continue  # a downsampling block (no gate) or a kept block remains
        best = max(paths, key=lambda p: (float(scores[p][0]) if p in scores else 0.0, p))
        kept[best] = (0,)


def fraction_search(evaluate, goal: float, tolerance: float = 1e-4) -> float:
    """Smallest ratio in [0, 1) whose ``evaluate(ratio)`` (a fraction of the original) is <= goal."""
    if evaluate(0.0) <= goal:
        return 0.0
    low, high = 0.0, 0.999
    if evaluate(high) > goal:
        raise PruneError(f"target {goal:g} is out of reach: pruning 99.9% of the channels gives {evaluate(high):.4f}")
    while high - low > tolerance:
        mid = (low + high) / 2
        if evaluate(mid) <= goal:
            high = mid
        else:
            low = mid
    return high


def pattern_check(ir: IR, patterns: Sequence[str], label: str) -> None:
    """Every exclude/override pattern must match at least one slot (catches typos)."""
    for pattern in patterns:
        if not any(matches(pattern, path) for path in ir.slots):
            raise PruneError(f"{label}: pattern '{pattern}' matches no slot of this spec")
