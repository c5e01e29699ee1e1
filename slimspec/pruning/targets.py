"""Target metrics for ``--target NAME=FRACTION``: what a pruned network must shrink to.

Each metric measures a resolved network (an IR) as one number; the policy searches the
pruning ratio whose network measures ``FRACTION`` x the original. MACs and parameters are
analytic (Li et al. 2017 count MACs; Liu et al. 2017 report 2 x MACs as FLOPs), so the
search is cheap. A metric is one class plus ``@register_target``; the plan schema's
``target`` keys and the CLI help are generated from this registry.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import PruneError
from ..ir import IR, count_macs, count_params
from ..utils.registry import Registry


@dataclass
class TargetContext:
    """What a metric may need beyond the IR (e.g. a measured latency table); recorded in provenance."""

    options: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)


class TargetMetric(ABC):
    """Measures a network; lower is cheaper."""

    name: ClassVar[str]
    help: ClassVar[str]

    def prepare(self, ir: IR, context: TargetContext) -> None:
        """Load whatever the metric needs for ``ir`` (called once per prune, before the search)."""

    @abstractmethod
    def measure(self, ir: IR, context: TargetContext) -> float:
        """The network's cost under this metric."""


_TARGETS: Registry[TargetMetric] = Registry("target", PruneError)


def register_target(cls: type[TargetMetric]) -> type[TargetMetric]:
    """Class decorator: make a metric available as ``--target NAME=FRACTION``."""
    _TARGETS.add(cls.name, cls())
    return cls


def get_target(name: str) -> TargetMetric:
    return _TARGETS.get(name)


def targets() -> dict[str, TargetMetric]:
    return _TARGETS.items()


@register_target
class MACs(TargetMetric):
    name = "macs"
    help = "multiply-accumulates of one input (conv + linear), analytic"

    def measure(self, ir: IR, context: TargetContext) -> float:
        return float(count_macs(ir))


@register_target
class Params(TargetMetric):
    name = "params"
    help = "trainable parameters, analytic"

    def measure(self, ir: IR, context: TargetContext) -> float:
        return float(count_params(ir))


@register_target
class Latency(TargetMetric):
    """Measured latency on this machine (NetAdapt, Yang et al. 2018), estimated from a per-layer table.

    ``context.options``: ``latency_table`` (a table file from ``slimspec bench --profile``),
    else the cached table for this architecture, machine, ``latency_runtime`` (default eager),
    ``latency_batch`` (1) and ``latency_threads``; profiled on the spot when there is none.
    """

    name = "latency"
    help = "measured latency on this machine, estimated from a per-layer latency table (slimspec bench --profile)"

    def prepare(self, ir: IR, context: TargetContext) -> None:
        from ..latency.table import architecture_sha, load_table, table_for_spec, table_sha

        path = context.options.get("latency_table")
        if path:
            table = load_table(path)
            if table.get("architecture_sha256") != architecture_sha(ir):
                raise PruneError(f"{path}: the latency table was made for '{table.get('spec')}', "
                                 f"not for this architecture ({ir.name}); run slimspec bench --profile")
        else:
            table, path = table_for_spec(ir, runtime=context.options.get("latency_runtime", "eager"),
                                         batch=int(context.options.get("latency_batch", 1)),
                                         threads=context.options.get("latency_threads"))
        context.options["_latency_table"] = table
        context.provenance["latency"] = {"runtime": table["runtime"], "batch": table["batch"],
                                         "machine": table["machine"],
                                         "table_sha256": table_sha(table)}

    def measure(self, ir: IR, context: TargetContext) -> float:
        from ..latency.table import estimate

        if "_latency_table" not in context.options:
            self.prepare(ir, context)
        return estimate(context.options["_latency_table"], ir)
