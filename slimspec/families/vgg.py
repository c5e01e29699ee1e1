"""``arch: vgg`` — plain conv stacks driven by a cfg list (Simonyan & Zisserman 2015).

``cfg: [64, 64, M, 128, ...]``: an int is Conv(kernel, pad) [+ BN] + ReLU with that many
filters, ``M`` a 2x2 max pool. Covers Network Slimming's CIFAR VGG (Liu et al. 2017), Li et
al. 2017's VGG-16 (``classifier: [512]`` with ``classifier_bn``), and the seeds' MNIST
ConvNet (no BN, ``head: flatten``). Each conv width ``cfg[i]`` and hidden classifier width
``classifier[j]`` is a prunable slot.
"""
from __future__ import annotations

from collections.abc import Mapping

from ..ir import IR, IRBuilder
from .base import Family, register_family
from .common import write_channel_slots


# JSON Schema of the keys of ``arch: vgg`` (assembled into the spec schema by families/schema.py).
SCHEMA: dict = {
    "description": "Plain conv stack driven by a cfg list.",
    "required": ["cfg"],
    "properties": {
        "cfg": {
            "type": "array",
            "minItems": 1,
            "title": "a non-empty list of widths and 'M'",
            "items": {
                "anyOf": [
                    {"$ref": "#/$defs/posint"},
                    {"const": "M"}
                ],
                "title": "a positive integer or 'M'"
            },
            "description": "Conv widths; M = 2x2 max pool."
        },
        "batch_norm": {
            "type": "boolean",
            "title": "true or false",
            "default": True
        },
        "kernel": {
            "type": "integer",
            "minimum": 1,
            "not": {
                "multipleOf": 2
            },
            "default": 3,
            "title": "a positive odd integer"
        },
        "padding": {"$ref": "#/$defs/nonnegint"},
        "bias": {
            "type": "boolean",
            "title": "true or false"
        },
        "head": {
            "enum": ["avg", "flatten"],
            "default": "avg"
        },
        "classifier": {
            "type": "array",
            "items": {"$ref": "#/$defs/posint"},
            "default": [],
            "title": "a list of positive integers",
            "description": "Hidden Linear widths."
        },
        "classifier_bn": {
            "type": "boolean",
            "title": "true or false",
            "default": False
        },
        "dropout": {"$ref": "#/$defs/dropout", "default": 0.0}
    }
}


def emit_classifier(b: IRBuilder, x: str, widths: list[int], use_bn: bool, dropout: float,
                    key: str = "classifier", prefix: str = "classifier") -> str:
    """Hidden Linear [+ BN1d] + ReLU (+ Dropout) layers, each width a slot ``key[j]``."""
    for j, width in enumerate(widths):
        at = f"{key}[{j}]"
        name = f"{prefix}.{j}"
        x = b.linear(f"{name}.linear", x, b.add_slot(at, width), bias=True, at=at)
        if use_bn:
            x = b.bn(f"{name}.bn", x, at=at)
        x = b.relu(f"{name}.relu", x, at=at)
        x = b.gate(f"{name}.gate", x, at=at)
        if dropout > 0:
            x = b.elementwise(f"{name}.dropout", x, "dropout", at=at, p=float(dropout))
    return x


@register_family
class VGG(Family):
    arch = "vgg"
    schema = SCHEMA

    def emit(self, b: IRBuilder, data: dict) -> None:
        use_bn = data["batch_norm"]
        kernel = data["kernel"]
        padding = data.get("padding", kernel // 2)
        bias = data.get("bias", not use_bn)
        x = "input"
        for i, value in enumerate(data["cfg"]):
            at = f"cfg[{i}]"
            if value == "M":
                x = b.pool(f"features.{i}.pool", x, "maxpool", 2, at=at)
                continue
            x = b.conv(f"features.{i}.conv", x, b.add_slot(at, value), kernel, 1, padding, bias, at=at)
            if use_bn:
                x = b.bn(f"features.{i}.bn", x, at=at)
            x = b.relu(f"features.{i}.relu", x, at=at)
            x = b.gate(f"features.{i}.gate", x, at=at)
        head = data["head"]
        x = b.gap("head.pool", x, at="head") if head == "avg" else b.flatten("head.flatten", x, at="head")
        x = emit_classifier(b, x, list(data["classifier"]), data["classifier_bn"],
                            data["dropout"])
        b.classifier(x)

    def write(self, data: dict, ir: IR, sizes: Mapping[str, int], selects: Mapping) -> dict:
        return write_channel_slots(data, ir, sizes)
