"""Parameter-free modules the IR needs beyond torch.nn."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GlobalAvgPool(nn.Module):
    """(N, C, H, W) -> (N, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class ShortcutA(nn.Module):
    """Li et al. 2017's parameter-free shortcut: 2x2 average pool when strided, zero channels appended."""

    def __init__(self, stride: int, extra_channels: int):
        super().__init__()
        self.stride, self.extra = stride, extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = F.avg_pool2d(x, self.stride)
        return F.pad(x, (0, 0, 0, 0, 0, self.extra)) if self.extra else x

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra}"


class ChannelSelect(nn.Module):
    """Keeps the ``index`` channels of its input (Network Slimming's ``channel_selection``).

    The index is a non-persistent buffer: the spec is the single source of truth for it.
    """

    def __init__(self, index: list[int] | tuple[int, ...], base_size: int):
        super().__init__()
        self.base_size = base_size
        self.register_buffer("index", torch.tensor(list(index), dtype=torch.long), persistent=False)
        self.identity = list(index) == list(range(base_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.identity else x.index_select(1, self.index)

    def extra_repr(self) -> str:
        return f"{self.index.numel()} of {self.base_size}"
