"""One conv/linear (+ReLU) layer the way a latency table times it: its shape, and a module of given widths."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import nn

OPS = ("conv", "linear")


@dataclass(frozen=True)
class LayerShape:
    """What a layer's latency depends on besides its widths (a table entry's ``sig``).

    A conv has ``kernel``, ``stride``, ``padding``, input ``hw`` and ``groups``; a linear
    layer has none of them (None). ``relu``: a ReLU reads the layer's (BN-folded) output.
    """

    op: str
    relu: bool
    kernel: int | None = None
    stride: int | None = None
    padding: int | None = None
    hw: tuple[int, int] | None = None
    groups: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The ``sig`` mapping of a table file (a linear layer: ``op`` and ``relu`` only)."""
        out: dict[str, Any] = {"op": self.op, "relu": self.relu}
        if self.op == "conv":
            out.update(kernel=self.kernel, stride=self.stride, padding=self.padding, hw=list(self.hw or ()),
                       groups=self.groups)
        return out

    def module(self, cin: int, cout: int) -> nn.Sequential:
        """The layer at ``cin`` x ``cout`` widths, with a bias (BN folded) and its ReLU when one follows."""
        if self.op == "conv":
            # grouped/depthwise convs: the largest group count that divides both sampled widths
            groups = math.gcd(math.gcd(cin, cout), self.groups or 1)
            layer: nn.Module = nn.Conv2d(cin, cout, self.kernel, stride=self.stride, padding=self.padding,
                                         bias=True, groups=groups)
        else:
            layer = nn.Linear(cin, cout)
        return nn.Sequential(layer, nn.ReLU()) if self.relu else nn.Sequential(layer)

    def input_shape(self, cin: int) -> tuple[int, ...]:
        """One sample's input at ``cin`` channels (no batch axis)."""
        return (cin, *self.hw) if self.op == "conv" and self.hw else (cin,)
