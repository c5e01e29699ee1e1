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
from ..utils.fileio import note_input
from ..utils.registry import Registry


@dataclass
class TargetContext:
    """One prune's target measurement: the user's target options (read only), what each metric
    loaded in :meth:`TargetMetric.prepare` (``cache``, by metric name, e.g. a latency table),
    and what the metric measured with (``provenance``, recorded in the pruned spec)."""

    options: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)


class TargetMetric(ABC):
    """Measures a network; lower is cheaper."""

    name: ClassVar[str]
    help: ClassVar[str]

    def prepare(self, ir: IR, context: TargetContext) -> None:
        """Load whatever the metric needs for ``ir`` into ``context.cache`` (called once per prune,
        before any :meth:`measure`)."""

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
    :meth:`prepare` keeps the :class:`~slimspec.latency.table.LatencyTable` in ``context.cache``.
    """

    name = "latency"
    help = "measured latency on this machine, estimated from a per-layer latency table (slimspec bench --profile)"

    def prepare(self, ir: IR, context: TargetContext) -> None:
        from ..latency.table import LatencyTable, architecture_sha, table_for_spec

        path = context.options.get("latency_table")
        if path:
            note_input(path)  # the user's table: no output of the command may replace it
            table = LatencyTable.load(path)
            if table.architecture_sha256 != architecture_sha(ir):
                raise PruneError(f"{path}: the latency table was made for '{table.spec}', "
                                 f"not for this architecture ({ir.name}); run slimspec bench --profile")
        else:
            table, path = table_for_spec(ir, runtime=context.options.get("latency_runtime", "eager"),
                                         batch=int(context.options.get("latency_batch", 1)),
                                         threads=context.options.get("latency_threads"))
        context.cache[self.name] = table
        context.provenance["latency"] = {"runtime": table.runtime, "batch": table.batch,
                                         "machine": table.machine.as_dict(), "table_sha256": table.sha256}

    def measure(self, ir: IR, context: TargetContext) -> float:
        return context.cache[self.name].estimate(ir)
