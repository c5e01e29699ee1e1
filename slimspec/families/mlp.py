"""``arch: mlp`` — a fully connected net over the flattened input.

``cfg: [200, 200]`` are the hidden widths (the seeds' MNIST example, 784-200-200-10, pruned
to ``[50, 100]``); each is a prunable slot ``cfg[i]``.
"""
from __future__ import annotations

from collections.abc import Mapping

from ..ir import IR, IRBuilder
from .base import Family, register_family
from .common import write_channel_slots
from .vgg import emit_classifier


# JSON Schema of the keys of ``arch: mlp`` (assembled into the spec schema by families/schema.py).
SCHEMA: dict = {
    "description": "Fully connected net over the flattened input.",
    "required": ["cfg"],
    "properties": {
        "cfg": {
            "type": "array",
            "items": {"$ref": "#/$defs/posint"},
            "title": "a list of positive integers",
            "description": "Hidden widths."
        },
        "batch_norm": {
            "type": "boolean",
            "title": "true or false",
            "default": False
        },
        "dropout": {"$ref": "#/$defs/dropout", "default": 0.0},
        "bias": {
            "type": "boolean",
            "title": "true or false"
        }
    }
}


@register_family
class MLP(Family):
    arch = "mlp"
    schema = SCHEMA

    def emit(self, b: IRBuilder, data: dict) -> None:
        x = b.flatten("flatten", "input")
        x = emit_classifier(b, x, list(data["cfg"]), data["batch_norm"], data["dropout"],
                            key="cfg", prefix="layers")
        b.classifier(x)

    def write(self, data: dict, ir: IR, sizes: Mapping[str, int], selects: Mapping) -> dict:
        return write_channel_slots(data, ir, sizes)
