"""A network as a user writes it, with nothing slimspec-specific in it (README: "Bring your own model").

A small CIFAR-sized CNN: a residual basic block, a MobileNet-style depthwise-separable
block with a residual add, and a concat of a strided conv branch and a pooled branch.

    slimspec import python:examples.my_net:build --input 3,32,32 --out my_net.yaml
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    """3x3 conv -> BN -> ReLU -> 3x3 conv -> BN, plus the input (He et al. 2016)."""

    def __init__(self, channels: int, inner: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, inner, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(inner)
        self.conv2 = nn.Conv2d(inner, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x
        return self.relu(out)


class DepthwiseBlock(nn.Module):
    """1x1 expand -> 3x3 depthwise -> 1x1 project, plus the input (MobileNetV2's inverted residual)."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.expand = nn.Conv2d(channels, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.dw = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.project = nn.Conv2d(hidden, channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self.bn1(self.expand(x)))
        y = F.relu6(self.bn2(self.dw(y)))
        return x + self.bn3(self.project(y))


class MyNet(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 32):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True))
        self.block1 = BasicBlock(width, width)
        self.block2 = DepthwiseBlock(width, 3 * width)
        self.down = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(2 * width), nn.ReLU(inplace=True))
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(3 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.block1(self.stem(x)))
        x = torch.cat([self.down(x), self.pool(x)], dim=1)  # 2*width + width channels
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


def build() -> MyNet:
    """The factory ``slimspec import python:examples.my_net:build`` calls."""
    return MyNet()
