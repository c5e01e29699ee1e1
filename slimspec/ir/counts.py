"""Analytic parameter and MAC counts from the IR (no model is built).

MACs (multiply-accumulates for one input image) count convolution and linear layers only,
as Li et al. 2017 do; FLOPs are reported as 2 x MACs, the convention of Liu et al. 2017.
Parameters are trainable parameters of the plain (deployable) model: BatchNorm running
statistics and channel-selection indices are buffers and are not counted.
"""
from __future__ import annotations

from dataclasses import dataclass

from .graph import IR, Node


@dataclass(frozen=True)
class LayerCount:
    name: str
    op: str
    shape: tuple[int, ...]
    slot: str
    params: int
    macs: int


def node_params(ir: IR, node: Node) -> int:
    if node.op == "conv":
        cin, cout, k = ir.axis_size(node.in_axis), node.shape[0], node.attr("kernel")
        return cout * cin * k * k + (cout if node.attr("bias") else 0)
    if node.op == "linear":
        cin, cout = ir.axis_size(node.in_axis), node.shape[0]
        return cin * cout + (cout if node.attr("bias") else 0)
    if node.op == "bn":
        return 2 * node.shape[0]
    return 0


def node_macs(ir: IR, node: Node) -> int:
    if node.op == "conv":
        cin, k = ir.axis_size(node.in_axis), node.attr("kernel")
        cout, h, w = node.shape
        return cout * cin * k * k * h * w
    if node.op == "linear":
        return ir.axis_size(node.in_axis) * node.shape[0]
    return 0


def layer_counts(ir: IR) -> list[LayerCount]:
    """Per-node rows for every node that computes something (not the input or identities)."""
    rows = []
    for node in ir.nodes:
        if node.op in ("input", "gate", "blockgate", "relu", "dropout"):
            continue
        slot = ",".join(s for s in node.axis.segments if not s.startswith("#"))
        rows.append(LayerCount(node.name, node.op, node.shape, slot, node_params(ir, node), node_macs(ir, node)))
    return rows


def count_params(ir: IR) -> int:
    return sum(node_params(ir, node) for node in ir.nodes)


def count_macs(ir: IR) -> int:
    return sum(node_macs(ir, node) for node in ir.nodes)
