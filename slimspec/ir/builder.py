"""A small helper the families use to emit IR nodes with shape inference.

Each call appends one node and returns its name. Shape problems (a pooling that would go
below 1x1, a kernel larger than its input) are collected as located :class:`SpecIssue`
entries instead of exceptions, so a spec's every problem is reported at once.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any

from ..errors import SpecError, SpecIssue
from .graph import IR, Axis, Node, Slot
from .ops import OPS

INPUT = "input"


def _conv_out(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


class IRBuilder:
    """Accumulates slots and nodes for one network."""

    def __init__(self, arch: str, name: str, input_shape: Sequence[int], num_classes: int, data: dict):
        self.arch, self.name, self.data = arch, name, data
        self.input_shape = tuple(int(v) for v in input_shape)
        self.num_classes = int(num_classes)
        self.slots: dict[str, Slot] = {}
        self.nodes: dict[str, Node] = {}
        self.issues: list[SpecIssue] = []
        self._units: list[str] = []
        self.add_slot("#input", self.input_shape[0], "fixed")
        self._emit(Node(INPUT, "input", (), self.input_shape, Axis(("#input",))))

    # -- slots -----------------------------------------------------------------
    def add_slot(self, path: str, size: int, kind: str = "channel", index: Sequence[int] | None = None,
                 base_size: int | None = None) -> Axis:
        """Register a slot and return the single-segment axis over it."""
        if path in self.slots:
            raise ValueError(f"duplicate slot {path}")
        self.slots[path] = Slot(path, int(size), kind, tuple(index) if index is not None else None, base_size,
                                tuple(self._units))
        return Axis((path,))

    @contextmanager
    def unit(self, path: str) -> Iterator[None]:
        """Slots added inside belong to the unit ``path`` (a stage, a block): see ``Slot.group``."""
        self._units.append(path)
        try:
            yield
        finally:
            self._units.pop()

    def issue(self, at: str, message: str) -> None:
        self.issues.append(SpecIssue.located(at, message))

    # -- nodes -----------------------------------------------------------------
    def _emit(self, node: Node) -> str:
        if node.op not in OPS:
            raise ValueError(f"op '{node.op}' is not in the op table (slimspec/ir/ops.py)")
        if node.name in self.nodes:
            raise ValueError(f"duplicate node {node.name}")
        self.nodes[node.name] = node
        return node.name

    def shape(self, ref: str) -> tuple[int, ...]:
        return self.nodes[ref].shape

    def axis(self, ref: str) -> Axis:
        return self.nodes[ref].axis

    def channels(self, ref: str) -> int:
        return self.axis_size(self.axis(ref))

    def axis_size(self, axis: Axis) -> int:
        return sum(self.slots[s].size for s in axis.segments) * axis.repeat

    def _node(self, name: str, op: str, inputs: tuple[str, ...], shape: tuple[int, ...], axis: Axis,
              at: str, in_axis: Axis | None = None, **attrs: Any) -> str:
        return self._emit(Node(name, op, inputs, shape, axis, in_axis, MappingProxyType(attrs), at))

    def conv(self, name: str, x: str, out: Axis, kernel: int, stride: int = 1, padding: int = 0,
             bias: bool = False, at: str = "", groups: int = 1, dilation: int = 1) -> str:
        c, h, w = self._spatial(x, name, at)
        oh, ow = _conv_out(h, kernel, stride, padding, dilation), _conv_out(w, kernel, stride, padding, dilation)
        if oh < 1 or ow < 1:
            self.issue(at, f"a {kernel}x{kernel} convolution does not fit its {h}x{w} input")
            oh, ow = max(oh, 1), max(ow, 1)
        return self._node(name, "conv", (x,), (self.axis_size(out), oh, ow), out, at, self.axis(x),
                          kernel=kernel, stride=stride, padding=padding, bias=bias, groups=groups, dilation=dilation)

    def bn(self, name: str, x: str, at: str = "", eps: float | None = None) -> str:
        """BatchNorm; ``eps`` defaults to the bn layer form's schema default (torch's)."""
        eps = OPS["bn"].layer.defaults()["eps"] if eps is None else eps  # type: ignore[union-attr]
        return self._node(name, "bn", (x,), self.shape(x), self.axis(x), at, self.axis(x), eps=float(eps))

    def relu(self, name: str, x: str, at: str = "") -> str:
        return self.elementwise(name, x, "relu", at=at)

    def elementwise(self, name: str, x: str, op: str, at: str = "", **attrs: Any) -> str:
        """An op of the table that keeps its input's shape and channel axis (activations, dropout, identity)."""
        if op not in OPS or not OPS[op].identity or OPS[op].layer is None:
            raise ValueError(f"{name}: '{op}' is not an element-wise layer kind of the op table")
        return self._node(name, op, (x,), self.shape(x), self.axis(x), at, **attrs)

    def adaptive_avgpool(self, name: str, x: str, size: int, at: str = "") -> str:
        """Adaptive average pool to ``size`` x ``size`` (torch's ``AdaptiveAvgPool2d``)."""
        c, _, _ = self._spatial(x, name, at)
        return self._node(name, "adaptive_avgpool", (x,), (c, size, size), self.axis(x), at, size=size)

    def gate(self, name: str, x: str, at: str = "", **attrs: Any) -> str:
        """A per-channel op on a prunable slot: identity (plain), mask (masked) or gate (gated).

        ``fold="readers"`` marks a gate whose readers are all convolutions or linears (through
        flatten/dropout/identity): a trained gate then folds into their input columns.
        """
        return self._node(name, "gate", (x,), self.shape(x), self.axis(x), at, self.axis(x), **attrs)

    def block_gate(self, name: str, x: str, slot: str, at: str = "") -> str:
        """A scalar on a residual branch (SSS block gate): a block whose gate is zero can be removed."""
        self.add_slot(slot, 1, "block")
        return self._node(name, "blockgate", (x,), self.shape(x), self.axis(x), at, self.axis(x), slot=slot)

    def pool(self, name: str, x: str, kind: str, kernel: int, stride: int | None = None, padding: int = 0,
             at: str = "", **attrs: Any) -> str:
        """A pooling op of the table (``kind``); ``stride`` defaults to the kernel; ``attrs`` are kind-specific."""
        stride = kernel if stride is None else stride
        c, h, w = self._spatial(x, name, at)
        oh, ow = _conv_out(h, kernel, stride, padding), _conv_out(w, kernel, stride, padding)
        if oh < 1 or ow < 1:
            self.issue(at, f"{kind} {kernel}x{kernel} would shrink a {h}x{w} feature map below 1x1")
            oh, ow = max(oh, 1), max(ow, 1)
        return self._node(name, kind, (x,), (c, oh, ow), self.axis(x), at, kernel=kernel, stride=stride,
                          padding=padding, **attrs)

    def gap(self, name: str, x: str, at: str = "") -> str:
        """Global average pool and flatten: (C, H, W) -> (C,)."""
        c, _, _ = self._spatial(x, name, at)
        return self._node(name, "gap", (x,), (c,), self.axis(x), at)

    def flatten(self, name: str, x: str, at: str = "") -> str:
        shape = self.shape(x)
        if len(shape) == 1:
            return x
        c, h, w = shape
        axis = self.axis(x)
        return self._node(name, "flatten", (x,), (c * h * w,), Axis(axis.segments, axis.repeat * h * w), at)

    def linear(self, name: str, x: str, out: Axis, bias: bool = True, at: str = "") -> str:
        if len(self.shape(x)) != 1:
            x = self.flatten(f"{name}_flatten", x, at)
        return self._node(name, "linear", (x,), (self.axis_size(out),), out, at, self.axis(x), bias=bias)

    def add(self, name: str, a: str, b: str, at: str = "") -> str:
        if self.shape(a) != self.shape(b):
            self.issue(at, f"residual shapes differ: {self.shape(a)} vs {self.shape(b)}")
        return self._node(name, "add", (a, b), self.shape(a), self.axis(a), at)

    def add_all(self, name: str, xs: Sequence[str], at: str = "") -> str:
        """``xs[0] + xs[1] + ...`` as a chain of adds, the last one named ``name``."""
        x = xs[0]
        for k, other in enumerate(xs[1:], start=1):
            x = self.add(name if k == len(xs) - 1 else f"{name}_{k}", x, other, at=at)
        return x

    def concat(self, name: str, xs: Sequence[str], at: str = "") -> str:
        """Feature maps joined along their channels; their axes compose."""
        axis = Axis(tuple(seg for x in xs for seg in self.axis(x).segments))
        shapes = [self.shape(x) for x in xs]
        if len({s[1:] for s in shapes}) != 1:
            self.issue(at, "concat of different spatial sizes: " + ", ".join(f"{s[1]}x{s[2]}" for s in shapes))
        _, h, w = self.shape(xs[0])
        return self._node(name, "concat", tuple(xs), (self.axis_size(axis), h, w), axis, at)

    def pad(self, name: str, x: str, out: Axis, stride: int, at: str = "") -> str:
        """Shortcut A: 2x2 average pool when ``stride`` is 2, then zero channels appended up to ``out``."""
        c, h, w = self._spatial(x, name, at)
        if out.segments[: len(self.axis(x).segments)] != self.axis(x).segments:
            raise ValueError(f"{name}: padded axis must extend the input axis")
        oh, ow = (h // stride, w // stride) if stride > 1 else (h, w)
        return self._node(name, "pad", (x,), (self.axis_size(out), oh, ow), out, at, self.axis(x), stride=stride)

    def select(self, name: str, x: str, slot: str, at: str = "") -> str:
        """Channel selection: keep the slot's ``index`` positions of the input axis."""
        _, h, w = self._spatial(x, name, at)
        out = Axis((slot,))
        return self._node(name, "select", (x,), (self.slots[slot].size, h, w), out, at, self.axis(x))

    def _spatial(self, x: str, name: str, at: str) -> tuple[int, int, int]:
        shape = self.shape(x)
        if len(shape) != 3:
            raise ValueError(f"{name}: expects a feature map, got shape {shape}")
        return shape  # type: ignore[return-value]

    def classifier(self, x: str, name: str = "fc", at: str = "num_classes") -> str:
        if "#classes" not in self.slots:
            self.add_slot("#classes", self.num_classes, "fixed")
        return self.linear(name, x, Axis(("#classes",)), bias=True, at=at)

    def finish(self, source: str | None = None) -> IR:
        if self.issues:
            raise SpecError(self.issues, source)
        return IR(self.arch, self.name, self.input_shape, self.num_classes, dict(self.slots),
                  list(self.nodes.values()), self.data)
