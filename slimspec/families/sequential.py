"""``arch: sequential`` — a Keras-style layer list for nets that fit no family.

Layer kinds: conv, bn, relu, maxpool, avgpool, flatten, linear, dropout; the final
``Linear(num_classes)`` is implied. Conv and linear widths are prunable slots addressed by
their spec path (``layers[0].conv.out`` or, in the short form, ``layers[6].linear``).
"""
from __future__ import annotations

from collections.abc import Mapping

from ..ir import IR, IRBuilder
from .base import Family, register_family
from .common import write_channel_slots


def _parts(item: object) -> tuple[str, object]:
    if isinstance(item, str):
        return item, {}
    (kind, value), = item.items()  # type: ignore[union-attr]
    return kind, value


@register_family
class Sequential(Family):
    arch = "sequential"

    def emit(self, b: IRBuilder, data: dict) -> None:
        x = "input"
        pending_gate: str | None = None  # index of the last conv/linear whose slot still needs its gate

        def close_unit(x: str) -> str:
            nonlocal pending_gate
            if pending_gate is not None:
                x = b.gate(f"slots.{pending_gate}.gate", x, at=b.nodes[x].at)
                pending_gate = None
            return x

        for i, item in enumerate(data["layers"]):
            kind, value = _parts(item)
            name, at = f"layers.{i}", f"layers[{i}]"
            if kind in ("conv", "linear"):
                x = close_unit(x)
                opts = value if isinstance(value, dict) else {"out": value}
                slot = f"{at}.{kind}.out" if isinstance(value, dict) else f"{at}.{kind}"
                out = b.add_slot(slot, opts["out"])
                if kind == "conv":
                    if len(b.shape(x)) != 3:
                        b.issue(at, "conv after flatten/linear: the input is no longer a feature map")
                        continue
                    x = b.conv(name, x, out, opts.get("kernel", 3), opts.get("stride", 1), opts.get("padding", 0),
                               opts.get("bias", True), at=slot)
                else:
                    x = b.linear(name, x, out, opts.get("bias", True), at=slot)
                pending_gate = str(i)
            elif kind == "bn":
                x = b.bn(name, x, at=at)
            elif kind == "relu":
                x = b.relu(name, x, at=at)
            elif kind in ("maxpool", "avgpool"):
                opts = value if isinstance(value, dict) else {"kernel": value}
                if len(b.shape(x)) != 3:
                    b.issue(at, f"{kind} after flatten/linear: the input is no longer a feature map")
                    continue
                x = b.pool(name, x, kind, opts.get("kernel", 2), opts.get("stride"), at=at)
            elif kind == "flatten":
                x = close_unit(x)
                x = b.flatten(name, x, at=at)
            elif kind == "dropout":
                x = b.dropout(name, x, float(value), at=at)
        x = close_unit(x)
        b.classifier(x)

    def write(self, data: dict, ir: IR, sizes: Mapping[str, int], selects: Mapping) -> dict:
        return write_channel_slots(data, ir, sizes)
