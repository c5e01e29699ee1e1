"""Batched tensor augmentation (slimspec.data) vs per-image torchvision transforms through PIL.

Both do Network Slimming's CIFAR augmentation (pad 4, random 32x32 crop, horizontal flip)
plus normalization on one epoch-sized slice of CIFAR-shaped uint8 images. Prints the ratio.
Run: ``python benchmarks/augment.py``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from PIL import Image
from torchvision import transforms

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import compare  # noqa: E402
from slimspec.data import TensorDataBundle  # noqa: E402

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (PIL is single-threaded)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (args.images,), generator=g)
    bundle = TensorDataBundle("bench", images, labels, images[:10], labels[:10], 10, MEAN, STD, pad=4, flip=True)
    pil = [Image.fromarray(img.permute(1, 2, 0).numpy()) for img in images]
    per_image = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                    transforms.ToTensor(), transforms.Normalize(MEAN, STD)])

    def batched() -> None:
        for _ in bundle.batches("train", args.batch, shuffle=True, augment=True, device="cpu",
                                generator=torch.Generator().manual_seed(1)):
            pass

    def through_pil() -> None:
        for start in range(0, len(pil), args.batch):
            torch.stack([per_image(img) for img in pil[start:start + args.batch]])

    times = compare({"batched tensors": batched, "per-image PIL": through_pil}, rounds=3, repeat=1)
    for name, seconds in times.items():
        print(f"{name:16s} {seconds * 1000:9.1f} ms per {args.images} images")
    print(f"per-image PIL / batched tensors: {times['per-image PIL'] / times['batched tensors']:.1f}x")


if __name__ == "__main__":
    main()
