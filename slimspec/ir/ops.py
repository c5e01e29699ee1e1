"""One table for every IR op: what it counts, which tensor dims carry which channel axis,
where criteria find its channels, and whether it is identity-like. Pure Python.

Everything that treats ops differently reads this table: analytic counts
(:mod:`slimspec.ir.counts`), score sources and weight transplant (:mod:`slimspec.pruning`),
and report rows. ``slimspec.nn`` keeps only the module factories, keyed by the same names;
a test checks that every op here has a factory and vice versa. Adding an op is one entry
here, one factory there, and the :class:`~slimspec.ir.IRBuilder` method that emits it.

Axis names in ``tensors``: ``"out"`` is the node's output axis, ``"in"`` its input axis,
``None`` a dim that carries no channels (a depthwise conv's 1 input channel per group).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .graph import IR, Axis, Node

AxisName = str | None
TensorDims = Mapping[str, tuple[AxisName, ...]]


@dataclass(frozen=True)
class Source:
    """Where a slot's channels appear: ``kind`` is ``bn``, ``producer``, ``gate`` or ``consumer``."""

    kind: str
    node: str
    positions: tuple[int, ...]  # channel positions of the slot along the node's channel axis


def _segments(ir: IR, axis: Axis) -> Iterator[tuple[str, tuple[int, ...]]]:
    for slot, offset in ir.axis_offsets(axis):
        yield slot, tuple(range(offset, offset + ir.slots[slot].size))


def _none(ir: IR, node: Node) -> int:
    return 0


def _no_sources(ir: IR, node: Node) -> Iterator[tuple[str, Source]]:
    return iter(())


def _static(dims: Mapping[str, tuple[AxisName, ...]]) -> Callable[[Node], TensorDims]:
    frozen = MappingProxyType(dict(dims))
    return lambda node: frozen


@dataclass(frozen=True)
class OpInfo:
    """What the rest of slimspec needs to know about one op."""

    name: str
    params: Callable[[IR, Node], int] = _none
    macs: Callable[[IR, Node], int] = _none
    tensors: Callable[[Node], TensorDims] = field(default=_static({}))
    sources: Callable[[IR, Node], Iterator[tuple[str, Source]]] = _no_sources
    identity: bool = False  # per-element or per-channel on its input's axis; no row in layer reports


# -- conv / linear ------------------------------------------------------------------------
def _groups(node: Node) -> int:
    return int(node.attr("groups", 1))


def _conv_params(ir: IR, node: Node) -> int:
    cin, cout, k = ir.axis_size(node.in_axis), node.shape[0], node.attr("kernel")
    return cout * (cin // _groups(node)) * k * k + (cout if node.attr("bias") else 0)


def _conv_macs(ir: IR, node: Node) -> int:
    cin, k = ir.axis_size(node.in_axis), node.attr("kernel")
    cout, h, w = node.shape
    return cout * (cin // _groups(node)) * k * k * h * w


_WEIGHTED: TensorDims = {"weight": ("out", "in"), "weight_mask": ("out", "in"), "bias": ("out",)}
_GROUPED: TensorDims = {"weight": ("out", None), "weight_mask": ("out", None), "bias": ("out",)}


def _conv_tensors(node: Node) -> TensorDims:
    """Grouped convolutions index only their output dim: each filter reads its own group."""
    return _GROUPED if _groups(node) > 1 else _WEIGHTED


def _weighted_sources(ir: IR, node: Node) -> Iterator[tuple[str, Source]]:
    for slot, pos in _segments(ir, node.axis):
        yield slot, Source("producer", node.name, pos)
    if node.in_axis is not None and node.in_axis.repeat == 1 and _groups(node) == 1:
        for slot, pos in _segments(ir, node.in_axis):
            yield slot, Source("consumer", node.name, pos)


def _linear_params(ir: IR, node: Node) -> int:
    cin, cout = ir.axis_size(node.in_axis), node.shape[0]
    return cin * cout + (cout if node.attr("bias") else 0)


def _linear_macs(ir: IR, node: Node) -> int:
    return ir.axis_size(node.in_axis) * node.shape[0]


# -- per-channel ops ------------------------------------------------------------------------
def _per_channel_sources(kind: str) -> Callable[[IR, Node], Iterator[tuple[str, Source]]]:
    def sources(ir: IR, node: Node) -> Iterator[tuple[str, Source]]:
        for slot, pos in _segments(ir, node.axis):
            yield slot, Source(kind, node.name, pos)
    return sources


def _blockgate_sources(ir: IR, node: Node) -> Iterator[tuple[str, Source]]:
    yield node.attr("slot"), Source("gate", node.name, (0,))


def _select_sources(ir: IR, node: Node) -> Iterator[tuple[str, Source]]:
    """A channel selection's slot is scored by the BN that normalizes the full axis before it."""
    slot = node.axis.segments[0]
    bn = ir.node(node.inputs[0])
    if bn.op == "bn":
        yield slot, Source("bn", bn.name, ir.slots[slot].index or ())


_OPS: tuple[OpInfo, ...] = (
    OpInfo("input", identity=True),
    OpInfo("conv", _conv_params, _conv_macs, _conv_tensors, _weighted_sources),
    OpInfo("linear", _linear_params, _linear_macs, _static(_WEIGHTED), _weighted_sources),
    OpInfo("bn", lambda ir, n: 2 * n.shape[0],
           tensors=_static({"weight": ("out",), "bias": ("out",), "running_mean": ("out",), "running_var": ("out",)}),
           sources=_per_channel_sources("bn")),
    OpInfo("relu", identity=True),
    OpInfo("relu6", identity=True),
    OpInfo("silu", identity=True),
    OpInfo("hardswish", identity=True),
    OpInfo("sigmoid", identity=True),
    OpInfo("identity", identity=True),
    OpInfo("dropout", identity=True),
    OpInfo("gate", tensors=_static({"weight": ("out",), "mask": ("out",)}), sources=_per_channel_sources("gate"),
           identity=True),
    OpInfo("blockgate", sources=_blockgate_sources, identity=True),
    OpInfo("maxpool"),
    OpInfo("avgpool"),
    OpInfo("gap"),
    OpInfo("adaptive_avgpool"),
    OpInfo("flatten"),
    OpInfo("pad"),
    OpInfo("select", sources=_select_sources),
    OpInfo("add"),
    OpInfo("concat"),
)

OPS: Mapping[str, OpInfo] = MappingProxyType({op.name: op for op in _OPS})


def slot_sources(ir: IR) -> dict[str, list[Source]]:
    """Map slot path -> every place its channels appear (BN, producing filters, gates, readers)."""
    found: dict[str, list[Source]] = {}
    for node in ir.nodes:
        for slot, source in OPS[node.op].sources(ir, node):
            found.setdefault(slot, []).append(source)
    return found
