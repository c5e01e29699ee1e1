"""Target metrics for ``--target NAME=FRACTION``: what a pruned network must shrink to.

Each metric measures a resolved network (an IR) as one number; the policy searches the
pruning ratio whose network measures ``FRACTION`` x the original. MACs and parameters are
analytic (Li et al. 2017 count MACs; Liu et al. 2017 report 2 x MACs as FLOPs), so the
search is cheap. A metric is one class plus ``@register_target``; the plan schema's
``target`` keys and the CLI help are generated from this registry.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
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
    """Measures a network; lower is cheaper.

    ``options``: the ``target_options`` keys the metric reads (and the flag that gives each);
    a key given for another metric would be ignored, so it is refused
    (:func:`check_target_options`).
    """

    name: ClassVar[str]
    help: ClassVar[str]
    options: ClassVar[Mapping[str, str]] = {}

    def reached(self, before: float, after: float, context: TargetContext) -> None:
        """Record what the search reached (the original's and the pruned network's measure)."""

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


# target options every prune reads, whatever its target (``threads``: torch's CPU threads)
GENERAL_OPTIONS = {"threads": "--threads"}


def check_target_options(target: Mapping[str, float] | None, options: Mapping[str, Any]) -> None:
    """Refuse a target option the prune would ignore: one no metric reads, or one for another target."""
    chosen = next(iter(target)) if target else None
    readable = {**GENERAL_OPTIONS, **(get_target(chosen).options if chosen else {})}
    for key, value in options.items():
        if value is None or value is False or key in readable:
            continue
        readers = {name: metric.options[key] for name, metric in targets().items() if key in metric.options}
        if not readers:
            known = sorted({k for m in targets().values() for k in m.options} | set(GENERAL_OPTIONS))
            raise PruneError(f"target option '{key}' is read by no target (known: {', '.join(known)})")
        name, flag = next(iter(readers.items()))
        what = f"this prune's target is {chosen}" if chosen else "this prune has no target"
        raise PruneError(f"{flag} is read by --target {name}=R only ({what}): leave it out")


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
    else the cached table for this architecture and machine, profiled on the spot when there is
    none. The run is keyed by ``threads`` (default 1), ``latency_runtime`` (default eager) and
    ``latency_batch`` (default 1): a given table measured on another machine, thread count,
    runtime or batch is refused, or with ``allow_foreign_table`` accepted with its differences
    recorded in the provenance. :meth:`prepare` keeps the
    :class:`~slimspec.latency.table.LatencyTable` in ``context.cache``.
    """

    name = "latency"
    help = "measured latency on this machine, estimated from a per-layer latency table (slimspec bench --profile)"
    options = {"latency_table": "--latency-table", "latency_runtime": "--latency-runtime",
               "latency_batch": "--latency-batch", "allow_foreign_table": "--allow-foreign-table"}

    def prepare(self, ir: IR, context: TargetContext) -> None:
        from ..latency.runtimes import get_runtime
        from ..latency.table import DEFAULT_THREADS, LatencyTable, Machine, architecture_sha, table_for_spec
        from ..latency.timing import check_threads

        options = context.options
        threads = check_threads(options.get("threads"))
        threads = DEFAULT_THREADS if threads is None else threads
        runtime = get_runtime(options.get("latency_runtime") or "eager").name
        batch = options.get("latency_batch") or 1
        if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
            raise PruneError(f"--latency-batch: expected an integer >= 1, got {batch!r}")
        path = options.get("latency_table")
        foreign: dict[str, Any] = {}
        if path:
            note_input(path)  # an input of the command: no output of it may replace this file
            table = LatencyTable.load(path)
            if table.architecture_sha256 != architecture_sha(ir):
                raise PruneError(f"{path}: the latency table was made for '{table.spec}', "
                                 f"not for this architecture ({ir.name}); run slimspec bench --profile")
            foreign = table.differences(Machine.current(threads), runtime, batch)
            if foreign and not options.get("allow_foreign_table"):
                listed = ", ".join(f"{what} {_value(v['table'])} (this prune: {_value(v['run'])})"
                                   for what, v in foreign.items())
                raise PruneError(f"{path}: the latency table was measured otherwise than this prune runs: {listed}; "
                                 f"profile it here (slimspec bench --profile), or accept it with "
                                 f"--allow-foreign-table")
        else:
            table, path = table_for_spec(ir, runtime=runtime, batch=batch, threads=threads)
        context.cache[self.name] = table
        context.provenance["latency"] = {"runtime": table.runtime, "batch": table.batch,
                                         "machine": table.machine.as_dict(), "table_sha256": table.sha256}
        if foreign:
            context.provenance["latency"]["foreign"] = foreign

    def measure(self, ir: IR, context: TargetContext) -> float:
        return context.cache[self.name].estimate(ir)

    def reached(self, before: float, after: float, context: TargetContext) -> None:
        context.provenance["latency"]["estimate_ms"] = {"before": round(before, 6), "after": round(after, 6)}


def _value(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)
