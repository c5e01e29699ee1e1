"""Analytic parameter and MAC counts from the IR (no model is built).

MACs (multiply-accumulates for one input image) count convolution and linear layers only,
as Li et al. 2017 do; FLOPs are reported as 2 x MACs, the convention of Liu et al. 2017.
Parameters are trainable parameters of the plain (deployable) model: BatchNorm running
statistics and channel-selection indices are buffers and are not counted.
"""
from __future__ import annotations

from dataclasses import dataclass

from .graph import IR, Node
from .ops import OPS


@dataclass(frozen=True)
class LayerCount:
    name: str
    op: str
    shape: tuple[int, ...]
    slot: str
    params: int
    macs: int


def node_params(ir: IR, node: Node) -> int:
    return OPS[node.op].params(ir, node)


def node_macs(ir: IR, node: Node) -> int:
    return OPS[node.op].macs(ir, node)


def layer_counts(ir: IR) -> list[LayerCount]:
    """Per-node rows for every node that computes something (not the input or identities)."""
    rows = []
    for node in ir.nodes:
        if OPS[node.op].identity:
            continue
        slot = ",".join(s for s in node.axis.segments if not s.startswith("#"))
        rows.append(LayerCount(node.name, node.op, node.shape, slot, node_params(ir, node), node_macs(ir, node)))
    return rows


def count_params(ir: IR) -> int:
    return sum(node_params(ir, node) for node in ir.nodes)


def count_macs(ir: IR) -> int:
    return sum(node_macs(ir, node) for node in ir.nodes)
