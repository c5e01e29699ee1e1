"""The one interface every dataset implements: :class:`DataBundle`.

In-memory tensors (:class:`~slimspec.data.tensors.TensorDataBundle`: digits, torchvision sets,
synthetic) and streamed image folders (:class:`~slimspec.data.folder.FolderDataBundle`:
imagefolder / imagenet) both satisfy it, so the training loop, evaluation and the workflows
(sensitivity, demo) never ask which kind they hold.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import torch

from ..errors import DataError


@runtime_checkable
class DataBundle(Protocol):
    """A train and a test split, batched on demand; copies are cheap views."""

    name: str
    rank: int
    world_size: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image as the model sees it."""
        ...

    @property
    def num_classes(self) -> int:
        ...

    def num_examples(self, split: str = "train") -> int:
        """Examples this rank sees in ``split``."""
        ...

    def num_batches(self, split: str, batch_size: int, drop_last: bool = False) -> int:
        """Batches :meth:`batches` yields for these arguments."""
        ...

    def to(self, device: torch.device | str) -> DataBundle:
        """The bundle with its data on ``device`` (streamed bundles return themselves)."""
        ...

    def shard(self, rank: int, world_size: int) -> DataBundle:
        """This rank's share of each split (``DistributedSampler`` semantics)."""
        ...

    def limit(self, n: int) -> DataBundle:
        """The same bundle with at most the first ``n`` test examples (train untouched)."""
        ...

    def batches(
        self,
        split: str = "train",
        batch_size: int = 64,
        *,
        shuffle: bool = False,
        augment: bool = False,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(images, labels)`` batches: normalized float32 images, int64 labels, on ``device``."""
        ...


def check_limit(name: str, n: int) -> int:
    """``n`` as a positive int, or a :class:`~slimspec.errors.DataError` naming the dataset."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DataError(f"{name}: limit must be a positive number of test examples, got {n!r}")
    return n
