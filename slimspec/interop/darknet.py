"""Darknet in and out: a ``.cfg`` (+ ``.weights``) <-> an ``arch: graph`` spec (+ safetensors).

Redmon & Farhadi's YOLOv3 ("YOLOv3: An Incremental Improvement", 2018) and its cfg format, as the
PyTorch ports read it (eriklindernoren/PyTorch-YOLOv3 ``models.py``, Lam1360/YOLOv3-model-pruning), and
AlexeyAB's grouped ``[route]`` (``route_layer.c``) that YOLOv4-tiny's CSP blocks use:

==================  ==============================================================================
``[convolutional]``  ``conv`` (``bias`` only without BN), ``bn`` if ``batch_normalize=1``, then the
                     activation (``leaky`` -> ``leaky_relu: {slope: 0.1}``, ``logistic`` ->
                     ``sigmoid``, ``swish`` -> ``silu``, ``relu``, ``mish``; ``linear``: none)
``[shortcut]``       ``add: {from: [-1, X]}`` (one residual stream slot for every conv it joins)
``[route]``          one layer: ``identity: {from: X}``; several: ``concat: {from: [...]}``; with
                     ``groups=G group_id=I`` (part I of G equal channel parts): ``chunk: {from: X, parts: G,
                     index: I}``, for several layers a ``chunk`` of each, then a ``concat`` of them (exported
                     as one route again unless each chunk carries a layer number of its own)
``[upsample]``       ``upsample: stride`` (nearest)
``[maxpool]``        ``maxpool: {kernel: size, stride, padding: (size-1)//2}``; ``size=2 stride=1``
                     is Darknet's asymmetric pad: ``zeropad: [0, 1, 0, 1]`` first
``[yolo]``           an entry of ``outputs`` (the head conv's raw map; the decode stays outside)
==================  ==============================================================================

The spec keeps what has no layer of its own as YAML comments the export reads back: each Darknet
layer's number on its first graph layer (``# 12 convolutional``), the ``[net]`` options (less
``width``, ``height``, ``channels``: the spec's ``input``) on ``# [net] ...`` lines, and every
``[yolo]`` section (``mask``, ``anchors``, ``classes``, ...) on its ``outputs`` entry. A route's
or shortcut's layer reference keeps its style: a negative (relative) cfg reference becomes a
negative graph offset, an absolute one an absolute graph index, and back.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from ..document import Spec, spec_from_text
from ..errors import ModelImportError, WeightsError
from ..ir.ops import pair
from .darknet_cfg import Section, format_cfg, option_text, parse_option_text, read_cfg
from .darknet_weights import Header, read_weights_file, weights_writer

__all__ = ["import_darknet", "darknet_sections", "export_darknet", "weights_layout", "HEADER_KEY"]

HEADER_KEY = "darknet.header"  # weights-file metadata: the .weights header the tensors came with

ACTIVATIONS: dict[str, Any] = {  # Darknet activation -> the graph layer after the conv (None: linear)
    "linear": None,
    "leaky": {"leaky_relu": {"slope": 0.1}},
    "relu": "relu",
    "logistic": "sigmoid",
    "swish": "silu",
    "mish": "mish",
}
_NET_INPUT = ("width", "height", "channels")  # the spec's input; not repeated in the [net] comment
_COMMENT_COLUMN = 56


# -- cfg -> spec ------------------------------------------------------------------------------
@dataclass
class _Import:
    """The graph layers made so far and where each Darknet layer's output went."""

    source: str
    layers: list[tuple[Any, str]] = field(default_factory=list)  # (layer item, line comment)
    out: dict[int, int] = field(default_factory=dict)  # Darknet layer -> graph index of its output
    yolo: set[int] = field(default_factory=set)  # Darknet layers that are [yolo] heads
    outputs: list[tuple[int, str]] = field(default_factory=list)  # (graph index, comment)
    filters: dict[int, int] = field(default_factory=dict)  # Darknet conv layer -> its filters
    width: dict[int, int] = field(default_factory=dict)  # Darknet layer (-1: the input) -> its output channels

    def add(self, item: Any, comment: str = "") -> int:
        self.layers.append((item, comment))
        return len(self.layers) - 1

    def target(self, index: int, section: Section, ref: int) -> int:
        """The Darknet layer a reference ``ref`` (relative if negative) of layer ``index`` names."""
        target = index + ref if ref < 0 else ref
        if not 0 <= target < index:
            raise ModelImportError(f"{section.where(self.source, index)}: layer reference {ref} names layer "
                                   f"{target}, which does not come before it")
        if target in self.yolo:
            raise ModelImportError(f"{section.where(self.source, index)}: reads layer {target}, a [yolo] head "
                                   "(its decoded output is outside the network)")
        return target

    def ref(self, index: int, section: Section, ref: int, at: int) -> int:
        """The graph ``from`` of the layer at graph index ``at`` reading Darknet layer ``index + ref`` (or ``ref``)."""
        graph = self.out[self.target(index, section, ref)]
        return graph - at if ref < 0 else graph

    def follows(self, index: int, section: Section) -> None:
        """Layer ``index`` reads the one before it: refused when that is a [yolo] head."""
        if index - 1 in self.yolo:
            raise ModelImportError(f"{section.where(self.source, index)}: reads layer {index - 1}, a [yolo] head "
                                   "(its decoded output is outside the network)")


def _int(section: Section, key: str, default: int | None, where: str) -> int:
    value = section.options.get(key)
    if value is None:
        if default is None:
            raise ModelImportError(f"{where}: '{key}' is required")
        return default
    try:
        return int(value)
    except ValueError:
        raise ModelImportError(f"{where}: {key}={value}: expected an integer") from None


def _ints(text: str, where: str, key: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v != ""]
    except ValueError:
        raise ModelImportError(f"{where}: {key}={text}: expected integers separated by commas") from None


def _known(section: Section, keys: tuple[str, ...], where: str) -> None:
    for key in section.options:
        if key not in keys:
            raise ModelImportError(f"{where}: option '{key}' is not supported (supported: {', '.join(keys)})")


def _activation(section: Section, where: str, default: str) -> Any:
    name = section.options.get("activation", default)
    if name not in ACTIVATIONS:
        raise ModelImportError(f"{where}: activation={name} is not supported (supported: {', '.join(ACTIVATIONS)})")
    return ACTIVATIONS[name]


def _convolutional(ctx: _Import, index: int, section: Section) -> None:
    where = section.where(ctx.source, index)
    _known(section, ("batch_normalize", "filters", "size", "stride", "pad", "padding", "groups", "activation"), where)
    ctx.follows(index, section)
    size, stride = _int(section, "size", 1, where), _int(section, "stride", 1, where)
    filters, groups = _int(section, "filters", 1, where), _int(section, "groups", 1, where)
    bn = bool(_int(section, "batch_normalize", 0, where))
    padding = size // 2 if _int(section, "pad", 0, where) else _int(section, "padding", 0, where)
    for key, value in (("filters", filters), ("size", size), ("stride", stride), ("groups", groups)):
        if value < 1:
            raise ModelImportError(f"{where}: {key}={value}: expected a positive integer")
    conv: dict[str, Any] = {"out": filters, "kernel": size}
    if stride != 1:
        conv["stride"] = stride
    if padding:
        conv["padding"] = padding
    if groups != 1:
        conv["groups"] = groups
    if bn:
        conv["bias"] = False
    ctx.add({"conv": conv}, f"{index} convolutional")
    ctx.width[index] = filters
    if bn:
        ctx.add("bn")
    act = _activation(section, where, "logistic")  # Darknet's default activation
    if act is not None:
        ctx.add(act)
    ctx.filters[index] = filters


def _shortcut(ctx: _Import, index: int, section: Section) -> None:
    where = section.where(ctx.source, index)
    _known(section, ("from", "activation"), where)
    ctx.follows(index, section)
    refs = _ints(section.options.get("from", ""), where, "from")
    if len(refs) != 1:
        raise ModelImportError(f"{where}: from= must name one layer (a weighted multi-input shortcut is not supported)")
    at = len(ctx.layers)
    ctx.add({"add": {"from": [-1, ctx.ref(index, section, refs[0], at)]}}, f"{index} shortcut")
    ctx.width[index] = ctx.width[index - 1]
    act = _activation(section, where, "linear")
    if act is not None:
        ctx.add(act)


def _route(ctx: _Import, index: int, section: Section) -> None:
    where = section.where(ctx.source, index)
    _known(section, ("layers", "groups", "group_id"), where)
    refs = _ints(section.options.get("layers", ""), where, "layers")
    if not refs:
        raise ModelImportError(f"{where}: layers= names no layer")
    if "group_id" in section.options and "groups" not in section.options:
        raise ModelImportError(f"{where}: group_id= without groups= (group_id picks one of groups equal parts)")
    groups, group_id = _int(section, "groups", 1, where), _int(section, "group_id", 0, where)
    if groups < 1:
        raise ModelImportError(f"{where}: groups={groups}: expected a positive integer")
    if not 0 <= group_id < groups:
        raise ModelImportError(f"{where}: group_id={group_id}: expected 0..{groups - 1} (one of groups={groups} parts)")
    at = len(ctx.layers)
    ctx.width[index] = sum(ctx.width[ctx.target(index, section, ref)] for ref in refs) // groups
    if groups == 1:
        froms = [ctx.ref(index, section, ref, at) for ref in refs]
        if len(froms) == 1:
            ctx.add({"identity": {"from": froms[0]}}, f"{index} route")
        else:
            ctx.add({"concat": {"from": froms}}, f"{index} route")
        return
    # AlexeyAB's route_layer.c: part group_id of groups equal parts of each input, concatenated
    for k, ref in enumerate(refs):
        target = ctx.target(index, section, ref)
        if ctx.width[target] % groups:
            raise ModelImportError(f"{where}: groups={groups} does not divide the {ctx.width[target]} channels of "
                                   f"layer {target} (Darknet splits each input into groups equal parts)")
        ctx.add({"chunk": {"from": ctx.ref(index, section, ref, at + k), "parts": groups, "index": group_id}},
                "" if k else f"{index} route")
    if len(refs) > 1:
        ctx.add({"concat": {"from": list(range(-len(refs), 0))}})


def _upsample(ctx: _Import, index: int, section: Section) -> None:
    where = section.where(ctx.source, index)
    _known(section, ("stride",), where)
    ctx.follows(index, section)
    stride = _int(section, "stride", 2, where)
    if stride < 1:
        raise ModelImportError(f"{where}: stride={stride}: only upsampling (a positive stride) is supported")
    ctx.add({"upsample": stride}, f"{index} upsample")
    ctx.width[index] = ctx.width[index - 1]


def _maxpool(ctx: _Import, index: int, section: Section) -> None:
    where = section.where(ctx.source, index)
    _known(section, ("size", "stride"), where)
    ctx.follows(index, section)
    size = _int(section, "size", None, where)
    stride = _int(section, "stride", 1, where)
    comment = f"{index} maxpool"
    ctx.width[index] = ctx.width[index - 1]
    if size == 2 and stride == 1:  # Darknet pads right and bottom by one: the map keeps its size
        ctx.add({"zeropad": [0, 1, 0, 1]}, comment)
        ctx.add({"maxpool": {"kernel": 2, "stride": 1}})
    elif size == stride:
        ctx.add({"maxpool": size}, comment)
    else:
        pool: dict[str, Any] = {"kernel": size, "stride": stride}
        if (size - 1) // 2:
            pool["padding"] = (size - 1) // 2
        ctx.add({"maxpool": pool}, comment)


def _yolo(ctx: _Import, index: int, section: Section) -> None:
    where = section.where(ctx.source, index)
    ctx.follows(index, section)
    if index == 0:
        raise ModelImportError(f"{where}: a [yolo] head needs a layer before it")
    classes = _int(section, "classes", 20, where)
    mask = _ints(section.options.get("mask", ""), where, "mask")
    anchors = len(mask) if mask else _int(section, "num", 1, where)
    width = ctx.filters.get(index - 1)
    if width is not None and width != anchors * (5 + classes):
        raise ModelImportError(f"{where}: the conv before it has filters={width}, a head of {anchors} anchors and "
                               f"{classes} classes needs {anchors} * (5 + {classes}) = {anchors * (5 + classes)}")
    ctx.yolo.add(index)
    ctx.outputs.append((ctx.out[index - 1], f"{index} [yolo] {option_text(section.options)}"))


_IMPORTERS: dict[str, Callable[[_Import, int, Section], None]] = {
    "convolutional": _convolutional, "shortcut": _shortcut, "route": _route, "upsample": _upsample,
    "maxpool": _maxpool, "yolo": _yolo,
}


def _flow(value: Any) -> str:
    """A YAML flow rendering of layer data (ints, floats, bools, strings, lists, mappings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_flow(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(item) for item in value) + "]"
    return str(value)


def _item(item: Any) -> str:
    """A layer entry in block style: ``bn``, ``conv: {out: 16, kernel: 3}``."""
    if isinstance(item, str):
        return item
    (kind, value), = item.items()
    return f"{kind}: {_flow(value)}"


def _commented(line: str, comment: str) -> str:
    return f"{line.ljust(_COMMENT_COLUMN)}  # {comment}" if comment else line


def _scalar(text: str) -> str:
    """``text`` as a YAML string: plain when it reads back as itself, else double-quoted."""
    return text if yaml.safe_load(text) == text and ":" not in text and "#" not in text else json.dumps(text)


def _wrapped(prefix: str, text: str, width: int = 100) -> list[str]:
    lines, line = [], ""
    for item in text.split():
        if line and len(prefix) + len(line) + len(item) + 1 > width:
            lines.append(f"{prefix}{line}")
            line = ""
        line = f"{line} {item}" if line else item
    return lines + ([f"{prefix}{line}"] if line or not lines else [])


def cfg_spec_text(sections: list[Section], name: str, source: str,
                  input_shape: tuple[int, int, int] | None = None) -> str:
    """The graph spec text of a parsed cfg (see the module docstring for the mapping)."""
    if sections[0].kind != "net":
        raise ModelImportError(f"{sections[0].where(source)}: the first section must be [net]")
    net = sections[0]
    where = net.where(source)
    if input_shape is None:
        input_shape = (_int(net, "channels", 3, where), _int(net, "height", None, where),
                       _int(net, "width", None, where))
    ctx = _Import(source, width={-1: input_shape[0]})
    for index, section in enumerate(sections[1:]):
        importer = _IMPORTERS.get(section.kind)
        if importer is None:
            raise ModelImportError(f"{section.where(source, index)}: [{section.kind}] is not supported (supported: "
                                   f"{', '.join(f'[{k}]' for k in _IMPORTERS)})")
        importer(ctx, index, section)
        if index not in ctx.yolo:
            ctx.out[index] = len(ctx.layers) - 1
    if not ctx.outputs:
        raise ModelImportError(f"{source}: no [yolo] section: a Darknet detector returns its [yolo] heads' inputs")
    net_text = option_text({k: v for k, v in net.options.items() if k not in _NET_INPUT})
    lines = [f"# Imported from the Darknet cfg {Path(source).name}. Comments keep what `slimspec export --format",
             "# darknet` writes back: the cfg's layer numbers, its [net] options and its [yolo] heads (on outputs).",
             *_wrapped("# [net] ", net_text),
             "slimspec: 1", f"name: {_scalar(name)}", "arch: graph", f"input: {_flow(list(input_shape))}", "layers:"]
    lines += [_commented(f"  - {_item(item)}", comment) for item, comment in ctx.layers]
    lines += ["outputs:"] + [_commented(f"  - {graph}", comment) for graph, comment in ctx.outputs]
    return "\n".join(lines) + "\n"


def weights_layout(spec: Spec) -> list[tuple[str, tuple[int, ...]]]:
    """``(state key, shape)`` of every float a ``.weights`` file holds for ``spec``, in file order."""
    layout: list[tuple[str, tuple[int, ...]]] = []
    items = spec.data["layers"]
    ir = spec.ir
    for g, item in enumerate(items):
        if not (isinstance(item, dict) and "conv" in item):
            continue
        node = ir.node(f"layers.{g}")
        out, cin = node.shape[0], ir.axis_size(node.in_axis)
        kh, kw = pair(node.attr("kernel"))
        weight = (f"layers.{g}.weight", (out, cin // int(node.attr("groups", 1)), kh, kw))
        if g + 1 < len(items) and _kind(items[g + 1]) == "bn":
            bn = f"layers.{g + 1}"
            layout += [(f"{bn}.bias", (out,)), (f"{bn}.weight", (out,)), (f"{bn}.running_mean", (out,)),
                       (f"{bn}.running_var", (out,)), weight]
        else:
            layout += [(f"layers.{g}.bias", (out,)), weight]
    return layout


def _kind(item: Any) -> str:
    return item if isinstance(item, str) else next(iter(item))


def _safe_name(path: str | os.PathLike) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(path).stem) or "darknet"


def import_darknet(cfg: str | os.PathLike, *, weights: str | os.PathLike | None = None,
                   input_shape: tuple[int, int, int] | None = None, name: str | None = None,
                   seed: int = 0) -> tuple[Spec, dict[str, torch.Tensor], dict[str, str]]:
    """``(spec, state dict, weights metadata)`` of a Darknet cfg and, optionally, its ``.weights``.

    ``input_shape`` replaces the ``[net]`` section's ``channels, height, width``; without
    ``weights`` the model is randomly initialized from ``seed``. The metadata keeps the
    ``.weights`` header (:data:`HEADER_KEY`), so an export writes the same bytes back.
    """
    from ..model import build
    from ..nn import SpecNet

    sections = read_cfg(cfg)
    if name is not None and not name.strip():
        raise ModelImportError(f"{cfg}: the spec name is empty (leave it out for the cfg's name)")
    text = cfg_spec_text(sections, name or _safe_name(cfg), str(cfg), input_shape)
    spec = spec_from_text(text, f"darknet:{cfg}")
    if weights is None:
        model = build(spec, seed=seed)
        return spec, {key: value.detach() for key, value in model.state_dict().items()}, {}
    header, state = read_weights_file(weights, weights_layout(spec))
    with torch.device("meta"):  # the state's other keys (BN batch counters), without a random init
        model = SpecNet(spec)
    for key, value in model.state_dict().items():
        if key not in state:
            state[key] = torch.zeros(value.shape, dtype=value.dtype)
    return spec, state, {HEADER_KEY: header.text()}


# -- spec -> cfg ------------------------------------------------------------------------------
@dataclass
class _Export:
    """Walks a graph spec's layers, grouping them into Darknet sections."""

    items: list
    label: str
    sections: list[Section] = field(default_factory=list)
    darknet: dict[int, int] = field(default_factory=dict)  # graph index of a section's output -> its layer
    numbered: set[int] | None = None  # graph layers with a ``# N kind`` comment (None: the spec has none)

    def options(self, g: int) -> tuple[str, dict, Any]:
        """``(kind, options with defaults, from)`` of graph layer ``g``."""
        from ..families.graph import layer_options

        item = self.items[g]
        kind = _kind(item)
        opts, _ = layer_options(kind, None if isinstance(item, str) else item[kind])
        return kind, opts, opts.pop("from", -1)

    def fail(self, g: int, message: str) -> ModelImportError:
        return ModelImportError(f"{self.label}: layers[{g}]: {message}")

    def ref(self, g: int, ref: int) -> str:
        """The cfg reference (relative when the graph's is) for graph ``from`` value ``ref`` of layer ``g``."""
        target = g + ref if ref < 0 else ref
        if target not in self.darknet:
            raise self.fail(g, f"reads layers[{target}], which is not the output of a Darknet layer (a conv's "
                               "activation, a shortcut, a route, an upsample or a maxpool)")
        index = self.darknet[target]
        return str(index - len(self.sections) + 1 if ref < 0 else index)  # the [net] section is not a layer

    def unnumbered(self, g: int) -> bool:
        """Graph layer ``g`` starts no Darknet layer of the cfg the spec was imported from (as far as it says)."""
        return self.numbered is None or g not in self.numbered

    def previous(self, g: int, ref: Any) -> None:
        """Layer ``g`` must read the graph layer before it, which must end the previous Darknet layer."""
        if ref != -1 or g - 1 not in self.darknet or self.darknet[g - 1] != len(self.sections) - 2:
            raise self.fail(g, "a Darknet layer reads the layer just before it (here it reads another one)")

    def activation(self, g: int) -> tuple[str, int]:
        """``(Darknet activation, layers used)`` of the layer at ``g`` (``linear``, 0 when it is none)."""
        if g < len(self.items):
            kind, opts, ref = self.options(g)
            if ref == -1:
                for name, layer in ACTIVATIONS.items():
                    if layer is not None and _kind(layer) == kind:
                        want = {} if isinstance(layer, str) else layer[kind]
                        if all(opts.get(k) == v for k, v in want.items()):
                            return name, 1
                        raise self.fail(g, f"{kind} {opts} has no Darknet activation (Darknet's is {want})")
        return "linear", 0


def _x_conv(ex: _Export, g: int, opts: dict, ref: Any) -> int:
    if g:
        ex.previous(g, ref)
    elif ref != -1:
        raise ex.fail(g, "the first layer reads the input")
    used = 1
    bn = g + 1 < len(ex.items) and _kind(ex.items[g + 1]) == "bn"
    if bn:
        _, bn_opts, bn_ref = ex.options(g + 1)
        if bn_ref != -1 or bn_opts.get("eps", 1e-5) != 1e-5:
            raise ex.fail(g + 1, "a Darknet BatchNorm follows its conv, with eps 1e-5")
        used += 1
    if bn == bool(opts["bias"]):
        raise ex.fail(g, "a Darknet convolution has a bias exactly when it has no BatchNorm")
    kernel, stride, padding = opts["kernel"], opts["stride"], opts["padding"]
    if any(isinstance(v, list) for v in (kernel, stride, padding)) or opts["dilation"] != 1:
        raise ex.fail(g, "Darknet convolutions are square, without dilation")
    activation, act_used = ex.activation(g + used)
    section = {"batch_normalize": "1"} if bn else {}
    section.update(filters=str(opts["out"]), size=str(kernel), stride=str(stride))
    if padding == kernel // 2:
        section["pad"] = "1"
    else:
        section["padding"] = str(padding)
    if opts["groups"] != 1:
        section["groups"] = str(opts["groups"])
    section["activation"] = activation
    ex.sections.append(Section("convolutional", section))
    return used + act_used


def _x_add(ex: _Export, g: int, opts: dict, ref: Any) -> int:
    if len(ref) != 2 or -1 not in ref and g - 1 not in ref:
        raise ex.fail(g, "a Darknet [shortcut] adds one earlier layer to the layer just before it")
    other = ref[1] if ref[0] in (-1, g - 1) else ref[0]
    ex.previous(g, -1)
    activation, used = ex.activation(g + 1)
    ex.sections.append(Section("shortcut", {"from": ex.ref(g, other), "activation": activation}))
    return 1 + used


def _x_identity(ex: _Export, g: int, opts: dict, ref: Any) -> int:
    ex.sections.append(Section("route", {"layers": ex.ref(g, ref)}))
    return 1


def _x_concat(ex: _Export, g: int, opts: dict, ref: Any) -> int:
    ex.sections.append(Section("route", {"layers": ",".join(ex.ref(g, r) for r in ref)}))
    return 1


def _x_chunk(ex: _Export, g: int, opts: dict, ref: Any) -> int:
    """``chunk``s of the same part of several layers, then a ``concat`` of them (in that order): one grouped
    ``[route]``, as AlexeyAB's route_layer.c computes it; a single ``chunk``: the route of one layer."""
    parts, index = opts["parts"], opts["index"]
    refs, n = [ref], 1
    while g + n < len(ex.items) and ex.unnumbered(g + n):  # the layers an import made of one [route]
        kind, more, more_ref = ex.options(g + n)
        if kind != "chunk" or (more["parts"], more["index"]) != (parts, index):
            break
        refs.append(more_ref)
        n += 1
    if n > 1:
        kind, _, joined = ex.options(g + n) if g + n < len(ex.items) and ex.unnumbered(g + n) else ("", {}, [])
        if kind != "concat" or [r + g + n if r < 0 else r for r in joined] != list(range(g, g + n)):
            refs, n = refs[:1], 1  # no concat of exactly them: this chunk is a [route] of its own
    layers = ",".join(ex.ref(g + k, r) for k, r in enumerate(refs))
    ex.sections.append(Section("route", {"layers": layers, "groups": str(parts), "group_id": str(index)}))
    return n + (n > 1)


def _x_upsample(ex: _Export, g: int, opts: dict, ref: Any) -> int:
    ex.previous(g, ref)
    ex.sections.append(Section("upsample", {"stride": str(opts["scale"])}))
    return 1


def _x_zeropad(ex: _Export, g: int, opts: dict, ref: Any) -> int:
    ex.previous(g, ref)
    if opts["padding"] == [0, 1, 0, 1] and g + 1 < len(ex.items):
        kind, pool, pool_ref = ex.options(g + 1)
        if kind == "maxpool" and pool_ref == -1 and (pool["kernel"], pool.get("stride"), pool["padding"]) == (2, 1, 0):
            ex.sections.append(Section("maxpool", {"size": "2", "stride": "1"}))
            return 2
    raise ex.fail(g, "Darknet pads only as [maxpool] size=2 stride=1 does: zeropad [0, 1, 0, 1], then maxpool "
                     "{kernel: 2, stride: 1}")


def _x_maxpool(ex: _Export, g: int, opts: dict, ref: Any) -> int:
    ex.previous(g, ref)
    kernel, stride = opts["kernel"], opts.get("stride") or opts["kernel"]
    if isinstance(kernel, list) or isinstance(stride, list) or opts["ceil"] or \
            opts["padding"] != (0 if kernel == stride else (kernel - 1) // 2):
        raise ex.fail(g, "a Darknet [maxpool] is square, padded by (size - 1) // 2 when its stride differs from its "
                         "size, without ceil")
    ex.sections.append(Section("maxpool", {"size": str(kernel), "stride": str(stride)}))
    return 1


_EXPORTERS: dict[str, Callable[[_Export, int, dict, Any], int]] = {
    "conv": _x_conv, "add": _x_add, "identity": _x_identity, "concat": _x_concat, "chunk": _x_chunk,
    "upsample": _x_upsample, "zeropad": _x_zeropad, "maxpool": _x_maxpool,
}

_NET_LINE = re.compile(r"^\s*#\s*\[net\]\s?(.*)$")
_YOLO_COMMENT = re.compile(r"#\s*(?:\d+\s+)?\[yolo\]\s*(.*)$")


def _recorded(spec: Spec, label: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The ``[net]`` options and the ``[yolo]`` sections (in ``outputs`` order) the spec's comments keep."""
    net, heads = "", []
    in_outputs = False
    for line in spec.text.splitlines():
        match = _NET_LINE.match(line)
        if match:
            net += " " + match.group(1)
            continue
        if re.match(r"^outputs\s*:", line):
            in_outputs = True
        elif re.match(r"^\S", line):
            in_outputs = False
        match = _YOLO_COMMENT.search(line)
        if match and in_outputs:
            heads.append(parse_option_text(match.group(1), f"{label}: outputs[{len(heads)}] [yolo] comment"))
    return parse_option_text(net, f"{label}: [net] comment"), heads


_LAYER_COMMENT = re.compile(r"#\s*\d+\s+[a-z]+\s*$")


def _numbered(spec: Spec) -> set[int] | None:
    """The graph layers whose line carries an import's ``# N kind`` comment; None when no layer line does, or when
    the layers are not one line each (the comments cannot be placed)."""
    lines, in_layers = [], False
    for line in spec.text.splitlines():
        if re.match(r"^layers\s*:", line):
            in_layers = True
        elif in_layers and re.match(r"^\S", line):
            break
        elif in_layers and re.match(r"^\s*-\s", line):
            lines.append(line)
        elif in_layers and line.strip() and not line.lstrip().startswith("#"):
            return None
    numbered = {g for g, line in enumerate(lines) if _LAYER_COMMENT.search(line)}
    return numbered if numbered and len(lines) == len(spec.data["layers"]) else None


def darknet_sections(spec: Spec, label: str | None = None) -> list[Section]:
    """The cfg sections of a graph spec (one imported from a cfg, pruned or not)."""
    label = label or spec.source or spec.name
    if spec.arch != "graph" or not spec.data.get("outputs"):
        raise ModelImportError(f"{label}: only an arch: graph spec with outputs (a detector) has a Darknet form")
    net, heads = _recorded(spec, label)
    outputs = [o if o >= 0 else len(spec.data["layers"]) + o for o in spec.data["outputs"]]
    if len(heads) != len(outputs):
        raise ModelImportError(f"{label}: {len(outputs)} outputs but {len(heads)} '# [yolo] ...' comments on them "
                               "(the [yolo] sections an import from a cfg records)")
    c, h, w = spec.data["input"]
    ex = _Export(spec.data["layers"], label, [Section("net", {"width": str(w), "height": str(h), "channels": str(c),
                                                              **net})], numbered=_numbered(spec))
    g = 0
    while g < len(ex.items):
        kind, opts, ref = ex.options(g)
        exporter = _EXPORTERS.get(kind)
        if exporter is None:
            raise ex.fail(g, f"{kind} has no Darknet layer (supported: {', '.join(_EXPORTERS)} and the activations "
                             "after a conv)")
        g += exporter(ex, g, opts, ref)
        ex.darknet[g - 1] = len(ex.sections) - 2
        if g - 1 in outputs:
            ex.sections.append(Section("yolo", dict(heads[outputs.index(g - 1)])))
    return ex.sections


def darknet_header(metadata: Mapping[str, str]) -> Header:
    """The ``.weights`` header a weights file's metadata keeps (Darknet 0.2.0, seen 0 when none)."""
    text = metadata.get(HEADER_KEY)
    return Header.from_text(text) if text else Header()


def export_darknet(spec: Spec, state: Mapping[str, torch.Tensor], header: Header,
                   label: str | None = None) -> tuple[str, Callable[[Path], None]]:
    """``(cfg text, writer of the .weights file)`` of a plain model's spec and state: the writer streams one
    tensor at a time to the path it is given (``OutputTransaction.write`` takes it)."""
    sections = darknet_sections(spec, label)
    layout = weights_layout(spec)
    missing = [key for key, _ in layout if key not in state]
    if missing:
        raise WeightsError(f"{label or spec.name}: no tensor {missing[0]} (a plain model's state is needed)")
    return format_cfg(sections), weights_writer(header, layout, state)


def iter_yolo(spec: Spec) -> Iterator[dict[str, str]]:
    """The recorded ``[yolo]`` sections of a spec, in ``outputs`` order."""
    yield from _recorded(spec, spec.source or spec.name)[1]
