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
from .ops import OPS, Pair, pair, square

INPUT = "input"


def _conv_out(size: int, kernel: int, stride: int, padding: int, dilation: int = 1, ceil: bool = False) -> int:
    """torch's output size; with ``ceil`` (a pool's ceil_mode) a last window must start inside the input or
    its left padding."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (-(-span // stride) if ceil else span // stride) + 1
    if ceil and (out - 1) * stride >= size + padding:
        out -= 1
    return out


def _spatial_out(hw: tuple[int, int], kernel: Pair, stride: Pair, padding: Pair, dilation: Pair = 1,
                 ceil: bool = False) -> tuple[int, int]:
    k, s, p, d = pair(kernel), pair(stride), pair(padding), pair(dilation)
    return (_conv_out(hw[0], k[0], s[0], p[0], d[0], ceil), _conv_out(hw[1], k[1], s[1], p[1], d[1], ceil))


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(v) for v in shape)


def _size(value: Pair) -> str:
    h, w = pair(value)
    return f"{h}x{w}"


class IRBuilder:
    """Accumulates slots and nodes for one network."""

    def __init__(self, arch: str, name: str, input_shape: Sequence[int], num_classes: int | None, data: dict):
        self.arch, self.name, self.data = arch, name, data
        self.input_shape = tuple(int(v) for v in input_shape)
        self.num_classes = None if num_classes is None else int(num_classes)
        self.outputs: list[str] = []  # the nodes the network returns; empty: its last node
        self.slots: dict[str, Slot] = {}
        self.nodes: dict[str, Node] = {}
        self.issues: list[SpecIssue] = []
        self._units: list[str] = []
        self.add_slot("#input", self.input_shape[0], "fixed")
        self._emit(Node(INPUT, "input", (), self.input_shape, Axis(("#input",))))

    # -- slots -----------------------------------------------------------------
    def add_slot(self, path: str, size: int, kind: str = "channel", index: Sequence[int] | None = None,
                 base_size: int | None = None, parts: int = 1, view: tuple[str, int, int] | None = None) -> Axis:
        """Register a slot and return the single-segment axis over it."""
        if path in self.slots:
            raise ValueError(f"duplicate slot {path}")
        if size % parts:
            raise ValueError(f"slot {path}: {parts} parts do not divide its {size} channels")
        self.slots[path] = Slot(path, int(size), kind, tuple(index) if index is not None else None, base_size,
                                tuple(self._units), parts, view)
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
              at: str, in_axis: Axis | None = None, /, **attrs: Any) -> str:
        return self._emit(Node(name, op, inputs, shape, axis, in_axis, MappingProxyType(attrs), at))

    def conv(self, name: str, x: str, out: Axis, kernel: Pair, stride: Pair = 1, padding: Pair = 0,
             bias: bool = False, at: str = "", groups: int = 1, dilation: Pair = 1) -> str:
        """A convolution; ``kernel``, ``stride``, ``padding`` and ``dilation`` are an int or an ``(h, w)`` pair."""
        c, h, w = self._spatial(x, name, at)
        oh, ow = _spatial_out((h, w), kernel, stride, padding, dilation)
        if oh < 1 or ow < 1:
            self.issue(at, f"a {_size(kernel)} convolution does not fit its {h}x{w} input")
            oh, ow = max(oh, 1), max(ow, 1)
        return self._node(name, "conv", (x,), (self.axis_size(out), oh, ow), out, at, self.axis(x),
                          kernel=square(kernel), stride=square(stride), padding=square(padding), bias=bias,
                          groups=groups, dilation=square(dilation))

    def bn(self, name: str, x: str, at: str = "", eps: float | None = None) -> str:
        """BatchNorm; ``eps`` defaults to the bn layer form's schema default (torch's)."""
        eps = OPS["bn"].layer.defaults()["eps"] if eps is None else eps  # type: ignore[union-attr]
        return self._node(name, "bn", (x,), self.shape(x), self.axis(x), at, self.axis(x), eps=float(eps))

    def relu(self, name: str, x: str, at: str = "") -> str:
        return self.elementwise(name, x, "relu", at=at)

    def elementwise(self, name: str, x: str, op: str, /, at: str = "", **attrs: Any) -> str:
        """An op of the table that keeps its input's shape and channel axis (activations, dropout, a per-channel
        scale or norm): a layer kind whose role is ``map``."""
        form = OPS[op].layer if op in OPS else None
        if form is None or form.role != "map":
            raise ValueError(f"{name}: '{op}' is not a shape-keeping layer kind of the op table")
        return self._node(name, op, (x,), self.shape(x), self.axis(x), at, None, **attrs)

    def adaptive_avgpool(self, name: str, x: str, size: Pair, at: str = "") -> str:
        """Adaptive average pool to ``size`` (an int or ``(h, w)``; torch's ``AdaptiveAvgPool2d``)."""
        c, _, _ = self._spatial(x, name, at)
        return self._node(name, "adaptive_avgpool", (x,), (c, *pair(size)), self.axis(x), at, size=square(size))

    def upsample(self, name: str, x: str, scale: int, mode: str = "nearest", at: str = "") -> str:
        """Upsampling by an integer factor (``nn.Upsample(scale_factor=scale, mode=mode)``)."""
        c, h, w = self._spatial(x, name, at)
        return self._node(name, "upsample", (x,), (c, h * scale, w * scale), self.axis(x), at, scale=scale, mode=mode)

    def zeropad(self, name: str, x: str, padding: Sequence[int], at: str = "") -> str:
        """Zero padding ``(left, right, top, bottom)`` (``nn.ZeroPad2d``)."""
        c, h, w = self._spatial(x, name, at)
        left, right, top, bottom = (int(v) for v in padding)
        return self._node(name, "zeropad", (x,), (c, h + top + bottom, w + left + right), self.axis(x), at,
                          padding=(left, right, top, bottom))

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

    def pool(self, name: str, x: str, kind: str, kernel: Pair, stride: Pair | None = None, padding: Pair = 0,
             at: str = "", ceil: bool = False, **attrs: Any) -> str:
        """A pooling op of the table (``kind``); ``stride`` defaults to the kernel; ``ceil`` is torch's ceil_mode;
        ``attrs`` are kind-specific."""
        stride = kernel if stride is None else stride
        c, h, w = self._spatial(x, name, at)
        oh, ow = _spatial_out((h, w), kernel, stride, padding, ceil=ceil)
        if oh < 1 or ow < 1:
            self.issue(at, f"{kind} {_size(kernel)} would shrink a {h}x{w} feature map below 1x1")
            oh, ow = max(oh, 1), max(ow, 1)
        return self._node(name, kind, (x,), (c, oh, ow), self.axis(x), at, kernel=square(kernel),
                          stride=square(stride), padding=square(padding), ceil=ceil, **attrs)

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

    def mul(self, name: str, xs: Sequence[str], at: str = "") -> str:
        """``xs[0] * xs[1]`` with broadcasting: a squeeze-excitation scale (C, 1, 1) times its (C, H, W) input, or a
        spatial attention map (1, H, W) times every channel. The output has the wider input's channel axis."""
        a, b = xs
        shape_a, shape_b = self.shape(a), self.shape(b)
        if len(shape_a) != len(shape_b) or any(p != q and 1 not in (p, q) for p, q in zip(shape_a, shape_b)):
            self.issue(at, f"mul: shapes {_shape(shape_a)} and {_shape(shape_b)} do not broadcast")
        shape = tuple(max(p, q) for p, q in zip(shape_a, shape_b))
        wide = b if shape_b[0] > shape_a[0] else a
        return self._node(name, "mul", (a, b), shape, self.axis(wide), at)

    def part(self, name: str, x: str, out: Axis, op: str, at: str = "", **attrs: Any) -> str:
        """A part of ``x``'s channels (a ``chunk`` or ``slice`` layer); ``out`` is the axis of that part."""
        shape = self.shape(x)
        return self._node(name, op, (x,), (self.axis_size(out), *shape[1:]), out, at, self.axis(x), **attrs)

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
        if self.num_classes is None:
            raise ValueError(f"{name}: a classifier needs num_classes")
        if "#classes" not in self.slots:
            self.add_slot("#classes", self.num_classes, "fixed")
        fc = self.linear(name, x, Axis(("#classes",)), bias=True, at=at)
        self.outputs = [fc]
        return fc

    def finish(self, source: str | None = None) -> IR:
        if self.issues:
            raise SpecError(self.issues, source)
        nodes = list(self.nodes.values())
        return IR(self.arch, self.name, self.input_shape, self.num_classes, dict(self.slots), nodes, self.data,
                  tuple(self.outputs) or (nodes[-1].name,))
