"""Training throughput (images/s): slimspec's loop vs a reference-style loop, on CIFAR-shaped data.

slimspec's loop keeps the data set on the device as tensors and augments whole batches there
(random crop with padding 4, flip), with channels-last and AMP on CUDA. The reference is
network-slimming's ``main.py``: a ``DataLoader`` over uint8 images with per-image
torchvision transforms (``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip``,
``ToTensor``, ``Normalize``), fp32, the BN sparsity update after ``backward``. Both train
the same spec from the same weights on the same synthetic images (``make_blobs``) with SGD
and BN sparsity 1e-4, and evaluate the test split each epoch. Throughput is train images per
second of an epoch (train + test pass), median over the epochs after the first (warm-up).

Run on a GPU: ``python benchmarks/gpu_train.py [--spec vgg19] [--images 10000] [--epochs 3]``.
``--tiny`` runs a few seconds on the CPU (a small VGG, 64 images): a smoke test of both loops.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

import slimspec
from slimspec.data.synthetic import make_blobs
from slimspec.latency import torch_threads
from slimspec.training.config import TrainConfig
from slimspec.training.loop import train_model
from slimspec.training.sparsity import bn_l1_subgradient_

TINY_SPEC = """
slimspec: 1
name: tiny_vgg
arch: vgg
input: [3, 32, 32]
num_classes: 10
batch_norm: true
cfg: [8, M, 16]
head: avg
classifier: []
"""


def reference_loop(model: torch.nn.Module, bundle, *, epochs: int, batch_size: int, lr: float, sparsity: float,
                   device: torch.device, workers: int) -> list[float]:
    """network-slimming main.py style: DataLoader + per-image transforms; seconds per epoch."""
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    class Images(Dataset):  # like torchvision's CIFAR10: uint8 HWC arrays, a PIL image per item
        def __init__(self, x: torch.Tensor, y: torch.Tensor, transform):
            self.x = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
            self.y, self.transform = y.tolist(), transform

        def __len__(self) -> int:
            return len(self.y)

        def __getitem__(self, i: int):
            from PIL import Image

            return self.transform(Image.fromarray(self.x[i])), self.y[i]

    normalize = transforms.Normalize(bundle.mean, bundle.std)
    train_set = Images(bundle.train_x, bundle.train_y, transforms.Compose([
        transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalize]))
    test_set = Images(bundle.test_x, bundle.test_y, transforms.Compose([transforms.ToTensor(), normalize]))
    pin = device.type == "cuda"
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, num_workers=workers, pin_memory=pin)
    test_loader = DataLoader(test_set, batch_size=256, shuffle=False, num_workers=workers, pin_memory=pin)
    model = model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        for x, y in train_loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            bn_l1_subgradient_(model, sparsity)  # main.py's updateBN()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            for x, y in test_loader:
                model(x.to(device)).argmax(1).eq(y.to(device)).sum().item()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="vgg19")
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers of the reference loop")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run: small VGG, 64 images, 2 epochs, one thread")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.tiny:
        args.spec, args.images, args.epochs, args.batch_size, args.workers, args.device = \
            TINY_SPEC, 64, 2, 32, 0, "cpu"
    with torch_threads(1 if args.tiny else None):
        report = measure(args)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['spec']} on {report['device']}, {args.images} CIFAR-shaped images, batch {args.batch_size}")
        print(f"slimspec loop (tensors on device{', AMP, channels-last' if report['amp_channels_last'] else ''}): "
              f"{report['slimspec_img_per_s']:.0f} img/s")
        print(f"reference loop (DataLoader, per-image transforms, {args.workers} workers): "
              f"{report['reference_img_per_s']:.0f} img/s")
        print(f"slimspec / reference: {report['speedup']:.2f}x")
    return report


def measure(args: argparse.Namespace) -> dict:
    """Train with both loops; the report dict."""
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          "cpu" if args.device == "auto" else args.device)
    bundle = make_blobs(0, (3, 32, 32), train_size=args.images, test_size=64 if args.tiny else max(256, args.images // 10))
    bundle = dataclasses.replace(bundle, pad=4, flip=True)  # CIFAR augmentation, as the reference's transforms
    start_model = slimspec.build(args.spec, seed=0)
    state = {k: v.clone() for k, v in start_model.state_dict().items()}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, sparsity=1e-4, device=str(device),
                             quiet=True, seed=0)
        run = train_model(start_model, bundle, config, tmp)
        results["slimspec"] = [record["time"] for record in run.history]
    reference_model = slimspec.build(args.spec, seed=0)
    reference_model.load_state_dict(state)
    results["reference"] = reference_loop(reference_model, bundle, epochs=args.epochs, batch_size=args.batch_size,
                                          lr=0.1, sparsity=1e-4, device=device, workers=args.workers)
    report = {"device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
              "spec": slimspec.load_spec(args.spec).name, "images": args.images, "epochs": args.epochs,
              "batch_size": args.batch_size, "amp_channels_last": device.type == "cuda"}
    for name, times in results.items():
        steady = times[1:] or times
        report[f"{name}_img_per_s"] = args.images / statistics.median(steady)
    report["speedup"] = report["slimspec_img_per_s"] / report["reference_img_per_s"]
    return report

if __name__ == "__main__":
    main()
