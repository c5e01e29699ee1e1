"""Where each slot's channels live in the network: the tensors criteria score.

For every slot, the IR tells which BatchNorm channels normalize it, which conv/linear filters
produce it, which gate scales it, and which conv/linear inputs read it. Criteria use these to
score channels without knowing the family; a residual stream slot simply has several sources.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from ..ir import IR, Axis


@dataclass(frozen=True)
class Source:
    kind: str  # "bn" | "producer" | "gate" | "consumer"
    node: str
    positions: tuple[int, ...]  # channel positions of the slot along the node's channel axis


def _segments(ir: IR, axis: Axis):
    for slot, offset in ir.axis_offsets(axis):
        yield slot, tuple(range(offset, offset + ir.slots[slot].size))


def slot_sources(ir: IR) -> dict[str, list[Source]]:
    """Map slot path -> every place its channels appear."""
    sources: dict[str, list[Source]] = defaultdict(list)
    for node in ir.nodes:
        if node.op == "bn":
            for slot, pos in _segments(ir, node.axis):
                sources[slot].append(Source("bn", node.name, pos))
        elif node.op in ("conv", "linear"):
            for slot, pos in _segments(ir, node.axis):
                sources[slot].append(Source("producer", node.name, pos))
            if node.in_axis is not None and node.in_axis.repeat == 1:
                for slot, pos in _segments(ir, node.in_axis):
                    sources[slot].append(Source("consumer", node.name, pos))
        elif node.op == "gate":
            for slot, pos in _segments(ir, node.axis):
                sources[slot].append(Source("gate", node.name, pos))
        elif node.op == "blockgate":
            sources[node.attr("slot")].append(Source("gate", node.name, (0,)))
        elif node.op == "select":
            slot = node.axis.segments[0]
            bn = ir.node(node.inputs[0])
            if bn.op == "bn":
                sources[slot].append(Source("bn", bn.name, ir.slots[slot].index or ()))
    return dict(sources)


def axis_index(ir: IR, axis: Axis, kept: dict[str, tuple[int, ...]]) -> list[int]:
    """Kept positions along an axis (segments concatenated, flatten repeat expanded)."""
    out: list[int] = []
    for slot, offset in ir.axis_offsets(Axis(axis.segments)):
        keep = kept.get(slot, range(ir.slots[slot].size))
        out.extend(offset + k for k in keep)
    if axis.repeat == 1:
        return out
    return [i * axis.repeat + j for i in out for j in range(axis.repeat)]
