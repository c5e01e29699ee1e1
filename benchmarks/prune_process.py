"""The whole ``slimspec prune`` process vs Torch-Pruning and a plain PyTorch script doing the same prune.

Cases: VGG-19 (stock spec, random weights with half the BN gammas zeroed, Network Slimming
at 50%), and torchvision's resnet50 and wide_resnet101_2 imported with random weights
(``slimspec import torchvision:NAME``: written to safetensors first), L1 at 30% (Li et al.,
per layer); and the same three files masked by ``magnitude`` at 50% (Han et al. 2015,
unstructured, global: the ``-magnitude`` cases). Every process loads the same safetensors
file, prunes and writes safetensors:

* ``slimspec prune`` from the file (no model built; ``--check`` is off above 4M parameters);
* a Torch-Pruning script (``torch_pruning``, the ``benchmark`` extra): build the model, load the
  state dict, trace it (``DependencyGraph``), prune the same channels (chosen by slimspec's rule:
  ``floor(n * (1 - r))`` kept per layer, or a global ratio, ties by position), save;
* a plain torch script: build, load, index every tensor by hand, save.

A ``-magnitude`` case runs, beside ``slimspec prune`` (from the file: a radix select over the
mapped weights, no model), slimspec's model path (``prune(..., from_file=False)``: the model
loaded, every score pooled and stably sorted, a masked model built; what ``slimspec prune``
did before) and a plain torch script (load the state, pool |w|, stable sort, mask, save);
Torch-Pruning removes channels only.

The channels and values are checked first (untimed): every tensor the scripts write equals
slimspec's, and the logits of the pruned models agree (a magnitude case: the model path's file
is byte-identical, and the plain script's tensors equal slimspec's). Then each process runs ``--repeat``
times (median of 5 by default), alternating, as a whole process (python start-up and imports
included); peak RSS is the child's ``getrusage`` maximum, reported over a base process that
only imports torch and slimspec, as a multiple of the weights file.

Run: ``python benchmarks/prune_process.py [--case vgg19,resnet50,wide_resnet101_2] [--repeat 5]``
(``--case vgg19-magnitude,resnet50-magnitude,wide_resnet101_2-magnitude`` for the masks).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from _common import run_cases

# shared by the two scripts: slimspec's channel choice (policy.py), written out by hand
CHOICE = r'''
import math, sys, torch
from safetensors.torch import load_file, save_file

def keep_count(width, ratio):
    return int(math.floor(width * (1.0 - ratio) + 1e-9))

def per_layer(scores, ratio):
    """Each layer keeps its floor(n*(1-r)) best channels (lowest pruned first, ties: first position)."""
    out = []
    for s in scores:
        order = sorted(range(len(s)), key=lambda i: (float(s[i]), i))
        out.append(sorted(order[len(s) - keep_count(len(s), ratio):]))
    return out

def global_ratio(scores, ratio):
    """One pool: N - floor(N*(1-r)) lowest go (ties: earlier layer, then position); a layer keeps >= 1."""
    pool = sorted((float(v), layer, i) for layer, s in enumerate(scores) for i, v in enumerate(s))
    total = len(pool)
    gone = {(layer, i) for _, layer, i in pool[: total - keep_count(total, ratio)]}
    out = []
    for layer, s in enumerate(scores):
        keep = [i for i in range(len(s)) if (layer, i) not in gone]
        out.append(keep or [min(range(len(s)), key=lambda i: (-float(s[i]), i))])
    return out

src, dst, ratio, logits = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
'''

VGG = r'''
from torch import nn
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

names, seq = {}, 0  # slimspec names -> Sequential names
for i, v in enumerate(cfg):
    if v == "M":
        seq += 1
        continue
    names[f"features.{i}.conv.weight"] = f"{seq}.weight"
    for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        names[f"features.{i}.bn.{k}"] = f"{seq + 1}.{k}"
    seq += 3
names["fc.weight"], names["fc.bias"] = f"{seq + 2}.weight", f"{seq + 2}.bias"
model = make(cfg)
model.load_state_dict({names[k]: v for k, v in load_file(src).items()})
model.eval()
bns = [m for m in model if isinstance(m, nn.BatchNorm2d)]
convs = [m for m in model if isinstance(m, nn.Conv2d)]
keep = global_ratio([bn.weight.detach().abs() for bn in bns], ratio)  # Network Slimming: |gamma|, global
shape = (2, 3, 32, 32)
back = {v: k for k, v in names.items()}
'''

RESNET = r'''
import torchvision
arch = sys.argv[5]
model = getattr(torchvision.models, arch)()
RENAMES = (("stem.conv.", "conv1."), ("stem.bn.", "bn1."), (".shortcut.conv.", ".downsample.0."),
           (".shortcut.bn.", ".downsample.1."))  # slimspec's resnet family names -> torchvision's

def tv_name(key):
    for ours, theirs in RENAMES:
        key = key.replace(ours, theirs) if ours[0] == "." else theirs + key[len(ours):] if key.startswith(ours) else key
    return key

state = {tv_name(k): v for k, v in load_file(src).items()}
model.load_state_dict(state)
back = {k: ours for ours in load_file(src) for k in [tv_name(ours)]}
model.eval()
blocks = [b for layer in (model.layer1, model.layer2, model.layer3, model.layer4) for b in layer]
convs = [conv for b in blocks for conv in (b.conv1, b.conv2)]  # the inner widths slimspec prunes
keep = per_layer([c.weight.detach().abs().flatten(1).sum(1) for c in convs], ratio)  # Li et al.: L1, per layer
shape = (2, 3, 224, 224)
'''

TORCH_PRUNING = r'''
import torch_pruning as tp
graph = tp.DependencyGraph().build_dependency(model, example_inputs=torch.randn(1, *shape[1:]))
for conv, kept in zip(convs, keep):
    removed = sorted(set(range(conv.out_channels)) - set(kept))
    if removed:
        graph.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=removed).prune()
'''

BY_HAND = r'''
from torch import nn
modules = list(model.modules())

def index_out(conv, bn, kept):
    idx = torch.tensor(kept)
    conv.weight = nn.Parameter(conv.weight.data[idx].clone())
    conv.out_channels = len(kept)
    for name in ("weight", "bias"):
        setattr(bn, name, nn.Parameter(getattr(bn, name).data[idx].clone()))
    bn.running_mean, bn.running_var = bn.running_mean[idx].clone(), bn.running_var[idx].clone()
    bn.num_features = len(kept)

def index_in(layer, kept):
    layer.weight = nn.Parameter(layer.weight.data[:, torch.tensor(kept)].clone())

if "bns" in globals():  # VGG: each conv's BN follows it; the next conv (or the classifier) reads its channels
    readers = convs[1:] + [m for m in modules if isinstance(m, nn.Linear)]
    for conv, bn, reader, kept in zip(convs, bns, readers, keep):
        index_out(conv, bn, kept)
        index_in(reader, kept)
else:  # bottleneck: conv1 -> bn1 -> conv2 -> bn2 -> conv3
    for b, kept1, kept2 in zip(blocks, keep[0::2], keep[1::2]):
        index_out(b.conv1, b.bn1, kept1)
        index_in(b.conv2, kept1)
        index_out(b.conv2, b.bn2, kept2)
        index_in(b.conv3, kept2)
'''

SAVE = r'''
state = {back.get(k, k): v.contiguous() for k, v in model.state_dict().items()}
save_file(state, dst)
if logits:
    with torch.no_grad():
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
        save_file({"logits": model(x)}, logits)
'''

# magnitude (global): slimspec's model path, and the same masks by hand (|w| pooled in the network's order,
# stable sort: ties in that order); argv: src dst ratio ORDER.json
MODEL_PATH = ("import sys; from slimspec.pruning.api import prune; "
              "prune(sys.argv[1], 'magnitude', ratio=float(sys.argv[3]), from_file=False)"
              ".save(sys.argv[2], overwrite=True)")

MAGNITUDE = r'''
import json, math, sys, torch
from safetensors.torch import load_file, save_file

src, dst, ratio, order = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
state = load_file(src)
names = json.loads(open(order).read())  # every conv/linear weight, in the network's order
scores = torch.cat([state[n].float().abs().flatten() for n in names])
keep = torch.ones_like(scores)
drop = scores.numel() - int(math.floor(scores.numel() * (1.0 - ratio) + 1e-9))
keep[torch.sort(scores, stable=True).indices[:drop]] = 0
for name, part in zip(names, keep.split([state[n].numel() for n in names])):
    mask = part.view_as(state[name])
    state[name], state[name + "_mask"] = state[name] * mask, mask
save_file(state, dst)
'''


@dataclass(frozen=True)
class Case:
    name: str  # the stock spec or torchvision model
    method: str
    ratio: float
    body: str
    torchvision: bool = False

    @property
    def masks(self) -> bool:
        return self.method == "magnitude"


CASES = {
    "vgg19": Case("vgg19", "slimming", 0.5, VGG),
    "resnet50": Case("resnet50", "l1", 0.3, RESNET, torchvision=True),
    "wide_resnet101_2": Case("wide_resnet101_2", "l1", 0.3, RESNET, torchvision=True),
    "vgg19-magnitude": Case("vgg19", "magnitude", 0.5, MAGNITUDE),
    "resnet50-magnitude": Case("resnet50", "magnitude", 0.5, MAGNITUDE, torchvision=True),
    "wide_resnet101_2-magnitude": Case("wide_resnet101_2", "magnitude", 0.5, MAGNITUDE, torchvision=True),
}


def measured(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd`` in a child that reports its own wall time and peak RSS (MiB, getrusage)."""
    wrapper = ("import resource, subprocess, sys, time\n"
               "t = time.perf_counter()\n"
               "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
               "w = time.perf_counter() - t\n"
               "assert r.returncode == 0, r.stderr.decode()[-3000:]\n"
               "print(w, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)\n")
    out = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd[:6])} failed:\n{out.stderr[-3000:]}")
    wall, rss = out.stdout.split()
    return float(wall), float(rss)


def make_weights(case: Case, folder: Path) -> Path:
    """The case's weights file: a stock spec with zeroed gammas, or an imported torchvision model."""
    if case.torchvision:
        spec = folder / f"{case.name}.yaml"
        subprocess.run([sys.executable, "-m", "slimspec", "import", f"torchvision:{case.name}", "--out", str(spec),
                        "--force"], check=True, stdout=subprocess.DEVNULL)
        return spec.with_suffix(".safetensors")
    import torch

    import slimspec

    model = slimspec.build(case.name, seed=0)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.copy_(torch.rand(module.num_features, generator=generator) + 0.1)
                module.weight[torch.rand(module.num_features, generator=generator) < case.ratio] = 0
    path = folder / f"{case.name}.safetensors"
    slimspec.save_weights(model, model.spec, path)
    return path


def verify(case: Case, commands: dict[str, list[str]], folder: Path) -> str:
    """Every tensor each script writes equals slimspec's, and the pruned models' logits agree."""
    import torch
    from safetensors.torch import load_file

    import slimspec

    subprocess.run(commands["slimspec prune"], check=True, stdout=subprocess.DEVNULL)
    ours = load_file(folder / "slimspec.safetensors")
    model, spec = slimspec.load_model(folder / "slimspec.safetensors")
    x = torch.randn(2, *spec.ir.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model.eval()(x)
    lines = []
    for name in ("Torch-Pruning script", "plain torch script"):
        logits = folder / f"{name[:5]}.logits.safetensors"
        cmd = list(commands[name])
        cmd[5] = str(logits)  # argv: script src dst ratio LOGITS [arch]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        theirs = load_file(cmd[3])
        differ = [k for k, v in theirs.items() if k not in ours or ours[k].shape != v.shape or not torch.equal(ours[k], v)]
        if differ or set(ours) - set(theirs):
            raise SystemExit(f"{case.name}: {name} keeps other channels than slimspec: {differ[:5]} "
                             f"{sorted(set(ours) - set(theirs))[:5]}")
        got = load_file(logits)["logits"]
        worst = float((got - expected).abs().max())
        if not torch.allclose(got, expected, atol=1e-4, rtol=1e-4):
            raise SystemExit(f"{case.name}: {name}'s logits differ from slimspec's by {worst:.3g}")
        lines.append(f"{name}: all {len(theirs)} tensors equal to slimspec's, logits within {worst:.2g}")
    return "; ".join(lines)


def verify_masks(case: Case, commands: dict[str, list[str]], folder: Path) -> str:
    """The model path writes the very bytes ``slimspec prune`` writes from the file; the plain script's
    tensors equal slimspec's (which also holds the masked network's channel masks, all ones)."""
    import torch
    from safetensors.torch import load_file

    subprocess.run(commands["slimspec prune"], check=True, stdout=subprocess.DEVNULL)
    ours = folder / "slimspec.safetensors"
    subprocess.run(commands["slimspec model path"], check=True, stdout=subprocess.DEVNULL)
    if (folder / "model_path.safetensors").read_bytes() != ours.read_bytes():
        raise SystemExit(f"{case.name}: the model path's weights file differs from the file path's")
    subprocess.run(commands["plain torch script"], check=True, stdout=subprocess.DEVNULL)
    mine, theirs = load_file(ours), load_file(folder / "plain.safetensors")
    differ = [k for k, v in theirs.items() if k not in mine or not torch.equal(mine[k], v)]
    extra = [k for k in set(mine) - set(theirs) if not (k.endswith(".mask") and bool((mine[k] == 1).all()))]
    if differ or extra:
        raise SystemExit(f"{case.name}: the plain script's masks differ from slimspec's: {differ[:5]} {extra[:5]}")
    zeros = sum(int((v == 0).sum()) for k, v in mine.items() if k.endswith("weight_mask"))
    return (f"model path: the same {ours.stat().st_size:,} bytes; plain torch script: all {len(theirs)} tensors "
            f"equal to slimspec's ({zeros:,} weights masked)")


def _commands(case: Case, weights: Path, folder: Path) -> dict[str, list[str]]:
    """Each timed process's command line (the base first, ``slimspec prune`` second)."""
    commands = {"base (import torch, slimspec)": [sys.executable, "-c", "import torch, slimspec"],
                "slimspec prune": [sys.executable, "-m", "slimspec", "prune", str(weights), "-m", case.method,
                                   "--ratio", str(case.ratio), "--out", str(folder / "slimspec.yaml"), "--force"]}
    if case.masks:
        from slimspec.document import spec_from_text
        from slimspec.pruning.criteria import get_criterion
        from slimspec.weights import embedded_spec_text, read_metadata

        order = folder / "order.json"
        ir = spec_from_text(embedded_spec_text(read_metadata(weights))).ir
        order.write_text(json.dumps(get_criterion("magnitude").weight_names(ir)))
        commands["slimspec model path"] = [sys.executable, "-c", MODEL_PATH, str(weights),
                                           str(folder / "model_path.yaml"), str(case.ratio)]
        scripts = {"plain torch script": (case.body, [str(order)])}
    else:
        scripts = {"Torch-Pruning script": (CHOICE + case.body + TORCH_PRUNING + SAVE, ["", case.name]),
                   "plain torch script": (CHOICE + case.body + BY_HAND + SAVE, ["", case.name])}  # no logits timed
    for name, (text, extra) in scripts.items():
        script = folder / f"{name.split()[0]}.py"
        script.write_text(text)
        commands[name] = [sys.executable, str(script), str(weights), str(folder / f"{name.split()[0]}.safetensors"),
                          str(case.ratio), *extra]
    return commands


def run_case(case: Case, repeat: int, folder: Path) -> dict:
    weights = make_weights(case, folder)
    size_mib = weights.stat().st_size / 2**20
    commands = _commands(case, weights, folder)
    checked = verify_masks(case, commands, folder) if case.masks else verify(case, commands, folder)
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, cmd in commands.items():
            samples[name].append(measured(cmd))
    medians = {name: (statistics.median(w for w, _ in s), statistics.median(r for _, r in s))
               for name, s in samples.items()}
    return {"case": case.name, "method": case.method, "ratio": case.ratio, "weights_mib": size_mib,
            "verified": checked, "repeat": repeat, "medians": medians, "samples": samples}


def report(result: dict) -> str:
    medians = result["medians"]
    base_wall, base_rss = medians["base (import torch, slimspec)"]
    lines = [f"{result['case']} ({result['method']} {result['ratio']:.0%}): weights {result['weights_mib']:.0f} MiB; "
             f"median of {result['repeat']} alternating runs per process",
             f"  {result['verified']}",
             f"  {'process':32s} {'wall s':>7s} {'peak RSS MiB':>13s} {'over base':>10s} {'x weights':>10s}"]
    for name, (wall, rss) in medians.items():
        over = "" if name.startswith("base") else f"{rss - base_rss:10.0f} {(rss - base_rss) / result['weights_mib']:9.2f}x"
        lines.append(f"  {name:32s} {wall:7.2f} {rss:13.0f} {over}")
    ours = medians["slimspec prune"][0]
    others = [f"{ours / wall:.2f}x {name.removesuffix(' script')}'s" for name, (wall, _) in medians.items()
              if name != "slimspec prune" and not name.startswith("base")]
    lines.append(f"  slimspec prune wall time: {', '.join(others)}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", default=",".join(CASES), help=f"comma-separated: {', '.join(CASES)}")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    run_cases(args.case.split(","), lambda name, work: run_case(CASES[name], args.repeat, work), report, args.json)


if __name__ == "__main__":
    main()
