"""``arch: densenet`` — DenseNet-BC-free CIFAR DenseNet with channel selection.

Network Slimming's DenseNet-40 (Liu et al. 2017; Huang et al. 2017): a stem conv, dense
blocks of BN -> selection -> ReLU -> 3x3 conv (``growth`` filters) whose output is
concatenated to the input, transitions of BN -> selection -> ReLU -> 1x1 conv -> 2x2 average
pool, and a BN-selection head. ``blocks: [12, 12, 12]`` are layer counts; once pruned a block
is a list with one channel set per layer (what its BN-selection keeps of the concatenated
input), and ``transitions`` / ``head_select`` carry the other selections.

Slots: ``blocks[d][l]``, ``transitions[d]``, ``head_select`` (selections); widths are fixed.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

from ..ir import IR, IRBuilder
from .base import Family, copy_data, register_family
from .common import selection_layer, selection_text


# JSON Schema of the keys of ``arch: densenet`` (assembled into the spec schema by families/schema.py).
SCHEMA: dict = {
    "description": "DenseNet (BN-ReLU-Conv layers, transitions) with channel selection.",
    "required": ["growth", "stem", "blocks"],
    "properties": {
        "growth": {"$ref": "#/$defs/posint"},
        "stem": {"$ref": "#/$defs/posint"},
        "blocks": {
            "type": "array",
            "minItems": 1,
            "title": "a non-empty list of dense blocks",
            "items": {
                "anyOf": [
                    {"$ref": "#/$defs/posint"},
                    {
                        "type": "array",
                        "minItems": 1,
                        "items": {"$ref": "#/$defs/channelSet"},
                        "title": "a non-empty list of channel sets, one per layer"
                    }
                ],
                "title": "a layer count or a list of channel sets, one per layer"
            }
        },
        "compression": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": 1,
            "default": 1,
            "title": "a number in (0, 1]"
        },
        "transitions": {
            "type": "array",
            "items": {"$ref": "#/$defs/channelSet"},
            "title": "a list of channel sets, one per transition"
        },
        "head_select": {"$ref": "#/$defs/channelSet"}
    }
}


def layer_selects(entry) -> list:
    return list(entry) if isinstance(entry, list) else [None] * entry


@register_family
class DenseNet(Family):
    arch = "densenet"
    schema = SCHEMA

    def emit(self, b: IRBuilder, data: dict) -> None:
        growth, compression = data["growth"], data["compression"]
        x = b.conv("stem.conv", "input", b.add_slot("#stem", data["stem"], "fixed"), 3, 1, 1, False, at="stem")
        transitions = data.get("transitions")
        if transitions is not None and len(transitions) != len(data["blocks"]) - 1:
            count = len(data["blocks"])
            b.issue("transitions", f"expected {count - 1} channel sets (one per transition between {count} dense blocks), "
                                   f"got {len(transitions)}")
            transitions = None
        for d, entry in enumerate(data["blocks"]):
            for i, select in enumerate(layer_selects(entry)):
                name = f"dense{d + 1}.{i}"
                y = selection_layer(b, name, x, ("blocks", d, i), select)
                y = b.conv(f"{name}.conv", y, b.add_slot(f"#{name}", growth, "fixed"), 3, 1, 1, False,
                           at=f"blocks[{d}][{i}]")
                x = b.concat(f"{name}.concat", [x, y], at=f"blocks[{d}][{i}]")
            if d < len(data["blocks"]) - 1:
                name = f"trans{d + 1}"
                out = int(math.floor(b.channels(x) * compression))
                y = selection_layer(b, name, x, ("transitions", d), transitions[d] if transitions else None)
                y = b.conv(f"{name}.conv", y, b.add_slot(f"#{name}", out, "fixed"), 1, 1, 0, False, at=f"transitions[{d}]")
                x = b.pool(f"{name}.pool", y, "avgpool", 2, at=f"transitions[{d}]")
        x = selection_layer(b, "head", x, ("head_select",), data.get("head_select"))
        x = b.gap("head.pool", x, at="head_select")
        b.classifier(x)

    def write(self, data: dict, ir: IR, sizes: Mapping[str, int], selects: Mapping[str, tuple[int, ...]]) -> dict:
        new = copy_data(data)

        def text(path: str) -> str | None:
            slot = ir.slots[path]
            return selection_text(selects.get(path, slot.index), slot.base_size)

        blocks = []
        for d, entry in enumerate(data["blocks"]):
            sel = [text(f"blocks[{d}][{i}]") for i in range(len(layer_selects(entry)))]
            blocks.append(len(sel) if all(s is None for s in sel) and not isinstance(entry, list)
                          else [s if s is not None else f"0-{ir.slots[f'blocks[{d}][{i}]'].base_size - 1}"
                                for i, s in enumerate(sel)])
        new["blocks"] = blocks
        trans = [text(f"transitions[{d}]") for d in range(len(data["blocks"]) - 1)]
        if any(t is not None for t in trans):
            new["transitions"] = [t if t is not None else f"0-{ir.slots[f'transitions[{d}]'].base_size - 1}"
                                  for d, t in enumerate(trans)]
        head = text("head_select")
        if head is not None:
            new["head_select"] = head
        return new
