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
            x = b.dropout(f"{name}.dropout", x, dropout, at=at)
    return x


@register_family
class VGG(Family):
    arch = "vgg"

    def emit(self, b: IRBuilder, data: dict) -> None:
        use_bn = data.get("batch_norm", True)
        kernel = data.get("kernel", 3)
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
        head = data.get("head", "avg")
        x = b.gap("head.pool", x, at="head") if head == "avg" else b.flatten("head.flatten", x, at="head")
        x = emit_classifier(b, x, list(data.get("classifier", [])), data.get("classifier_bn", False),
                            data.get("dropout", 0.0))
        b.classifier(x)

    def write(self, data: dict, ir: IR, sizes: Mapping[str, int], selects: Mapping) -> dict:
        return write_channel_slots(data, ir, sizes)
