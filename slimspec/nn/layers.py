"""Layer sets: the classes a build mode plugs into the network (timm-style injection).

``plain`` builds deployable ``nn.Conv2d``/``nn.Linear`` with identity slot ops; ``masked``
adds a ``weight_mask`` buffer to every conv/linear (unstructured pruning) and a channel
``mask`` at every prunable slot (masked channels produce exactly zero); ``gated`` puts a
learnable per-channel scale at every prunable slot (Sparse Structure Selection gates,
Huang & Wang 2018), optionally binarized with a straight-through estimator.
"""
from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn


class MaskedConv2d(nn.Conv2d):
    """Conv2d whose weight is multiplied by a fixed 0/1 ``weight_mask`` buffer."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer("weight_mask", torch.ones_like(self.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.weight_mask, self.bias)


class MaskedLinear(nn.Linear):
    """Linear whose weight is multiplied by a fixed 0/1 ``weight_mask`` buffer."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer("weight_mask", torch.ones_like(self.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.weight_mask, self.bias)


def _per_channel(vector: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return vector.view(1, -1, *([1] * (x.dim() - 2)))


class ChannelMask(nn.Module):
    """Multiplies each channel by a 0/1 ``mask`` buffer: a removed channel outputs exactly zero."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer("mask", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * _per_channel(self.mask.to(x.dtype), x)


class _BinarizeSTE(torch.autograd.Function):
    """Forward: 1 where the gate is positive, else 0. Backward: identity (straight-through)."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return (weight > 0).to(weight.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad


class Gate(nn.Module):
    """A learnable per-channel scale (SSS, Huang & Wang 2018), initialized to 1.

    With ``binary=True`` the forward pass uses the binarized gate (1 if positive else 0) while
    the backward pass updates the float gate through a straight-through estimator.
    """

    def __init__(self, channels: int, binary: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.binary = binary

    def effective(self) -> torch.Tensor:
        return _BinarizeSTE.apply(self.weight) if self.binary else self.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * _per_channel(self.effective().to(x.dtype), x)

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, binary={self.binary}"


class PlainLayers:
    """Deployable layers; slot ops are identities (kept so names match across modes)."""

    mode: ClassVar[str] = "plain"
    conv_cls: ClassVar[type[nn.Conv2d]] = nn.Conv2d
    linear_cls: ClassVar[type[nn.Linear]] = nn.Linear

    def __init__(self, binary_gates: bool = False):
        self.binary_gates = binary_gates

    def conv(self, cin: int, cout: int, kernel: int, stride: int, padding: int, bias: bool,
             groups: int = 1, dilation: int = 1) -> nn.Module:
        return self.conv_cls(cin, cout, kernel, stride=stride, padding=padding, bias=bias, groups=groups,
                             dilation=dilation)

    def linear(self, cin: int, cout: int, bias: bool) -> nn.Module:
        return self.linear_cls(cin, cout, bias=bias)

    def gate(self, channels: int) -> nn.Module:
        return nn.Identity()


class MaskedLayers(PlainLayers):
    mode = "masked"
    conv_cls = MaskedConv2d
    linear_cls = MaskedLinear

    def gate(self, channels: int) -> nn.Module:
        return ChannelMask(channels)


class GatedLayers(PlainLayers):
    mode = "gated"

    def gate(self, channels: int) -> nn.Module:
        return Gate(channels, self.binary_gates)


LAYER_SETS: dict[str, type[PlainLayers]] = {cls.mode: cls for cls in (PlainLayers, MaskedLayers, GatedLayers)}
MODES = tuple(LAYER_SETS)
