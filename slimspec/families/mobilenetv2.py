"""``arch: mobilenetv2`` — MobileNetV2's inverted residuals (Sandler et al. 2018), as torchvision builds them.

``stages`` is the paper's table, one row per stage: ``t`` (expansion factor), ``c`` (output
channels), ``n`` (blocks), ``s`` (stride of the first block). A block is a 1x1 expansion conv
to ``round(in * t)`` channels (absent when ``t`` is 1), a 3x3 depthwise conv, and a linear 1x1
projection to ``c``, each followed by BN (ReLU6 after the first two); a block whose stride is
1 and whose input width equals ``c`` adds its input (torchvision's rule; ``residual: false``
on a stage switches it off for the stage's first block, as the pruner writes when pruned
widths would otherwise create a residual the parent did not have). The stem is a 3x3 conv
(``stem`` channels, ``stem_stride``: 2 for ImageNet, 1 for CIFAR); the head a 1x1 conv to
``last_channel``, global average pool, dropout and the classifier. ``width_mult`` scales
``stem``, ``c`` and ``last_channel`` (the latter only upwards) and rounds them to multiples
of ``round_nearest`` with torchvision's ``_make_divisible``; at 1.0 widths are used as written.

Slots: ``stages[s].expand[b]`` (each block's expansion width; the pruner writes the
``expand`` list, one entry per block, like ResNet's ``blocks``), ``last_channel``, and the
widths between blocks, ``stem`` and ``stages[s].c``: a ``channel`` slot where no residual
add reads it, else a ``stream`` slot shared by every block of the stage (pruned only with
``prune_stream``). A depthwise conv's channels are its input's (the same slot), so pruning
an expansion width prunes the depthwise filters with it. Gates sit in front of the layers
that mix channels (expansion, projection and head convs, the classifier) and fold into
their input columns. Module names are torchvision's (``features.3.conv.1.0``), so a
torchvision state dict loads as is.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..ir import IR, Axis, IRBuilder
from .base import Family, copy_data, register_family
from .schema import normalize

SCHEMA: dict = {
    "description": "MobileNetV2 (inverted residuals, torchvision's layout): a table of stages {t, c, n, s}.",
    "required": ["stages"],
    "properties": {
        "stem": {"$ref": "#/$defs/posint", "default": 32, "description": "Stem conv width."},
        "stem_stride": {"enum": [1, 2], "default": 2, "description": "Stem stride: 2 for ImageNet, 1 for CIFAR."},
        "stages": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/mobilenetv2Stage"},
                   "title": "a non-empty list of stages {t, c, n, s}"},
        "last_channel": {"$ref": "#/$defs/posint", "default": 1280, "description": "Width of the head's 1x1 conv."},
        "width_mult": {"type": "number", "exclusiveMinimum": 0, "default": 1.0, "title": "a positive number",
                       "description": "Width multiplier (torchvision's width_mult)."},
        "round_nearest": {"$ref": "#/$defs/posint", "default": 8,
                          "description": "Widths scaled by width_mult are rounded to multiples of this."},
        "dropout": {"$ref": "#/$defs/dropout", "default": 0.2},
    },
}

SCHEMA_DEFS: dict = {
    "mobilenetv2Stage": {
        "type": "object",
        "additionalProperties": False,
        "required": ["t", "c", "n", "s"],
        "title": "a mapping {t, c, n, s} (optional: expand, residual)",
        "properties": {
            "t": {"type": "number", "minimum": 1, "title": "an expansion factor >= 1"},
            "c": {"$ref": "#/$defs/posint"},
            "n": {"$ref": "#/$defs/posint"},
            "s": {"enum": [1, 2], "title": "1 or 2"},
            "expand": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/posint"},
                       "title": "a list of positive integers, one per block",
                       "description": "Expansion width of each block (default round(in * t))."},
            "residual": {"type": "boolean", "title": "True or False",
                         "description": "False: no residual add on the stage's first block even where the "
                                        "widths match."},
        },
    },
}


def make_divisible(value: float, divisor: int) -> int:
    """torchvision's ``_make_divisible``: round to a multiple of ``divisor``, never down by more than 10%."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


@dataclass(frozen=True)
class BlockPlan:
    stage: int
    index: int  # block within the stage
    number: int  # torchvision's features index
    inp: int
    out: int
    hidden: int
    stride: int
    residual: bool
    expands: bool
    slot: str  # the slot of the block's output (its stage's ``c``, or the one its residual add continues)


def scaled_widths(data: dict) -> tuple[int, list[int], int]:
    """``(stem, [c per stage], last_channel)`` after the width multiplier."""
    mult, divisor = float(data["width_mult"]), int(data["round_nearest"])
    if mult == 1.0:
        return int(data["stem"]), [int(st["c"]) for st in data["stages"]], int(data["last_channel"])
    return (make_divisible(data["stem"] * mult, divisor), [make_divisible(st["c"] * mult, divisor) for st in data["stages"]],
            make_divisible(data["last_channel"] * max(1.0, mult), divisor))


def plan_blocks(data: dict, b: IRBuilder | None = None) -> list[BlockPlan]:
    """Every block's widths, stride, residual flag and output slot (issues go to ``b`` when given)."""

    def issue(at: str, message: str) -> None:
        if b is not None:
            b.issue(at, message)

    stem, widths, _ = scaled_widths(data)
    blocks, inp, number, slot = [], stem, 1, "stem"
    for s, (stage, out) in enumerate(zip(data["stages"], widths)):
        at, t, expand = f"stages[{s}]", stage["t"], stage.get("expand")
        if expand is not None and t == 1:
            issue(f"{at}.expand", "a stage with t: 1 has no expansion layer to set widths for")
            expand = None
        if expand is not None and len(expand) != stage["n"]:
            issue(f"{at}.expand", f"expected {stage['n']} entries (n), got {len(expand)}")
            expand = None
        for i in range(stage["n"]):
            stride = stage["s"] if i == 0 else 1
            residual = stride == 1 and inp == out and (i > 0 or stage.get("residual", True))
            if i == 0 and stage.get("residual") and not residual:
                issue(f"{at}.residual", f"a residual add needs stride 1 and equal widths (in {inp}, out {out})")
            if i == 0 and not residual:
                slot = f"{at}.c"
            hidden = inp if t == 1 else (expand[i] if expand is not None else int(round(inp * t)))
            blocks.append(BlockPlan(s, i, number, inp, out, hidden, stride, residual, t != 1, slot))
            inp, number = out, number + 1
    return blocks


@register_family
class MobileNetV2(Family):
    arch = "mobilenetv2"
    schema = SCHEMA
    schema_defs = SCHEMA_DEFS

    def emit(self, b: IRBuilder, data: dict) -> None:
        blocks = plan_blocks(data, b)
        stem, _, last = scaled_widths(data)
        streams = {blk.slot for blk in blocks if blk.residual}  # slots a residual add reads and writes
        gates: dict[str, str] = {}

        def read(ref: str) -> str:
            """``ref`` through a gate when its channels form a prunable non-stream slot (once per value)."""
            (slot,) = b.axis(ref).segments
            if b.slots[slot].kind != "channel":
                return ref
            if ref not in gates:
                gates[ref] = b.gate(f"{ref.rsplit('.', 1)[0]}.gate", ref, at=slot, fold="readers")
            return gates[ref]

        out = b.add_slot("stem", stem, "stream" if "stem" in streams else "channel")
        x = b.conv("features.0.0", "input", out, 3, data["stem_stride"], 1, False, at="stem")
        x = b.bn("features.0.1", x, at="stem")
        x = b.elementwise("features.0.2", x, "relu6", at="stem")
        for block in blocks:
            at = f"stages[{block.stage}]"
            if block.slot not in b.slots:
                out = b.add_slot(block.slot, block.out, "stream" if block.slot in streams else "channel")
            with b.unit(at), b.unit(f"{at}.expand[{block.index}]"):
                x = self._block(b, x, block, out, read)
        head = f"features.{len(blocks) + 1}"
        x = b.conv(f"{head}.0", read(x), b.add_slot("last_channel", last), 1, 1, 0, False, at="last_channel")
        x = b.bn(f"{head}.1", x, at="last_channel")
        x = b.elementwise(f"{head}.2", x, "relu6", at="last_channel")
        x = read(b.gap("classifier.pool", x, at="last_channel"))
        if data["dropout"] > 0:
            x = b.elementwise("classifier.0", x, "dropout", at="dropout", p=float(data["dropout"]))
        b.classifier(x, name="classifier.1")

    def _block(self, b: IRBuilder, x: str, block: BlockPlan, out: Axis, read) -> str:
        name, at = f"features.{block.number}.conv", f"stages[{block.stage}]"
        y, j = x, 0
        if block.expands:
            slot = f"{at}.expand[{block.index}]"
            y = b.conv(f"{name}.0.0", read(x), b.add_slot(slot, block.hidden), 1, 1, 0, False, at=slot)
            y = b.bn(f"{name}.0.1", y, at=slot)
            y = b.elementwise(f"{name}.0.2", y, "relu6", at=slot)
            j = 1
        hidden = b.axis(y)  # depthwise: its channels are its input's (the same slot)
        where = b.nodes[y].at
        y = b.conv(f"{name}.{j}.0", y, hidden, 3, block.stride, 1, False, at=where, groups=b.axis_size(hidden))
        y = b.bn(f"{name}.{j}.1", y, at=where)
        y = b.elementwise(f"{name}.{j}.2", y, "relu6", at=where)
        y = b.conv(f"{name}.{j + 1}", read(y), out, 1, 1, 0, False, at=f"{at}.c")
        y = b.bn(f"{name}.{j + 2}", y, at=f"{at}.c")
        if block.residual:
            y = b.add(f"features.{block.number}.add", x, y, at=f"{at}.c")
        return y

    def write(self, data: dict, ir: IR, sizes: Mapping[str, int], selects: Mapping) -> dict:
        new, full = copy_data(data), normalize(self, data)
        old = plan_blocks(full)
        size = lambda path: sizes.get(path, ir.slots[path].size)  # noqa: E731
        stages = full["stages"]
        widths = [size(next(blk.slot for blk in old if blk.stage == s)) for s in range(len(stages))]
        resized = (size("stem"), widths, size("last_channel"))
        if resized != scaled_widths(full):  # widths are written as they are, without the multiplier
            if float(full["width_mult"]) != 1.0:
                new["width_mult"] = 1.0
            new["stem"], new["last_channel"] = resized[0], resized[2]
            for s, width in enumerate(widths):
                new["stages"][s]["c"] = width
        for s, stage in enumerate(stages):
            if stage["t"] != 1:
                new["stages"][s]["expand"] = [size(f"stages[{s}].expand[{i}]") for i in range(stage["n"])]
        # residual adds stay where the parent had them, whatever the pruned widths would imply
        fresh = plan_blocks(normalize(self, new))
        for before, after in zip(old, fresh):
            if before.index == 0 and before.residual != after.residual:
                new["stages"][before.stage]["residual"] = before.residual
        # an expand list equal to round(in * t) everywhere is left out (unless the parent had one)
        for s, stage in enumerate(new["stages"]):
            if "expand" in stage and "expand" not in data["stages"][s]:
                if stage["expand"] == [int(round(blk.inp * stage["t"])) for blk in fresh if blk.stage == s]:
                    del stage["expand"]
        return new
