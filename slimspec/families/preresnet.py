"""``arch: preresnet`` — pre-activation bottleneck ResNet with channel selection.

Network Slimming's ResNet-164 (Liu et al. 2017; He et al. 2016 "Identity Mappings"). Each
block's first BN runs on the full residual stream, then a channel selection keeps a subset of
it before conv1; the spec records that subset as a channel set. A block is ``[c1, c2]`` or,
once pruned, ``{select: "0-5,9,12-63", inner: [c1, c2]}``. The head has the same
BN-selection before the classifier (``head_select``). Where the stream's shape changes, the
shortcut is a 1x1 conv (no BN), as in the reference code. Residual streams are not pruned.

Slots: ``stages[s].blocks[b].select``, ``stages[s].blocks[b].inner[0|1]``, ``head_select``.
"""
from __future__ import annotations

from collections.abc import Mapping

from ..ir import IR, IRBuilder
from .base import Family, copy_data, register_family
from .common import selection_layer, selection_text, stage_schema
from .resnet import block_renames, kept_blocks


# JSON Schema of the keys of ``arch: preresnet`` (assembled into the spec schema by families/schema.py).
SCHEMA: dict = {
    "description": "Pre-activation bottleneck ResNet with channel selection.",
    "required": ["stem", "stages"],
    "properties": {
        "block": {"const": "bottleneck"},
        "stem": {"$ref": "#/$defs/posint"},
        "stages": {
            "type": "array",
            "minItems": 1,
            "title": "a non-empty list of stages",
            "items": {"$ref": "#/$defs/preresnetStage"}
        },
        "head_select": {"$ref": "#/$defs/channelSet"}
    }
}

# Named definitions SCHEMA refers to as ``#/$defs/NAME``.
SCHEMA_DEFS: dict = {
    "preresnetStage": stage_schema(
        {"anyOf": [{"$ref": "#/$defs/posint"}, {"$ref": "#/$defs/pair"}, {"type": "object", "additionalProperties": False, "required": ["inner"], "title": "a mapping {select: \"0-5,9\", inner: [c1, c2]}", "properties": {"select": {"$ref": "#/$defs/channelSet"}, "inner": {"$ref": "#/$defs/pair"}}}], "title": "a positive integer, a pair [c1, c2] or a mapping {select: \"0-5,9\", inner: [c1, c2]}"},
        "a non-empty list of per-block entries", "a block count or a list of per-block entries"),
}


def block_entries(stage: dict) -> list[tuple[str | None, list[int]]]:
    """``(select, [c1, c2])`` per block."""
    blocks = stage["blocks"]
    if not isinstance(blocks, list):
        inner = stage["width"] // 4
        return [(None, [inner, inner]) for _ in range(blocks)]
    out = []
    for entry in blocks:
        if isinstance(entry, dict):
            out.append((entry.get("select"), list(entry["inner"])))
        else:
            out.append((None, list(entry) if isinstance(entry, list) else entry))
    return out


@register_family
class PreResNet(Family):
    arch = "preresnet"
    schema = SCHEMA
    schema_defs = SCHEMA_DEFS

    def emit(self, b: IRBuilder, data: dict) -> None:
        x = b.conv("stem.conv", "input", b.add_slot("stem", data["stem"], "fixed"), 3, 1, 1, False, at="stem")
        for s, stage in enumerate(data["stages"]):
            width, stride = stage["width"], stage.get("stride", 1)
            if not isinstance(stage["blocks"], list) and width % 4:
                b.issue(f"stages[{s}].width", f"default inner width is width/4; {width} is not a multiple of 4")
            stream = b.add_slot(f"stages[{s}].width", width, "fixed")
            for i, (select, inner) in enumerate(block_entries(stage)):
                at = f"stages[{s}].blocks[{i}]"
                if not isinstance(inner, list):
                    b.issue(at, f"preresnet blocks are bottlenecks: expected [c1, c2], got {inner!r}")
                    continue
                with b.unit(f"stages[{s}]"), b.unit(at):
                    name = f"layer{s + 1}.{i}"
                    y = selection_layer(b, f"{name}.in", x, ("stages", s, "blocks", i, "select"), select)
                    for j, (kernel, st) in enumerate([(1, 1), (3, stride if i == 0 else 1)]):
                        slot = f"{at}.inner[{j}]"
                        y = b.conv(f"{name}.conv{j + 1}", y, b.add_slot(slot, inner[j]), kernel, st, kernel // 2, False, at=slot)
                        y = b.bn(f"{name}.bn{j + 2}", y, at=slot)
                        y = b.relu(f"{name}.relu{j + 2}", y, at=slot)
                        y = b.gate(f"{name}.gate{j + 2}", y, at=slot)
                    y = b.conv(f"{name}.conv3", y, stream, 1, 1, 0, False, at=at)
                    short = x
                    if b.channels(x) != width or (i == 0 and stride != 1):
                        short = b.conv(f"{name}.downsample", x, stream, 1, stride if i == 0 else 1, 0, False, at=at)
                    else:
                        y = b.block_gate(f"{name}.gate", y, f"{at}.block", at=at)
                    x = b.add(f"{name}.add", y, short, at=at)
        x = selection_layer(b, "head", x, ("head_select",), data.get("head_select"))
        x = b.gap("head.pool", x, at="head_select")
        b.classifier(x)

    def renames(self, data: dict, ir: IR, sizes: Mapping[str, int]) -> dict[str, str]:
        return block_renames(data, ir, sizes)

    def write(self, data: dict, ir: IR, sizes: Mapping[str, int], selects: Mapping[str, tuple[int, ...]]) -> dict:
        new = copy_data(data)
        for s, stage in enumerate(data["stages"]):
            old = block_entries(stage)
            entries: list = []
            for i in kept_blocks(ir, sizes, s, len(old)):
                at = f"stages[{s}].blocks[{i}]"
                inner = [sizes.get(f"{at}.inner[{j}]", ir.slots[f"{at}.inner[{j}]"].size) for j in range(2)]
                slot = ir.slots[f"{at}.select"]
                select = selection_text(selects.get(slot.path, slot.index), slot.base_size)
                entries.append(inner if select is None else {"select": select, "inner": inner})
            if entries != [inner if sel is None else {"select": sel, "inner": inner} for sel, inner in old] or \
                    isinstance(stage["blocks"], list):
                new["stages"][s]["blocks"] = entries
        head = ir.slots["head_select"]
        text = selection_text(selects.get(head.path, head.index), head.base_size)
        if text is None:
            new.pop("head_select", None)
        else:
            new["head_select"] = text
        return new


