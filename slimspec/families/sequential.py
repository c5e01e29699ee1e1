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


# JSON Schema of the keys of ``arch: sequential`` (assembled into the spec schema by families/schema.py).
SCHEMA: dict = {
    "description": "Keras-style layer list; the final Linear(num_classes) is implied.",
    "required": ["layers"],
    "properties": {
        "layers": {
            "type": "array",
            "minItems": 1,
            "items": {"$ref": "#/$defs/sequentialLayer"},
            "title": "a non-empty list of layers"
        }
    }
}

# Named definitions SCHEMA refers to as ``#/$defs/NAME``.
SCHEMA_DEFS: dict = {
    "sequentialLayer": {
        "anyOf": [
            {
                "type": "string",
                "enum": ["relu", "flatten", "bn"]
            },
            {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 1,
                "additionalProperties": False,
                "title": "a one-key mapping such as {conv: 16}",
                "properties": {
                    "conv": {
                        "anyOf": [
                            {
                                "type": "integer",
                                "minimum": 1,
                                "title": "a positive width"
                            },
                            {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["out"],
                                "title": "a mapping {out, kernel, stride, padding, bias}",
                                "properties": {
                                    "out": {"$ref": "#/$defs/posint"},
                                    "kernel": {
                                        "$ref": "#/$defs/posint",
                                        "default": 3
                                    },
                                    "stride": {
                                        "$ref": "#/$defs/posint",
                                        "default": 1
                                    },
                                    "padding": {
                                        "$ref": "#/$defs/nonnegint",
                                        "default": 0
                                    },
                                    "bias": {
                                        "type": "boolean",
                                        "title": "true or false",
                                        "default": True
                                    }
                                }
                            }
                        ],
                        "title": "a width or a mapping {out, kernel, stride, padding, bias}"
                    },
                    "linear": {
                        "anyOf": [
                            {
                                "type": "integer",
                                "minimum": 1,
                                "title": "a positive width"
                            },
                            {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["out"],
                                "title": "a mapping {out, bias}",
                                "properties": {
                                    "out": {"$ref": "#/$defs/posint"},
                                    "bias": {
                                        "type": "boolean",
                                        "title": "true or false"
                                    }
                                }
                            }
                        ],
                        "title": "a width or a mapping {out, bias}"
                    },
                    "maxpool": {
                        "anyOf": [
                            {
                                "type": "integer",
                                "minimum": 1,
                                "title": "a positive kernel size"
                            },
                            {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["kernel"],
                                "title": "a mapping {kernel, stride}",
                                "properties": {
                                    "kernel": {"$ref": "#/$defs/posint"},
                                    "stride": {"$ref": "#/$defs/posint"}
                                }
                            }
                        ],
                        "title": "a kernel size or a mapping {kernel, stride}"
                    },
                    "avgpool": {
                        "anyOf": [
                            {
                                "type": "integer",
                                "minimum": 1,
                                "title": "a positive kernel size"
                            },
                            {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["kernel"],
                                "title": "a mapping {kernel, stride}",
                                "properties": {
                                    "kernel": {"$ref": "#/$defs/posint"},
                                    "stride": {"$ref": "#/$defs/posint"}
                                }
                            }
                        ],
                        "title": "a kernel size or a mapping {kernel, stride}"
                    },
                    "dropout": {"$ref": "#/$defs/dropout"},
                    "bn": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {},
                        "title": "an empty mapping {}"
                    }
                }
            }
        ],
        "title": "'relu', 'flatten', 'bn' or a one-key mapping such as {conv: 16}"
    }
}


def _parts(item: object) -> tuple[str, object]:
    if isinstance(item, str):
        return item, {}
    (kind, value), = item.items()  # type: ignore[union-attr]
    return kind, value


@register_family
class Sequential(Family):
    arch = "sequential"
    schema = SCHEMA
    schema_defs = SCHEMA_DEFS

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
