"""Spec summaries computed from the IR alone (torch-free, so ``slimspec info`` is instant)."""
from __future__ import annotations

import os
from typing import Any

from ..document import Spec, load_spec, spec_from_text
from ..ir import count_macs, count_params, layer_counts


def read_spec(source: Spec | str | os.PathLike) -> Spec:
    """A spec from a YAML file, a stock name or YAML text, or the one a weights file (``.safetensors``)
    embeds under ``slimspec.spec`` (its header only is read; errors are located at ``FILE#spec``)."""
    if isinstance(source, Spec) or not str(source).endswith(".safetensors"):
        return load_spec(source)
    from ..weights import embedded_spec_text, read_metadata  # torch: only for weights files

    return spec_from_text(embedded_spec_text(read_metadata(source), source), f"{source}#spec")


def info(spec: Spec | str | os.PathLike) -> dict[str, Any]:
    """Params, MACs, FLOPs (2 x MACs) and per-layer rows, computed from the IR (no torch needed;
    a weights file's embedded spec is read with safetensors)."""
    spec = read_spec(spec)
    ir = spec.ir
    macs = count_macs(ir)
    return {
        "name": spec.name,
        "arch": spec.arch,
        "input": list(ir.input_shape),
        "num_classes": ir.num_classes,
        "outputs": [{"name": name, "shape": list(ir.node(name).shape)} for name in ir.outputs],
        "params": count_params(ir),
        "macs": macs,
        "flops": 2 * macs,
        "layers": [
            {"name": r.name, "op": r.op, "shape": list(r.shape), "slot": r.slot, "params": r.params, "macs": r.macs}
            for r in layer_counts(ir)
        ],
        "slots": [{"path": s.path, "size": s.size, "kind": s.kind} for s in ir.prunable_slots()],
    }
