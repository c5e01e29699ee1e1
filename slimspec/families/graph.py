"""``arch: graph`` — a layer list where a layer may take its input ``from`` earlier layers.

For every CNN no other family fits. ``from`` is a layer index or a negative offset (``-1``,
the previous layer, is the default; an offset reaching one before layer 0 is the network's
input), as in the Ultralytics model YAML and Keras functional configs; ``add`` and ``concat``
take a list. Layer kinds: conv (out, kernel, stride, padding, dilation, groups, bias), bn (eps),
relu / relu6 / silu / hardswish / sigmoid, maxpool / avgpool / adaptive_avgpool, flatten,
linear, dropout, identity, add, concat; the final ``Linear(num_classes)`` is implied.

Channels: each conv/linear ``out`` is a slot (``layers[3].conv.out``, or ``layers[3].conv``
for the short form ``conv: 16``). A depthwise conv (``groups`` = its input width = ``out``)
has no slot of its own: its channels are its input's. ``add`` couples its inputs into one
axis (the producers' slots are unified; a slot written by several producers is a ``stream``
slot, pruned only with ``prune_stream``, like a ResNet's residual stream), ``concat``
composes axes. A grouped (not depthwise) conv fixes the slots it reads and writes.

Gates (masks in ``masked`` mode, SSS gates in ``gated`` mode) sit in front of the layers that
mix channels (conv with ``groups: 1``, linear, the classifier), so a pruned channel is zero
wherever another channel is computed from it; they fold into those layers' input columns.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..ir import IR, Axis, IRBuilder
from ..ir.builder import ACTIVATIONS
from ..errors import SpecError, SpecIssue, parse_path
from .base import Family, copy_data, register_family

INPUT = -1  # the network input, as a layer index
SHORT_KEY = {"conv": "out", "linear": "out", "maxpool": "kernel", "avgpool": "kernel", "adaptive_avgpool": "size",
             "dropout": "p"}
PLAIN_KINDS = ("bn", *ACTIVATIONS, "flatten", "identity")  # kinds that may be written as a bare string
TRANSPARENT = ("flatten", "dropout", "identity")  # pass channels through unchanged (a gate folds through them)
JOINS = ("add", "concat")

# -- schema ----------------------------------------------------------------------------------
_INDEX = {"type": "integer", "title": "a layer index or a negative offset"}
_FROM = {**_INDEX, "description": "Input: an earlier layer's index, or a negative offset (default -1: the previous "
                                  "layer; an offset one before layer 0 is the network input)."}
_FROM_MANY = {"type": "array", "minItems": 2, "items": _INDEX, "title": "a list of two or more layer indices or offsets",
              "description": "The layers joined (indices or negative offsets)."}
_POS, _NONNEG = {"$ref": "#/$defs/posint"}, {"$ref": "#/$defs/nonnegint"}


def _options(title: str, required: tuple[str, ...] = (), inputs: dict = _FROM, **props: dict) -> dict:
    return {"type": "object", "additionalProperties": False, "required": list(required), "title": title,
            "properties": {**props, "from": inputs}}


def _short_or_options(short: dict, options: dict) -> dict:
    return {"anyOf": [short, options], "title": f"{short['title']} or {options['title']}"}


_BOOL_TRUE = {"type": "boolean", "title": "True or False", "default": True}
_KINDS: dict[str, dict] = {
    "conv": _short_or_options(
        {"type": "integer", "minimum": 1, "title": "a positive width"},
        _options("a mapping {out, kernel, stride, padding, dilation, groups, bias, from}",
                 out={**_POS, "description": "Output channels (a prunable slot); may be omitted for a depthwise conv."},
                 kernel={**_POS, "default": 3}, stride={**_POS, "default": 1}, padding={**_NONNEG, "default": 0},
                 dilation={**_POS, "default": 1},
                 groups={**_POS, "default": 1, "description": "Depthwise when groups = input width = out."},
                 bias=_BOOL_TRUE)),
    "linear": _short_or_options({"type": "integer", "minimum": 1, "title": "a positive width"},
                                _options("a mapping {out, bias, from}", ("out",), out=_POS, bias=_BOOL_TRUE)),
    **{kind: _short_or_options({"type": "integer", "minimum": 1, "title": "a positive kernel size"},
                               _options("a mapping {kernel, stride, padding, from}", ("kernel",), kernel=_POS,
                                        stride=_POS, padding={**_NONNEG, "default": 0}))
       for kind in ("maxpool", "avgpool")},
    "adaptive_avgpool": _short_or_options({"type": "integer", "minimum": 1, "title": "a positive output size"},
                                          _options("a mapping {size, from}", ("size",), size=_POS)),
    "dropout": _short_or_options({"$ref": "#/$defs/dropout", "title": "a number in [0, 1)"},
                                 _options("a mapping {p, from}", ("p",), p={"$ref": "#/$defs/dropout"})),
    "bn": _options("a mapping {eps, from}", eps={"type": "number", "exclusiveMinimum": 0, "default": 1e-5,
                                                 "title": "a positive number", "description": "BatchNorm epsilon."}),
    **{kind: _options("a mapping {from}") for kind in PLAIN_KINDS if kind != "bn"},
    **{kind: _options("a mapping {from: [...]}", ("from",), _FROM_MANY) for kind in JOINS},
}

SCHEMA: dict = {
    "description": "Layer list with inputs taken 'from' earlier layers (add, concat joins); "
                   "the final Linear(num_classes) is implied.",
    "required": ["layers"],
    "properties": {
        "layers": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/graphLayer"},
                   "title": "a non-empty list of layers"},
    },
}
SCHEMA_DEFS: dict = {
    "graphLayer": {
        "anyOf": [
            {"type": "string", "enum": list(PLAIN_KINDS)},
            {"type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": False,
             "title": "a one-key mapping such as {conv: 16}", "properties": _KINDS},
        ],
        "title": f"{', '.join(repr(k) for k in PLAIN_KINDS)} or a one-key mapping such as {{conv: 16}}",
    },
}


# -- analysis: inputs, channel widths, slot identity (before anything is emitted) --------------
@dataclass
class Layer:
    """One entry of ``layers``: its kind, options (without ``from``) and resolved inputs."""

    index: int
    kind: str
    opts: dict
    inputs: tuple[int, ...]
    short: bool  # ``conv: 16``: the value is the width itself

    @property
    def at(self) -> str:
        return f"layers[{self.index}]"

    @property
    def slot_path(self) -> str:
        return f"{self.at}.{self.kind}" if self.short else f"{self.at}.{self.kind}.out"

    @property
    def mixes(self) -> bool:
        """Computes each output channel from several input channels (a gate goes in front)."""
        return self.kind == "linear" or (self.kind == "conv" and int(self.opts.get("groups", 1)) == 1)


@dataclass
class Plan:
    """What ``layers`` means: inputs, slot identity (unified at adds), widths, readers."""

    layers: list[Layer]
    input_channels: int
    issues: list[SpecIssue] = field(default_factory=list)
    parent: dict[int, int] = field(default_factory=dict)  # union-find over producer keys (INPUT or a layer index)
    width: dict[int, int] = field(default_factory=dict)  # producer key -> channels
    axes: dict[int, list[int]] = field(default_factory=dict)  # value -> producer keys, concatenated
    flat: dict[int, bool] = field(default_factory=dict)  # value is a vector (after flatten / linear)
    fixed: set[int] = field(default_factory=set)
    depthwise: set[int] = field(default_factory=set)
    cin: dict[int, int] = field(default_factory=dict)
    readers: dict[int, list[int | None]] = field(default_factory=dict)  # None: the implied classifier

    def find(self, key: int) -> int:
        while self.parent.get(key, key) != key:
            key = self.parent[key]
        return key

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)  # the earliest producer names the slot

    def channels(self, value: int) -> int:
        return sum(self.width[self.find(k)] for k in self.axes[value])

    def slot_kind(self, root: int) -> str:
        members = [k for k in self.width if self.find(k) == root]
        if root == INPUT or any(k in self.fixed for k in members):
            return "fixed"
        return "stream" if len(members) > 1 else "channel"

    def slot_name(self, key: int) -> str:
        root = self.find(key)
        return "#input" if root == INPUT else self.layers[root].slot_path

    def pure(self, index: int) -> bool:
        """A flatten/dropout/identity read only by channel-mixing layers (so a gate can go in front of it)."""
        layer = self.layers[index]
        if layer.kind not in TRANSPARENT:
            return False
        return all(r is None or self.layers[r].mixes or self.pure(r) for r in self.readers.get(index, []))


def _parts(item: Any) -> tuple[str, Any]:
    if isinstance(item, str):
        return item, None
    (kind, value), = item.items()
    return kind, value


def _resolve_from(index: int, ref: Any, where: str, issues: list[SpecIssue]) -> int:
    target = index + ref if ref < 0 else ref
    if ref >= 0 and ref >= index:
        issues.append(SpecIssue(where, f"from {ref} refers to layer {ref}, which does not come before layer {index}",
                                parse_path(where)))
        return index - 1
    if target < INPUT:
        issues.append(SpecIssue(where, f"from {ref} reaches before the network input (layer {index} can go back "
                                       f"at most {index + 1})", parse_path(where)))
        return index - 1
    return target


def _issue(plan: Plan, where: str, message: str) -> None:
    plan.issues.append(SpecIssue(where, message, parse_path(where)))


def _describe(value: int) -> str:
    return "the input" if value == INPUT else f"layers[{value}]"


def analyze(layers: list, input_channels: int) -> Plan:
    """Resolve ``from``, channel widths and slot identity of a schema-valid layer list (torch-free)."""
    parsed: list[Layer] = []
    plan = Plan(parsed, input_channels)
    plan.width[INPUT], plan.axes[INPUT], plan.flat[INPUT] = input_channels, [INPUT], False
    for i, item in enumerate(layers):
        kind, value = _parts(item)
        short = not isinstance(value, dict) and value is not None
        opts = dict(value) if isinstance(value, dict) else ({SHORT_KEY[kind]: value} if short else {})
        ref = opts.pop("from", -1)
        where = f"layers[{i}].{kind}.from"
        if isinstance(ref, list):
            inputs = tuple(_resolve_from(i, r, f"{where}[{k}]", plan.issues) for k, r in enumerate(ref))
        else:
            inputs = (_resolve_from(i, ref, where, plan.issues),)
        layer = Layer(i, kind, opts, inputs, short)
        parsed.append(layer)
        for v in inputs:
            plan.readers.setdefault(v, []).append(i)
        _analyze_layer(plan, layer)
    plan.readers.setdefault(len(parsed) - 1, []).append(None)
    return plan


def _analyze_layer(plan: Plan, layer: Layer) -> None:
    i, kind, opts, x = layer.index, layer.kind, layer.opts, layer.inputs[0]
    plan.axes[i], plan.flat[i] = list(plan.axes[x]), plan.flat[x]
    if kind in ("conv", "maxpool", "avgpool", "adaptive_avgpool") and plan.flat[x]:
        _issue(plan, layer.at, f"{kind} after flatten/linear: the input is no longer a feature map")
    if kind == "conv":
        cin, groups, out = plan.channels(x), int(opts.get("groups", 1)), opts.get("out")
        plan.cin[i] = cin
        if groups > 1 and groups == cin and out in (None, cin):
            plan.depthwise.add(i)  # its channels are its input's channels: same axis, no slot of its own
            return
        if out is None:
            _issue(plan, f"{layer.at}.conv", "out is required (only a depthwise conv, groups = its input "
                                             f"width {cin}, may omit it)")
            out = cin
        plan.width[i], plan.axes[i] = int(out), [i]
        if groups > 1:
            for what, width in (("the input width", cin), ("out", out)):
                if width % groups:
                    _issue(plan, f"{layer.at}.conv.groups", f"groups {groups} does not divide {what} {width}")
            plan.fixed.update([*plan.axes[x], i])  # grouped channels cannot be removed one by one
    elif kind == "linear":
        plan.width[i], plan.axes[i], plan.flat[i] = int(opts["out"]), [i], True
    elif kind == "flatten":
        plan.flat[i] = True
    elif kind == "add":
        _analyze_add(plan, layer)
    elif kind == "concat":
        if any(plan.flat[v] for v in layer.inputs):
            _issue(plan, f"{layer.at}.concat.from", "concat joins feature maps; an input is flattened")
        plan.axes[i] = [k for v in layer.inputs for k in plan.axes[v]]


def _analyze_add(plan: Plan, layer: Layer) -> None:
    first = layer.inputs[0]
    for v in layer.inputs[1:]:
        a, b = plan.axes[first], plan.axes[v]
        widths_a = [plan.width[plan.find(k)] for k in a]
        widths_b = [plan.width[plan.find(k)] for k in b]
        if sum(widths_a) != sum(widths_b) or plan.flat[first] != plan.flat[v]:
            _issue(plan, f"{layer.at}.add.from", f"add: {_describe(first)} has {sum(widths_a)} channels, "
                                                 f"{_describe(v)} has {sum(widths_b)}")
        elif widths_a == widths_b:
            for ka, kb in zip(a, b):
                plan.union(ka, kb)
        else:  # the same width split differently (e.g. a concat added to a conv): keep all of it
            plan.fixed.update(a + b)


# -- the family ------------------------------------------------------------------------------
@register_family
class Graph(Family):
    arch = "graph"
    schema = SCHEMA
    schema_defs = SCHEMA_DEFS

    def emit(self, b: IRBuilder, data: dict) -> None:
        plan = analyze(data["layers"], b.input_shape[0])
        if plan.issues:
            raise SpecError(plan.issues)
        _Emitter(b, plan).run()

    def write(self, data: dict, ir: IR, sizes: Mapping[str, int], selects: Mapping) -> dict:
        new = copy_data(data)
        plan = analyze(new["layers"], ir.input_shape[0])
        for key in plan.width:
            if key == INPUT or key in plan.depthwise:
                continue
            layer, path = plan.layers[key], plan.slot_name(key)
            _set_option(new["layers"], layer, "out", sizes.get(path, ir.slots[path].size))
        resized = analyze(new["layers"], ir.input_shape[0])
        for i in plan.depthwise:  # a depthwise conv follows its input's width
            item = new["layers"][i]["conv"]
            for key in ("out", "groups"):
                if key in item:
                    item[key] = resized.cin[i]
        return new


def _set_option(items: list, layer: Layer, key: str, value: int) -> None:
    if layer.short:
        items[layer.index][layer.kind] = value
    else:
        items[layer.index][layer.kind][key] = value


class _Emitter:
    """Emits a plan's nodes in layer order, with gates in front of the channel-mixing layers."""

    def __init__(self, b: IRBuilder, plan: Plan):
        self.b, self.plan = b, plan
        self.values: dict[int, str] = {INPUT: "input"}
        self.gates: dict[int, str] = {}
        self.gated: set[int] = set()  # values computed from gated inputs only (pure flatten/dropout/identity)

    def read(self, value: int, reader: Layer | None) -> str:
        """The tensor ``reader`` takes: the value itself, or the value through its gate."""
        ref = self.values[value]
        if reader is not None and not (reader.mixes or self.plan.pure(reader.index)):
            return ref
        if value in self.gated:
            return ref
        axis = self.b.axis(ref)
        if all(self.b.slots[s].kind == "fixed" for s in axis.segments):
            return ref
        if axis.repeat != 1:
            at = reader.at if reader is not None else "num_classes"
            self.b.issue(at, f"reads a flattened map of prunable channels through {self.b.nodes[ref].op}; "
                             "put the flatten right before the linear")
            return ref
        if value not in self.gates:
            label = "input" if value == INPUT else str(value)
            self.gates[value] = self.b.gate(f"gates.{label}", ref, at=_describe(value), fold="readers")
        return self.gates[value]

    def out_axis(self, layer: Layer) -> Axis:
        key = self.plan.find(layer.index)
        if key == layer.index:
            self.b.add_slot(layer.slot_path, self.plan.width[key], self.plan.slot_kind(key))
        return Axis((self.plan.slot_name(layer.index),))

    def run(self) -> None:
        for layer in self.plan.layers:
            self.values[layer.index] = self.emit(layer)
            if self.plan.pure(layer.index):
                self.gated.add(layer.index)
        last = len(self.plan.layers) - 1
        self.b.classifier(self.read(last, None))

    def emit(self, layer: Layer) -> str:
        b, opts, kind = self.b, layer.opts, layer.kind
        name, at = f"layers.{layer.index}", layer.at
        refs = [self.read(v, layer) for v in layer.inputs]
        x = refs[0]
        if kind == "conv":
            depthwise = layer.index in self.plan.depthwise
            out = b.axis(x) if depthwise else self.out_axis(layer)
            return b.conv(name, x, out, int(opts.get("kernel", 3)), int(opts.get("stride", 1)),
                          int(opts.get("padding", 0)), bool(opts.get("bias", True)),
                          at=at if depthwise else layer.slot_path, groups=int(opts.get("groups", 1)),
                          dilation=int(opts.get("dilation", 1)))
        if kind == "linear":
            return b.linear(name, x, self.out_axis(layer), bool(opts.get("bias", True)), at=layer.slot_path)
        if kind == "bn":
            return b.bn(name, x, at=at, eps=float(opts.get("eps", 1e-5)))
        if kind in ACTIVATIONS:
            return b.act(name, x, kind, at=at)
        if kind in ("maxpool", "avgpool"):
            return b.pool(name, x, kind, int(opts["kernel"]), opts.get("stride"), int(opts.get("padding", 0)), at=at)
        if kind == "adaptive_avgpool":
            return b.adaptive_avgpool(name, x, int(opts["size"]), at=at)
        if kind == "flatten":
            return b.flatten(name, x, at=at)
        if kind == "dropout":
            return b.dropout(name, x, float(opts["p"]), at=at)
        if kind == "identity":
            return b.identity(name, x, at=at)
        if kind == "add":
            for k, other in enumerate(refs[1:], start=1):
                x = b.add(name if k == len(refs) - 1 else f"{name}_{k}", x, other, at=f"{at}.add.from")
            return x
        if kind == "concat":
            shapes = [b.shape(r) for r in refs]
            if len({s[1:] for s in shapes}) != 1:
                sizes = ", ".join(f"{s[1]}x{s[2]}" for s in shapes)
                b.issue(f"{at}.concat.from", f"concat of different spatial sizes: {sizes}")
            return b.concat(name, refs, at=at)
        raise ValueError(f"{at}: unknown layer kind '{kind}'")  # the schema admits none
