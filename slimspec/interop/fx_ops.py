"""What the fx importer maps each torch module, function and tensor method to: three dispatch tables.

The simple kinds come straight from the op table (:mod:`slimspec.ir.ops`: an entry's ``imports``
names its torch modules, functions and methods, and ``module_args`` the module attributes that
are its options); the handlers here add the kinds whose arguments need a look (convolutions,
BatchNorm, pools, flatten, joins, ``mean``, shapes). The tables are rebuilt when the op table
changes, so a kind registered at run time imports at once.

A module handler returns ``(kind, options)``; a function or method handler adds its layers to
the trace itself (a ``mean`` is two layers, a shape read is none). Anything that cannot be
expressed raises :class:`Unsupported` with the reason; the tracer names the node and the
user's source line.
"""
from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..ir.ops import OPS, OpKind, table_version
from ..utils.names import resolve_dotted
from . import fx_layouts
from .fx_values import SHAPE, Layout, Param, Unsupported, arg, shape_of, size, square

if TYPE_CHECKING:
    from .fx_trace import Trace

__all__ = ["SHAPE", "Unsupported", "arg", "shape_of", "square", "module_handler", "function_handler",
           "method_handler", "expressible", "mutates", "callable_name", "channels_last"]

ModuleHandler = Callable[[fx.Node, nn.Module], tuple[str, dict]]
CallHandler = Callable[["Trace", fx.Node], None]
PASS_METHODS = ("contiguous",)
SIZE_ATTRIBUTES = ("shape", "ndim", "dtype", "device")  # tensor attributes that are sizes, never features


def _without_defaults(kind: str, opts: dict) -> dict:
    """Options as a spec writes them: those equal to the schema's default left out."""
    defaults = OPS[kind].layer.defaults() if OPS[kind].layer else {}  # type: ignore[union-attr]
    return {key: value for key, value in opts.items() if key not in defaults or defaults[key] != value}


# -- module layers --------------------------------------------------------------------------------
def _conv(node: fx.Node, m: nn.Conv2d) -> tuple[str, dict]:
    if m.padding_mode != "zeros":
        raise Unsupported(node, f"uses padding_mode '{m.padding_mode}' (only zero padding is expressible)")
    kernel, stride = size(node, m.kernel_size, "kernel"), size(node, m.stride, "stride")
    dilation = size(node, m.dilation, "dilation")
    if m.padding == "valid":
        padding: int | list[int] = 0
    elif m.padding == "same":
        if any((d * (k - 1)) % 2 for d, k in zip(m.dilation, m.kernel_size)):
            raise Unsupported(node, "uses padding='same' with an even kernel (asymmetric padding)")
        padding = size(node, [d * (k - 1) // 2 for d, k in zip(m.dilation, m.kernel_size)], "padding")
    else:
        padding = size(node, m.padding, "padding")
    opts = {"out": m.out_channels, "kernel": kernel, "stride": stride, "padding": padding, "dilation": dilation,
            "groups": m.groups, "bias": m.bias is not None}
    return "conv", {"out": m.out_channels, "kernel": kernel, **_without_defaults("conv", opts)}


def _linear(node: fx.Node, m: nn.Linear) -> tuple[str, dict]:
    return "linear", {"out": m.out_features, **_without_defaults("linear", {"bias": m.bias is not None})}


def _bn(node: fx.Node, m: nn.Module) -> tuple[str, dict]:
    if not (m.affine and m.track_running_stats):
        raise Unsupported(node, "is a BatchNorm without affine parameters or running statistics")
    return "bn", _without_defaults("bn", {"eps": float(m.eps)})


def _layernorm(node: fx.Node, m: nn.LayerNorm) -> tuple[str, dict]:
    channels = (shape_of(node.args[0]) or (0,))[-1]
    if tuple(m.normalized_shape) != (channels,):
        raise Unsupported(node, f"normalizes over {tuple(m.normalized_shape)} (only the channels are expressible)")
    if not m.elementwise_affine or m.bias is None:
        raise Unsupported(node, "is a LayerNorm without a weight and a bias")
    return "layernorm", _without_defaults("layernorm", {"eps": float(m.eps)})


def _groupnorm(node: fx.Node, m: nn.GroupNorm) -> tuple[str, dict]:
    if not m.affine:
        raise Unsupported(node, "is a GroupNorm without a weight and a bias")
    return "groupnorm", {"groups": int(m.num_groups), **_without_defaults("groupnorm", {"eps": float(m.eps)})}


def pool(node: fx.Node, kind: str, kernel: Any, stride: Any, padding: Any, ceil_mode: bool,
         dilation: Any = 1, count_include_pad: bool = True, divisor_override: Any = None) -> tuple[str, dict]:
    if square(node, dilation, "dilation") != 1 or divisor_override is not None:
        raise Unsupported(node, "uses dilation or divisor_override")
    kernel = size(node, kernel, "kernel")
    stride = kernel if stride is None or stride == [] else size(node, stride, "stride")
    padding = size(node, padding, "padding")
    if padding and not count_include_pad:
        raise Unsupported(node, "uses count_include_pad=False with padding")
    opts: dict[str, Any] = {"kernel": kernel}
    if stride != kernel:
        opts["stride"] = stride
    if ceil_mode:
        opts["ceil"] = True
    return kind, {**opts, **_without_defaults(kind, {"padding": padding})}


def _maxpool(node: fx.Node, m: nn.MaxPool2d) -> tuple[str, dict]:
    if m.return_indices:
        raise Unsupported(node, "returns indices")
    return pool(node, "maxpool", m.kernel_size, m.stride, m.padding, m.ceil_mode, m.dilation)


def _avgpool(node: fx.Node, m: nn.AvgPool2d) -> tuple[str, dict]:
    return pool(node, "avgpool", m.kernel_size, m.stride, m.padding, m.ceil_mode, 1, m.count_include_pad,
                m.divisor_override)


def adaptive(node: fx.Node, output_size: Any) -> tuple[str, dict]:
    if isinstance(output_size, (tuple, list)) and None in output_size:
        raise Unsupported(node, "keeps an input dimension (output size None)")
    return "adaptive_avgpool", {"size": size(node, output_size, "output size")}


def _upsample(node: fx.Node, scale: Any, mode: Any, align_corners: Any = None, sizes: Any = None) -> tuple[str, dict]:
    if isinstance(scale, (tuple, list)) and len(set(scale)) == 1:
        scale = scale[0]
    if sizes is not None or mode != "nearest" or not isinstance(scale, (int, float)) or scale != int(scale) or \
            scale < 1 or align_corners:
        raise Unsupported(node, "upsamples other than 'nearest' by an integer scale factor")
    return "upsample", {"scale": int(scale)}


def _zeropad(node: fx.Node, padding: Any, mode: Any = "constant", value: Any = 0.0) -> tuple[str, dict]:
    if isinstance(padding, int):
        padding = (padding,) * 4
    if mode != "constant" or value not in (0, 0.0, None) or not isinstance(padding, (tuple, list)) or \
            len(padding) != 4 or not all(isinstance(p, int) and p >= 0 for p in padding):
        raise Unsupported(node, "pads other than with zeros by (left, right, top, bottom) of the spatial dims")
    return "zeropad", {"zeropad": [int(p) for p in padding]}


def check_flatten_dims(node: fx.Node, start: int, end: int) -> None:
    if start != 1 or end != -1:
        raise Unsupported(node, f"flattens dims {start}..{end} (only 1..-1 is expressible)")


def _flatten_module(node: fx.Node, m: nn.Flatten) -> tuple[str, dict]:
    check_flatten_dims(node, m.start_dim, m.end_dim)
    return "flatten", {}


MODULES: dict[type, ModuleHandler] = {
    nn.Conv2d: _conv, nn.Linear: _linear, nn.BatchNorm2d: _bn, nn.BatchNorm1d: _bn,
    nn.MaxPool2d: _maxpool, nn.AvgPool2d: _avgpool,
    nn.AdaptiveAvgPool2d: lambda node, m: adaptive(node, m.output_size),
    nn.Flatten: _flatten_module, nn.LayerNorm: _layernorm, nn.GroupNorm: _groupnorm,
    nn.Upsample: lambda node, m: _upsample(node, m.scale_factor, m.mode, m.align_corners, m.size),
    nn.UpsamplingNearest2d: lambda node, m: _upsample(node, m.scale_factor, m.mode, None, m.size),
    nn.ZeroPad2d: lambda node, m: _zeropad(node, m.padding),
}
SUBCLASSES_OK = (nn.Linear,)  # subclasses that change nothing a spec sees (torch's NonDynamicallyQuantizableLinear)


def channels_last(node: fx.Node, m: nn.Module, kind: str, opts: dict) -> tuple[str, dict, dict[str, tuple[int, ...]]]:
    """A module applied to a channels-last tensor as the channels-first layer it is: ``(kind, options, reshapes)``
    (``nn.Linear`` on the channels is a 1x1 convolution, its weight reshaped to ``(out, in, 1, 1)``)."""
    if kind == "linear":
        conv = {"out": m.out_features, "kernel": 1, **_without_defaults("conv", {"bias": m.bias is not None})}
        return "conv", conv, {"weight": (m.out_features, m.in_features, 1, 1)}
    if kind == "layernorm" or _pointwise(kind):
        return kind, opts, {}
    raise Unsupported(node, "reads a channels-last tensor (between permute(0, 2, 3, 1) and permute(0, 3, 1, 2) only "
                            "per-channel layers are expressible: LayerNorm, Linear, activations, dropout, scales)")


def _pointwise(kind: str) -> bool:
    """A kind that treats every element alike (activations, dropout, identity, a constant, a drop path)."""
    return OPS[kind].identity or kind in ("const", "droppath")


# -- functions and methods ------------------------------------------------------------------------
def is_flatten_shape(node: fx.Node, x: fx.Node) -> bool:
    before, after = shape_of(x), shape_of(node)
    return before is not None and after is not None and len(before) == 4 and len(after) == 2 and \
        after[0] == before[0] and after[1] == before[1] * before[2] * before[3]


def _mean(trace: Trace, node: fx.Node, x: fx.Node, dims: Any, keepdim: bool) -> None:
    dims = [dims] if isinstance(dims, int) else list(dims or [])
    if sorted(d % 4 for d in dims) != [2, 3] or len(shape_of(x) or ()) != 4:
        raise Unsupported(node, "is a mean over dims other than the spatial ones (2, 3)")
    index = trace.add(node, "adaptive_avgpool", {"size": 1}, [x])
    if not keepdim:
        trace.append("flatten", {}, (index,), node)


def _join(trace: Trace, node: fx.Node, kind: str, inputs: Sequence[Any]) -> None:
    if not all(isinstance(x, fx.Node) for x in inputs) or \
            any(isinstance(trace.values.get(x), Param) for x in inputs):
        raise Unsupported(node, f"{'adds' if kind == 'add' else 'concatenates'} something that is not a tensor "
                                "of the network")
    if len(inputs) == 1:  # torch.cat([x]): x itself
        trace.values[node] = trace.value(node, inputs[0])
        return
    trace.add(node, kind, {}, inputs, last_ok=kind != "concat")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _scale(trace: Trace, node: fx.Node, x: fx.Node, param: Param) -> None:
    """``x * gamma``: a per-channel learnable scale (ConvNeXt's layer scale), its weight reshaped to ``(C,)``."""
    value, shape = trace.values.get(x), shape_of(x) or ()
    axis = len(shape) - 1 if isinstance(value, Layout) or len(shape) == 2 else len(shape) - 3
    padded = (1,) * (len(shape) - len(param.shape)) + tuple(param.shape)
    if len(shape) not in (2, 4) or len(padded) != len(shape) or \
            any(p != (shape[axis] if d == axis else 1) for d, p in enumerate(padded)):
        raise Unsupported(node, f"multiplies by a parameter of shape {tuple(param.shape)} (only one value per channel "
                                "is expressible)")
    trace.add(node, "scale", {}, [x], source={"weight": (param.path, (shape[axis],))}, last_ok=True)


_ARITH = {"add": "adds", "sub": "subtracts", "mul": "multiplies", "div": "divides"}
_COMMUTES = ("add", "mul")


def _arith(op: str) -> CallHandler:
    """``a <op> b``: two network tensors (``add`` / ``mul`` joins), a tensor and a Python number (``const``),
    a tensor times a per-channel parameter (``scale``)."""

    def handler(trace: Trace, node: fx.Node) -> None:
        if node.kwargs.get("alpha", 1) != 1 or node.kwargs.get("rounding_mode") is not None:
            raise Unsupported(node, f"{_ARITH[op]} with alpha or rounding_mode")
        a, b = node.args[0], arg(node, 1, "other")
        tensors = [isinstance(v, fx.Node) and not isinstance(trace.values.get(v), Param) for v in (a, b)]
        params = [isinstance(v, fx.Node) and isinstance(trace.values.get(v), Param) for v in (a, b)]
        if all(tensors) and op in _COMMUTES:
            _join(trace, node, op, [a, b])
        elif tensors[0] and _is_number(b) or tensors[1] and _is_number(a) and op in _COMMUTES:
            x, value = (a, b) if tensors[0] else (b, a)
            trace.add(node, "const", {"op": op, "value": float(value)}, [x], last_ok=True)
        elif op == "mul" and any(tensors) and any(params):
            x, p = (a, b) if tensors[0] else (b, a)
            _scale(trace, node, x, trace.values[p])
        else:
            raise Unsupported(node, f"{_ARITH[op]} something that is not a tensor of the network or a constant")
    return handler


def _cat(trace: Trace, node: fx.Node) -> None:
    dim, tensors = arg(node, 1, "dim", 0), list(arg(node, 0, "tensors"))
    if len(shape_of(tensors[0]) or ()) != 4:
        raise Unsupported(node, "concatenates vectors (only feature maps, along their channels, are expressible)")
    if dim not in (1, -3):
        raise Unsupported(node, f"concatenates along dim {dim} (only channels, dim 1, is expressible)")
    _join(trace, node, "concat", tensors)


def _flatten_call(trace: Trace, node: fx.Node) -> None:
    if fx_layouts.flatten_swapped(trace, node):
        return
    check_flatten_dims(node, arg(node, 1, "start_dim", 0), arg(node, 2, "end_dim", -1))
    trace.add(node, "flatten", {}, [node.args[0]])


def _flatten_view(trace: Trace, node: fx.Node) -> None:
    if not is_flatten_shape(node, node.args[0]):
        raise Unsupported(node, "reshapes a feature map other than flattening it (N, C*H*W)")
    trace.add(node, "flatten", {}, [node.args[0]])


def _reshape(trace: Trace, node: fx.Node) -> None:
    fx_layouts.reshape(trace, node, _flatten_view)


def _avg_pool_call(trace: Trace, node: fx.Node) -> None:
    kind, opts = pool(node, "avgpool", arg(node, 1, "kernel_size"), arg(node, 2, "stride"), arg(node, 3, "padding", 0),
                      arg(node, 4, "ceil_mode", False), 1, arg(node, 5, "count_include_pad", True),
                      arg(node, 6, "divisor_override"))
    trace.add(node, kind, opts, [node.args[0]])


def _max_pool_call(trace: Trace, node: fx.Node) -> None:
    if arg(node, 6, "return_indices", False):
        raise Unsupported(node, "returns indices")
    kind, opts = pool(node, "maxpool", arg(node, 1, "kernel_size"), arg(node, 2, "stride"), arg(node, 3, "padding", 0),
                      arg(node, 5, "ceil_mode", False), arg(node, 4, "dilation", 1))
    trace.add(node, kind, opts, [node.args[0]])


def _params(trace: Trace, node: fx.Node, names: dict[str, Any]) -> dict[str, tuple[str, None]]:
    """Parameters passed to a functional norm: spec key -> (their path in the module, no reshape)."""
    found = {}
    for key, value in names.items():
        param = trace.values.get(value) if isinstance(value, fx.Node) else None
        if not isinstance(param, Param):
            raise Unsupported(node, f"takes a {key} that is not a parameter of the module")
        found[key] = (param.path, None)
    return found


def _batch_norm_call(trace: Trace, node: fx.Node) -> None:
    """``F.batch_norm`` with the module's own statistics and affine parameters (timm's BatchNormAct2d)."""
    if arg(node, 5, "training", False) is not False:
        raise Unsupported(node, "normalizes with batch statistics in eval mode")
    source = _params(trace, node, {"running_mean": arg(node, 1, "running_mean"), "running_var": arg(node, 2, "running_var"),
                                   "weight": arg(node, 3, "weight"), "bias": arg(node, 4, "bias")})
    owner = source["running_mean"][0].rpartition(".")[0]
    source["num_batches_tracked"] = (f"{owner}.num_batches_tracked" if owner else "num_batches_tracked", None)
    trace.add(node, "bn", _without_defaults("bn", {"eps": float(arg(node, 7, "eps", 1e-5))}), [node.args[0]],
              source=source)


def _layer_norm_call(trace: Trace, node: fx.Node) -> None:
    """``F.layer_norm`` over the channels of a channels-last map or a vector (ConvNeXt's LayerNorm2d)."""
    x = node.args[0]
    channels = (shape_of(x) or (0,))[-1]
    if tuple(arg(node, 1, "normalized_shape") or ()) != (channels,):
        raise Unsupported(node, "normalizes over other dims than the channels")
    if not isinstance(trace.values.get(x), Layout) and len(shape_of(x) or ()) != 2:
        raise Unsupported(node, "normalizes the last dim of a channels-first map (permute it to channels-last first)")
    source = _params(trace, node, {"weight": arg(node, 2, "weight"), "bias": arg(node, 3, "bias")})
    trace.add(node, "layernorm", _without_defaults("layernorm", {"eps": float(arg(node, 4, "eps", 1e-5))}), [x],
              source=source, last_ok=True)


def _group_norm_call(trace: Trace, node: fx.Node) -> None:
    source = _params(trace, node, {"weight": arg(node, 2, "weight"), "bias": arg(node, 3, "bias")})
    opts = {"groups": int(arg(node, 1, "num_groups")),
            **_without_defaults("groupnorm", {"eps": float(arg(node, 4, "eps", 1e-5))})}
    trace.add(node, "groupnorm", opts, [node.args[0]], source=source)


def _stochastic_depth(trace: Trace, node: fx.Node) -> None:
    """torchvision's ``stochastic_depth`` (Huang et al. 2016): a ``droppath`` layer, the identity in eval."""
    if arg(node, 3, "training", False) is not False:
        raise Unsupported(node, "drops paths while tracing in eval mode")
    opts = {"p": float(arg(node, 1, "p")), "mode": str(arg(node, 2, "mode"))}
    trace.add(node, "droppath", opts, [node.args[0]], last_ok=True)


def _interpolate(trace: Trace, node: fx.Node) -> None:
    kind, opts = _upsample(node, arg(node, 2, "scale_factor"), arg(node, 3, "mode", "nearest"),
                           arg(node, 4, "align_corners"), arg(node, 1, "size"))
    trace.add(node, kind, opts, [node.args[0]])


def _pad_call(trace: Trace, node: fx.Node) -> None:
    kind, opts = _zeropad(node, arg(node, 1, "pad"), arg(node, 2, "mode", "constant"), arg(node, 3, "value", 0.0))
    trace.add(node, kind, opts, [node.args[0]])


def _shape_value(trace: Trace, node: fx.Node) -> None:
    trace.values[node] = SHAPE


def _getattr(trace: Trace, node: fx.Node) -> None:
    if node.args[1] not in SIZE_ATTRIBUTES:
        raise Unsupported(node, f"reads the attribute '{node.args[1]}'")
    trace.values[node] = SHAPE


def _pass(trace: Trace, node: fx.Node) -> None:
    value = trace.values.get(node.args[0])
    trace.values[node] = value if isinstance(value, (Layout, Param)) else trace.value(node, node.args[0])


def _mean_call(trace: Trace, node: fx.Node) -> None:
    _mean(trace, node, node.args[0], arg(node, 1, "dim"), arg(node, 2, "keepdim", False))


FUNCTIONS: dict[Any, CallHandler] = {
    **{f: _arith("add") for f in (operator.add, torch.add, operator.iadd)},
    **{f: _arith("sub") for f in (operator.sub, torch.sub, operator.isub)},
    **{f: _arith("mul") for f in (operator.mul, torch.mul, operator.imul)},
    **{f: _arith("div") for f in (operator.truediv, torch.div, operator.itruediv)},
    torch.cat: _cat, torch.concat: _cat, torch.flatten: _flatten_call, torch.reshape: _reshape,
    F.adaptive_avg_pool2d: lambda trace, node: trace.add(node, *adaptive(node, arg(node, 1, "output_size")),
                                                         [node.args[0]]),
    F.avg_pool2d: _avg_pool_call, F.max_pool2d: _max_pool_call,
    F.dropout: lambda trace, node: trace.add(node, "dropout", {"p": float(arg(node, 1, "p", 0.5))}, [node.args[0]],
                                             last_ok=True),
    torch.mean: _mean_call,
    F.batch_norm: _batch_norm_call, F.layer_norm: _layer_norm_call, F.group_norm: _group_norm_call,
    F.interpolate: _interpolate, F.pad: _pad_call,
    torch.permute: fx_layouts.permute, torch.transpose: fx_layouts.transpose,
    torch.chunk: fx_layouts.chunk, torch.split: fx_layouts.split,
    getattr: _getattr, operator.getitem: fx_layouts.getitem,
}
OTHER_PACKAGES: dict[str, CallHandler] = {  # resolved when the tables are built (the package may be missing)
    "torchvision.ops.stochastic_depth.stochastic_depth": _stochastic_depth,
}
METHODS: dict[str, CallHandler] = {
    "size": _shape_value, "dim": _shape_value,
    **{name: _pass for name in PASS_METHODS},
    "view": _reshape, "reshape": _reshape, "flatten": _flatten_call,
    **{name: _arith("add") for name in ("add", "add_", "__add__", "__iadd__", "__radd__")},
    **{name: _arith("sub") for name in ("sub", "sub_", "__sub__", "__isub__")},
    **{name: _arith("mul") for name in ("mul", "mul_", "__mul__", "__imul__", "__rmul__")},
    **{name: _arith("div") for name in ("div", "div_", "__truediv__", "__itruediv__")},
    "mean": _mean_call,
    "permute": fx_layouts.permute, "transpose": fx_layouts.transpose,
    "chunk": fx_layouts.chunk, "split": fx_layouts.split,
}


# -- in-place ops ----------------------------------------------------------------------------------
_INPLACE_OPERATORS = {operator.iadd, operator.imul, operator.isub, operator.itruediv}


def mutates(gm: fx.GraphModule, node: fx.Node) -> bool:
    """Whether ``node`` writes into its first argument (``y.relu_()``, ``F.relu(x, inplace=True)``,
    ``nn.ReLU(inplace=True)``, ``x += y``): its effect outlives its unused result."""
    if node.kwargs.get("inplace") is True:
        return True
    if node.op == "call_method":
        name = str(node.target)
        return (name.endswith("_") and not name.startswith("__")) or name.startswith("__i")
    if node.op == "call_function":
        name = getattr(node.target, "__name__", "")
        return node.target in _INPLACE_OPERATORS or (name.endswith("_") and not name.startswith("__"))
    if node.op == "call_module":
        return getattr(gm.get_submodule(str(node.target)), "inplace", False) is True
    return False


# -- the tables, with the op table's simple kinds ---------------------------------------------------
def callable_name(function: Any) -> str:
    """``F.relu``, ``torch.cat``, ``operator.add``: how a user wrote the call."""
    module = getattr(function, "__module__", None) or "builtin"
    name = f"{module}.{getattr(function, '__name__', function)}"
    for long, short in (("_operator.", "operator."), ("torch._C._nn.", "F."), ("torch.nn.functional.", "F.")):
        name = name.replace(long, short)
    return name


def _module_from_table(kind: OpKind) -> ModuleHandler:
    def handler(node: fx.Node, m: nn.Module) -> tuple[str, dict]:
        return kind.name, _without_defaults(kind.name, {attr: getattr(m, arg_name)
                                                        for attr, arg_name in kind.module_args.items()})
    return handler


def _call_from_table(kind: OpKind) -> CallHandler:
    """A function or method call of a table kind: its options from the arguments the kind declares."""
    by_position = {pos: key for key, (pos, _) in kind.imports.call_args.items()}
    by_keyword = {kw: key for key, (_, kw) in kind.imports.call_args.items()}

    def handler(trace: Trace, node: fx.Node) -> None:
        opts: dict[str, Any] = {}
        for position, value in enumerate(node.args[1:], start=1):
            if position not in by_position:
                raise Unsupported(node, f"passes an argument {kind.name} takes no option for")
            opts[by_position[position]] = value
        for keyword, value in node.kwargs.items():
            if keyword == "inplace":
                continue
            if keyword not in by_keyword:
                raise Unsupported(node, f"passes {keyword}=, which {kind.name} takes no option for")
            opts[by_keyword[keyword]] = value
        if any(isinstance(value, fx.Node) for value in opts.values()):
            raise Unsupported(node, "takes an option computed by the network (only constants are expressible)")
        trace.add(node, kind.name, _without_defaults(kind.name, opts), [node.args[0]], last_ok=_pointwise(kind.name))
    return handler


@lru_cache(maxsize=4)
def _tables(version: int) -> tuple[dict[type, ModuleHandler], dict[Any, CallHandler], dict[str, CallHandler]]:
    modules, functions, methods = {}, {}, {}
    for kind in OPS.values():
        for dotted in kind.imports.modules:
            modules[resolve_dotted(dotted)] = _module_from_table(kind)
        for dotted in kind.imports.functions:
            functions[resolve_dotted(dotted)] = _call_from_table(kind)
            inplace = resolve_dotted(f"{dotted}_", missing_ok=True)  # torch.relu_, F.relu_: the same kind, in place
            if inplace is not None:
                functions[inplace] = _call_from_table(kind)
        for name in kind.imports.methods:
            methods[name] = methods[f"{name}_"] = _call_from_table(kind)
    for dotted, handler in OTHER_PACKAGES.items():
        try:
            function = resolve_dotted(dotted, missing_ok=True)
        except ImportError:
            function = None
        if function is not None:
            functions[function] = handler
    return {**modules, **MODULES}, {**functions, **FUNCTIONS}, {**methods, **METHODS}


def module_handler(node: fx.Node, module: nn.Module) -> ModuleHandler:
    modules = _tables(table_version())[0]
    if type(module) in modules:
        return modules[type(module)]
    base = next((cls for cls in SUBCLASSES_OK if isinstance(module, cls)), None)
    if base is None:
        raise Unsupported(node, "is not expressible in a slimspec spec")
    return modules[base]


def function_handler(node: fx.Node) -> CallHandler:
    handler = _tables(table_version())[1].get(node.target)
    if handler is None:
        raise Unsupported(node, "is not expressible in a slimspec spec")
    return handler


def method_handler(node: fx.Node) -> CallHandler:
    handler = _tables(table_version())[2].get(str(node.target))
    if handler is None:
        raise Unsupported(node, "is not expressible in a slimspec spec")
    return handler


def expressible() -> str:
    """What the importer takes, for refusal messages: the module classes, then the functions."""
    modules, functions, _ = _tables(table_version())
    names = sorted({cls.__name__ for cls in modules})
    calls = sorted({callable_name(f) for f in functions if f not in (getattr, operator.getitem)})
    return ", ".join(names + calls)
