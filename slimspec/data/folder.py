"""``imagefolder`` (alias ``imagenet``): datasets too large for memory, streamed from disk.

``DATA_DIR/train/<class>/*.jpg`` and ``DATA_DIR/val/<class>/*.jpg`` (torchvision's
``ImageFolder`` layout, as ImageNet is usually unpacked). Images are decoded by DataLoader
workers with the standard ImageNet pipeline: RandomResizedCrop + horizontal flip for training,
resize to size * 256/224 + center crop for evaluation, ImageNet mean/std. The bundle offers
the same ``batches`` interface as the in-memory bundles, with the same determinism: the batch
order and the workers' augmentation seeds are drawn from the per-epoch generator.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from ..utils.fileio import note_input
from .bundle import check_limit
from .registry import register_dataset
from .tensors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPLIT_FOLDERS = {"train": ("train",), "test": ("val", "test")}


def _workers() -> int:
    return int(os.environ.get("SLIMSPEC_WORKERS", min(8, os.cpu_count() or 1)))


@dataclass(frozen=True, eq=False)
class FolderDataBundle:
    """Train/val ImageFolders read lazily; ``image_size`` is the spec's input height/width."""

    name: str
    root: Path
    image_size: int
    channels: int = 3
    rank: int = 0
    world_size: int = 1
    test_limit: int | None = None  # at most this many test images (the first ones, in ImageFolder order)

    def __post_init__(self) -> None:
        for split in SPLIT_FOLDERS:
            self._folder(split)

    def _folder(self, split: str) -> Path:
        for candidate in SPLIT_FOLDERS.get(split, ()):
            if (self.root / candidate).is_dir():
                return self.root / candidate
        raise DataError(f"{self.name}: no {' or '.join(SPLIT_FOLDERS.get(split, (split,)))} folder under {self.root}")

    def _dataset(self, split: str, augment: bool) -> Dataset:
        from torchvision import datasets, transforms

        size = self.image_size
        steps = ([transforms.RandomResizedCrop(size), transforms.RandomHorizontalFlip()] if augment else
                 [transforms.Resize(int(round(size * 256 / 224))), transforms.CenterCrop(size)])
        if self.channels == 1:
            steps.insert(0, transforms.Grayscale())
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if self.channels == 3 else ((0.5,), (0.5,))
        steps += [transforms.ToTensor(), transforms.Normalize(mean, std)]
        return datasets.ImageFolder(str(self._folder(split)), transform=transforms.Compose(steps))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.channels, self.image_size, self.image_size

    @property
    def num_classes(self) -> int:
        return len(self._dataset("train", False).classes)

    def _split_size(self, split: str) -> int:
        n = len(self._dataset(split, False))
        return min(n, self.test_limit) if split == "test" and self.test_limit is not None else n

    def num_examples(self, split: str = "train") -> int:
        n = self._split_size(split)
        if self.world_size == 1:
            return n
        return math.ceil(n / self.world_size) if split == "train" else len(range(self.rank, n, self.world_size))

    def num_batches(self, split: str, batch_size: int, drop_last: bool = False) -> int:
        n = self.num_examples(split)
        return n // batch_size if drop_last else math.ceil(n / batch_size)

    def to(self, device: torch.device | str) -> "FolderDataBundle":
        return self  # streamed: batches are moved to the device as they are yielded

    def shard(self, rank: int, world_size: int) -> "FolderDataBundle":
        return replace(self, rank=rank, world_size=world_size)

    def limit(self, n: int) -> "FolderDataBundle":
        """The same folders, evaluating only the first ``n`` test images."""
        return replace(self, test_limit=check_limit(self.name, n))

    def batches(self, split: str = "train", batch_size: int = 64, *, shuffle: bool = False, augment: bool = False,
                device: torch.device | str | None = None, generator: torch.Generator | None = None,
                drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        dataset = self._dataset(split, augment)
        n = self._split_size(split)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        if self.world_size > 1:
            total = math.ceil(n / self.world_size) * self.world_size if split == "train" else n
            order = torch.cat([order, order[: total - n]]) if total > n else order
            order = order[self.rank :: self.world_size]
        seed = int(torch.randint(0, 2**62, (1,), generator=generator)) if generator is not None else 0
        loader = DataLoader(dataset, batch_size=batch_size, sampler=order.tolist(), drop_last=drop_last,
                            num_workers=_workers(), pin_memory=torch.cuda.is_available(),
                            generator=torch.Generator().manual_seed(seed), persistent_workers=False)
        target = torch.device(device) if device is not None else torch.device("cpu")
        for x, y in loader:
            yield x.to(target, non_blocking=True), y.to(target, non_blocking=True)


def load_folder(*, data_dir: str, download: bool = False, seed: int = 0,
                input_shape: Sequence[int] | None = None, name: str = "imagefolder") -> FolderDataBundle:
    """An ImageFolder dataset under ``data_dir`` (``train/`` and ``val/``), streamed from disk."""
    if download:
        raise DataError(f"{name}: cannot be downloaded; unpack it as {data_dir}/train/<class>/ and {data_dir}/val/<class>/")
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"{name}: not found under {root} (pass --data-dir with train/ and val/ class folders)")
    for split in ("train", "val"):  # the image trees are inputs: no output of the command may replace an image
        note_input(root / split)
    channels, height, width = (int(v) for v in input_shape) if input_shape is not None else (3, 224, 224)
    if height != width:
        raise DataError(f"{name}: square inputs only, got {height}x{width}")
    return FolderDataBundle(name, root, height, channels)


register_dataset("imagefolder", adapts=True, description="ImageFolder train/ and val/ under --data-dir, streamed")(load_folder)
register_dataset("imagenet", adapts=True, description="ImageNet in ImageFolder layout under --data-dir, streamed")(
    lambda **kw: load_folder(name="imagenet", **kw))
