"""nn.Module -> spec: trace a module with torch.fx into a ``sequential`` or ``graph`` spec.

The inverse of :mod:`slimspec.nn.net` (which builds modules from the IR). ``from_module(module,
input_shape)`` traces the module (eval mode, torch.fx symbolic tracing), maps each node to a layer
through the dispatch tables of :mod:`slimspec.interop.fx_ops` (keyed by module type, function and
tensor method; the op table's kinds included), writes a ``sequential`` spec when every layer reads
the one before it, else a ``graph`` spec (``from`` inputs, ``add`` and ``concat`` joins), takes the
final ``nn.Linear`` as the implied classifier, renames the state dict to slimspec's module names,
builds the spec's model and checks that it computes what the module computes (eval mode). Anything
a spec cannot express is refused with one line naming the first such node and where it is in the
user's code.
"""
from __future__ import annotations

import linecache
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from ..document import Spec, spec_from_text
from ..errors import ModelImportError
from ..ir.ops import OPS
from ..nn.net import SpecNet
from ..utils.text import listing
from ..weights import nonfinite
from ..specio.yamlio import format_spec
from .fx_ops import (SHAPE, SUBCLASSES_OK, Unsupported, callable_name, channels_last, expressible, function_handler, method_handler,
                     module_handler, mutates)
from .fx_values import Layout, Param, shape_of

INPUT = -1
JOINS = ("add", "mul", "concat")  # roles whose layers read a list ``from``
Source = str | dict[str, tuple[str, tuple[int, ...] | None]]
# a layer's weights: its module's path, or spec key -> (path of a parameter or buffer, the shape the spec stores)
_TORCH_DIR = re.compile(r"[/\\]torch[/\\]")  # torch's own frames (torchvision's are the model's code)


@dataclass
class Trace:
    """The layers read off the traced graph, and where their weights come from."""

    root: nn.Module
    layers: list[tuple[str, dict, tuple[int, ...]]] = field(default_factory=list)  # kind, options, inputs
    sources: dict[int, Source] = field(default_factory=dict)  # layer index -> where its weights are in the model
    values: dict[fx.Node, Any] = field(default_factory=dict)  # fx node -> layer index, INPUT, SHAPE, Param, Layout
    used_modules: dict[str, int] = field(default_factory=dict)
    modules: dict[int, str] = field(default_factory=dict)  # layer index -> module path (for comments)

    def add(self, node: fx.Node, kind: str, opts: dict, inputs: Sequence[fx.Node], module: str | None = None, *,
            source: Source | None = None, last_ok: bool = False) -> int:
        """A layer computing ``node`` from ``inputs``; ``source``: where its weights are (``module``: a module's).

        ``last_ok``: the layer treats each channel alike, so it may read channels-last inputs (all of them
        then), and its output is channels-last too.
        """
        last = [isinstance(self.values.get(x), Layout) and self.values[x].form == "last" for x in inputs]
        if any(last) and not (last_ok and all(last)):
            raise Unsupported(node, "reads a channels-last tensor (between permute(0, 2, 3, 1) and permute(0, 3, 1, "
                                    "2) only per-channel layers are expressible: LayerNorm, Linear, activations, "
                                    "dropout, scales)")
        refs = tuple(self.values[x].index if is_last else self.value(node, x) for x, is_last in zip(inputs, last))
        index = self.append(kind, opts, refs, node)
        if any(last):
            self.values[node] = Layout("last", index)
        if module is not None:
            self.sources[index] = module
        if source is not None:
            self.sources[index] = source
        return index

    def append(self, kind: str, opts: dict, refs: tuple[int, ...], node: fx.Node) -> int:
        """A layer over earlier layers (``refs``) that now stands for ``node``."""
        self.layers.append((kind, opts, refs))
        self.values[node] = len(self.layers) - 1
        return len(self.layers) - 1

    def value(self, user: fx.Node, arg: Any) -> int:
        """The layer whose output ``arg`` is (INPUT for the image); anything else is refused."""
        value = self.values.get(arg) if isinstance(arg, fx.Node) else None
        if isinstance(value, Layout) and value.form == "last":
            raise Unsupported(user, "reads a channels-last tensor (between permute(0, 2, 3, 1) and permute(0, 3, 1, 2) "
                                    "only per-channel layers are expressible: LayerNorm, Linear, activations, dropout, "
                                    "scales)")
        if not isinstance(value, int) or isinstance(value, bool):
            raise Unsupported(user, "takes an input that is not a feature tensor of the network")
        return value


# -- where a node comes from ----------------------------------------------------------------------
class _LocatingTracer(fx.Tracer):
    """fx's tracer, noting for each node the innermost line of user code that made it.

    (fx's own ``record_stack_traces`` costs seconds on first use; walking the frames is cheap.)
    """

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        """torch's modules, and subclasses that compute what their torch class computes (timm's ``Linear``)."""
        return super().is_leaf_module(m, module_qualified_name) or isinstance(m, SUBCLASSES_OK)

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
        what = callable_name(node.target)
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


class _Shapes(fx.Interpreter):
    """Runs the traced graph once, noting each tensor's shape (``node.meta["shape"]``)."""

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        if isinstance(out, torch.Tensor):
            n.meta["shape"] = tuple(out.shape)
        return out


# -- reading the graph ------------------------------------------------------------------------------
def _module(trace: Trace, node: fx.Node) -> None:
    module = trace.root.get_submodule(node.target)
    kind, opts = module_handler(node, module)(node, module)
    x = node.args[0]
    last = isinstance(trace.values.get(x), Layout) and trace.values[x].form == "last"
    reshapes: dict[str, tuple[int, ...]] = {}
    if last:
        kind, opts, reshapes = channels_last(node, module, kind, opts)
    elif kind == "layernorm" and len(shape_of(x) or ()) != 2:
        raise Unsupported(node, "normalizes the last dim of a channels-first map (permute it to channels-last first)")
    has_weights = any(True for _ in module.parameters(recurse=False)) or any(True for _ in module.buffers(False))
    if has_weights and node.target in trace.used_modules:
        raise Unsupported(node, "is called a second time (shared weights are not expressible)")
    trace.used_modules[node.target] = len(trace.layers)
    trace.modules[len(trace.layers)] = node.target
    source: Source | None = None
    if has_weights and reshapes:
        source = {key: (f"{node.target}.{key}", reshapes.get(key)) for key in module.state_dict()}
    trace.add(node, kind, opts, [x], module=node.target if has_weights and not reshapes else None, source=source,
              last_ok=last)


def _sizes_only(trace: Trace, node: fx.Node) -> bool:
    """A call computing a size from sizes (``C // groups``, ``x.ndim == 4``, ``torch._assert(...)``): a size too."""
    found: list[Any] = []
    fx.node.map_arg((node.args, node.kwargs), lambda n: found.append(trace.values.get(n)) or n)
    if found and all(value == SHAPE for value in found):
        trace.values[node] = SHAPE
        return True
    return False


def _function(trace: Trace, node: fx.Node) -> None:
    if not _sizes_only(trace, node):
        function_handler(node)(trace, node)


def _method(trace: Trace, node: fx.Node) -> None:
    if not _sizes_only(trace, node):
        method_handler(node)(trace, node)


def _attribute(trace: Trace, node: fx.Node) -> None:
    """A parameter or buffer the module's code reads itself (a layer scale, a functional norm's weights)."""
    value = trace.root
    for part in str(node.target).split("."):
        value = getattr(value, part, None)
    if not isinstance(value, torch.Tensor):
        raise Unsupported(node, "reads an attribute that is not a tensor of the module")
    trace.values[node] = Param(str(node.target), tuple(value.shape))


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
    gm.graph.eliminate_dead_code(is_impure_node=lambda node: node.is_impure() or mutates(gm, node))
    try:
        with torch.no_grad():
            _Shapes(gm).run(example.clone())  # in-place ops must not touch the example
            output = module(example.clone())  # the import is checked against the module itself
    except Exception as exc:  # noqa: BLE001 - the module does not run on this input shape
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelImportError(f"{label} does not run on an input of shape {tuple(example.shape[1:])}: {first}") from None
    return gm, output


def _read(gm: fx.GraphModule, label: str) -> tuple[Trace, fx.Node]:
    trace = Trace(gm)
    handlers = {"call_module": _module, "call_function": _function, "call_method": _method, "get_attr": _attribute}
    output: fx.Node | None = None
    try:
        for node in gm.graph.nodes:
            if node.op == "placeholder":
                if INPUT in trace.values.values():
                    raise Unsupported(node, "is a second input (a spec has one input image)")
                trace.values[node] = INPUT
            elif node.op == "output":
                output = node
            elif node.op in handlers:
                handlers[node.op](trace, node)
                target = node.args[0] if node.args else None
                if mutates(gm, node) and isinstance(target, fx.Node) and \
                        isinstance(trace.values.get(target), (int, Layout)):
                    trace.values[target] = trace.values[node]  # later readers of the tensor see the new values
            else:
                raise Unsupported(node, "is not expressible in a slimspec spec")
    except Unsupported as exc:
        raise ModelImportError(f"cannot import {label}: {_describe(exc.node, gm)} {exc.reason} "
                               f"(expressible: {expressible()})") from None
    assert output is not None
    return trace, output


def _classifier(trace: Trace, output: fx.Node) -> tuple[int, str] | None:
    """Take a final nn.Linear with a bias, read by nothing else, off the layer list as the implied classifier:
    ``(num_classes, its module path)``; None when the output is something else (see :func:`_outputs`)."""
    result = output.args[0]
    last = trace.values.get(result) if isinstance(result, fx.Node) else None
    if not isinstance(last, int) or last < 0 or trace.layers[last][0] != "linear" or last not in trace.sources:
        return None
    kind, opts, inputs = trace.layers[last]
    if opts.get("bias") is False or any(last in refs for _, _, refs in trace.layers[last + 1:]):
        return None
    del trace.layers[last:]  # anything after it computed nothing the output uses
    source = trace.sources.pop(last)
    assert isinstance(source, str)
    trace.sources = {i: path for i, path in trace.sources.items() if i < last}
    feeding = inputs[0]
    if feeding != len(trace.layers) - 1:  # the classifier reads the last layer: route its input there
        trace.layers.append(("identity", {}, (feeding,)))
    return int(opts["out"]), source


def _outputs(trace: Trace, output: fx.Node, label: str) -> list[int]:
    """The layers a model returns when its output is not one final classifier (a conv head, a tuple of maps)."""
    result = output.args[0]
    nodes = list(result) if isinstance(result, (tuple, list)) else [result]
    indices = []
    for node in nodes:
        value = trace.values.get(node) if isinstance(node, fx.Node) else None
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ModelImportError(f"cannot import {label}: its output must be a tensor or a tuple of tensors computed "
                                   "by the network")
        indices.append(value)
    if len(set(indices)) != len(indices):
        raise ModelImportError(f"cannot import {label}: it returns the same tensor twice")
    last = max(indices)
    del trace.layers[last + 1:]  # computed nothing the outputs use
    trace.sources = {i: path for i, path in trace.sources.items() if i <= last}
    return indices


# -- spec data --------------------------------------------------------------------------------------
def _is_chain(layers: list[tuple[str, dict, tuple[int, ...]]]) -> bool:
    """Every layer reads the one before it: a ``sequential`` spec (a ``graph`` with every ``from`` implied)."""
    return all(inputs == (i - 1,) for i, (_, _, inputs) in enumerate(layers))


def _entry(kind: str, opts: dict, ref: Any = None) -> Any:
    if ref is None and not opts:
        return kind
    short = OPS[kind].layer.short  # type: ignore[union-attr]
    if ref is None and short is not None and set(opts) == {short}:
        return {kind: opts[short]}
    body = dict(opts)
    if ref is not None:
        body["from"] = ref
    return {kind: body}


def _ref(index: int, target: int) -> int:
    """``from`` as written: -1 for the previous layer, else the layer's index (or -(index+1) for the input)."""
    if target == index - 1:
        return -1
    return target if target >= 0 else -(index + 1)


def _data(trace: Trace, name: str, input_shape: Sequence[int], num_classes: int | None,
          outputs: list[int] | None) -> dict:
    """The spec's data: ``num_classes`` for an implied classifier, else ``outputs`` (a ``graph``)."""
    chain = _is_chain(trace.layers) and outputs is None
    layers = []
    for i, (kind, opts, inputs) in enumerate(trace.layers):
        if len(inputs) > 1 or OPS[kind].layer.role in JOINS:  # type: ignore[union-attr]
            layers.append({kind: {**opts, "from": [_ref(i, t) for t in inputs]}})
        else:
            ref = _ref(i, inputs[0])
            layers.append(_entry(kind, opts, None if ref == -1 else ref))
    data = {"slimspec": 1, "name": name, "arch": "sequential" if chain else "graph",
            "input": [int(v) for v in input_shape]}
    if outputs is None:
        data["num_classes"] = num_classes
    data["layers"] = layers
    if outputs is not None:
        data["outputs"] = outputs
    return data


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
    on a random batch (eval mode); a difference raises ``ModelImportError``. Like
    ``module.state_dict()``, the state shares storage with the module (CPU tensors are not copied).
    """
    spec, state, _ = _import(module, input_shape, name, source, copy=False)
    return spec, state


def _import(module: nn.Module, input_shape: Sequence[int], name: str | None, source: str | None, *,
            copy: bool) -> tuple[Spec, dict[str, torch.Tensor], SpecNet]:
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
        classifier = _classifier(trace, output)
        outputs = _outputs(trace, output, label) if classifier is None else None
        num_classes, head = classifier if classifier is not None else (None, None)
        data = _data(trace, name or _spec_name(module), shape, num_classes, outputs)
        labels = {i: path for i, path in trace.modules.items() if i < len(trace.layers)}
        spec = spec_from_text(_numbered(format_spec(data), labels), source or f"python:{label}")
        state = _state(module, trace, head, label, copy)
        model = _check(spec, state, example, expected, label)
    finally:
        module.train(was_training)
    return spec, state, model


def _tensors(module: nn.Module, prefix: str, source: Source) -> list[tuple[str, str, torch.Tensor]]:
    """``(spec key, path in the module, tensor as the spec stores it)`` of one layer's weights."""
    if isinstance(source, str):
        return [(f"{prefix}.{key}", f"{source}.{key}", tensor)
                for key, tensor in module.get_submodule(source).state_dict(keep_vars=True).items()]
    found = []
    for key, (path, shape) in source.items():
        owner, _, leaf = path.rpartition(".")
        tensor = getattr(module.get_submodule(owner) if owner else module, leaf, None)
        if tensor is None and key == "num_batches_tracked":  # F.batch_norm on buffers of no BatchNorm: a new count
            tensor = torch.tensor(0, dtype=torch.long)
        found.append((f"{prefix}.{key}", path, tensor if shape is None else tensor.reshape(shape)))
    return found


def _state(module: nn.Module, trace: Trace, head: str | None, label: str, copy: bool) -> dict[str, torch.Tensor]:
    """The module's tensors under the spec's module names: refused when two layers share one (tied weights) or
    when one holds NaN or inf (every later score and output would lie). With ``copy`` the tensors are the
    state's own; without, they share the module's storage (an import that only writes a file needs no copy)."""
    state: dict[str, torch.Tensor] = {}
    owners: dict[int, str] = {}
    layers = [(f"layers.{i}", source) for i, source in sorted(trace.sources.items())]
    for new, old, tensor in [item for prefix, source in [*layers, *([("fc", head)] if head else [])]
                             for item in _tensors(module, prefix, source)]:
        if tensor.numel() and tensor.data_ptr() in owners and owners[tensor.data_ptr()] != old:
            raise ModelImportError(f"cannot import {label}: '{old}' is the same tensor as "
                                   f"'{owners[tensor.data_ptr()]}' (tied weights are not expressible in a spec)")
        if tensor.numel():
            owners[tensor.data_ptr()] = old
        tensor = tensor.detach().cpu()
        state[new] = tensor.clone() if copy else tensor
    bad = nonfinite(state)
    if bad:
        raise ModelImportError(f"cannot import {label}: the weights hold NaN or inf values in {listing(bad, 8)}")
    return state


@torch.no_grad()
def _check(spec: Spec, state: dict[str, torch.Tensor], example: torch.Tensor, expected: Any, label: str) -> SpecNet:
    """The spec's model holding ``state``, if it computes ``expected`` (the module's output) on ``example``."""
    with torch.device("meta"):  # no initialisation: every tensor comes from the module
        model = SpecNet(spec)
    model.load_state_dict(state, strict=True, assign=True)  # shares storage: callers keep either state or model
    actual = model.eval()(example)
    pairs = list(zip(expected, actual)) if isinstance(expected, (tuple, list)) and isinstance(actual, (tuple, list)) \
        and len(expected) == len(actual) else [(expected, actual)]
    for want, got in pairs:
        scale = max(1.0, float(want.abs().max())) if isinstance(want, torch.Tensor) else 1.0
        if not isinstance(want, torch.Tensor) or not isinstance(got, torch.Tensor) or want.shape != got.shape or \
                float((want - got).abs().max()) > 1e-4 * scale:
            raise ModelImportError(f"cannot import {label}: the spec's model does not compute what the module "
                                   "computes (an operation with a behaviour torch.fx does not show)")
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

    The spec is ``sequential`` when every layer reads the one before it, else ``graph``; the
    final ``nn.Linear`` is the implied classifier.
    The model computes what ``module`` computes in eval mode. Without ``input_shape`` it is
    guessed (:func:`guess_input_shape`).
    """
    if input_shape is None:
        input_shape = guess_input_shape(module)
    spec, _, model = _import(module, input_shape, name, None, copy=True)  # the model must not alias the module
    return spec, model.train(module.training)

