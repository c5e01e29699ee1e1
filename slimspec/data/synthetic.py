"""``synthetic``: random class-conditional blobs, deterministic by seed, for smoke tests.

Each class has a smooth random prototype image (a coarse random grid upsampled to the input
size); an example is its class prototype plus Gaussian noise, clipped to 0..1. Any
``input_shape`` is generated directly (default [3, 32, 32]). Learnable in a few epochs.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .registry import register_dataset
from .tensors import TensorDataBundle

DEFAULT_SHAPE = (3, 32, 32)
NUM_CLASSES = 10
TRAIN_SIZE = 512
TEST_SIZE = 256
NOISE = 0.15


def make_blobs(
    seed: int = 0,
    input_shape: Sequence[int] = DEFAULT_SHAPE,
    num_classes: int = NUM_CLASSES,
    train_size: int = TRAIN_SIZE,
    test_size: int = TEST_SIZE,
    noise: float = NOISE,
) -> TensorDataBundle:
    """Build the synthetic bundle; same arguments -> identical tensors."""
    c, h, w = (int(v) for v in input_shape)
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(num_classes, c, max(2, h // 4), max(2, w // 4), generator=gen)
    prototypes = F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)

    def sample(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(count) % num_classes
        labels = labels[torch.randperm(count, generator=gen)]
        images = prototypes[labels] + noise * torch.randn(count, c, h, w, generator=gen)
        return images.clamp_(0.0, 1.0), labels

    train_x, train_y = sample(train_size)
    test_x, test_y = sample(test_size)
    mean = tuple(float(v) for v in train_x.mean(dim=(0, 2, 3)))
    std = tuple(float(v) for v in train_x.std(dim=(0, 2, 3)))
    return TensorDataBundle(
        name="synthetic",
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        num_classes=num_classes,
        mean=mean,
        std=std,
        pad=max(1, h // 8) if h >= 8 else 0,
        flip=False,
        classes=tuple(str(i) for i in range(num_classes)),
    )


@register_dataset("synthetic")
def load_synthetic(
    *, data_dir: str | None = None, download: bool = False, seed: int = 0, input_shape: Sequence[int] | None = None
) -> TensorDataBundle:
    """Random class-conditional blobs of any input shape (default [3, 32, 32]), seeded."""
    return make_blobs(seed=seed, input_shape=input_shape or DEFAULT_SHAPE)
