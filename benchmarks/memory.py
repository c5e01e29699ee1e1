"""Peak memory of one forward pass: slimspec's IR executor vs a hand-written nn.Sequential.

The executor frees every intermediate as soon as its last reader has run, so its peak should
match a hand-written module's. Each variant runs in its own subprocess (peak RSS from
``getrusage``), measured side by side in one run. Run: ``python benchmarks/memory.py``.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(kind: str, spec_name: str, batch: int) -> None:
    import torch

    sys.path.insert(0, str(HERE))
    import slimspec
    from latency import handwritten_vgg

    torch.set_num_threads(1)
    spec = slimspec.load_spec(spec_name)
    # each child holds exactly one model, so the forward's growth of peak RSS is comparable
    model = handwritten_vgg(spec) if kind == "hand-written" else slimspec.build(spec, seed=0).eval()
    x = torch.randn(batch, *spec.ir.input_shape)
    with torch.inference_mode():
        model(x[:1])  # warm-up: allocator and kernel workspaces, not activations of the full batch
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with torch.inference_mode():
        model(x)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_kib": after, "forward_growth_kib": after - before}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", default="vgg19")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.spec, args.batch)
        return
    results = {}
    for kind in ("slimspec", "hand-written"):
        out = subprocess.run([sys.executable, __file__, "--child", kind, "--spec", args.spec, "--batch", str(args.batch)],
                             check=True, capture_output=True, text=True).stdout
        results[kind] = json.loads(out.strip().splitlines()[-1])
    for kind, r in results.items():
        print(f"{kind:13s} peak RSS {r['peak_kib'] / 1024:8.1f} MiB, forward added {r['forward_growth_kib'] / 1024:7.1f} MiB")
    ratio = results["slimspec"]["forward_growth_kib"] / max(results["hand-written"]["forward_growth_kib"], 1)
    print(f"{args.spec}, batch {args.batch}: forward memory slimspec / hand-written = {ratio:.2f}x")


if __name__ == "__main__":
    main()
