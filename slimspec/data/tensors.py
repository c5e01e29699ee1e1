"""In-memory datasets held as tensors, batched and augmented on the target device.

A :class:`TensorDataBundle` keeps a whole dataset (train and test splits) as image tensors
``[N, C, H, W]`` (uint8 0..255 or float 0..1) plus int64 labels. :meth:`~TensorDataBundle.batches`
yields normalized float batches. Augmentation (Network Slimming's CIFAR recipe, Liu et al.
2017: zero padding + random crop, random horizontal flip) runs on whole batches with tensor
ops on the batch's device: no per-image Python loop, no PIL.

Randomness comes only from the ``generator`` passed in (a CPU ``torch.Generator``): the
permutation and every crop offset / flip of an epoch are drawn up front, one value per
position of the (padded) epoch order, so a seeded generator gives the same batches on any
device and for any ``world_size`` (each rank reads its share of the same draws).
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from ..errors import DataError
from .bundle import check_limit

SPLITS = ("train", "test")


@dataclass(frozen=True, eq=False)
class TensorDataBundle:
    """Train/test image tensors, labels and normalization; ``pad``/``flip`` define augmentation.

    ``rank``/``world_size`` shard the train split like ``DistributedSampler`` (see :meth:`shard`).
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pad: int = 0
    flip: bool = False
    classes: tuple[str, ...] | None = None
    rank: int = 0
    world_size: int = 1

    def __post_init__(self) -> None:
        for split in SPLITS:
            x, y = self._split(split)
            if x.dim() != 4 or y.dim() != 1 or len(x) != len(y):
                raise DataError(f"{self.name}: {split} split needs images [N,C,H,W] and labels [N]")
        if self.test_x.shape[1:] != self.train_x.shape[1:]:
            raise DataError(f"{self.name}: train and test images differ in shape")
        channels = self.train_x.shape[1]
        if len(self.mean) != channels or len(self.std) != channels:
            raise DataError(f"{self.name}: mean/std need {channels} values (one per channel)")
        if not 0 <= self.rank < self.world_size:
            raise DataError(f"{self.name}: rank {self.rank} outside world size {self.world_size}")

    # -- description ----------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        c, h, w = self.train_x.shape[1:]
        return int(c), int(h), int(w)

    def num_examples(self, split: str = "train") -> int:
        """Examples this rank sees in ``split`` (train: padded shard size when sharded)."""
        n = len(self._split(split)[0])
        if self.world_size == 1:
            return n
        if split == "train":
            return math.ceil(n / self.world_size)
        return len(range(self.rank, n, self.world_size))

    def num_batches(self, split: str, batch_size: int, drop_last: bool = False) -> int:
        """Number of batches :meth:`batches` yields for these arguments."""
        n = self.num_examples(split)
        return n // batch_size if drop_last else math.ceil(n / batch_size)

    def __repr__(self) -> str:
        shard = f", rank={self.rank}/{self.world_size}" if self.world_size > 1 else ""
        return (
            f"TensorDataBundle({self.name!r}, input={list(self.input_shape)}, classes={self.num_classes}, "
            f"train={len(self.train_y)}, test={len(self.test_y)}, pad={self.pad}, flip={self.flip}{shard})"
        )

    # -- copies ---------------------------------------------------------------------------
    def to(self, device: torch.device | str) -> TensorDataBundle:
        """The same bundle with its tensors moved to ``device`` (e.g. to keep CIFAR on the GPU)."""
        move = {k: getattr(self, k).to(device) for k in ("train_x", "train_y", "test_x", "test_y")}
        return replace(self, **move)

    def shard(self, rank: int, world_size: int) -> TensorDataBundle:
        """A view that iterates only this rank's share of each split (no data is copied).

        Train: the epoch permutation is padded by wrapping to a multiple of ``world_size`` and
        rank ``r`` takes positions ``r, r+W, ...`` (as ``DistributedSampler``), so every rank runs
        the same number of steps. Test: positions ``r, r+W, ...`` without padding (exact counts).
        """
        return replace(self, rank=rank, world_size=world_size)

    def limit(self, n: int) -> TensorDataBundle:
        """The same bundle with only the first ``n`` test examples (a view; train untouched)."""
        n = check_limit(self.name, n)
        return replace(self, test_x=self.test_x[:n], test_y=self.test_y[:n])

    # -- iteration ------------------------------------------------------------------------
    def _split(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        if split == "train":
            return self.train_x, self.train_y
        if split == "test":
            return self.test_x, self.test_y
        raise DataError(f"{self.name}: unknown split '{split}' (expected one of {', '.join(SPLITS)})")

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
        """Yield ``(images, labels)``: images float32 normalized on ``device``, labels int64.

        ``shuffle`` permutes with ``generator`` (a CPU generator; ``None`` = torch's global RNG).
        ``augment`` applies this bundle's random crop (``pad``) and flip (``flip``).
        """
        if batch_size < 1:
            raise DataError(f"{self.name}: batch_size must be positive, got {batch_size}")
        x_all, y_all = self._split(split)
        n = len(y_all)
        target = torch.device(device) if device is not None else x_all.device
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        positions = torch.arange(n)
        if self.world_size > 1:
            if split == "train":
                total = math.ceil(n / self.world_size) * self.world_size
                positions = torch.arange(total)
                order = torch.cat([order, order[: total - n]]) if total > n else order
            positions = positions[self.rank :: self.world_size]
        crop, flips = self._draw_augmentation(len(order), generator) if augment else (None, None)
        mean = torch.tensor(self.mean, dtype=torch.float32, device=target).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=target).view(1, -1, 1, 1)
        count = len(positions)
        stop = count - count % batch_size if drop_last else count
        for start in range(0, stop, batch_size):
            pos = positions[start : start + batch_size]
            index = order[pos].to(x_all.device)
            x = _to_unit_float(x_all[index].to(target, non_blocking=True))
            y = y_all[index].to(target, non_blocking=True)
            if crop is not None:
                x = random_crop(x, self.pad, crop[pos].to(target))
            if flips is not None:
                x = random_flip(x, flips[pos].to(target))
            yield (x - mean) / std, y

    def _draw_augmentation(
        self, count: int, generator: torch.Generator | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Crop offsets ``[count, 2]`` (dy, dx) and flip flags ``[count]`` for one epoch."""
        crop = torch.randint(0, 2 * self.pad + 1, (count, 2), generator=generator) if self.pad > 0 else None
        flips = torch.randint(0, 2, (count,), generator=generator, dtype=torch.bool) if self.flip else None
        return crop, flips


def _to_unit_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float32 0..1; float tensors are taken as already in 0..1."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def random_crop(x: torch.Tensor, pad: int, offsets: torch.Tensor) -> torch.Tensor:
    """Zero-pad ``x`` [N,C,H,W] by ``pad`` and crop each image back to HxW at ``offsets`` [N,2].

    One gather for the whole batch: rows ``dy + 0..H-1`` and columns ``dx + 0..W-1`` per image.
    """
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = offsets[:, 0:1] + torch.arange(h, device=x.device)  # [N, H]
    cols = offsets[:, 1:2] + torch.arange(w, device=x.device)  # [N, W]
    batch = torch.arange(n, device=x.device)[:, None, None]
    # advanced indices separated by a slice -> result [N, H, W, C]
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def random_flip(x: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
    """Mirror the images of ``x`` [N,C,H,W] whose ``flags`` [N] are true (left-right)."""
    return torch.where(flags.view(-1, 1, 1, 1), x.flip(3), x)


def adapt_input(bundle: TensorDataBundle, shape: Sequence[int]) -> TensorDataBundle:
    """Resize (bilinear ``F.interpolate``) and repeat/average channels to fit ``shape`` [C,H,W].

    Channels: 1 -> C repeats the gray plane; C -> 1 averages. The crop padding scales with
    the height so augmentation keeps its relative strength (digits: pad 1 at 8x8 -> 4 at 32x32).
    """
    c, h, w = (int(v) for v in shape)
    src_c, src_h, src_w = bundle.input_shape
    if (c, h, w) == (src_c, src_h, src_w):
        return bundle
    if src_c != c and src_c != 1 and c != 1:
        raise DataError(
            f"{bundle.name}: cannot adapt {src_c}-channel images {list(bundle.input_shape)} to input {[c, h, w]}"
        )

    def convert(x: torch.Tensor) -> torch.Tensor:
        chunks = []
        for part in x.split(4096):
            y = _to_unit_float(part)
            if (h, w) != (src_h, src_w):
                y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False, antialias=h < src_h)
            if c != src_c:
                y = y.mean(1, keepdim=True) if c == 1 else y.expand(-1, c, -1, -1)
            y = y.clamp(0.0, 1.0)
            chunks.append(y.mul(255).round_().to(torch.uint8) if x.dtype == torch.uint8 else y.contiguous())
        return torch.cat(chunks)

    if c == src_c:
        mean, std = bundle.mean, bundle.std
    elif c == 1:
        mean, std = (sum(bundle.mean) / src_c,), (sum(bundle.std) / src_c,)
    else:
        mean, std = bundle.mean * c, bundle.std * c
    pad = round(bundle.pad * h / src_h) if bundle.pad else 0
    return replace(bundle, train_x=convert(bundle.train_x), test_x=convert(bundle.test_x), mean=mean, std=std, pad=pad)
