"""Weight transplant: old tensors -> the pruned network's tensors, by name and kept index.

Never by walking modules in order: each tensor is looked up by its parameter name, and each
of its channel dimensions is indexed with the kept positions of the axis the IR says it
carries (out channels, in channels, or flattened features). Gates are folded into the BN
(or conv) they scale first, so a gated model transplants into a plain one exactly.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from ..ir import IR, Axis, Node
from ..ir.ops import GROUP_IN, OPS
from ..utils.names import rename_prefix
from .criteria.base import PruneError
from .sources import axis_index, slot_sources

def _axis(node: Node, which: str) -> Axis:
    return node.axis if which == "out" else node.in_axis  # type: ignore[return-value]


def transplant(old_ir: IR, state: Mapping[str, torch.Tensor], kept: Mapping[str, tuple[int, ...]],
               target_keys: set[str], renames: Mapping[str, str] | None = None) -> dict[str, torch.Tensor]:
    """The state dict for the pruned network: every key of ``target_keys`` taken from ``state``.

    ``renames`` maps new module prefixes to old ones where whole blocks were removed.
    """
    out: dict[str, torch.Tensor] = {}
    for new_key in sorted(target_keys):
        key = rename_prefix(new_key, renames or {})
        node_name, attr = key.rsplit(".", 1)
        if key not in state:
            raise PruneError(f"transplant: the source weights have no tensor '{key}'")
        tensor = state[key]
        if node_name in old_ir:
            node = old_ir.node(node_name)
            for dim, which in enumerate(OPS[node.op].tensors(node).get(attr, ())):
                if which is None:
                    continue
                if which == GROUP_IN:
                    tensor = _group_inputs(old_ir, node, kept, tensor, dim)
                    continue
                index = axis_index(old_ir, _axis(node, which), kept)
                if index != list(range(tensor.shape[dim])):
                    tensor = tensor.index_select(dim, torch.tensor(index, dtype=torch.long))
        out[new_key] = tensor.clone()
    return out


def _group_inputs(ir: IR, node: Node, kept: Mapping[str, tuple[int, ...]], tensor: torch.Tensor,
                  dim: int) -> torch.Tensor:
    """A grouped conv's per-group input dim (its output dim already indexed): each kept filter keeps the kept
    input channels of its own group, as positions within that group (every group keeps as many: ``Slot.parts``)."""
    groups = int(node.attr("groups"))
    per_in, per_out = ir.axis_size(node.in_axis) // groups, node.shape[0] // groups  # type: ignore[arg-type]
    kept_in = axis_index(ir, node.in_axis, kept)  # type: ignore[arg-type]
    by_group = [[p - g * per_in for p in kept_in if p // per_in == g] for g in range(groups)]
    rows = [by_group[p // per_out] for p in axis_index(ir, node.axis, kept)]  # a depthwise conv's removed
    if all(columns == list(range(per_in)) for columns in rows):                # channels have no rows left
        return tensor
    if len({len(columns) for columns in rows}) != 1:
        raise PruneError(f"transplant: {node.name}: its groups keep different numbers of input channels")
    index = torch.tensor(rows, dtype=torch.long).view(len(rows), -1, *([1] * (tensor.dim() - 2)))
    return torch.gather(tensor, dim, index.expand(-1, -1, *tensor.shape[2:]))


def fold_gates(ir: IR, state: Mapping[str, torch.Tensor], binary: bool = False) -> dict[str, torch.Tensor]:
    """Fold every gate into the BN that normalizes its channels (or the producing conv/linear).

    gate * ReLU(BN(x)) == ReLU(BN'(x)) with gamma' = gate * gamma, beta' = gate * beta, valid for
    gate >= 0 (APG keeps gates non-negative). Binary gates fold as 0/1.
    """
    new = {k: v.clone() for k, v in state.items()}
    sources = slot_sources(ir)
    for node in ir.nodes_of("blockgate"):
        key = f"{node.name}.weight"
        if key in state:
            scale = float((state[key] > 0).float()[0]) if binary else float(state[key][0])
            if scale < 0:
                raise PruneError(f"{node.name}: a negative block gate cannot be folded")
            del new[key]
            for attr in ("weight", "bias"):  # the branch ends in a BN or a conv: scale it
                name = f"{node.inputs[0]}.{attr}"
                if name in new:
                    new[name] = new[name] * scale
    for node in ir.nodes_of("gate"):
        key = f"{node.name}.weight"
        if key not in state:
            continue
        gate = state[key].float()
        gate = (gate > 0).float() if binary else gate
        if node.attr("fold") == "readers":
            del new[key]
            _fold_into_readers(ir, node.name, gate, new)
            continue
        if (gate < 0).any():
            raise PruneError(f"{node.name}: negative gate values cannot be folded through ReLU")
        del new[key]
        for slot, offset in ir.axis_offsets(node.axis):
            values = gate[offset: offset + ir.slots[slot].size]
            targets = [s for s in sources.get(slot, []) if s.kind == "bn"] or \
                      [s for s in sources.get(slot, []) if s.kind == "producer"]
            if len(targets) != 1:
                raise PruneError(f"{node.name}: cannot fold gate of slot {slot} (needs exactly one BN or producer)")
            src = targets[0]
            idx = torch.tensor(src.positions, dtype=torch.long)
            for attr in ("weight", "bias"):
                name = f"{src.node}.{attr}"
                if name in new:
                    tensor = new[name]
                    shape = (-1,) + (1,) * (tensor.dim() - 1)
                    tensor[idx] = tensor[idx] * values.view(shape).to(tensor.dtype)
    return new


def gate_fold_keys(ir: IR, state: Mapping[str, torch.Tensor]) -> set[str]:
    """Every tensor :func:`fold_gates` may read or change (a superset): all but conv/linear weights, plus the
    weights of the layers a gate folds into (its slot's producers, its readers, a block gate's branch end)."""
    weighted = {n.name for n in ir.nodes_of("conv", "linear")}
    keys = {key for key in state if key.rsplit(".", 1)[0] not in weighted or not key.endswith("weight")}
    sources = slot_sources(ir)
    layers: set[str] = set()
    for node in ir.nodes_of("blockgate"):
        layers.add(node.inputs[0])
    for node in ir.nodes_of("gate"):
        for slot, _ in ir.axis_offsets(node.axis):
            layers.update(s.node for s in sources.get(slot, []) if s.kind == "producer")
        frontier = [node.name]
        while frontier:  # readers, through transparent ops (flatten, dropout, identity)
            name = frontier.pop()
            for reader in (n for n in ir.nodes if name in n.inputs):
                if reader.op in ("conv", "linear"):
                    layers.add(reader.name)
                elif OPS[reader.op].transparent:
                    frontier.append(reader.name)
    return keys | {f"{layer}.weight" for layer in layers if f"{layer}.weight" in state}


def _fold_into_readers(ir: IR, name: str, gate: torch.Tensor, new: dict[str, torch.Tensor]) -> None:
    """Scale the input columns of every conv/linear reading gate ``name`` (through transparent ops)."""
    for reader in (n for n in ir.nodes if name in n.inputs):
        if reader.op in ("conv", "linear"):
            weight = new[f"{reader.name}.weight"]
            groups = int(reader.attr("groups", 1))  # filter r of group g reads input channels g*per .. (g+1)*per
            columns = gate.view(groups, 1, -1).expand(-1, weight.shape[0] // groups, -1).reshape(weight.shape[0], -1)
            new[f"{reader.name}.weight"] = weight * columns.view(*columns.shape, *(1,) * (weight.dim() - 2)).to(
                weight.dtype)
        elif OPS[reader.op].transparent:  # flatten, dropout, identity: repeated per pixel after a flatten
            _fold_into_readers(ir, reader.name, gate.repeat_interleave(reader.axis.repeat // max(
                ir.node(reader.inputs[0]).axis.repeat, 1)), new)
        else:
            raise PruneError(f"{name}: cannot fold a gate into {reader.name} ({reader.op})")
