"""The ``pruned:`` block a pruned spec carries (DESIGN 1, Provenance).

Parent name and sha256, weights sha256, method, the ratio / percent / target / threshold that
decided, min_channels, round_to, seed, params and MACs before and after, non-default plan
options, whatever a target metric measured with (a latency table's machine and runtime),
and — when a pruned spec is pruned again — the earlier blocks under ``history``. No
timestamps: the same inputs give the same block.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..document import Spec
from .options import PruneOptions
from .policy import Decision


def non_default_options(options: PruneOptions) -> dict[str, Any] | None:
    """The plan keys that shaped the result beyond the headline fields (for reproducibility)."""
    extra = {"exclude": list(options.exclude), "overrides": dict(options.overrides),
             "prune_stream": options.prune_stream, "fold_bias": options.fold_bias}
    return {k: v for k, v in extra.items() if v} or None


def provenance_block(parent: Spec, options: PruneOptions, decision: Decision, *, scope: str,
                     weights_sha: str | None, params: tuple[int, int], macs: tuple[int, int],
                     ratio: float | None, measured: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``pruned:`` mapping for a spec pruned from ``parent`` (``None`` values left out)."""
    block: dict[str, Any] = {
        "parent": parent.name,
        "parent_sha256": parent.sha256,
        "weights_sha256": weights_sha,
        "method": options.method,
        "scope": scope,
        "ratio": None if ratio is None else round(ratio, 6),
        "percent": options.percent,
        "target": dict(options.target) if options.target else None,
        "measured": dict(measured) if measured else None,
        "threshold": None if decision.threshold is None else float(f"{decision.threshold:.6g}"),
        "min_channels": options.min_channels,
        "round_to": options.round_to,
        "seed": options.seed,
        "calibration": options.calibration,
        "clamped": list(decision.clamped) or None,
        "options": non_default_options(options),
        "params": {"before": params[0], "after": params[1]},
        "macs": {"before": macs[0], "after": macs[1]},
    }
    earlier = parent.data.get("pruned")
    if earlier:  # pruning a pruned spec again: keep the lineage, oldest first
        block["history"] = [*earlier.get("history", []), {k: v for k, v in earlier.items() if k != "history"}]
    return {k: v for k, v in block.items() if v is not None}
