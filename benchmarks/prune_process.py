"""The whole ``slimspec prune`` process vs a plain PyTorch script doing the same load-prune-save.

Both prune the same VGG-19 weights (random, with 70% of the BN gammas zeroed) by Network
Slimming's global |gamma| threshold and write safetensors. The reference is what one writes
by hand (or with Torch-Pruning): build a torchvision-style VGG, load the state dict, index
every tensor by the kept channels, save. Each variant runs as its own process (python start
and imports included), interleaved, several times; prints median wall time and the peak RSS
growth over a process that only imports torch, as a multiple of the weights file's size.

Run: ``python benchmarks/prune_process.py [--spec vgg19] [--repeat 3]``.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REFERENCE = r'''
import sys, torch
from safetensors.torch import load_file, save_file
from torch import nn
src, dst, ratio = sys.argv[1], sys.argv[2], float(sys.argv[3])
cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512]

def make(cfg):  # torchvision-style make_layers, as in network-slimming's vgg.py
    layers, cin = [], 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            cin = v
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10))

state = load_file(src)
model = make(cfg)
convs = [i for i, v in enumerate(cfg) if v != "M"]
mapping = {}  # slimspec names -> Sequential names
seq = 0
for i, v in enumerate(cfg):
    if v == "M":
        seq += 1
        continue
    mapping[f"features.{i}.conv.weight"] = f"{seq}.weight"
    for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        mapping[f"features.{i}.bn.{k}"] = f"{seq + 1}.{k}"
    seq += 3
mapping["fc.weight"], mapping["fc.bias"] = f"{seq + 2}.weight", f"{seq + 2}.bias"
model.load_state_dict({mapping[k]: v for k, v in state.items() if k in mapping})
sd = model.state_dict()
bns = [m for m in model if isinstance(m, nn.BatchNorm2d)]
gammas = torch.cat([bn.weight.detach().abs() for bn in bns])
threshold = gammas.sort().values[int(len(gammas) * ratio)]
keep = [torch.nonzero(bn.weight.detach().abs() > threshold).flatten() for bn in bns]
keep = [k if len(k) else bn.weight.detach().abs().argmax().view(1) for k, bn in zip(keep, bns)]
names = [n for n, m in model.named_children() if isinstance(m, nn.Conv2d)]
out, prev = {}, torch.arange(3)
for name, kept in zip(names, keep):
    bn = str(int(name) + 1)
    out[name + ".weight"] = sd[name + ".weight"][kept][:, prev].clone()
    for k in ("weight", "bias", "running_mean", "running_var"):
        out[f"{bn}.{k}"] = sd[f"{bn}.{k}"][kept].clone()
    prev = kept
fc = [n for n, m in model.named_children() if isinstance(m, nn.Linear)][0]
out[fc + ".weight"], out[fc + ".bias"] = sd[fc + ".weight"][:, prev].clone(), sd[fc + ".bias"].clone()
save_file(out, dst)
'''


def measured(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd`` in a child that reports its own peak RSS through getrusage."""
    wrapper = ("import resource, runpy, subprocess, sys, time\n"
               "t = time.perf_counter()\n"
               "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
               "w = time.perf_counter() - t\n"
               "assert r.returncode == 0, r.stderr.decode()[-2000:]\n"
               "print(w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)\n")
    out = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd[:5])} failed:\n{out.stderr[-3000:]}")
    wall, rss = out.stdout.split()
    return float(wall), float(rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", default="vgg19")
    parser.add_argument("--ratio", type=float, default=0.7)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import torch

    import slimspec

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = slimspec.build(args.spec, seed=0)
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.weight.copy_(torch.rand(module.num_features) + 0.1)
                    module.weight[torch.rand(module.num_features) < args.ratio] = 0
        weights = folder / "w.safetensors"
        slimspec.save_weights(model, model.spec, weights)
        size_mib = weights.stat().st_size / 2**20
        (folder / "ref.py").write_text(REFERENCE)
        variants = {
            "import torch only": [sys.executable, "-c", "import torch, safetensors.torch"],
            "slimspec prune": [sys.executable, "-m", "slimspec", "prune", str(weights), "--method", "slimming",
                               "--ratio", str(args.ratio), "--out", str(folder / "p.yaml"), "--force"],
            "plain torch script": [sys.executable, str(folder / "ref.py"), str(weights),
                                   str(folder / "ref.safetensors"), str(args.ratio)],
        }
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        for _ in range(args.repeat):
            for name, cmd in variants.items():
                samples[name].append(measured(cmd))
    base_wall = statistics.median(w for w, _ in samples["import torch only"])
    base_rss = statistics.median(r for _, r in samples["import torch only"])
    print(f"{args.spec}: weights {size_mib:.1f} MiB; median of {args.repeat} interleaved runs per process")
    print(f"{'process':22s} {'wall s':>7s} {'peak RSS MiB':>13s} {'RSS over torch import':>22s}")
    for name in variants:
        wall = statistics.median(w for w, _ in samples[name])
        rss = statistics.median(r for _, r in samples[name])
        growth = "" if name == "import torch only" else f"{(rss - base_rss) / size_mib:.2f}x weights"
        print(f"{name:22s} {wall:7.2f} {rss:13.0f} {growth:>22s}")
    prune_wall = statistics.median(w for w, _ in samples["slimspec prune"])
    ref_wall = statistics.median(w for w, _ in samples["plain torch script"])
    print(f"slimspec prune / plain script wall time: {prune_wall / ref_wall:.2f}x "
          f"(over the torch import alone: {(prune_wall - base_wall) / (ref_wall - base_wall):.2f}x)")


if __name__ == "__main__":
    main()
