"""A Keras-like summary of a built model, measured by running one dummy forward pass."""
from __future__ import annotations

from typing import Any

from ..document import Spec
from ..ir import count_params
from ..utils.tables import format_table, human


def model_summary(model: Any, spec: Spec) -> str:
    import torch

    rows: list[list[object]] = []
    handles = []
    for name, module in model.named_modules():
        if name and not list(module.children()):
            def hook(mod, inputs, output, name=name):
                own = sum(p.numel() for p in mod.parameters(recurse=False))
                rows.append([name, type(mod).__name__, "x".join(map(str, output.shape[1:])), f"{own:,}"])
            handles.append(module.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model(torch.zeros(1, *spec.ir.input_shape))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    total = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() for b in model.buffers())
    lines = [format_table(["layer", "type", "output", "params"], rows, "llrr"), ""]
    shapes = ", ".join(str(list(t.shape)) for t in (output if isinstance(output, tuple) else (output,)))
    lines.append(f"model: {spec.name} ({spec.arch}), mode {model.mode}, forward {shapes} ok")
    lines.append(f"parameters: {total:,} ({human(total)}); buffers: {buffers:,}")
    analytic = count_params(spec.ir)
    if model.mode != "gated":
        lines.append(f"analytic parameter count: {analytic:,} ({'matches' if analytic == total else 'MISMATCH'})")
    else:
        lines.append(f"analytic parameter count (plain): {analytic:,}; gates add {total - analytic:,}")
    return "\n".join(lines)
