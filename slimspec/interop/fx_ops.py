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

import operator
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..ir.ops import OPS, OpKind, table_version
from ..utils.names import resolve_dotted

if TYPE_CHECKING:
    from .fx_trace import Trace

ModuleHandler = Callable[[fx.Node, nn.Module], tuple[str, dict]]
CallHandler = Callable[["Trace", fx.Node], None]
SHAPE = "shape"  # a value that is a size/shape, used only as an argument of view/reshape
PASS_METHODS = ("contiguous",)


class Unsupported(Exception):
    """A node a spec cannot express, and why."""

    def __init__(self, node: fx.Node, reason: str):
        super().__init__(reason)
        self.node, self.reason = node, reason


# -- argument helpers -------------------------------------------------------------------------------
def arg(node: fx.Node, position: int, name: str, default: Any = None) -> Any:
    if len(node.args) > position:
        return node.args[position]
    return node.kwargs.get(name, default)


def square(node: fx.Node, value: Any, what: str) -> int:
    if isinstance(value, (tuple, list)):
        if len(set(value)) != 1:
            raise Unsupported(node, f"has a non-square {what} {tuple(value)}")
        value = value[0]
    if not isinstance(value, int):
        raise Unsupported(node, f"has a {what} that is not a constant integer")
    return int(value)


def shape_of(node: Any) -> tuple[int, ...] | None:
    return node.meta.get("shape") if isinstance(node, fx.Node) else None


def _without_defaults(kind: str, opts: dict) -> dict:
    """Options as a spec writes them: those equal to the schema's default left out."""
    defaults = OPS[kind].layer.defaults() if OPS[kind].layer else {}  # type: ignore[union-attr]
    return {key: value for key, value in opts.items() if key not in defaults or defaults[key] != value}


# -- module layers --------------------------------------------------------------------------------
def _conv(node: fx.Node, m: nn.Conv2d) -> tuple[str, dict]:
    if m.padding_mode != "zeros":
        raise Unsupported(node, f"uses padding_mode '{m.padding_mode}' (only zero padding is expressible)")
    kernel, stride = square(node, m.kernel_size, "kernel"), square(node, m.stride, "stride")
    dilation = square(node, m.dilation, "dilation")
    if m.padding == "valid":
        padding = 0
    elif m.padding == "same":
        if (dilation * (kernel - 1)) % 2:
            raise Unsupported(node, "uses padding='same' with an even kernel (asymmetric padding)")
        padding = dilation * (kernel - 1) // 2
    else:
        padding = square(node, m.padding, "padding")
    opts = {"out": m.out_channels, "kernel": kernel, "stride": stride, "padding": padding, "dilation": dilation,
            "groups": m.groups, "bias": m.bias is not None}
    return "conv", {"out": m.out_channels, "kernel": kernel, **_without_defaults("conv", opts)}


def _linear(node: fx.Node, m: nn.Linear) -> tuple[str, dict]:
    return "linear", {"out": m.out_features, **_without_defaults("linear", {"bias": m.bias is not None})}


def _bn(node: fx.Node, m: nn.Module) -> tuple[str, dict]:
    if not (m.affine and m.track_running_stats):
        raise Unsupported(node, "is a BatchNorm without affine parameters or running statistics")
    return "bn", _without_defaults("bn", {"eps": float(m.eps)})


def pool(node: fx.Node, kind: str, kernel: Any, stride: Any, padding: Any, ceil_mode: bool,
         dilation: Any = 1, count_include_pad: bool = True, divisor_override: Any = None) -> tuple[str, dict]:
    if ceil_mode:
        raise Unsupported(node, "uses ceil_mode=True")
    if square(node, dilation, "dilation") != 1 or divisor_override is not None:
        raise Unsupported(node, "uses dilation or divisor_override")
    kernel = square(node, kernel, "kernel")
    stride = kernel if stride is None or stride == [] else square(node, stride, "stride")
    padding = square(node, padding, "padding")
    if padding and not count_include_pad:
        raise Unsupported(node, "uses count_include_pad=False with padding")
    opts: dict[str, Any] = {"kernel": kernel}
    if stride != kernel:
        opts["stride"] = stride
    return kind, {**opts, **_without_defaults(kind, {"padding": padding})}


def _maxpool(node: fx.Node, m: nn.MaxPool2d) -> tuple[str, dict]:
    if m.return_indices:
        raise Unsupported(node, "returns indices")
    return pool(node, "maxpool", m.kernel_size, m.stride, m.padding, m.ceil_mode, m.dilation)


def _avgpool(node: fx.Node, m: nn.AvgPool2d) -> tuple[str, dict]:
    return pool(node, "avgpool", m.kernel_size, m.stride, m.padding, m.ceil_mode, 1, m.count_include_pad,
                m.divisor_override)


def adaptive(node: fx.Node, size: Any) -> tuple[str, dict]:
    if isinstance(size, (tuple, list)) and None in size:
        raise Unsupported(node, "keeps an input dimension (output size None)")
    return "adaptive_avgpool", {"size": square(node, size, "output size")}


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
    nn.Flatten: _flatten_module,
}
SUBCLASSES_OK = (nn.Linear,)  # subclasses that change nothing a spec sees (torch's NonDynamicallyQuantizableLinear)


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
    if len(inputs) < 2 or not all(isinstance(x, fx.Node) for x in inputs):
        raise Unsupported(node, f"{'adds' if kind == 'add' else 'concatenates'} something that is not a tensor "
                                "of the network")
    trace.add(node, kind, {}, inputs)


def _add(trace: Trace, node: fx.Node) -> None:
    if node.kwargs.get("alpha", 1) != 1:
        raise Unsupported(node, "adds with alpha")
    _join(trace, node, "add", [node.args[0], arg(node, 1, "other")])


def _cat(trace: Trace, node: fx.Node) -> None:
    dim, tensors = arg(node, 1, "dim", 0), list(arg(node, 0, "tensors"))
    if len(shape_of(tensors[0]) or ()) != 4:
        raise Unsupported(node, "concatenates vectors (only feature maps, along their channels, are expressible)")
    if dim not in (1, -3):
        raise Unsupported(node, f"concatenates along dim {dim} (only channels, dim 1, is expressible)")
    _join(trace, node, "concat", tensors)


def _flatten_call(trace: Trace, node: fx.Node) -> None:
    check_flatten_dims(node, arg(node, 1, "start_dim", 0), arg(node, 2, "end_dim", -1))
    trace.add(node, "flatten", {}, [node.args[0]])


def _reshape(trace: Trace, node: fx.Node) -> None:
    if not is_flatten_shape(node, node.args[0]):
        raise Unsupported(node, "reshapes a feature map other than flattening it (N, C*H*W)")
    trace.add(node, "flatten", {}, [node.args[0]])


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


def _shape_value(trace: Trace, node: fx.Node) -> None:
    trace.values[node] = SHAPE


def _getattr(trace: Trace, node: fx.Node) -> None:
    if node.args[1] != "shape":
        raise Unsupported(node, f"reads the attribute '{node.args[1]}'")
    trace.values[node] = SHAPE


def _getitem(trace: Trace, node: fx.Node) -> None:
    if trace.values.get(node.args[0]) != SHAPE:
        raise Unsupported(node, "indexes a tensor (only sizes may be indexed)")
    trace.values[node] = SHAPE


def _pass(trace: Trace, node: fx.Node) -> None:
    trace.values[node] = trace.value(node, node.args[0])


FUNCTIONS: dict[Any, CallHandler] = {
    operator.add: _add, torch.add: _add, operator.iadd: _add,
    torch.cat: _cat, torch.flatten: _flatten_call, torch.reshape: _reshape,
    F.adaptive_avg_pool2d: lambda trace, node: trace.add(node, *adaptive(node, arg(node, 1, "output_size")),
                                                         [node.args[0]]),
    F.avg_pool2d: _avg_pool_call, F.max_pool2d: _max_pool_call,
    F.dropout: lambda trace, node: trace.add(node, "dropout", {"p": float(arg(node, 1, "p", 0.5))}, [node.args[0]]),
    torch.mean: lambda trace, node: _mean(trace, node, node.args[0], arg(node, 1, "dim"), arg(node, 2, "keepdim", False)),
    getattr: _getattr, operator.getitem: _getitem,
}
METHODS: dict[str, CallHandler] = {
    "size": _shape_value, "dim": _shape_value,
    **{name: _pass for name in PASS_METHODS},
    "view": _reshape, "reshape": _reshape, "flatten": _flatten_call,
    **{name: _add for name in ("add", "add_", "__add__", "__iadd__")},
    "mean": lambda trace, node: _mean(trace, node, node.args[0], arg(node, 1, "dim"), arg(node, 2, "keepdim", False)),
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
        trace.add(node, kind.name, _without_defaults(kind.name, opts), [node.args[0]])
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
