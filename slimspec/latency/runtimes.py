"""Runtimes a model can be timed in: eager PyTorch, channels-last eager, ONNX Runtime.

A runtime turns an eval-mode module and an example input into a zero-argument callable
that runs one forward pass. Registered by name; ``slimspec bench --runtime`` and the latency
table read their choices from this registry. A runtime may also say how to run one layer of
a latency table (``layer``): ONNX Runtime builds the layer's two-node graph by hand, which
takes milliseconds where an exporter round trip per sampled width would take seconds. And it
may have a quicker way to the same runtime for the many networks the ``--round-to auto``
probe times (``quick``).
"""
from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import ExportError, MissingExtraError
from ..ir.ops import pair
from ..utils.registry import Registry
from .layers import LayerShape

Runner = Callable[[], object]
Prepare = Callable[[torch.nn.Module, torch.Tensor, int | None], Runner]
PrepareLayer = Callable[[torch.nn.Sequential, LayerShape, torch.Tensor, int | None], Runner]


@dataclass(frozen=True)
class Runtime:
    name: str
    help: str
    prepare: Prepare
    layer: PrepareLayer | None = None  # how to run one latency-table layer, when not as ``prepare`` does
    quick: Prepare | None = None  # a quicker way to the same runtime (the ``--round-to auto`` probe's many networks)

    def prepare_quick(self, model: torch.nn.Module, x: torch.Tensor, threads: int | None) -> Runner:
        """As :meth:`prepare` (the same runtime and optimizations), made the quickest way there is."""
        return (self.quick or self.prepare)(model, x, threads)

    def prepare_layer(self, module: torch.nn.Sequential, shape: LayerShape, x: torch.Tensor,
                      threads: int | None) -> Runner:
        """One forward pass of a latency-table layer (``module``, of ``shape``) on ``x``."""
        return self.layer(module, shape, x, threads) if self.layer else self.prepare(module, x, threads)


_RUNTIMES: Registry[Runtime] = Registry("runtime", ExportError)


def register_runtime(name: str, help: str, *, layer: PrepareLayer | None = None,
                     quick: Prepare | None = None) -> Callable[[Prepare], Prepare]:
    def decorate(prepare: Prepare) -> Prepare:
        _RUNTIMES.add(name, Runtime(name, help, prepare, layer, quick))
        return prepare
    return decorate


def get_runtime(name: str) -> Runtime:
    return _RUNTIMES.get(name)


def runtime_names() -> list[str]:
    return _RUNTIMES.names()


@register_runtime("eager", "PyTorch eager mode, contiguous (NCHW) tensors")
def _eager(model: torch.nn.Module, x: torch.Tensor, threads: int | None) -> Runner:
    model.eval()

    def run() -> object:
        with torch.inference_mode():
            return model(x)
    return run


@register_runtime("channels-last", "PyTorch eager mode, channels-last (NHWC) weights and input")
def _channels_last(model: torch.nn.Module, x: torch.Tensor, threads: int | None) -> Runner:
    model = model.eval().to(memory_format=torch.channels_last)
    if x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return _eager(model, x, threads)


def require(module: str, feature: str, extra: str = "onnx"):
    """Import an optional module or raise :class:`MissingExtraError` naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(feature, extra, module) from None


def dynamic_batch(x: torch.Tensor) -> tuple[torch.Tensor, tuple[dict[int, Any]]]:
    """``(example, dynamic_shapes)`` for torch.export with a dynamic batch axis.

    torch.export specializes a size-1 dimension, so a batch of one is traced as two samples.
    """
    batch = torch.export.Dim("batch", min=1, max=4096)
    return (torch.cat([x, x]) if x.shape[0] < 2 else x), ({0: batch},)


def onnx_export(model: torch.nn.Module, x: torch.Tensor, path: str | io.BytesIO | None = None,
                *, opset: int = 18):
    """Export ``model`` to ONNX with a dynamic batch axis (input ``input``, output ``output``).

    Uses the torch.export-based exporter (``dynamo=True``); returns the ``ONNXProgram``.
    """
    for module in ("onnx", "onnxscript"):
        require(module, "ONNX export")
    x, dynamic_shapes = dynamic_batch(x)
    try:
        program = torch.onnx.export(model.eval(), (x,), None, input_names=["input"], output_names=["output"],
                                    dynamic_shapes=dynamic_shapes, opset_version=opset, dynamo=True,
                                    external_data=False, verbose=False)
    except Exception as exc:  # the exporter raises many types; the model is what failed
        raise ExportError(f"ONNX export failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
    if path is not None:
        program.save(path) if not isinstance(path, io.BytesIO) else path.write(program.model_proto.SerializeToString())
    return program


def ort_session(model_bytes: bytes | str, threads: int | None = None):
    """An ONNX Runtime CPU session with all graph optimizations (Conv+BN+ReLU fusion among them)."""
    ort = require("onnxruntime", "ONNX Runtime")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def _onnxruntime_layer(module: torch.nn.Sequential, shape: LayerShape, x: torch.Tensor,
                       threads: int | None) -> Runner:
    """One conv/linear (+ReLU) layer as a hand-built ONNX graph (``onnx.helper``), in a session."""
    onnx = require("onnx", "ONNX Runtime latency tables")
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    layer = module[0]
    inits = [numpy_helper.from_array(layer.weight.detach().numpy(), "W"),
             numpy_helper.from_array(layer.bias.detach().numpy(), "B")]
    if shape.op == "conv":
        (ph, pw) = pair(shape.padding)
        first = helper.make_node("Conv", ["input", "W", "B"], ["y"], kernel_shape=list(pair(shape.kernel)),
                                 strides=list(pair(shape.stride)), pads=[ph, pw, ph, pw], group=layer.groups)
    else:
        first = helper.make_node("Gemm", ["input", "W", "B"], ["y"], transB=1)
    nodes = [first] + ([helper.make_node("Relu", ["y"], ["output"])] if shape.relu else [])
    if not shape.relu:
        nodes[0].output[0] = "output"
    graph = helper.make_graph(nodes, "layer",
                              [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["batch", *x.shape[1:]])],
                              [helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    session = ort_session(model.SerializeToString(), threads)
    feed = {"input": x.detach().cpu().numpy()}
    return lambda: session.run(None, feed)


def _onnxruntime_quick(model: torch.nn.Module, x: torch.Tensor, threads: int | None) -> Runner:
    """ONNX Runtime on a graph from torch's TorchScript-based exporter (a second where torch.export takes ten;
    a probe only times it): the same session options. Where that exporter cannot, the torch.export one."""
    for module in ("onnx", "onnxruntime"):
        require(module, "ONNX Runtime")
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model.eval(), (x,), buffer, dynamo=False, input_names=["input"], output_names=["output"],
                              opset_version=17)
    except Exception:  # noqa: BLE001 - any failure of the legacy exporter: take the main one
        return _onnxruntime(model, x, threads)
    return _session_runner(buffer.getvalue(), x, threads)


def _session_runner(model_bytes: bytes, x: torch.Tensor, threads: int | None) -> Runner:
    """One forward pass of a serialized ONNX model on ``x`` in an :func:`ort_session`."""
    session = ort_session(model_bytes, threads)
    feed = {"input": x.detach().cpu().numpy()}
    return lambda: session.run(None, feed)


@register_runtime("onnxruntime", "ONNX Runtime (CPU), exported with a dynamic batch axis, all graph optimizations",
                  layer=_onnxruntime_layer, quick=_onnxruntime_quick)
def _onnxruntime(model: torch.nn.Module, x: torch.Tensor, threads: int | None) -> Runner:
    buffer = io.BytesIO()
    onnx_export(model, x, buffer)
    return _session_runner(buffer.getvalue(), x, threads)
