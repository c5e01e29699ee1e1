"""scikit-learn's bundled handwritten digits: 1,797 real 8x8 images, offline.

Pixel values 0..16 are scaled to 0..1. The train/test split is fixed: stratified 80/20 with
``train_test_split(..., random_state=0)`` (1,437 / 360 images), whatever the run's seed.
Augmentation is a random crop with 1 pixel of zero padding; no flips (a mirrored 2 or 7 is
not a 2 or 7). Specs written for CIFAR ([3, 32, 32]) are served by resizing (see
:func:`slimspec.data.tensors.adapt_input`).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from .registry import register_dataset
from .tensors import TensorDataBundle

SPLIT_SEED = 0
TEST_FRACTION = 0.2


@register_dataset("digits", input_shape=(1, 8, 8), adapts=True)
def load_digits_bundle(
    *, data_dir: str | None = None, download: bool = False, seed: int = 0, input_shape: Sequence[int] | None = None
) -> TensorDataBundle:
    """scikit-learn digits (1,797 8x8 grayscale images, 10 classes), stratified 80/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.from_numpy(digits.images).float().div_(16.0).unsqueeze(1)  # [N,1,8,8] in 0..1
    labels = torch.from_numpy(digits.target).long()
    index = torch.arange(len(labels)).numpy()
    train_idx, test_idx = train_test_split(
        index, test_size=TEST_FRACTION, stratify=labels.numpy(), random_state=SPLIT_SEED
    )
    train_idx, test_idx = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
    train_x = images[train_idx].contiguous()
    mean = float(train_x.mean())
    std = float(train_x.std())
    return TensorDataBundle(
        name="digits",
        train_x=train_x,
        train_y=labels[train_idx].contiguous(),
        test_x=images[test_idx].contiguous(),
        test_y=labels[test_idx].contiguous(),
        num_classes=10,
        mean=(mean,),
        std=(std,),
        pad=1,
        flip=False,
        classes=tuple(str(i) for i in range(10)),
    )
