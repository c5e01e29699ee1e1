"""Parameter-free modules the IR needs beyond torch.nn."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..ir.ops import CONST_OPS
from ..utils.names import resolve_dotted


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


class Const(nn.Module):
    """``x <op> value`` with a constant: ``F.relu6(x + 3) / 6``'s two halves, normalisation by constants."""

    def __init__(self, op: str, value: float):
        super().__init__()
        self.op, self.value = op, value
        self._apply_op = resolve_dotted(CONST_OPS[op])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._apply_op(x, self.value)

    def extra_repr(self) -> str:
        return f"x {self.op} {self.value}"


class ChannelScale(nn.Module):
    """A learnable per-channel multiplier (ConvNeXt's layer scale, Liu et al. 2022; CaiT's LayerScale)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(-1, *([1] * (x.dim() - 2)))


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): in training, zero whole samples (``row``) or the whole batch
    (``batch``) with probability ``p`` and rescale the rest, as torchvision's ``StochasticDepth``; identity in eval."""

    def __init__(self, p: float, mode: str = "row"):
        super().__init__()
        self.p, self.mode = p, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        shape = [x.shape[0]] + [1] * (x.dim() - 1) if self.mode == "row" else [1] * x.dim()
        noise = torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(survival)
        return x * noise.div_(survival) if survival > 0.0 else x * noise

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of each pixel of an (N, C, H, W) map (ConvNeXt's LayerNorm2d, Liu et al.
    2022), computed as torchvision's: channels last, ``F.layer_norm``, channels first; over a vector, plain."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            return super().forward(x)
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle (Zhang et al. 2018; ShuffleNetV2, Ma et al. 2018): channels viewed as
    (groups, C / groups), transposed, flattened back — torchvision's ``channel_shuffle``."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        x = x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).contiguous()
        return x.view(n, c, h, w)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class Chunk(nn.Module):
    """Part ``index`` of ``parts`` equal parts of the channels (``x.chunk(parts, dim=1)[index]``; YOLOv8's C2f)."""

    def __init__(self, parts: int, index: int):
        super().__init__()
        self.parts, self.index = parts, index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.chunk(self.parts, dim=1)[self.index]

    def extra_repr(self) -> str:
        return f"part {self.index} of {self.parts}"


class ChannelSlice(nn.Module):
    """Channels ``start:stop`` (``x[:, start:stop]``; ReXNet adds its shortcut to the first channels of a wider map)."""

    def __init__(self, start: int, stop: int):
        super().__init__()
        self.start, self.stop = start, stop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.start:self.stop]

    def extra_repr(self) -> str:
        return f"channels {self.start}:{self.stop}"
