"""torchvision datasets (CIFAR-10/100, MNIST, Fashion-MNIST) loaded once into memory tensors.

torchvision reads the on-disk formats (CIFAR python pickles, MNIST idx files) and, with
``download=True``, fetches them into ``data_dir``. The arrays are then kept as uint8 tensors
``[N, C, H, W]``; batching, normalization and augmentation happen in
:class:`~slimspec.data.tensors.TensorDataBundle`. CIFAR uses Network Slimming's (Liu et al.
2017) normalization and augmentation: zero-pad 4, random 32x32 crop, horizontal flip.
MNIST and Fashion-MNIST are not augmented.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..utils.fileio import note_input
from .registry import register_dataset
from .tensors import DataError, TensorDataBundle


@dataclass(frozen=True)
class VisionInfo:
    """How to load and normalize one torchvision dataset."""

    name: str
    class_name: str  # attribute of torchvision.datasets
    folder: str  # folder torchvision looks for under data_dir
    shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    pad: int
    flip: bool


# fmt: off
VISION = {
    info.name: info
    for info in (
        VisionInfo(
            "cifar10", "CIFAR10", "cifar-10-batches-py", (3, 32, 32),
            (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), 4, True,
        ),
        VisionInfo(
            "cifar100", "CIFAR100", "cifar-100-python", (3, 32, 32),
            (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), 4, True,
        ),
        VisionInfo("mnist", "MNIST", "MNIST", (1, 28, 28), (0.1307,), (0.3081,), 0, False),
        VisionInfo("fashion-mnist", "FashionMNIST", "FashionMNIST", (1, 28, 28), (0.2860,), (0.3530,), 0, False),
    )
}
# fmt: on


def _images(dataset: Any) -> torch.Tensor:
    """``dataset.data`` as uint8 ``[N, C, H, W]`` (CIFAR: numpy HWC; MNIST: tensor HW)."""
    data = dataset.data
    tensor = data if isinstance(data, torch.Tensor) else torch.from_numpy(data)
    if tensor.dim() == 3:
        return tensor.unsqueeze(1).contiguous()
    return tensor.permute(0, 3, 1, 2).contiguous()


def _labels(dataset: Any) -> torch.Tensor:
    targets = dataset.targets
    return targets.long() if isinstance(targets, torch.Tensor) else torch.tensor(targets, dtype=torch.long)


def load_vision(name: str, data_dir: str, download: bool) -> TensorDataBundle:
    """Load ``name`` from ``data_dir`` through torchvision; :class:`DataError` if missing."""
    info = VISION[name]
    root = Path(data_dir)
    if not download and not (root / info.folder).is_dir():
        raise DataError(f"{name}: not found under {root} (pass --download or --data-dir)")
    import torchvision.datasets as tvd

    cls = getattr(tvd, info.class_name)
    try:
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=False)
    except (RuntimeError, OSError, EOFError, ValueError) as exc:  # URLError is an OSError
        action = "download failed" if download else "files missing or corrupted"
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__  # one line
        raise DataError(f"{name}: {action} under {root} ({detail})") from None
    note_input(root / info.folder)  # the data set's files are inputs: no output of the command may replace one
    train_x, test_x = _images(train), _images(test)
    if tuple(train_x.shape[1:]) != info.shape:
        raise DataError(f"{name}: expected images {list(info.shape)}, read {list(train_x.shape[1:])}")
    classes = tuple(str(c) for c in getattr(train, "classes", ()))
    return TensorDataBundle(
        name=name,
        train_x=train_x,
        train_y=_labels(train),
        test_x=test_x,
        test_y=_labels(test),
        num_classes=len(classes) if classes else int(_labels(train).max()) + 1,
        mean=info.mean,
        std=info.std,
        pad=info.pad,
        flip=info.flip,
        classes=classes or None,
    )


def _register(name: str) -> None:
    info = VISION[name]

    def loader(
        *, data_dir: str, download: bool = False, seed: int = 0, input_shape: Sequence[int] | None = None
    ) -> TensorDataBundle:
        return load_vision(name, data_dir, download)

    loader.__doc__ = f"{info.class_name} via torchvision ({list(info.shape)})"
    register_dataset(name, input_shape=info.shape)(loader)


for _name in VISION:
    _register(_name)
