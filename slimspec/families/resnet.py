"""``arch: resnet`` — CIFAR-style ResNets (He et al. 2016) with per-block inner widths.

``stem_kernel``/``stem_stride``/``stem_pool`` give the ImageNet stem (7x7 stride-2 conv and a
3x3 stride-2 max pool, as torchvision's ResNets). ``stages[s].width`` is the residual stream width; ``blocks`` is a count or one entry per
block: an int (basic: conv1's width) or ``[c1, c2]`` (bottleneck, expansion 4). Shortcut A
is Li et al. 2017's parameter-free shortcut (2x2 average pool where the stride is 2, zero
channels appended where the stream widens); B is a 1x1 conv + BN where the shape changes.

Slots: ``stages[s].blocks[b]`` (basic) or ``stages[s].blocks[b][0|1]`` (bottleneck) are the
inner widths Li et al. prune. The residual streams are ``stream`` slots (``stem``,
``stages[s].width``) shared by every layer that reads or writes them; with shortcut A a
wider stage's stream is the previous stream plus its zero-padded extra channels.

``groups`` > 1 makes the bottleneck's 3x3 conv grouped (ResNeXt, Xie et al. 2017), with the
default inner width ``int(width / 4 * width_per_group / 64) * groups`` as torchvision's
``base_width``. A grouped block's inner widths are its groups' equal parts (``Slot.parts``):
pruning keeps as many channels in every group, so ``groups`` stays.
"""
from __future__ import annotations

from collections.abc import Mapping

from ..ir import IR, Axis, IRBuilder
from .base import Family, copy_data, register_family
from .common import stage_schema


# JSON Schema of the keys of ``arch: resnet`` (assembled into the spec schema by families/schema.py).
SCHEMA: dict = {
    "description": "ResNet with BasicBlock or Bottleneck blocks.",
    "required": ["block", "stem", "stages"],
    "properties": {
        "block": {
            "enum": ["basic", "bottleneck"]
        },
        "stem": {"$ref": "#/$defs/posint"},
        "stem_kernel": {
            "description": "Stem conv kernel (3 for CIFAR, 7 for ImageNet).",
            "enum": [1, 3, 5, 7],
            "default": 3
        },
        "stem_stride": {
            "description": "Stem conv stride.",
            "enum": [1, 2],
            "default": 1
        },
        "groups": {
            "$ref": "#/$defs/posint",
            "default": 1,
            "description": "Groups of each bottleneck's 3x3 conv (ResNeXt's cardinality); grouped inner widths prune by groups (as many channels out of each)."
        },
        "width_per_group": {
            "$ref": "#/$defs/posint",
            "default": 64,
            "description": "torchvision's base_width: default inner width int(width/4 * width_per_group/64) * groups."
        },
        "stem_pool": {
            "description": "3x3 max pool, stride 2, after the stem (ImageNet ResNets).",
            "type": "boolean",
            "default": False
        },
        "shortcut": {
            "enum": ["A", "B"],
            "default": "A"
        },
        "stages": {
            "type": "array",
            "minItems": 1,
            "title": "a non-empty list of stages"
        }
    },
    "if": {
        "properties": {
            "block": {"const": "basic"}
        },
        "required": ["block"]
    },
    "then": {
        "properties": {
            "stages": {
                "items": {"$ref": "#/$defs/resnetStageBasic"}
            }
        }
    },
    "else": {
        "if": {
            "properties": {
                "block": {"const": "bottleneck"}
            },
            "required": ["block"]
        },
        "then": {
            "properties": {
                "stages": {
                    "items": {"$ref": "#/$defs/resnetStageBottleneck"}
                }
            }
        },
        "else": {
            "properties": {
                "stages": {
                    "items": {"$ref": "#/$defs/resnetStageAny"}
                }
            }
        }
    }
}

# Named definitions SCHEMA refers to as ``#/$defs/NAME``: one stage shape, three kinds of block list.
SCHEMA_DEFS: dict = {
    "resnetStageBasic": stage_schema(
        {"type": "integer", "minimum": 1, "title": "a positive integer (a basic block's conv1 width)"},
        "a non-empty list of basic block widths", "a block count or a list of basic block widths"),
    "resnetStageBottleneck": stage_schema(
        {"type": "array", "items": {"$ref": "#/$defs/posint"}, "minItems": 2, "maxItems": 2, "title": "a pair [c1, c2] of positive integers (a bottleneck block's inner widths)"},
        "a non-empty list of [c1, c2] pairs", "a block count or a list of [c1, c2] pairs"),
    "resnetStageAny": stage_schema(
        {"anyOf": [{"$ref": "#/$defs/posint"}, {"$ref": "#/$defs/pair"}], "title": "a positive integer or a pair [c1, c2] of positive integers"},
        "a non-empty list of per-block widths", "a block count or a list of per-block widths"),
}


def expand_blocks(stage: dict, bottleneck: bool, groups: int = 1, width_per_group: int = 64) -> list:
    """Blocks in list form: one entry per block (int for basic, [c1, c2] for bottleneck)."""
    blocks = stage["blocks"]
    if isinstance(blocks, list):
        return list(blocks)
    inner = int(stage["width"] // 4 * (width_per_group / 64.0)) * groups if bottleneck else stage["width"]
    return [[inner, inner] if bottleneck else inner for _ in range(blocks)]


def block_slots(s: int, b: int, bottleneck: bool) -> list[str]:
    base = f"stages[{s}].blocks[{b}]"
    return [f"{base}[0]", f"{base}[1]"] if bottleneck else [base]


def kept_blocks(ir: IR, sizes: Mapping[str, int], s: int, count: int) -> list[int]:
    """Indices of the blocks of stage ``s`` that survive (a block slot pruned to 0 is removed)."""
    return [i for i in range(count) if sizes.get(f"stages[{s}].blocks[{i}].block", 1) > 0]


def block_renames(data: dict, ir: IR, sizes: Mapping[str, int]) -> dict[str, str]:
    """New module prefix -> old one, for stages that lost blocks (``layer1.3.`` was ``layer1.4.``)."""
    renames = {}
    for s, stage in enumerate(data["stages"]):
        count = stage["blocks"] if isinstance(stage["blocks"], int) else len(stage["blocks"])
        for new, old in enumerate(kept_blocks(ir, sizes, s, count)):
            if new != old:
                renames[f"layer{s + 1}.{new}."] = f"layer{s + 1}.{old}."
    return renames


@register_family
class ResNet(Family):
    arch = "resnet"
    schema = SCHEMA
    schema_defs = SCHEMA_DEFS

    def emit(self, b: IRBuilder, data: dict) -> None:
        bottleneck = data["block"] == "bottleneck"
        shortcut, groups = data["shortcut"], data["groups"]
        if not bottleneck and (groups != 1 or data["width_per_group"] != 64):
            b.issue("groups" if groups != 1 else "width_per_group",
                    "basic blocks take groups 1 and width_per_group 64 (as torchvision's BasicBlock)")
        stream = b.add_slot("stem", data["stem"], "stream")
        kernel = data["stem_kernel"]
        x = b.conv("stem.conv", "input", stream, kernel, data["stem_stride"], kernel // 2, False, at="stem")
        x = b.bn("stem.bn", x, at="stem")
        x = b.relu("stem.relu", x, at="stem")
        if data["stem_pool"]:
            x = b.pool("stem.pool", x, "maxpool", 3, 2, padding=1, at="stem_pool")
        for s, stage in enumerate(data["stages"]):
            at = f"stages[{s}]"
            width, stride = stage["width"], stage.get("stride", 1)
            prev = b.axis_size(stream)
            if bottleneck and not isinstance(stage["blocks"], list) and width % 4:
                b.issue(f"{at}.width", f"bottleneck default inner width is width/4; {width} is not a multiple of 4")
            if shortcut == "A":
                if width < prev:
                    b.issue(f"{at}.width", f"shortcut A cannot narrow the residual stream ({prev} -> {width}); use shortcut: B")
                    width = prev
                if width > prev:
                    stream = stream + b.add_slot(f"{at}.width", width - prev, "stream")
            elif width != prev or stride != 1:
                stream = b.add_slot(f"{at}.width", width, "stream")
            entries = expand_blocks(stage, bottleneck, groups, data["width_per_group"])
            for i, entry in enumerate(entries):
                if bottleneck != isinstance(entry, list):
                    want = "[c1, c2] (bottleneck)" if bottleneck else "an int (basic block)"
                    b.issue(f"{at}.blocks[{i}]", f"expected {want}, got {entry!r}")
                    continue
                with b.unit(at), b.unit(f"{at}.blocks[{i}]"):
                    x = self._block(b, x, stream, s, i, entry, stride if i == 0 else 1, bottleneck, shortcut,
                                    groups if bottleneck else 1)
        x = b.gap("head.pool", x, at="stages")
        b.classifier(x)

    def _block(self, b: IRBuilder, x: str, stream: Axis, s: int, i: int, entry, stride: int,
               bottleneck: bool, shortcut: str, groups: int = 1) -> str:
        name = f"layer{s + 1}.{i}"
        widths = entry if bottleneck else [entry]
        slots = block_slots(s, i, bottleneck)
        y = x
        if bottleneck:
            specs = [(1, 1), (3, stride)]  # stride on the 3x3 conv (ResNet v1.5)
        else:
            specs = [(3, stride)]
        for j, ((kernel, st), width, slot) in enumerate(zip(specs, widths, slots), start=1):
            parts = groups if groups > 1 and width % groups == 0 else 1  # pruned by groups: as many out of each
            if groups > 1 and width % groups:
                b.issue(slot, f"{width} channels do not split into groups: {groups}")
            y = b.conv(f"{name}.conv{j}", y, b.add_slot(slot, width, parts=parts), kernel, st, kernel // 2, False,
                       at=slot, groups=groups if j == 2 else 1)
            y = b.bn(f"{name}.bn{j}", y, at=slot)
            y = b.relu(f"{name}.relu{j}", y, at=slot)
            y = b.gate(f"{name}.gate{j}", y, at=slot)
        last = len(specs) + 1
        kernel = 1 if bottleneck else 3
        at = f"stages[{s}].blocks[{i}]"
        y = b.conv(f"{name}.conv{last}", y, stream, kernel, 1, kernel // 2, False, at=at)
        y = b.bn(f"{name}.bn{last}", y, at=at)
        if b.axis(x) == stream and stride == 1:
            short = x
            y = b.block_gate(f"{name}.gate", y, f"{at}.block", at=at)
        elif shortcut == "A":
            short = b.pad(f"{name}.shortcut", x, stream, stride, at=at)
        else:
            short = b.conv(f"{name}.shortcut.conv", x, stream, 1, stride, 0, False, at=at)
            short = b.bn(f"{name}.shortcut.bn", short, at=at)
        y = b.add(f"{name}.add", y, short, at=at)
        return b.relu(f"{name}.relu", y, at=at)

    def renames(self, data: dict, ir: IR, sizes: Mapping[str, int]) -> dict[str, str]:
        return block_renames(data, ir, sizes)

    def write(self, data: dict, ir: IR, sizes: Mapping[str, int], selects: Mapping) -> dict:
        new = copy_data(data)
        bottleneck = data["block"] == "bottleneck"
        size = lambda path: sizes.get(path, ir.slots[path].size)  # noqa: E731
        new["stem"] = size("stem")
        for s, stage in enumerate(data["stages"]):
            width = sum(size(seg) for seg in ir.node(f"layer{s + 1}.0.add").axis.segments)
            new["stages"][s]["width"] = width
            shape = (bottleneck, data.get("groups", 1), data.get("width_per_group", 64))
            old = expand_blocks(stage, *shape)
            entries = [
                [size(p) for p in block_slots(s, i, True)] if bottleneck else size(block_slots(s, i, False)[0])
                for i in kept_blocks(ir, sizes, s, len(old))
            ]
            # a count stays a count only where the new stream width still gives these inner widths
            if entries != old or entries != expand_blocks({"width": width, "blocks": len(entries)}, *shape):
                new["stages"][s]["blocks"] = entries
        return new
