"""Where each slot's channels live in the network: the tensors criteria score.

For every slot, the op table (:mod:`slimspec.ir.ops`) tells which BatchNorm channels normalize
it, which filters produce it, which gate scales it, and which inputs read it. Criteria use
these to score channels without knowing the family; a residual stream slot simply has
several sources.
"""
from __future__ import annotations

from ..ir import IR, Axis
from ..ir.ops import Source, slot_sources

__all__ = ["Source", "slot_sources", "axis_index"]


def axis_index(ir: IR, axis: Axis, kept: dict[str, tuple[int, ...]]) -> list[int]:
    """Kept positions along an axis (segments concatenated, flatten repeat expanded)."""
    out: list[int] = []
    for slot, offset in ir.axis_offsets(Axis(axis.segments)):
        keep = kept.get(slot, range(ir.slots[slot].size))
        out.extend(offset + k for k in keep)
    if axis.repeat == 1:
        return out
    return [i * axis.repeat + j for i in out for j in range(axis.repeat)]
