"""``arch: sequential`` — a Keras-style layer list for nets that fit no family.

Layer kinds: conv, bn, relu, maxpool, avgpool, flatten, linear, dropout; the final
``Linear(num_classes)`` is implied. Conv and linear widths are prunable slots addressed by
their spec path (``layers[0].conv.out`` or, in the short form, ``layers[6].linear``).

A conv's ``groups`` must divide its input width and ``out``. A depthwise conv (``groups`` =
input width = ``out``) has no slot of its own: its channels are its input's, so pruning the
layer before it prunes its filters too, and the pruner rewrites its ``out`` and ``groups``.
Any other grouped conv (1 < groups < channels, ResNeXt-style) fixes the widths it reads and
writes: removing single channels would break its groups, so those slots are not pruned.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from ..ir import IR, IRBuilder
from .base import Family, register_family
from .common import pool_schema, write_channel_slots


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
                                "title": "a mapping {out, kernel, stride, padding, groups, bias}",
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
                                    "groups": {
                                        "$ref": "#/$defs/posint",
                                        "default": 1,
                                        "description": "Depthwise when groups = input width = out."
                                    },
                                    "bias": {
                                        "type": "boolean",
                                        "title": "true or false",
                                        "default": True
                                    }
                                }
                            }
                        ],
                        "title": "a width or a mapping {out, kernel, stride, padding, groups, bias}"
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
                    "maxpool": pool_schema(),
                    "avgpool": pool_schema(),
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
        depthwise_unit = False  # the pending slot also runs through a depthwise conv (two BNs: fold into readers)

        def close_unit(x: str) -> str:
            nonlocal pending_gate, depthwise_unit
            if pending_gate is not None and any(b.slots[s].prunable for s in b.axis(x).segments):
                attrs = {"fold": "readers"} if depthwise_unit else {}
                x = b.gate(f"slots.{pending_gate}.gate", x, at=b.nodes[x].at, **attrs)
            pending_gate, depthwise_unit = None, False
            return x

        for i, item in enumerate(data["layers"]):
            kind, value = _parts(item)
            name, at = f"layers.{i}", f"layers[{i}]"
            if kind == "conv" and isinstance(value, dict) and value.get("groups", 1) > 1:
                if len(b.shape(x)) != 3:
                    b.issue(at, "conv after flatten/linear: the input is no longer a feature map")
                    continue
                x, dw = self._grouped(b, x, i, value, close_unit)
                depthwise_unit = depthwise_unit or dw
                if not dw:
                    pending_gate = str(i)
            elif kind in ("conv", "linear"):
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

    @staticmethod
    def _grouped(b: IRBuilder, x: str, i: int, opts: dict, close_unit) -> tuple[str, bool]:
        """A conv with ``groups`` > 1: depthwise (on its input's slot) or grouped (fixing both sides)."""
        name, at, slot = f"layers.{i}", f"layers[{i}]", f"layers[{i}].conv.out"
        groups, cin, cout = opts["groups"], b.channels(x), opts["out"]
        for what, width in (("input width", cin), ("out", cout)):
            if width % groups:
                b.issue(f"{at}.conv.groups", f"groups {groups} does not divide the {what} {width}")
        args = (opts.get("kernel", 3), opts.get("stride", 1), opts.get("padding", 0), opts.get("bias", True))
        if groups == cin == cout:  # depthwise: the same channels, the pending gate moves past it
            return b.conv(name, x, b.axis(x), *args, at=at, groups=groups), True
        for path in b.axis(x).segments:  # channels feeding a group cannot be removed one by one
            b.slots[path] = replace(b.slots[path], kind="fixed")
        x = close_unit(x)
        return b.conv(name, x, b.add_slot(slot, cout, "fixed"), *args, at=slot, groups=groups), False

    def write(self, data: dict, ir: IR, sizes: Mapping[str, int], selects: Mapping) -> dict:
        new = write_channel_slots(data, ir, sizes)
        for i, item in enumerate(data["layers"]):  # a depthwise conv follows its input's width
            node = ir.node(f"layers.{i}") if f"layers.{i}" in ir else None
            if node is not None and node.op == "conv" and node.attr("groups", 1) > 1 and node.axis == node.in_axis:
                width = sum(sizes.get(p, ir.slots[p].size) for p in node.axis.segments)
                new["layers"][i]["conv"]["out"] = new["layers"][i]["conv"]["groups"] = width
        return new
