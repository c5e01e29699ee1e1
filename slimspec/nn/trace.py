"""nn.Module -> spec: trace a module with torch.fx into the most specific spec family that fits.

The inverse of :mod:`slimspec.nn.net` (which builds modules from the IR), so it lives beside
it and below pruning (``slimspec.prune(module)`` goes through it); the user-facing entry
points are in :mod:`slimspec.interop.fx_import`.

``from_module(module, input_shape)`` traces the module (eval mode, torch.fx symbolic tracing
with stack traces), maps each node to a layer of a ``sequential`` spec (when the network is a
plain chain of what that family has) or else a ``graph`` spec (``from`` inputs, ``add`` and
``concat`` joins, depthwise/grouped convs), takes the final ``nn.Linear`` as the implied
classifier, renames the state dict to slimspec's module names, builds the spec's model and
checks that it computes what the module computes (eval mode). Anything a spec cannot express
is refused with one line naming the first such node and where it is in the user's code.
"""
from __future__ import annotations

import linecache
import operator
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..document import Spec, spec_from_text
from ..errors import ModelImportError
from ..families.graph import SHORT_KEY
from ..specio.yamlio import format_spec
from .net import SpecNet

SUPPORTED = ("Conv2d", "BatchNorm2d/1d", "ReLU/ReLU6/SiLU/Hardswish/Sigmoid", "MaxPool2d/AvgPool2d/AdaptiveAvgPool2d",
             "Flatten", "Linear", "Dropout", "Identity", "+ / torch.add", "torch.cat", "torch.flatten / view / mean")
ACTIVATION_MODULES: dict[type, str] = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.SiLU: "silu", nn.Hardswish: "hardswish",
                                       nn.Sigmoid: "sigmoid"}
ACTIVATION_FUNCTIONS: dict[Any, str] = {F.relu: "relu", torch.relu: "relu", F.relu6: "relu6", F.silu: "silu",
                                        F.hardswish: "hardswish", torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid"}
ACTIVATION_METHODS = {"relu": "relu", "relu_": "relu", "sigmoid": "sigmoid"}
PASS_METHODS = ("contiguous",)
SEQUENTIAL_KINDS = {"conv": {"out", "kernel", "stride", "padding", "groups", "bias"}, "linear": {"out", "bias"},
                    "maxpool": {"kernel", "stride"}, "avgpool": {"kernel", "stride"}, "bn": set(), "relu": set(),
                    "flatten": set(), "dropout": {"p"}}
INPUT = -1
_SHAPE = "shape"  # a value that is a size/shape, used only as an argument of view/reshape
_TORCH_DIR = re.compile(r"[/\\]torch[/\\]")  # torch's own frames (torchvision's are the model's code)


@dataclass
class _Trace:
    """The layers read off the traced graph, and where their weights come from."""

    root: nn.Module
    layers: list[tuple[str, dict, tuple[int, ...]]] = field(default_factory=list)  # kind, options, inputs
    sources: dict[int, str] = field(default_factory=dict)  # layer index -> module path in the user's model
    values: dict[fx.Node, Any] = field(default_factory=dict)  # fx node -> layer index, INPUT or _SHAPE
    used_modules: dict[str, int] = field(default_factory=dict)
    modules: dict[int, str] = field(default_factory=dict)  # layer index -> module path (for comments)

    def add(self, node: fx.Node, kind: str, opts: dict, inputs: Sequence[fx.Node], module: str | None = None) -> int:
        refs = tuple(self.value(node, x) for x in inputs)
        self.layers.append((kind, opts, refs))
        index = len(self.layers) - 1
        if module is not None:
            self.sources[index] = module
        self.values[node] = index
        return index

    def value(self, user: fx.Node, arg: Any) -> int:
        if not isinstance(arg, fx.Node) or arg not in self.values or self.values[arg] == _SHAPE:
            raise _unsupported(user, "takes an input that is not a feature tensor of the network")
        return self.values[arg]


# -- where a node comes from ----------------------------------------------------------------------
class _LocatingTracer(fx.Tracer):
    """fx's tracer, noting for each node the innermost line of user code that made it.

    (fx's own ``record_stack_traces`` costs seconds on first use; walking the frames is cheap.)
    """

    def create_node(self, *args: Any, **kwargs: Any) -> fx.Node:
        node = super().create_node(*args, **kwargs)
        frame = sys._getframe(1)
        while frame is not None:
            filename = frame.f_code.co_filename
            if not _TORCH_DIR.search(filename) and filename != __file__:
                source = linecache.getline(filename, frame.f_lineno).strip()
                where = f"{os.path.basename(filename)}:{frame.f_lineno}"
                node.meta["slimspec_where"] = f"{where} ({source})" if source else where
                break
            frame = frame.f_back
        return node


def _where(node: fx.Node) -> str:
    """``file.py:LINE (source)`` of the user's code that made ``node``."""
    return str(node.meta.get("slimspec_where", ""))


def _describe(node: fx.Node, root: nn.Module | None = None) -> str:
    if node.op == "call_module":
        kind = type(root.get_submodule(node.target)).__name__ if root is not None else "module"
        what = f"module '{node.target}' ({kind})"
    elif node.op == "call_function":
        what = f"{getattr(node.target, '__module__', None) or 'builtin'}.{getattr(node.target, '__name__', node.target)}"
        what = what.replace("_operator.", "operator.").replace("torch._C._nn.", "F.").replace("torch.nn.functional.", "F.")
    elif node.op == "call_method":
        what = f"tensor.{node.target}()"
    else:
        what = f"{node.op} '{node.target}'"
    stack = node.meta.get("nn_module_stack") or {}
    if stack and node.op != "call_module":  # the innermost module whose forward made it
        path, (_, cls) = next(reversed(stack.items()))
        what = f"{what} in '{path}' ({getattr(cls, '__name__', cls)})"
    where = _where(node)
    return f"{what} at {where}" if where else what


class _Unsupported(Exception):
    def __init__(self, node: fx.Node, reason: str):
        super().__init__(reason)
        self.node, self.reason = node, reason


def _unsupported(node: fx.Node, reason: str) -> _Unsupported:
    return _Unsupported(node, reason)


# -- argument helpers -------------------------------------------------------------------------------
def _arg(node: fx.Node, position: int, name: str, default: Any = None) -> Any:
    if len(node.args) > position:
        return node.args[position]
    return node.kwargs.get(name, default)


def _square(node: fx.Node, value: Any, what: str) -> int:
    if isinstance(value, (tuple, list)):
        if len(set(value)) != 1:
            raise _unsupported(node, f"has a non-square {what} {tuple(value)}")
        value = value[0]
    if not isinstance(value, int):
        raise _unsupported(node, f"has a {what} that is not a constant integer")
    return int(value)


class _Shapes(fx.Interpreter):
    """Runs the traced graph once, noting each tensor's shape (``node.meta["shape"]``)."""

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        if isinstance(out, torch.Tensor):
            n.meta["shape"] = tuple(out.shape)
        return out


def _shape(node: Any) -> tuple[int, ...] | None:
    return node.meta.get("shape") if isinstance(node, fx.Node) else None


# -- module layers --------------------------------------------------------------------------------
def _conv(node: fx.Node, m: nn.Conv2d) -> tuple[str, dict]:
    if m.padding_mode != "zeros":
        raise _unsupported(node, f"uses padding_mode '{m.padding_mode}' (only zero padding is expressible)")
    kernel, stride = _square(node, m.kernel_size, "kernel"), _square(node, m.stride, "stride")
    dilation = _square(node, m.dilation, "dilation")
    if m.padding == "valid":
        padding = 0
    elif m.padding == "same":
        if (dilation * (kernel - 1)) % 2:
            raise _unsupported(node, "uses padding='same' with an even kernel (asymmetric padding)")
        padding = dilation * (kernel - 1) // 2
    else:
        padding = _square(node, m.padding, "padding")
    opts: dict[str, Any] = {"out": m.out_channels, "kernel": kernel}
    for key, value, default in (("stride", stride, 1), ("padding", padding, 0), ("dilation", dilation, 1),
                                ("groups", m.groups, 1)):
        if value != default:
            opts[key] = value
    if m.bias is None:
        opts["bias"] = False
    return "conv", opts


def _bn(node: fx.Node, m: nn.Module) -> tuple[str, dict]:
    if not (m.affine and m.track_running_stats):
        raise _unsupported(node, "is a BatchNorm without affine parameters or running statistics")
    return "bn", ({} if m.eps == 1e-5 else {"eps": float(m.eps)})


def _pool(node: fx.Node, kind: str, kernel: Any, stride: Any, padding: Any, ceil_mode: bool,
          dilation: Any = 1, count_include_pad: bool = True, divisor_override: Any = None) -> tuple[str, dict]:
    if ceil_mode:
        raise _unsupported(node, "uses ceil_mode=True")
    if _square(node, dilation, "dilation") != 1 or divisor_override is not None:
        raise _unsupported(node, "uses dilation or divisor_override")
    kernel = _square(node, kernel, "kernel")
    stride = kernel if stride is None or stride == [] else _square(node, stride, "stride")
    padding = _square(node, padding, "padding")
    if padding and not count_include_pad:
        raise _unsupported(node, "uses count_include_pad=False with padding")
    opts: dict[str, Any] = {"kernel": kernel}
    if stride != kernel:
        opts["stride"] = stride
    if padding:
        opts["padding"] = padding
    return kind, opts


def _adaptive(node: fx.Node, size: Any) -> tuple[str, dict]:
    if isinstance(size, (tuple, list)) and None in size:
        raise _unsupported(node, "keeps an input dimension (output size None)")
    return "adaptive_avgpool", {"size": _square(node, size, "output size")}


def _linear_or_conv_module(node: fx.Node, m: nn.Module) -> tuple[str, dict]:
    if isinstance(m, nn.Linear):
        return "linear", {"out": m.out_features, **({} if m.bias is not None else {"bias": False})}
    if type(m) is nn.Conv2d:
        return _conv(node, m)
    if type(m) in (nn.BatchNorm2d, nn.BatchNorm1d):
        return _bn(node, m)
    if type(m) in ACTIVATION_MODULES:
        return ACTIVATION_MODULES[type(m)], {}
    if type(m) is nn.MaxPool2d:
        if m.return_indices:
            raise _unsupported(node, "returns indices")
        return _pool(node, "maxpool", m.kernel_size, m.stride, m.padding, m.ceil_mode, m.dilation)
    if type(m) is nn.AvgPool2d:
        return _pool(node, "avgpool", m.kernel_size, m.stride, m.padding, m.ceil_mode, 1, m.count_include_pad,
                     m.divisor_override)
    if type(m) is nn.AdaptiveAvgPool2d:
        return _adaptive(node, m.output_size)
    if type(m) is nn.Flatten:
        if m.start_dim != 1 or m.end_dim != -1:
            raise _unsupported(node, f"flattens dims {m.start_dim}..{m.end_dim} (only 1..-1 is expressible)")
        return "flatten", {}
    if type(m) is nn.Dropout:
        return "dropout", {"p": float(m.p)}
    if type(m) is nn.Identity:
        return "identity", {}
    raise _unsupported(node, "is not expressible in a slimspec spec")


# -- functions and methods ------------------------------------------------------------------------
def _is_flatten_shape(node: fx.Node, x: fx.Node) -> bool:
    before, after = _shape(x), _shape(node)
    return before is not None and after is not None and len(before) == 4 and len(after) == 2 and \
        after[0] == before[0] and after[1] == before[1] * before[2] * before[3]


def _mean(trace: _Trace, node: fx.Node, x: fx.Node, dims: Any, keepdim: bool) -> None:
    dims = [dims] if isinstance(dims, int) else list(dims or [])
    if sorted(d % 4 for d in dims) != [2, 3] or len(_shape(x) or ()) != 4:
        raise _unsupported(node, "is a mean over dims other than the spatial ones (2, 3)")
    index = trace.add(node, "adaptive_avgpool", {"size": 1}, [x])
    if not keepdim:
        trace.layers.append(("flatten", {}, (index,)))
        trace.values[node] = len(trace.layers) - 1


def _join(trace: _Trace, node: fx.Node, kind: str, inputs: Sequence[Any]) -> None:
    if len(inputs) < 2 or not all(isinstance(x, fx.Node) for x in inputs):
        raise _unsupported(node, f"{'adds' if kind == 'add' else 'concatenates'} something that is not a tensor "
                                 "of the network")
    trace.add(node, kind, {}, inputs)


def _function(trace: _Trace, node: fx.Node) -> None:
    target, args = node.target, node.args
    if target in (operator.add, torch.add, operator.iadd):
        if node.kwargs.get("alpha", 1) != 1:
            raise _unsupported(node, "adds with alpha")
        return _join(trace, node, "add", [args[0], _arg(node, 1, "other")])
    if target is torch.cat:
        dim = _arg(node, 1, "dim", 0)
        tensors = list(_arg(node, 0, "tensors"))
        if len(_shape(tensors[0]) or ()) != 4:
            raise _unsupported(node, "concatenates vectors (only feature maps, along their channels, are expressible)")
        if dim not in (1, -3):
            raise _unsupported(node, f"concatenates along dim {dim} (only channels, dim 1, is expressible)")
        return _join(trace, node, "concat", tensors)
    if target is torch.flatten:
        start, end = _arg(node, 1, "start_dim", 0), _arg(node, 2, "end_dim", -1)
        if start != 1 or end != -1:
            raise _unsupported(node, f"flattens dims {start}..{end} (only 1..-1 is expressible)")
        return trace.add(node, "flatten", {}, [args[0]])
    if target in ACTIVATION_FUNCTIONS:
        return trace.add(node, ACTIVATION_FUNCTIONS[target], {}, [args[0]])
    if target is F.adaptive_avg_pool2d:
        return trace.add(node, *_adaptive(node, _arg(node, 1, "output_size")), [args[0]])
    if target is F.avg_pool2d:
        kind, opts = _pool(node, "avgpool", _arg(node, 1, "kernel_size"), _arg(node, 2, "stride"),
                           _arg(node, 3, "padding", 0), _arg(node, 4, "ceil_mode", False), 1,
                           _arg(node, 5, "count_include_pad", True), _arg(node, 6, "divisor_override"))
        return trace.add(node, kind, opts, [args[0]])
    if target is F.max_pool2d:
        if _arg(node, 6, "return_indices", False):
            raise _unsupported(node, "returns indices")
        kind, opts = _pool(node, "maxpool", _arg(node, 1, "kernel_size"), _arg(node, 2, "stride"),
                           _arg(node, 3, "padding", 0), _arg(node, 5, "ceil_mode", False), _arg(node, 4, "dilation", 1))
        return trace.add(node, kind, opts, [args[0]])
    if target is F.dropout:
        return trace.add(node, "dropout", {"p": float(_arg(node, 1, "p", 0.5))}, [args[0]])
    if target is torch.mean:
        return _mean(trace, node, args[0], _arg(node, 1, "dim"), _arg(node, 2, "keepdim", False))
    if target is torch.reshape and _is_flatten_shape(node, args[0]):
        return trace.add(node, "flatten", {}, [args[0]])
    if (target is getattr and args[1] == "shape") or (target is operator.getitem and trace.values.get(args[0]) == _SHAPE):
        trace.values[node] = _SHAPE
        return None
    raise _unsupported(node, "is not expressible in a slimspec spec")


def _method(trace: _Trace, node: fx.Node) -> None:
    name, x = node.target, node.args[0]
    if name in ("size", "dim"):
        trace.values[node] = _SHAPE
        return None
    if name in PASS_METHODS:
        trace.values[node] = trace.value(node, x)
        return None
    if name in ("view", "reshape") and _is_flatten_shape(node, x):
        return trace.add(node, "flatten", {}, [x])
    if name == "flatten":
        start, end = _arg(node, 1, "start_dim", 0), _arg(node, 2, "end_dim", -1)
        if start != 1 or end != -1:
            raise _unsupported(node, f"flattens dims {start}..{end} (only 1..-1 is expressible)")
        return trace.add(node, "flatten", {}, [x])
    if name in ACTIVATION_METHODS:
        return trace.add(node, ACTIVATION_METHODS[name], {}, [x])
    if name in ("add", "add_", "__add__", "__iadd__"):
        return _join(trace, node, "add", [x, _arg(node, 1, "other")])
    if name == "mean":
        return _mean(trace, node, x, _arg(node, 1, "dim"), _arg(node, 2, "keepdim", False))
    raise _unsupported(node, "is not expressible in a slimspec spec")


def _module(trace: _Trace, node: fx.Node) -> None:
    module = trace.root.get_submodule(node.target)
    kind, opts = _linear_or_conv_module(node, module)
    has_weights = any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(False))
    if has_weights and node.target in trace.used_modules:
        raise _unsupported(node, "is called a second time (shared weights are not expressible)")
    trace.used_modules[node.target] = len(trace.layers)
    trace.modules[len(trace.layers)] = node.target
    trace.add(node, kind, opts, [node.args[0]], module=node.target if has_weights else None)


# -- tracing --------------------------------------------------------------------------------------
def _traced(module: nn.Module, example: torch.Tensor, label: str) -> tuple[fx.GraphModule, Any]:
    """The traced graph, its nodes' shapes noted from one run on ``example``, and that run's output."""
    tracer = _LocatingTracer()
    try:
        graph = tracer.trace(module)
    except Exception as exc:  # noqa: BLE001 - any tracing failure is an input the importer cannot take
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelImportError(f"cannot trace {label} with torch.fx: {first}") from None
    gm = fx.GraphModule(tracer.root, graph)
    gm.graph.eliminate_dead_code()
    try:
        with torch.no_grad():
            output = _Shapes(gm).run(example)
    except Exception as exc:  # noqa: BLE001 - the module does not run on this input shape
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelImportError(f"{label} does not run on an input of shape {tuple(example.shape[1:])}: {first}") from None
    return gm, output


def _read(gm: fx.GraphModule, label: str) -> tuple[_Trace, fx.Node]:
    trace = _Trace(gm)
    handlers: dict[str, Callable[[_Trace, fx.Node], Any]] = {
        "call_module": _module, "call_function": _function, "call_method": _method}
    output: fx.Node | None = None
    try:
        for node in gm.graph.nodes:
            if node.op == "placeholder":
                if INPUT in trace.values.values():
                    raise _unsupported(node, "is a second input (a spec has one input image)")
                trace.values[node] = INPUT
            elif node.op == "output":
                output = node
            elif node.op in handlers:
                handlers[node.op](trace, node)
            else:
                raise _unsupported(node, "is not expressible in a slimspec spec")
    except _Unsupported as exc:
        raise ModelImportError(f"cannot import {label}: {_describe(exc.node, gm)} {exc.reason} "
                               f"(expressible: {', '.join(SUPPORTED)})") from None
    assert output is not None
    return trace, output


def _classifier(trace: _Trace, output: fx.Node, label: str) -> tuple[int, str]:
    """Take the final nn.Linear off the layer list: ``(num_classes, its module path)``."""
    result = output.args[0]
    last = trace.values.get(result) if isinstance(result, fx.Node) else None
    if not isinstance(last, int) or last < 0 or trace.layers[last][0] != "linear":
        raise ModelImportError(f"cannot import {label}: its output must be a single tensor from a final nn.Linear "
                               "(the classifier a spec implies)")
    kind, opts, inputs = trace.layers[last]
    if opts.get("bias") is False:
        raise ModelImportError(f"cannot import {label}: the final nn.Linear has no bias (a spec's classifier has one)")
    if any(last in refs for _, _, refs in trace.layers[last + 1:]):
        raise ModelImportError(f"cannot import {label}: the final nn.Linear's output is also used inside the network")
    del trace.layers[last:]  # anything after it computed nothing the output uses
    source = trace.sources.pop(last)
    trace.sources = {i: path for i, path in trace.sources.items() if i < last}
    feeding = inputs[0]
    if feeding != len(trace.layers) - 1:  # the classifier reads the last layer: route its input there
        trace.layers.append(("identity", {}, (feeding,)))
    return int(opts["out"]), source


# -- spec data --------------------------------------------------------------------------------------
def _is_chain(layers: list[tuple[str, dict, tuple[int, ...]]]) -> bool:
    for i, (kind, opts, inputs) in enumerate(layers):
        if inputs != (i - 1,) or kind not in SEQUENTIAL_KINDS or not set(opts) <= SEQUENTIAL_KINDS[kind]:
            return False
    return True


def _entry(kind: str, opts: dict, ref: Any = None) -> Any:
    if ref is None and not opts:
        return kind
    if ref is None and kind in SHORT_KEY and set(opts) == {SHORT_KEY[kind]}:
        return {kind: opts[SHORT_KEY[kind]]}
    body = dict(opts)
    if ref is not None:
        body["from"] = ref
    return {kind: body}


def _ref(index: int, target: int) -> int:
    """``from`` as written: -1 for the previous layer, else the layer's index (or -(index+1) for the input)."""
    if target == index - 1:
        return -1
    return target if target >= 0 else -(index + 1)


def _data(trace: _Trace, name: str, input_shape: Sequence[int], num_classes: int) -> dict:
    chain = _is_chain(trace.layers)
    layers = []
    for i, (kind, opts, inputs) in enumerate(trace.layers):
        if kind in ("add", "concat"):
            layers.append({kind: {"from": [_ref(i, t) for t in inputs]}})
        else:
            ref = _ref(i, inputs[0])
            layers.append(_entry(kind, opts, None if ref == -1 else ref))
    return {"slimspec": 1, "name": name, "arch": "sequential" if chain else "graph",
            "input": [int(v) for v in input_shape], "num_classes": num_classes, "layers": layers}


def _numbered(text: str, labels: dict[int, str]) -> str:
    """Append ``# i`` (and the user's module path) to each line of the layer list; ``from`` uses these indices."""
    out, index, inside = [], 0, False
    for line in text.splitlines():
        if line.startswith("layers:"):
            inside = True
        elif inside and not line.startswith(" "):
            inside = False
        if inside and re.match(r"^\s*- ", line) and "#" not in line:
            line = f"{line}  # {index}" + (f" {labels[index]}" if index in labels else "")
            index += 1
        out.append(line)
    return "\n".join(out) + "\n"


def _spec_name(module: nn.Module) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", type(module).__name__).strip("_").lower() or "model"


# -- public ---------------------------------------------------------------------------------------
def import_module(module: nn.Module, input_shape: Sequence[int], *, name: str | None = None,
                  source: str | None = None) -> tuple[Spec, dict[str, torch.Tensor]]:
    """``(spec, state_dict)`` for a user's module: a ``sequential`` spec if it is a plain chain, else ``graph``.

    ``input_shape`` is one image's ``(C, H, W)``. The spec's model is compared with the module
    on a random batch (eval mode); a difference raises ``ModelImportError``.
    """
    spec, state, _ = _import(module, input_shape, name, source)
    return spec, state


def _import(module: nn.Module, input_shape: Sequence[int], name: str | None, source: str | None
            ) -> tuple[Spec, dict[str, torch.Tensor], SpecNet]:
    if not isinstance(module, nn.Module):
        raise ModelImportError(f"expected a torch.nn.Module, got {type(module).__name__}")
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ModelImportError(f"input_shape must be (C, H, W) with positive sizes, got {tuple(input_shape)}")
    label = type(module).__name__
    was_training = module.training
    module.eval()
    try:
        example = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
        gm, expected = _traced(module, example, label)
        trace, output = _read(gm, label)
        num_classes, head = _classifier(trace, output, label)
        data = _data(trace, name or _spec_name(module), shape, num_classes)
        labels = {i: path for i, path in trace.modules.items() if i < len(trace.layers)}
        spec = spec_from_text(_numbered(format_spec(data), labels), source or f"python:{label}")
        state = _state(module, trace, head)
        model = _check(spec, state, example, expected, label)
    finally:
        module.train(was_training)
    return spec, state, model


def _state(module: nn.Module, trace: _Trace, head: str) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for new, old in [*((f"layers.{i}", path) for i, path in sorted(trace.sources.items())), ("fc", head)]:
        for key, tensor in module.get_submodule(old).state_dict().items():
            state[f"{new}.{key}"] = tensor.detach().cpu().clone()
    return state


@torch.no_grad()
def _check(spec: Spec, state: dict[str, torch.Tensor], example: torch.Tensor, expected: Any, label: str) -> SpecNet:
    """The spec's model holding ``state``, if it computes ``expected`` (the module's output) on ``example``."""
    with torch.device("meta"):  # no initialisation: every tensor comes from the module
        model = SpecNet(spec)
    model.load_state_dict(state, strict=True, assign=True)  # shares storage: callers keep either state or model
    actual = model.eval()(example)
    scale = max(1.0, float(expected.abs().max())) if isinstance(expected, torch.Tensor) else 1.0
    if not isinstance(expected, torch.Tensor) or expected.shape != actual.shape or \
            float((expected - actual).abs().max()) > 1e-4 * scale:
        raise ModelImportError(f"cannot import {label}: the spec's model does not compute what the module computes "
                               "(an operation with a behaviour torch.fx does not show)")
    return model


GUESSED_SIZES = (32, 224, 28, 64, 96, 128, 256, 16, 8)


@torch.no_grad()
def guess_input_shape(module: nn.Module) -> tuple[int, int, int]:
    """``(C, H, W)``: C from the first ``nn.Conv2d``, H = W the first of ``GUESSED_SIZES`` the module runs on."""
    conv = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise ModelImportError(f"cannot guess the input shape of {type(module).__name__} (no nn.Conv2d); "
                               "give input_shape=(C, H, W)")
    was_training = module.training
    module.eval()
    try:
        for size in GUESSED_SIZES:
            try:
                module(torch.zeros(1, conv.in_channels, size, size))
            except Exception:  # noqa: BLE001 - a shape the module does not take: try the next one
                continue
            return conv.in_channels, size, size
    finally:
        module.train(was_training)
    raise ModelImportError(f"cannot guess the input shape of {type(module).__name__} (tried "
                           f"{', '.join(f'{s}x{s}' for s in GUESSED_SIZES)}); give input_shape=(C, H, W)")


def from_module(module: nn.Module, input_shape: Sequence[int] | None = None, *, name: str | None = None):
    """Trace ``module`` into a spec and return ``(spec, model)``: a plain model holding its weights.

    The spec is ``sequential`` when the network is a plain chain of conv/bn/relu/pool/flatten/
    linear/dropout layers, else ``graph``; the final ``nn.Linear`` is the implied classifier.
    The model computes what ``module`` computes in eval mode. Without ``input_shape`` it is
    guessed (:func:`guess_input_shape`).
    """
    if input_shape is None:
        input_shape = guess_input_shape(module)
    spec, _, model = _import(module, input_shape, name, None)
    return spec, model.train(module.training)

