"""The one table of layer kinds and IR ops. Pure Python (torch is named, never imported).

Every op the IR holds is one :class:`OpKind` entry, and everything that treats ops
differently reads it:

* analytic counts (:mod:`slimspec.ir.counts`): ``params``, ``macs``;
* score sources and the weight transplant (:mod:`slimspec.pruning`): ``tensors``, ``sources``;
* the layer-list families (``arch: sequential`` / ``graph``): ``layer`` — the kind's JSON
  Schema fragment (whose ``default`` values are the only defaults), its short form, how it
  treats channels (``role``) and how it emits IR nodes (``emit``);
* the module factories (:mod:`slimspec.nn.net`): ``module`` / ``module_args`` name the torch
  class a node becomes (ops with their own factory there have none);
* the fx importer (:mod:`slimspec.interop`): ``imports`` — the torch modules, functions and
  tensor methods that mean this kind, with ``module_args`` read back off the module.

Adding an element-wise activation or a pool is one :func:`register_op` call (plus a factory in
``slimspec.nn`` when torch has no module for it); schema, builder, modules and importer pick
it up. Axis names in ``tensors``: ``"out"`` is the node's output axis, ``"in"`` its input
axis, ``GROUP_IN`` a grouped conv's per-group input channels (a depthwise conv's 1), ``None`` a
dim that carries no channels.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .graph import IR, Axis, Node

if TYPE_CHECKING:
    from .builder import IRBuilder

AxisName = str | None
Pair = int | tuple[int, int] | list[int]  # a kernel, stride or padding: square, or (h, w)
TensorDims = Mapping[str, tuple[AxisName, ...]]
Emit = Callable[["IRBuilder", str, str, Sequence[str], Mapping[str, Any], str, "Axis | None"], str]
# (builder, op, node name, input node names, options with defaults, spec path, output axis) -> node name
ROLES = ("map", "produce", "part", "add", "mul", "concat")
CONST_OPS: Mapping[str, str] = MappingProxyType({  # a ``const`` layer's op -> the Python operator it applies
    "add": "operator.add", "sub": "operator.sub", "mul": "operator.mul", "div": "operator.truediv"})


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


def _elementwise(b: IRBuilder, op: str, name: str, xs: Sequence[str], opts: Mapping[str, Any], at: str,
                 out: Axis | None) -> str:
    return b.elementwise(name, xs[0], op, at=at, **opts)


@dataclass(frozen=True)
class LayerForm:
    """How a kind is written as a layer of ``arch: sequential`` / ``graph``.

    ``role``: ``map`` keeps its input's channel axis; ``produce`` makes a new slot of width
    ``out`` (a prunable width); ``part`` takes a part of its input's channels (a chunk or a slice: its slot is a
    view of the input's); ``add`` unifies its inputs' axes (a residual stream); ``mul``
    unifies them too, broadcasting (a squeeze-excitation scale couples its channels to the map it
    scales, without making a stream); ``concat`` composes them. ``fixes_channels``: its output
    channels depend on all its input channels' positions (a LayerNorm's statistics span them; a
    channel shuffle interleaves them), so none can be removed without changing the others: its
    input's slots are fixed.
    """

    options: Mapping[str, dict] = field(default_factory=dict)  # option -> JSON Schema (with its "default")
    required: tuple[str, ...] = ()
    short: str | None = None  # ``conv: 16`` sets ``out``: the option a bare value sets
    short_schema: dict | None = None
    bare: bool = False  # may be written as a plain string (``- relu``)
    role: str = "map"
    spatial: bool = False  # reads a feature map (C, H, W), not a vector
    flattens: bool = False  # its output is a vector (flatten, linear)
    fixes_channels: bool = False  # every input channel's position matters: its input's slots are fixed
    emit: Emit = _elementwise

    def defaults(self) -> dict[str, Any]:
        return {key: schema["default"] for key, schema in self.options.items() if "default" in schema}


@dataclass(frozen=True)
class Imports:
    """The torch callables the fx importer maps to a kind, as dotted names (resolved there, lazily)."""

    modules: tuple[str, ...] = ()  # classes, e.g. "torch.nn.GELU" (options read off ``module_args``)
    functions: tuple[str, ...] = ()  # e.g. "torch.nn.functional.gelu" (their in-place "gelu_" too)
    methods: tuple[str, ...] = ()  # tensor methods, e.g. "sigmoid" (their in-place "sigmoid_" too)
    # option -> (position after the tensor, keyword) of a function's or method's argument that sets it;
    # any other argument makes the call unexpressible
    call_args: Mapping[str, tuple[int, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class OpKind:
    """Everything slimspec knows about one op (see the module docstring)."""

    name: str
    params: Callable[[IR, Node], int] = _none
    macs: Callable[[IR, Node], int] = _none
    tensors: Callable[[Node], TensorDims] = field(default=_static({}))
    sources: Callable[[IR, Node], Iterator[tuple[str, Source]]] = _no_sources
    identity: bool = False  # per-element or per-channel on its input's axis; no row in layer reports
    transparent: bool = False  # passes values through unchanged in eval: a gate folds through it
    layer: LayerForm | None = None  # None: an internal op no spec writes as a layer
    module: str | None = None  # dotted torch class the module factory instantiates (None: own factory)
    module_args: Mapping[str, str] = field(default_factory=dict)  # node attr -> constructor keyword / attribute
    imports: Imports = Imports()


def pair(value: Pair) -> tuple[int, int]:
    """``(h, w)`` of a square size or a pair."""
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def square(value: Pair) -> int | tuple[int, int]:
    """A size as the IR keeps it: an int when square (every square network keeps its ints), else ``(h, w)``."""
    h, w = pair(value)
    return h if h == w else (h, w)


def _area(value: Pair) -> int:
    h, w = pair(value)
    return h * w


# -- conv / linear ------------------------------------------------------------------------
def _groups(node: Node) -> int:
    return int(node.attr("groups", 1))  # a linear has no groups


def _conv_params(ir: IR, node: Node) -> int:
    cin, cout, area = ir.axis_size(node.in_axis), node.shape[0], _area(node.attr("kernel"))
    return cout * (cin // _groups(node)) * area + (cout if node.attr("bias") else 0)


def _conv_macs(ir: IR, node: Node) -> int:
    cin, area = ir.axis_size(node.in_axis), _area(node.attr("kernel"))
    cout, h, w = node.shape
    return cout * (cin // _groups(node)) * area * h * w


GROUP_IN = "group_in"  # a grouped conv's input dim: each filter reads the kept channels of its own group
_WEIGHTED: TensorDims = {"weight": ("out", "in"), "weight_mask": ("out", "in"), "bias": ("out",)}
_GROUPED: TensorDims = {"weight": ("out", GROUP_IN), "weight_mask": ("out", GROUP_IN), "bias": ("out",)}


def _conv_tensors(node: Node) -> TensorDims:
    """A grouped convolution's filters each read their own group's input channels (``GROUP_IN``)."""
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


# -- layer forms (JSON Schema fragments; "$defs" names are the spec schema's common ones) ------
_POS, _NONNEG = {"$ref": "#/$defs/posint"}, {"$ref": "#/$defs/nonnegint"}
_BIAS = {"type": "boolean", "title": "true or false", "default": True}


def _or_pair(item: dict, title: str) -> dict:
    return {"anyOf": [item, {"type": "array", "items": item, "minItems": 2, "maxItems": 2}],
            "title": f"{title} or a pair [h, w] of them"}


_SIZE, _PADDING = _or_pair(_POS, "a positive integer"), _or_pair(_NONNEG, "a non-negative integer")
_EPS = {"type": "number", "exclusiveMinimum": 0, "default": 1e-5, "title": "a positive number",
        "description": "Added to the variance (torch's eps)."}
_WIDTH = {"type": "integer", "minimum": 1, "title": "a positive width"}


def _conv_emit(b: IRBuilder, op: str, name: str, xs: Sequence[str], o: Mapping[str, Any], at: str, out: Axis | None) -> str:
    return b.conv(name, xs[0], out, o["kernel"], o["stride"], o["padding"], o["bias"], at=at, groups=o["groups"],
                  dilation=o["dilation"])


_POOL = LayerForm(
        {"kernel": _SIZE, "stride": {**_SIZE, "description": "Default: the kernel size."},
         "padding": {**_PADDING, "default": 0},
         "ceil": {"type": "boolean", "default": False, "title": "true or false",
                  "description": "Round the output size up (torch's ceil_mode)."}}, ("kernel",), "kernel",
        {"type": "integer", "minimum": 1, "title": "a positive kernel size"}, spatial=True,
        emit=lambda b, op, name, xs, o, at, out: b.pool(name, xs[0], op, o["kernel"], o.get("stride"), o["padding"],
                                                     at=at, ceil=o["ceil"]))


def _activation(name: str, module: str, functions: Sequence[str] = (), methods: Sequence[str] = (),
                **options: tuple[str, dict, int]) -> OpKind:
    """An element-wise activation: one entry, written as a bare string when its options keep their defaults.

    ``options``: spec option -> (torch's keyword, its JSON Schema with the default, its position in the
    functional call after the tensor).
    """
    return OpKind(name, identity=True, layer=LayerForm({key: schema for key, (_, schema, _) in options.items()},
                                                       bare=True),
                  module=module, module_args={key: kw for key, (kw, _, _) in options.items()},
                  imports=Imports((module,), tuple(functions), tuple(methods),
                                  {key: (pos, kw) for key, (kw, _, pos) in options.items()}))


def _number(default: float, title: str, **bounds: float) -> dict:
    return {"type": "number", "default": default, "title": title, **bounds}


_PADS = {"type": "array", "items": _NONNEG, "minItems": 4, "maxItems": 4,
         "title": "a list [left, right, top, bottom] of 4 non-negative integers"}


def _channel_params(ir: IR, node: Node) -> int:
    return 2 * node.shape[0]  # a weight and a bias per channel


_AFFINE: TensorDims = {"weight": ("out",), "bias": ("out",)}

_OPS: tuple[OpKind, ...] = (
    OpKind("input", identity=True),
    OpKind("conv", _conv_params, _conv_macs, _conv_tensors, _weighted_sources, layer=LayerForm(
        {"out": {**_POS, "description": "Output channels (a prunable slot); may be omitted for a depthwise conv."},
         "kernel": {**_SIZE, "default": 3}, "stride": {**_SIZE, "default": 1}, "padding": {**_PADDING, "default": 0},
         "dilation": {**_SIZE, "default": 1},
         "groups": {**_POS, "default": 1, "description": "Depthwise when groups = input width = out."},
         "bias": _BIAS}, (), "out", _WIDTH, role="produce", spatial=True, emit=_conv_emit)),
    OpKind("linear", _linear_params, _linear_macs, _static(_WEIGHTED), _weighted_sources, layer=LayerForm(
        {"out": _POS, "bias": _BIAS}, ("out",), "out", _WIDTH, role="produce", flattens=True,
        emit=lambda b, op, name, xs, o, at, out: b.linear(name, xs[0], out, o["bias"], at=at))),
    OpKind("bn", lambda ir, n: 2 * n.shape[0],
           tensors=_static({"weight": ("out",), "bias": ("out",), "running_mean": ("out",), "running_var": ("out",)}),
           sources=_per_channel_sources("bn"), layer=LayerForm(
               {"eps": {"type": "number", "exclusiveMinimum": 0, "default": 1e-5, "title": "a positive number",
                        "description": "BatchNorm epsilon."}}, bare=True,
               emit=lambda b, op, name, xs, o, at, out: b.bn(name, xs[0], at=at, eps=o["eps"]))),
    _activation("relu", "torch.nn.ReLU", ("torch.nn.functional.relu", "torch.relu"), ("relu",)),
    _activation("relu6", "torch.nn.ReLU6", ("torch.nn.functional.relu6",)),
    _activation("silu", "torch.nn.SiLU", ("torch.nn.functional.silu",)),
    _activation("hardswish", "torch.nn.Hardswish", ("torch.nn.functional.hardswish",)),
    _activation("sigmoid", "torch.nn.Sigmoid", ("torch.sigmoid", "torch.nn.functional.sigmoid"), ("sigmoid",)),
    _activation("tanh", "torch.nn.Tanh", ("torch.tanh", "torch.nn.functional.tanh"), ("tanh",)),
    _activation("gelu", "torch.nn.GELU", ("torch.nn.functional.gelu",),
                approximate=("approximate", {"enum": ["none", "tanh"], "default": "none", "title": "'none' or 'tanh'"},
                             1)),
    _activation("hardsigmoid", "torch.nn.Hardsigmoid", ("torch.nn.functional.hardsigmoid",)),
    _activation("mish", "torch.nn.Mish", ("torch.nn.functional.mish",)),
    _activation("leaky_relu", "torch.nn.LeakyReLU", ("torch.nn.functional.leaky_relu",),
                slope=("negative_slope", _number(0.01, "a number"), 1)),
    _activation("elu", "torch.nn.ELU", ("torch.nn.functional.elu",), alpha=("alpha", _number(1.0, "a number"), 1)),
    _activation("hardtanh", "torch.nn.Hardtanh", ("torch.nn.functional.hardtanh",),
                min=("min_val", _number(-1.0, "a number"), 1), max=("max_val", _number(1.0, "a number"), 2)),
    OpKind("const", identity=True, module="slimspec.nn.ops.Const", module_args={"op": "op", "value": "value"},
           layer=LayerForm({"op": {"enum": list(CONST_OPS), "title": f"one of {', '.join(CONST_OPS)}",
                                   "description": "The operator applied: x <op> value."},
                            "value": {"type": "number", "title": "a number"}}, ("op", "value"))),
    OpKind("scale", lambda ir, n: n.shape[0], tensors=_static({"weight": ("out",)}), layer=LayerForm(bare=True)),
    OpKind("droppath", identity=True, transparent=True, module="slimspec.nn.ops.DropPath",
           module_args={"p": "p", "mode": "mode"},
           layer=LayerForm({"p": {"$ref": "#/$defs/dropout", "description": "Drop probability in training."},
                            "mode": {"enum": ["row", "batch"], "default": "row", "title": "'row' or 'batch'"}},
                           ("p",), "p", {"$ref": "#/$defs/dropout", "title": "a number in [0, 1)"})),
    OpKind("layernorm", _channel_params, tensors=_static(_AFFINE), layer=LayerForm(
        {"eps": _EPS}, bare=True, fixes_channels=True)),
    OpKind("groupnorm", _channel_params, tensors=_static(_AFFINE), layer=LayerForm(
        {"groups": _POS, "eps": _EPS}, ("groups",), "groups",
        {"type": "integer", "minimum": 1, "title": "a positive number of groups"}, fixes_channels=True)),
    OpKind("shuffle", identity=True, module="slimspec.nn.ops.ChannelShuffle", module_args={"groups": "groups"},
           layer=LayerForm({"groups": {**_POS, "description": "ShuffleNet's channel shuffle (Zhang et al. 2018): "
                                                             "view (groups, C/groups), transpose, flatten."}},
                           ("groups",), "groups", {"type": "integer", "minimum": 1, "title": "a positive number of groups"},
                           spatial=True, fixes_channels=True)),
    OpKind("identity", identity=True, transparent=True, layer=LayerForm(bare=True), module="torch.nn.Identity",
           imports=Imports(("torch.nn.Identity",))),
    OpKind("dropout", identity=True, transparent=True, module="torch.nn.Dropout", module_args={"p": "p"},
           imports=Imports(("torch.nn.Dropout",)),
           layer=LayerForm({"p": {"$ref": "#/$defs/dropout"}}, ("p",), "p",
                           {"$ref": "#/$defs/dropout", "title": "a number in [0, 1)"})),
    OpKind("gate", tensors=_static({"weight": ("out",), "mask": ("out",)}), sources=_per_channel_sources("gate"),
           identity=True),
    OpKind("blockgate", sources=_blockgate_sources, identity=True),
    OpKind("maxpool", layer=_POOL),
    OpKind("avgpool", layer=_POOL),
    OpKind("gap"),
    OpKind("adaptive_avgpool", module="torch.nn.AdaptiveAvgPool2d", module_args={"size": "output_size"},
           layer=LayerForm({"size": _SIZE}, ("size",), "size", {**_SIZE, "title": "a positive output size or a pair "
                                                                                    "[h, w] of them"}, spatial=True,
                           emit=lambda b, op, name, xs, o, at, out: b.adaptive_avgpool(name, xs[0], o["size"], at=at))),
    OpKind("flatten", transparent=True, module="torch.nn.Flatten",
           layer=LayerForm(bare=True, flattens=True, emit=lambda b, op, name, xs, o, at, out: b.flatten(name, xs[0], at=at))),
    OpKind("upsample", module="torch.nn.Upsample", module_args={"scale": "scale_factor", "mode": "mode"},
           layer=LayerForm({"scale": {**_POS, "description": "Integer upsampling factor."},
                            "mode": {"enum": ["nearest"], "default": "nearest", "title": "'nearest'"}},
                           ("scale",), "scale", {"type": "integer", "minimum": 1, "title": "a positive integer factor"},
                           spatial=True, emit=lambda b, op, name, xs, o, at, out: b.upsample(name, xs[0], o["scale"],
                                                                                            o["mode"], at=at))),
    OpKind("zeropad", module="torch.nn.ZeroPad2d", module_args={"padding": "padding"},
           layer=LayerForm({"padding": _PADS}, ("padding",), "padding", _PADS, spatial=True,
                           emit=lambda b, op, name, xs, o, at, out: b.zeropad(name, xs[0], o["padding"], at=at))),
    OpKind("pad"),
    OpKind("select", sources=_select_sources),
    OpKind("chunk", module="slimspec.nn.ops.Chunk", module_args={"parts": "parts", "index": "index"},
           layer=LayerForm({"parts": {**_POS, "description": "Equal parts the channels are split into (torch.chunk)."},
                            "index": {**_NONNEG, "description": "Which part (0 is the first)."}}, ("parts", "index"),
                           role="part", emit=lambda b, op, name, xs, o, at, out: b.part(name, xs[0], out, "chunk", at=at,
                                                                                      parts=o["parts"],
                                                                                      index=o["index"]))),
    OpKind("slice", module="slimspec.nn.ops.ChannelSlice", module_args={"start": "start", "stop": "stop"},
           layer=LayerForm({"start": {**_NONNEG, "description": "First channel kept."},
                            "stop": {**_POS, "description": "One past the last channel kept (x[:, start:stop])."}},
                           ("start", "stop"), role="part",
                           emit=lambda b, op, name, xs, o, at, out: b.part(name, xs[0], out, "slice", at=at,
                                                                          start=o["start"], stop=o["stop"]))),
    OpKind("add", layer=LayerForm(role="add", emit=lambda b, op, name, xs, o, at, out: b.add_all(name, xs, at=at))),
    OpKind("mul", layer=LayerForm(role="mul", emit=lambda b, op, name, xs, o, at, out: b.mul(name, xs, at=at))),
    OpKind("concat", layer=LayerForm(role="concat", emit=lambda b, op, name, xs, o, at, out: b.concat(name, xs, at=at))),
)

_TABLE: dict[str, OpKind] = {op.name: op for op in _OPS}
OPS: Mapping[str, OpKind] = MappingProxyType(_TABLE)
_version = [0]


def register_op(kind: OpKind) -> OpKind:
    """Add a kind to the table (at run time too): schema, builder, modules and importer see it at once."""
    if kind.name in _TABLE:
        raise ValueError(f"op '{kind.name}' is already in the op table")
    if kind.layer is not None and kind.layer.role not in ROLES:
        raise ValueError(f"op '{kind.name}': role must be one of {', '.join(ROLES)}, got '{kind.layer.role}'")
    _TABLE[kind.name] = kind
    _version[0] += 1
    return kind


def unregister_op(name: str) -> None:
    """Remove a kind added with :func:`register_op` (tests, plugins that unload)."""
    if name in {op.name for op in _OPS}:
        raise ValueError(f"op '{name}' is built in")
    del _TABLE[name]
    _version[0] += 1


def table_version() -> int:
    """Changes whenever the table does: caches of what is derived from it key on it."""
    return _version[0]


def layer_kinds() -> dict[str, OpKind]:
    """The kinds a layer list may use, in table order."""
    return {name: op for name, op in _TABLE.items() if op.layer is not None}


def slot_sources(ir: IR) -> dict[str, list[Source]]:
    """Map slot path -> every place its channels appear (BN, producing filters, gates, readers)."""
    found: dict[str, list[Source]] = {}
    for node in ir.nodes:
        for slot, source in OPS[node.op].sources(ir, node):
            found.setdefault(slot, []).append(source)
    return found
