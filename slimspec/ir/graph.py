"""The resolved network: ordered nodes over channel axes made of slots. Pure Python.

A **slot** is one prunable (or fixed) group of channels, named by the spec path that sets
its width (``cfg[3]``, ``stages[1].blocks[4][0]``, ``stages[0].blocks[2].select``).
An **axis** is the channel dimension of a tensor as a concatenation of slots: a residual
stream with zero-padded shortcuts, or a DenseNet concatenation, is several slots side by
side; a flattened feature map repeats each channel ``repeat`` times. Coupling is explicit:
every tensor dimension that carries channels names the slots it is made of, so pruning a
slot prunes every weight dimension that reads or writes it, and nothing else.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

@dataclass(frozen=True)
class Slot:
    """A group of channels whose width is one value in the spec.

    ``parts``: a slot a grouped convolution reads or writes is its ``groups`` equal parts, and
    pruning keeps the same number of channels in every part (chosen by the criterion within
    each part), so the pruned convolution keeps its ``groups``.

    A ``view`` slot is channels ``view[1]:view[2]`` of another slot (a ``chunk`` or ``slice`` of
    it): never decided on its own, it keeps the parent's kept channels that fall in its range.

    ``kind``: ``channel`` (a conv/linear output width), ``select`` (a subset of an axis kept
    by a channel selection), ``stream`` (a residual stream width), ``block`` (a whole
    residual block, size 1, removable when its SSS block gate is zero), ``view`` (a chunk or
    slice of another slot, see above), ``fixed`` (never prunable). ``group`` names the enclosing units from the outside in, as spec paths
    (``("stages[1]", "stages[1].blocks[4]")``), so policies reason about stages and blocks
    without parsing paths.
    """

    path: str
    size: int
    kind: str = "channel"
    index: tuple[int, ...] | None = None  # select slots: the kept positions of the selected axis
    base_size: int | None = None  # select slots: width of the axis selected from
    group: tuple[str, ...] = ()
    parts: int = 1  # equal contiguous parts (a grouped conv's groups): pruning keeps as many channels in each
    view: tuple[str, int, int] | None = None  # ``view`` slots: (parent slot, start, stop) — a chunk's or slice's

    @property
    def prunable(self) -> bool:
        return self.kind not in ("fixed", "view")


@dataclass(frozen=True)
class Axis:
    """A channel dimension: slots concatenated in order; each channel repeated ``repeat`` times."""

    segments: tuple[str, ...]
    repeat: int = 1

    def __add__(self, other: "Axis") -> "Axis":
        assert self.repeat == other.repeat == 1
        return Axis(self.segments + other.segments)


@dataclass(frozen=True)
class Node:
    """One operation. ``name`` is the module path its parameters live under."""

    name: str
    op: str
    inputs: tuple[str, ...]
    shape: tuple[int, ...]  # output shape without the batch dimension: (C, H, W) or (F,)
    axis: Axis  # channel axis of the output
    in_axis: Axis | None = None  # channel axis of the first input (conv/linear/bn/select)
    attrs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    at: str = ""  # spec path of the entry that made this node (for messages and reports)

    def attr(self, key: str, default: Any = None) -> Any:
        return self.attrs.get(key, default)


@dataclass
class IR:
    """A resolved network: slots, nodes in execution order, and the spec data it came from."""

    arch: str
    name: str
    input_shape: tuple[int, int, int]
    num_classes: int | None  # None: a network without a classifier (``outputs:``)
    slots: dict[str, Slot]
    nodes: list[Node]
    data: dict  # the spec data the IR was resolved from
    outputs: tuple[str, ...] = ()  # the nodes the network returns, in order (a tuple when more than one)

    def __post_init__(self) -> None:
        self._by_name = {node.name: node for node in self.nodes}
        if not self.outputs:
            self.outputs = (self.nodes[-1].name,)

    def node(self, name: str) -> Node:
        return self._by_name[name]

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def axis_size(self, axis: Axis) -> int:
        return sum(self.slots[s].size for s in axis.segments) * axis.repeat

    def axis_offsets(self, axis: Axis) -> Iterator[tuple[str, int]]:
        """Yield ``(slot, offset)`` for each segment of a (repeat 1) axis."""
        offset = 0
        for seg in axis.segments:
            yield seg, offset
            offset += self.slots[seg].size

    def nodes_of(self, *ops: str) -> list[Node]:
        return [node for node in self.nodes if node.op in ops]

    def prunable_slots(self) -> list[Slot]:
        return [slot for slot in self.slots.values() if slot.prunable]

    @property
    def output(self) -> Node:
        """The (last) node the network returns."""
        return self.node(self.outputs[-1])
