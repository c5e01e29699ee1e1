"""IR -> nn.Module: one generic network that runs the IR's nodes in order.

Each op of the table in :mod:`slimspec.ir.ops` becomes a module: the torch class its entry
names (``module``, constructed with ``module_args`` from the node's attributes), or, for ops
with more to them (conv/linear per build mode, BatchNorm 1d/2d, gates, shortcuts, selections),
its factory in ``MODULE_FACTORIES``; joins are ``FUNCTIONAL``. A test checks every op has
exactly one of the three.

Modules are registered under their node names (``features.3.conv``, ``layer2.0.bn1``), so
parameter names are deterministic, stable across builds of the same spec and across build
modes, and are exactly the names the pruner transplants by. The forward pass walks a
precomputed program and frees each intermediate as soon as its last reader has run.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..document import Spec
from ..ir import IR, Node
from ..ir.ops import OPS
from .layers import LAYER_SETS, PlainLayers
from .ops import ChannelLayerNorm, ChannelScale, ChannelSelect, GlobalAvgPool, ShortcutA
from ..errors import SpecError, SpecIssue
from ..utils.names import resolve_dotted
from ..utils.progress import progress

Factory = Callable[[IR, Node, PlainLayers], nn.Module]
PROGRESS_FROM = 5000  # nodes: networks this large show build progress on stderr


def _bn(ir: IR, node: Node, layers: PlainLayers) -> nn.Module:
    cls = nn.BatchNorm2d if len(node.shape) == 3 else nn.BatchNorm1d
    return cls(node.shape[0], eps=node.attr("eps"))


def _pool(cls: type[nn.Module]) -> Factory:
    return lambda ir, node, layers: cls(node.attr("kernel"), node.attr("stride"), node.attr("padding"),
                                        ceil_mode=bool(node.attr("ceil", False)))


def make_module(ir: IR, node: Node, layers: PlainLayers) -> nn.Module:
    """The module of one IR node: its factory, else the torch class its op-table entry names."""
    if node.op in MODULE_FACTORIES:
        return MODULE_FACTORIES[node.op](ir, node, layers)
    kind = OPS[node.op]
    if kind.module is None:
        raise ValueError(f"op '{node.op}' has neither a module factory nor a torch module in the op table")
    return resolve_dotted(kind.module)(**{arg: node.attr(attr) for attr, arg in kind.module_args.items()})


MODULE_FACTORIES: dict[str, Factory] = {
    "conv": lambda ir, n, layers: layers.conv(ir.axis_size(n.in_axis), n.shape[0], n.attr("kernel"),
                                              n.attr("stride"), n.attr("padding"), n.attr("bias"),
                                              n.attr("groups"), n.attr("dilation")),
    "linear": lambda ir, n, layers: layers.linear(ir.axis_size(n.in_axis), n.shape[0], n.attr("bias")),
    "bn": _bn,
    "gate": lambda ir, n, layers: layers.gate(n.shape[0]),
    "blockgate": lambda ir, n, layers: layers.gate(1),
    "maxpool": _pool(nn.MaxPool2d),
    "avgpool": _pool(nn.AvgPool2d),
    "gap": lambda ir, n, layers: GlobalAvgPool(),
    "scale": lambda ir, n, layers: ChannelScale(n.shape[0]),
    "layernorm": lambda ir, n, layers: ChannelLayerNorm(n.shape[0], eps=n.attr("eps")),
    "groupnorm": lambda ir, n, layers: nn.GroupNorm(n.attr("groups"), n.shape[0], eps=n.attr("eps")),
    "pad": lambda ir, n, layers: ShortcutA(n.attr("stride"), n.shape[0] - ir.axis_size(n.in_axis)),
    "select": lambda ir, n, layers: ChannelSelect(ir.slots[n.axis.segments[0]].index,
                                                  ir.slots[n.axis.segments[0]].base_size),
}

FUNCTIONAL: dict[str, Callable[..., torch.Tensor]] = {
    "add": lambda a, b: a + b,
    "mul": lambda a, b: a * b,
    "concat": lambda *xs: torch.cat(xs, dim=1),
}


class _Container(nn.Module):
    """A named grouping level (``features``, ``layer1.0``); holds children only."""


class SpecNet(nn.Module):
    """The network a spec describes, in one build mode (plain, masked or gated)."""

    def __init__(self, spec: Spec, mode: str = "plain", binary_gates: bool = False):
        super().__init__()
        ir = spec.ir
        if mode not in LAYER_SETS:
            raise SpecError([SpecIssue("mode", f"unknown build mode '{mode}' (choose from {', '.join(LAYER_SETS)})")])
        self.spec, self.ir, self.mode = spec, ir, mode
        layers = LAYER_SETS[mode](binary_gates)
        last_use = {name: i for i, node in enumerate(ir.nodes) for name in node.inputs}
        for name in ir.outputs:  # returned: kept to the end
            last_use[name] = len(ir.nodes)
        self._outputs = ir.outputs
        self._program: list[tuple[str, Callable, tuple[str, ...], tuple[str, ...]]] = []
        nodes = progress(ir.nodes[1:], desc=f"building {ir.name}", unit="layer",
                         enabled=len(ir.nodes) > PROGRESS_FROM)  # torch makes ~3,000 modules a second
        for i, node in enumerate(nodes, start=1):
            if node.op in FUNCTIONAL:
                fn: Callable = FUNCTIONAL[node.op]
            else:
                fn = make_module(ir, node, layers)
                self._register(node.name, fn)
            frees = tuple(name for name in set(node.inputs) if last_use.get(name) == i)
            self._program.append((node.name, fn, node.inputs, frees))

    def _register(self, name: str, module: nn.Module) -> None:
        *parents, leaf = name.split(".")
        holder: nn.Module = self
        for part in parents:
            if part not in holder._modules:
                holder.add_module(part, _Container())
            holder = holder._modules[part]  # type: ignore[assignment]
        holder.add_module(leaf, module)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The spec's output: one tensor, or a tuple in ``outputs`` order when the spec lists several."""
        values: dict[str, torch.Tensor] = {"input": x}
        for name, fn, inputs, frees in self._program:
            values[name] = fn(*(values[i] for i in inputs))
            for dead in frees:
                del values[dead]
        if len(self._outputs) == 1:
            return values[self._outputs[0]]
        return tuple(values[name] for name in self._outputs)

    def extra_repr(self) -> str:
        return f"spec={self.ir.name!r}, arch={self.ir.arch!r}, mode={self.mode!r}"
