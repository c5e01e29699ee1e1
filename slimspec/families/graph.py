"""``arch: graph`` and ``arch: sequential`` — layer lists, one front end for both.

A ``graph`` layer may take its input ``from`` earlier layers: a layer index or a negative offset
(``-1``, the previous layer, is the default; an offset reaching one before layer 0 is the network's
input), as in the Ultralytics model YAML and Keras functional configs; ``add``, ``mul`` and ``concat``
take a list. ``sequential`` is the same family with every ``from`` implied (-1) — Keras's Sequential
is a Functional model whose inbound edges are implicit — so it has no joins. The final
``Linear(num_classes)`` is implied, unless ``outputs`` lists the layers the model returns. The layer
kinds and their options are the layer forms of the op table (:mod:`slimspec.ir.ops`): schema, defaults
and emission all come from there.

Channels: each ``produce`` layer's ``out`` (conv, linear) is a slot (``layers[3].conv.out``, or
``layers[3].conv`` for the short form ``conv: 16``). A depthwise conv (``groups`` = its input width
= ``out``) has no slot of its own: its channels are its input's. ``add`` couples its inputs into
one axis (the producers' slots are unified; a slot written by several producers joined by adds is
a ``stream`` slot, pruned only with ``prune_stream``, like a ResNet's residual stream); ``mul``
couples them too, without making a stream (a squeeze-excitation scale follows the map it scales);
``concat`` composes axes. A grouped (not depthwise) conv's input and output slots are its groups'
equal parts (``Slot.parts``): pruning keeps as many channels in each part, so ``groups`` stays. A
``chunk`` or ``slice`` is a view of its input's slot (``Slot.view``; a chunked slot is split into
the chunks' equal parts). Kinds whose outputs depend on every input channel's position (``layernorm``, ``groupnorm``,
``shuffle``) fix the slots they read, and so do ``outputs`` (the model's interface).

Gates (masks in ``masked`` mode, SSS gates in ``gated`` mode) sit in front of the layers that mix
channels (conv with ``groups: 1``, linear, the classifier), named ``gates.<layer index>`` after the
layer whose output they gate, so a pruned channel is zero wherever another channel is computed
from it; they fold into those layers' input columns.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import SpecError, SpecIssue
from ..ir import IR, Axis, IRBuilder
from ..ir.ops import OPS, OpKind, layer_kinds
from .base import Family, copy_data, register_family

INPUT = -1  # the network input, as a layer index

# -- schema (generated from the op table) ------------------------------------------------------
_INDEX = {"type": "integer", "title": "a layer index or a negative offset"}
_FROM = {**_INDEX, "description": "Input: an earlier layer's index, or a negative offset (default -1: the previous "
                                  "layer; an offset one before layer 0 is the network input)."}
_FROM_MANY = {"type": "array", "minItems": 2, "items": _INDEX, "title": "a list of two or more layer indices or offsets",
              "description": "The layers joined (indices or negative offsets)."}
JOIN_ROLES = ("add", "mul", "concat")
OUTPUT = -2  # a reader that is one of the spec's ``outputs``
_OUTPUTS = {"type": "array", "minItems": 1, "uniqueItems": True, "items": _INDEX,
            "title": "a non-empty list of distinct layer indices",
            "description": "Layers whose tensors the model returns (a tuple when more than one), instead of the "
                           "implied final Linear(num_classes); an index, or a negative one counted from the end. "
                           "Their channels are the model's interface: never pruned."}


def _options_schema(kind: OpKind, with_from: bool) -> dict:
    form = kind.layer
    assert form is not None
    props = dict(form.options)
    required = list(form.required)
    if with_from:
        props["from"] = _FROM_MANY if form.role in JOIN_ROLES else _FROM
        if form.role in JOIN_ROLES:
            required.append("from")
    keys = ", ".join(props) or ""
    title = f"a mapping {{{keys}}}" if keys else "an empty mapping {}"
    return {"type": "object", "additionalProperties": False, "required": required, "title": title,
            "properties": props}


def _kind_schema(kind: OpKind, with_from: bool) -> dict:
    options = _options_schema(kind, with_from)
    short = kind.layer.short_schema if kind.layer else None
    if short is None:
        return options
    return {"anyOf": [short, options], "title": f"{short['title']} or {options['title']}"}


def layer_list_schema(arch: str, with_from: bool) -> tuple[dict, dict]:
    """``(schema, schema_defs)`` of a layer-list family, from the op table as it is now."""
    kinds = {name: kind for name, kind in layer_kinds().items()
             if with_from or kind.layer.role not in JOIN_ROLES}  # type: ignore[union-attr]
    bare = [name for name, kind in kinds.items() if kind.layer.bare]  # type: ignore[union-attr]
    layer = f"{arch}Layer"
    description = ("Layer list with inputs taken 'from' earlier layers (add, concat joins); " if with_from else
                   "Keras-style layer list (each layer reads the previous one); ")
    schema = {
        "description": description + "the final Linear(num_classes) is implied unless 'outputs' names the layers "
                                     "the model returns.",
        "required": ["layers"],
        "properties": {"layers": {"type": "array", "minItems": 1, "items": {"$ref": f"#/$defs/{layer}"},
                                  "title": "a non-empty list of layers"},
                       "outputs": _OUTPUTS},
        "if": {"not": {"required": ["outputs"]}}, "then": {"required": ["num_classes"]},
    }
    defs = {layer: {
        "anyOf": [
            {"type": "string", "enum": bare, "title": "a layer name"},
            {"type": "object", "minProperties": 1, "maxProperties": 1, "additionalProperties": False,
             "title": "a one-key mapping such as {conv: 16}",
             "properties": {name: _kind_schema(kind, with_from) for name, kind in kinds.items()}},
        ],
        "title": "a layer name such as 'relu' or a one-key mapping such as {conv: 16}",
    }}
    return schema, defs


# -- analysis: inputs, channel widths, slot identity (before anything is emitted) --------------
@dataclass
class Layer:
    """One entry of ``layers``: its kind, options (defaults filled, without ``from``) and inputs."""

    index: int
    kind: str
    opts: dict
    inputs: tuple[int, ...]
    short: bool  # ``conv: 16``: the value is the width itself

    @property
    def op(self) -> OpKind:
        return OPS[self.kind]

    @property
    def role(self) -> str:
        return self.op.layer.role  # type: ignore[union-attr]

    @property
    def at(self) -> str:
        return f"layers[{self.index}]"

    @property
    def slot_path(self) -> str:
        return f"{self.at}.{self.kind}" if self.short or self.role != "produce" else f"{self.at}.{self.kind}.out"



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
    grouped: list[tuple[int, int]] = field(default_factory=list)  # (grouped conv layer, groups): parts to resolve
    parts: dict[int, int] = field(default_factory=dict)  # slot root -> equal parts (a grouped conv's groups)
    chunks: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)  # chunk/slice layer -> (input key,
    #                                                                             start, stop, equal parts)
    first_chunk: dict[tuple[int, int, int, int], int] = field(default_factory=dict)  # a chunks value -> its first layer
    views: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # view slot root -> (parent root, start, stop)
    streamed: set[int] = field(default_factory=set)  # parent roots one of whose views is in a residual stream
    streams: set[int] = field(default_factory=set)  # producer keys joined by an add (a residual stream)
    depthwise: set[int] = field(default_factory=set)
    outputs: tuple[int, ...] = ()  # the layers the model returns; () = the implied classifier
    cin: dict[int, int] = field(default_factory=dict)
    readers: dict[int, list[int | None]] = field(default_factory=dict)  # None: the implied classifier
    _members: dict[int, list[int]] = field(default_factory=dict)  # slot root -> its producers (filled once)
    _pure: dict[int, bool] = field(default_factory=dict)

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

    def members(self, root: int) -> list[int]:
        """The producer keys a slot root unifies; call once every union is made (the map is filled once)."""
        if not self._members:
            for key in self.width:
                self._members.setdefault(self.find(key), []).append(key)
        return self._members[root]

    def slot_kind(self, root: int) -> str:
        """``fixed``, ``stream`` (several producers joined by adds) or ``channel`` (one producer, or producers
        coupled by ``mul`` only: a squeeze-excitation scale follows the map it scales); call after the analysis."""
        members = self.members(root)
        if root == INPUT or any(k in self.fixed for k in members):
            return "fixed"
        if root in self.views:
            return "fixed" if self.slot_kind(self.views[root][0]) == "fixed" else "view"
        streams = len(members) > 1 and any(k in self.streams for k in members)
        return "stream" if streams or root in self.streamed else "channel"

    def mixes(self, index: int) -> bool:
        """Computes each output channel from several input channels (a conv or linear, grouped too, not
        depthwise): a gate goes in front."""
        return self.layers[index].role == "produce" and index not in self.depthwise

    def slot_name(self, key: int) -> str:
        root = self.find(key)
        return "#input" if root == INPUT else self.layers[root].slot_path

    def pure(self, index: int) -> bool:
        """A transparent layer (flatten, dropout, identity) read only by channel-mixing layers (so a gate
        can go in front of it)."""
        if index not in self._pure:
            layer = self.layers[index]
            self._pure[index] = layer.op.transparent and all(
                r is None or (r >= 0 and (self.mixes(r) or self.pure(r))) for r in self.readers.get(index, []))
        return self._pure[index]


def _parts(item: Any) -> tuple[str, Any]:
    if isinstance(item, str):
        return item, None
    (kind, value), = item.items()
    return kind, value


def _issue(issues: list[SpecIssue], where: str, message: str) -> None:
    issues.append(SpecIssue.located(where, message))


def _resolve_from(index: int, ref: Any, where: str, issues: list[SpecIssue]) -> int:
    target = index + ref if ref < 0 else ref
    if ref >= 0 and ref >= index:
        _issue(issues, where, f"from {ref} refers to layer {ref}, which does not come before layer {index}")
        return index - 1
    if target < INPUT:
        _issue(issues, where, f"from {ref} reaches before the network input (layer {index} can go back at most "
                              f"{index + 1})")
        return index - 1
    return target


def _describe(value: int) -> str:
    return "the input" if value == INPUT else f"layers[{value}]"


def layer_options(kind: str, value: Any) -> tuple[dict, bool]:
    """``(options with the schema's defaults filled in, written in short form)`` of one layer entry."""
    form = OPS[kind].layer
    assert form is not None
    short = value is not None and not isinstance(value, dict)
    given = dict(value) if isinstance(value, dict) else ({form.short: value} if short else {})
    return {**form.defaults(), **given}, short


def analyze(layers: list, input_channels: int, outputs: list[int] | None = None) -> Plan:
    """Resolve ``from``, channel widths and slot identity of a schema-valid layer list (torch-free)."""
    parsed: list[Layer] = []
    plan = Plan(parsed, input_channels)
    plan.width[INPUT], plan.axes[INPUT], plan.flat[INPUT] = input_channels, [INPUT], False
    for i, item in enumerate(layers):
        kind, value = _parts(item)
        opts, short = layer_options(kind, value)
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
        _ROLES[layer.role](plan, layer)
    if outputs is None:
        plan.readers.setdefault(len(parsed) - 1, []).append(None)
    else:
        _outputs(plan, outputs)
    _resolve_parts(plan)
    return plan


def _resolve_parts(plan: Plan) -> None:
    """Equal parts and views, once every union is known.

    A grouped conv's input and output slots are its groups' equal parts; a chunked slot its chunks'. A slot
    several of them split gets the least common multiple; an input made of several slots (a concatenation),
    or a width the parts do not divide, stays fixed. Each chunk's slot is a view of its part of the parent;
    a view that is also part of another parent, or that must stay whole (an output), fixes the parent.
    """
    for i, (key, start, stop, _) in plan.chunks.items():
        view, parent = plan.find(i), plan.find(key)
        if view == parent or plan.views.setdefault(view, (parent, start, stop)) != (parent, start, stop):
            plan.fixed.update([i, key])
    needs: dict[int, int] = {}
    splits = [(keys, groups) for i, groups in plan.grouped for keys in (plan.axes[plan.layers[i].inputs[0]], [i])]
    splits += [([key], parts) for key, _, _, parts in plan.chunks.values() if parts > 1]
    for keys, parts in splits:
        roots = [plan.find(k) for k in keys]
        if len(keys) != 1 or roots[0] in plan.views:  # a concatenation; a chunk split again: kept whole
            plan.fixed.update(keys + [plan.views[r][0] for r in roots if r in plan.views])
            continue
        needs[roots[0]] = math.lcm(needs.get(roots[0], 1), parts)
    for root, parts in needs.items():
        if plan.width[root] % parts:
            plan.fixed.add(root)
        else:
            plan.parts[root] = parts
    for view, (parent, _, _) in plan.views.items():
        members = plan.members(view)
        if any(k in plan.fixed for k in members):
            plan.fixed.add(parent)
        if len(members) > 1 and any(k in plan.streams for k in members):
            plan.streamed.add(parent)


def _outputs(plan: Plan, refs: list[int]) -> None:
    """Resolve ``outputs``; their channels are fixed (the model's interface), and every layer must reach one."""
    count, resolved = len(plan.layers), []
    for k, ref in enumerate(refs):
        index = count + ref if ref < 0 else ref
        if not 0 <= index < count:
            _issue(plan.issues, f"outputs[{k}]", f"{ref} is not a layer: there are {count} layers "
                                                 f"(0..{count - 1}, or -1..-{count} from the end)")
            continue
        if index in resolved:
            _issue(plan.issues, f"outputs[{k}]", f"layer {index} is listed twice")
            continue
        resolved.append(index)
        plan.readers.setdefault(index, []).append(OUTPUT)
        plan.fixed.update(plan.axes[index])
    plan.outputs = tuple(resolved)
    if len(resolved) == len(refs):
        for layer in plan.layers:
            if not plan.readers.get(layer.index):
                _issue(plan.issues, layer.at, "computes nothing the outputs use (not read by a later layer and not "
                                              "in outputs)")


def _map(plan: Plan, layer: Layer) -> None:
    i, x, form = layer.index, layer.inputs[0], layer.op.layer
    assert form is not None
    plan.axes[i], plan.flat[i] = list(plan.axes[x]), plan.flat[x] or form.flattens
    if form.spatial and plan.flat[x]:
        _issue(plan.issues, layer.at, f"{layer.kind} after flatten/linear: the input is no longer a feature map")
    if form.fixes_channels:  # statistics over every channel, or positions interleaved
        plan.fixed.update(plan.axes[x])
    groups = layer.opts.get("groups")
    if form.role == "map" and groups is not None and plan.channels(x) % int(groups):
        _issue(plan.issues, f"{layer.at}.{layer.kind}", f"groups {groups} does not divide the input width "
                                                         f"{plan.channels(x)}")


def _produce(plan: Plan, layer: Layer) -> None:
    _map(plan, layer)
    i, x, opts = layer.index, layer.inputs[0], layer.opts
    cin, groups, out = plan.channels(x), int(opts.get("groups", 1)), opts.get("out")
    plan.cin[i] = cin
    if groups > 1 and groups == cin and out in (None, cin):
        plan.depthwise.add(i)  # its channels are its input's channels: same axis, no slot of its own
        return
    if out is None:
        _issue(plan.issues, f"{layer.at}.{layer.kind}", f"out is required (only a depthwise conv, groups = its input "
                                                        f"width {cin}, may omit it)")
        out = cin
    plan.width[i], plan.axes[i] = int(out), [i]
    if groups > 1:
        for what, width in (("the input width", cin), ("the out", out)):
            if width % groups:
                _issue(plan.issues, f"{layer.at}.{layer.kind}.groups", f"groups {groups} does not divide {what} {width}")
        plan.grouped.append((i, groups))  # its input and output slots become `groups` equal parts


def _couple(plan: Plan, layer: Layer, first: int, v: int) -> bool:
    """Unify the channel axes of ``first`` and ``v`` (equal widths); ``False`` (and an issue) when they differ."""
    a, b = plan.axes[first], plan.axes[v]
    widths_a = [plan.width[plan.find(k)] for k in a]
    widths_b = [plan.width[plan.find(k)] for k in b]
    if sum(widths_a) != sum(widths_b) or plan.flat[first] != plan.flat[v]:
        _issue(plan.issues, f"{layer.at}.{layer.kind}.from", f"{layer.kind}: {_describe(first)} has {sum(widths_a)} "
                                                             f"channels, {_describe(v)} has {sum(widths_b)}")
        return False
    if widths_a == widths_b:
        for ka, kb in zip(a, b):
            plan.union(ka, kb)
    else:  # the same width split differently (e.g. a concat added to a conv): keep all of it
        plan.fixed.update(a + b)
    return True


def _range(plan: Plan, layer: Layer, width: int) -> tuple[int, int, int] | None:
    """``(start, stop, parts)`` of a chunk (part ``index`` of ``parts`` equal parts) or a slice (``start:stop``,
    parts 1) of ``width`` channels; ``None`` (and an issue) when it does not fit."""
    at, o = f"{layer.at}.{layer.kind}", layer.opts
    if layer.kind == "slice":
        start, stop = int(o["start"]), int(o["stop"])
        if not start < stop <= width:
            _issue(plan.issues, at, f"channels {start}:{stop} are not a non-empty range of the input's {width}")
            return None
        return start, stop, 1
    parts, index = int(o["parts"]), int(o["index"])
    if index >= parts:
        _issue(plan.issues, f"{at}.index", f"part {index} of {parts} does not exist (0..{parts - 1})")
        return None
    if width % parts:
        _issue(plan.issues, f"{at}.parts", f"{parts} parts do not divide the input width {width}")
        return None
    return index * (width // parts), (index + 1) * (width // parts), parts


def _part(plan: Plan, layer: Layer) -> None:
    """A chunk or a slice: a range of its input's channels, a view of the input's slot."""
    _map(plan, layer)
    i, x = layer.index, layer.inputs[0]
    span = _range(plan, layer, plan.channels(x))
    plan.width[i], plan.axes[i] = (span[1] - span[0]) if span else 1, [i]
    if span is not None and len(plan.axes[x]) == 1:
        plan.chunks[i] = (plan.axes[x][0], *span)
        first = plan.first_chunk.setdefault(plan.chunks[i], i)
        if first != i:  # the same part twice: one slot
            plan.union(first, i)
    else:  # a part of a concatenation: its boundaries would move when a joined slot is pruned
        plan.fixed.update([*plan.axes[x], i])


def _add(plan: Plan, layer: Layer) -> None:
    _map(plan, layer)
    first = layer.inputs[0]
    for v in layer.inputs[1:]:
        if _couple(plan, layer, first, v):
            plan.streams.update(plan.axes[first] + plan.axes[v])


def _mul(plan: Plan, layer: Layer) -> None:
    """Two inputs, broadcast: equal widths couple (a squeeze-excitation scale and the map it scales); a one-channel
    input (a spatial attention map) scales every channel of the other."""
    _map(plan, layer)
    if len(layer.inputs) != 2:
        _issue(plan.issues, f"{layer.at}.mul.from", f"mul takes exactly 2 inputs, got {len(layer.inputs)}")
        return
    a, b = layer.inputs
    widths = plan.channels(a), plan.channels(b)
    if widths[0] != widths[1] and 1 in widths:
        plan.axes[layer.index] = list(plan.axes[b if widths[0] == 1 else a])
        plan.fixed.update(plan.axes[a if widths[0] == 1 else b])
    else:
        _couple(plan, layer, a, b)


def _concat(plan: Plan, layer: Layer) -> None:
    _map(plan, layer)
    if any(plan.flat[v] for v in layer.inputs):
        _issue(plan.issues, f"{layer.at}.{layer.kind}.from", "concat joins feature maps; an input is flattened")
    plan.axes[layer.index] = [k for v in layer.inputs for k in plan.axes[v]]


_ROLES = {"map": _map, "produce": _produce, "part": _part, "add": _add, "mul": _mul, "concat": _concat}


# -- the families -------------------------------------------------------------------------------
@register_family
class Graph(Family):
    arch = "graph"
    with_from: ClassVar[bool] = True
    requires_num_classes = False

    @property
    def schema(self) -> dict:  # type: ignore[override]
        return layer_list_schema(self.arch, self.with_from)[0]

    @property
    def schema_defs(self) -> dict:  # type: ignore[override]
        return layer_list_schema(self.arch, self.with_from)[1]

    def emit(self, b: IRBuilder, data: dict) -> None:
        plan = analyze(data["layers"], b.input_shape[0], data.get("outputs"))
        if plan.issues:
            raise SpecError(plan.issues)
        _Emitter(b, plan).run()

    def write(self, data: dict, ir: IR, sizes: Mapping[str, int], selects: Mapping) -> dict:
        new = copy_data(data)
        plan = analyze(new["layers"], ir.input_shape[0], new.get("outputs"))
        for key in plan.width:
            if key == INPUT or key in plan.depthwise or plan.layers[key].role != "produce":
                continue
            layer, path = plan.layers[key], plan.slot_name(key)
            _set_option(new["layers"], layer, "out", sizes.get(path, ir.slots[path].size))
        for layer in plan.layers:  # a slice's bounds move with its parent's kept channels (``selects``: for a view
            if layer.kind == "slice" and plan.find(layer.index) in plan.views:  # slot, the parent's kept positions)
                path = plan.slot_name(layer.index)
                if path in selects:
                    parent_kept, start = selects[path], int(layer.opts["start"])
                    first = sum(1 for p in parent_kept if p < start)
                    item = new["layers"][layer.index]["slice"]
                    item["start"], item["stop"] = first, first + sizes[path]
        changed = bool(plan.depthwise)
        while changed:  # a depthwise conv follows its input's width, which may hold another depthwise conv's
            changed = False  # (GhostNet's concat of a map and its depthwise copy): until the widths settle
            resized = analyze(new["layers"], ir.input_shape[0], new.get("outputs"))
            for i in plan.depthwise:
                item = new["layers"][i]["conv"]
                for key in ("out", "groups"):
                    if key in item and item[key] != resized.cin[i]:
                        item[key], changed = resized.cin[i], True
        return new


@register_family
class Sequential(Graph):
    """``graph`` with every ``from`` implied: each layer reads the one before it."""

    arch = "sequential"
    with_from = False

    def legacy_names(self, ir: IR) -> dict[str, str]:
        """Before sequential became graph without ``from``, a sequential gate was ``slots.<i>.gate``, named
        after the layer producing its slot; it is now ``gates.<j>``, after the layer whose output it gates."""
        names: dict[str, str] = {}
        for node in ir.nodes_of("gate"):  # the producer of a gate's slot: the layer whose output axis starts it
            producer = next(n for n in ir.nodes if n.axis == node.axis and n.in_axis != n.axis and n.op != "gate")
            names[f"slots.{producer.name.rsplit('.', 1)[1]}.gate"] = node.name
        return names


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
        if reader is not None and not (self.plan.mixes(reader.index) or self.plan.pure(reader.index)):
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
        if layer.index in self.plan.depthwise:
            return self.b.axis(self.values[layer.inputs[0]])
        key = self.plan.find(layer.index)
        if key == layer.index:
            kind = self.plan.slot_kind(key)
            parts = self.plan.parts.get(key, 1) if kind != "fixed" else 1
            view = None
            if kind == "view":
                parent, start, stop = self.plan.views[key]
                view = (self.plan.slot_name(parent), start, stop)
            self.b.add_slot(layer.slot_path, self.plan.width[key], kind, parts=parts, view=view)
        return Axis((self.plan.slot_name(layer.index),))

    def run(self) -> None:
        for layer in self.plan.layers:
            self.values[layer.index] = self.emit(layer)
            if self.plan.pure(layer.index):
                self.gated.add(layer.index)
        if self.plan.outputs:
            self.b.outputs = [self.values[i] for i in self.plan.outputs]
            return
        last = len(self.plan.layers) - 1
        self.b.classifier(self.read(last, None))

    def emit(self, layer: Layer) -> str:
        refs = [self.read(v, layer) for v in layer.inputs]
        form = layer.op.layer
        assert form is not None
        out, at = None, layer.at
        if form.role == "produce":
            out = self.out_axis(layer)
            at = layer.at if layer.index in self.plan.depthwise else layer.slot_path
        elif form.role == "part":
            out = self.out_axis(layer)
        elif form.role in JOIN_ROLES:
            at = f"{layer.at}.{layer.kind}.from"
        return form.emit(self.b, layer.kind, f"layers.{layer.index}", refs, layer.opts, at, out)
