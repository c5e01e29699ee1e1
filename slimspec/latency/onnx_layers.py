"""One conv/linear (+ReLU) layer as a hand-built ONNX graph, for ONNX Runtime latency tables.

Building the two-node graph with ``onnx.helper`` takes milliseconds, where a full exporter
round trip per sampled width would take seconds.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .runtimes import ort_session, require


def layer_session(module: nn.Sequential, sig: dict[str, Any], x: torch.Tensor, threads: int | None):
    onnx = require("onnx", "ONNX Runtime latency tables")
    helper, numpy_helper = onnx.helper, onnx.numpy_helper
    layer = module[0]
    weight = layer.weight.detach().numpy()
    bias = layer.bias.detach().numpy()
    inits = [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "B")]
    if sig["op"] == "conv":
        k, s, p = sig["kernel"], sig["stride"], sig["padding"]
        first = helper.make_node("Conv", ["input", "W", "B"], ["y"], kernel_shape=[k, k], strides=[s, s],
                                 pads=[p, p, p, p], group=layer.groups)
    else:
        first = helper.make_node("Gemm", ["input", "W", "B"], ["y"], transB=1)
    nodes = [first] + ([helper.make_node("Relu", ["y"], ["output"])] if sig["relu"] else [])
    if not sig["relu"]:
        nodes[0].output[0] = "output"
    dims = ["batch", *x.shape[1:]]
    graph = helper.make_graph(nodes, "layer",
                              [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    return ort_session(model.SerializeToString(), threads)
