"""Pieces shared by several families: channel selections and list-form blocks."""
from __future__ import annotations

from collections.abc import Mapping

from ..ir import IRBuilder
from ..specio.channels import format_channel_set, parse_channel_set
from ..errors import SpecError, SpecIssue, format_path, parse_path
from .base import copy_data


def resolve_select(path: tuple, text: str | None, base_size: int) -> tuple[int, ...]:
    """Parse a channel-set string against the width it selects from, with a located error."""
    if text is None:
        return tuple(range(base_size))
    try:
        return parse_channel_set(str(text), base_size)
    except ValueError as exc:
        raise SpecError([SpecIssue.at(path, f"{exc} (selecting from {base_size} channels)")]) from None


def selection_layer(b: IRBuilder, prefix: str, x: str, slot_path: tuple, text: str | None) -> str:
    """BN on the full input, then a channel selection slot (Network Slimming's ``channel_selection``)."""
    base = b.channels(x)
    index = resolve_select(slot_path, text, base)
    slot = format_path(slot_path)
    b.add_slot(slot, len(index), "select", index, base)
    y = b.bn(f"{prefix}.bn", x, at=slot)
    y = b.select(f"{prefix}.select", y, slot, at=slot)
    y = b.relu(f"{prefix}.relu", y, at=slot)
    return b.gate(f"{prefix}.gate", y, at=slot)


def selection_text(index: tuple[int, ...], base_size: int) -> str | None:
    """The spec value for a selection: ``None`` when it keeps everything."""
    return None if tuple(index) == tuple(range(base_size)) else format_channel_set(index)


def set_path(data: dict, path: str, value: object) -> None:
    """Assign ``value`` at a spec path such as ``cfg[3]`` or ``layers[2].conv.out``."""
    parts = parse_path(path)
    target = data
    for part in parts[:-1]:
        target = target[part]
    target[parts[-1]] = value


def write_channel_slots(data: dict, ir, sizes: Mapping[str, int]) -> dict:
    """New spec data where every ``channel`` slot's spec path gets its new width."""
    new = copy_data(data)
    for path, slot in ir.slots.items():
        if slot.kind == "channel":
            set_path(new, path, sizes.get(path, slot.size))
    return new


def stage_schema(block_entry: dict, list_title: str, title: str) -> dict:
    """JSON Schema of a residual stage ``{width, blocks, stride}``: ``blocks`` is a count or a
    list of ``block_entry`` (the per-block widths the pruner writes)."""
    return {
        "type": "object",
        "title": "a stage mapping {width, blocks, stride}",
        "additionalProperties": False,
        "required": ["width", "blocks"],
        "properties": {
            "width": {"$ref": "#/$defs/posint", "description": "Residual stream width of the stage."},
            "blocks": {
                "anyOf": [
                    {"type": "integer", "minimum": 1, "title": "a positive block count"},
                    {"type": "array", "minItems": 1, "items": block_entry, "title": list_title},
                ],
                "title": title,
            },
            "stride": {"type": "integer", "enum": [1, 2], "default": 1, "title": "1 or 2"},
        },
    }


def pool_schema() -> dict:
    """JSON Schema of a pooling layer entry: a kernel size or ``{kernel, stride}``."""
    return {
        "anyOf": [
            {"type": "integer", "minimum": 1, "title": "a positive kernel size"},
            {"type": "object", "additionalProperties": False, "required": ["kernel"],
             "title": "a mapping {kernel, stride}",
             "properties": {"kernel": {"$ref": "#/$defs/posint"}, "stride": {"$ref": "#/$defs/posint"}}},
        ],
        "title": "a kernel size or a mapping {kernel, stride}",
    }
