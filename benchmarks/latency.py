"""Forward latency: unpruned vs pruned, and slimspec's generic IR executor vs a hand-written module.

Prints measured ratios from one run (CPU by default). Run: ``python benchmarks/latency.py``.
The hand-written baseline is torchvision-style ``nn.Sequential`` VGG with the same weights, so
the ratio shows the executor's overhead (target: within a few percent).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import slimspec  # noqa: E402
from _common import compare  # noqa: E402
from slimspec.pruning.api import prune  # noqa: E402


def handwritten_vgg(spec: slimspec.Spec, source: nn.Module | None = None) -> nn.Module:
    """torchvision-style make_layers VGG (carrying ``source``'s weights when given)."""
    layers: list[nn.Module] = []
    cin = spec.ir.input_shape[0]
    state = source.state_dict() if source is not None else None
    for i, value in enumerate(spec.data["cfg"]):
        if value == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        conv, bn = nn.Conv2d(cin, value, 3, padding=1, bias=False), nn.BatchNorm2d(value)
        if state is not None:
            conv.weight.data.copy_(state[f"features.{i}.conv.weight"])
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(bn, key).data.copy_(state[f"features.{i}.bn.{key}"])
        layers += [conv, bn, nn.ReLU()]
        cin = value
    fc = nn.Linear(cin, spec.ir.num_classes)
    if state is not None:
        fc.load_state_dict({"weight": state["fc.weight"], "bias": state["fc.bias"]})
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", default="vgg19")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    spec = slimspec.load_spec(args.spec)
    model = slimspec.build(spec, seed=0).eval()
    result = prune(model, "l1", ratio=args.ratio)
    pruned = result.model.eval()
    x = torch.randn(args.batch, *spec.ir.input_shape)
    fns = {"slimspec": lambda: model(x), "pruned": lambda: pruned(x)}
    if spec.arch == "vgg" and spec.data.get("batch_norm", True) and not spec.data.get("classifier"):
        baseline = handwritten_vgg(spec, model)
        torch.testing.assert_close(baseline(x), model(x), rtol=1e-4, atol=1e-4)
        fns["hand-written"] = lambda: baseline(x)
    with torch.inference_mode():
        times = compare(fns)
    print(f"{spec.name}, batch {args.batch}, {args.threads} threads, l1 ratio {args.ratio} "
          f"(MACs {result.macs[0]:,} -> {result.macs[1]:,}, {result.macs[1] / result.macs[0]:.2f}x)")
    for name, seconds in times.items():
        print(f"  {name:13s} {seconds * 1000:9.2f} ms")
    print(f"  pruned / unpruned latency: {times['pruned'] / times['slimspec']:.2f}x")
    if "hand-written" in times:
        print(f"  slimspec executor / hand-written nn.Sequential: {times['slimspec'] / times['hand-written']:.3f}x")


if __name__ == "__main__":
    main()
