"""Do pruned models deliver their MACs? Latency ratio vs MAC ratio per runtime and batch size.

Builds the stock ``vgg19`` and ``resnet56``, zeroes 70% / 50% of the BN gammas at random
(what sparsity training leaves), prunes them with Network Slimming at that ratio, and times
original and pruned side by side (interleaved rounds, ``torch.utils.benchmark``) in every
runtime at batch 1 and 32, BN folded. Prints, per model, runtime and batch: latency ratio
(original / pruned, of medians), MAC ratio, the fraction of the MAC ratio reached (goal:
>= 0.8; also from the minima, the least disturbed runs on a shared machine), and
at batch 1 how much faster the best runtime runs the pruned model than eager PyTorch
(goal: >= 2x). Every case runs with one thread and with the machine's (torch's default
count, what a user gets), and adds a variant pruned with ``--round-to auto`` (the multiple
the probe finds fastest for that thread count; ``--round-to 8`` for a fixed one, 0 for none).

Run: ``python benchmarks/deploy_ratio.py [--threads 1,2] [--batch 1,32] [--round-to auto] [--json]``.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

import slimspec
from slimspec.utils.tables import format_table
from slimspec.workflows.bench import bench

CASES = (("vgg19", 0.7), ("resnet56", 0.5))


def sparse_weights(name: str, ratio: float, folder: Path, seed: int = 0) -> Path:
    """Random weights whose BN gammas are zero for ``ratio`` of the channels (chosen at random)."""
    generator = torch.Generator().manual_seed(seed)
    model = slimspec.build(name, seed=seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(torch.rand(n, generator=generator) + 0.1)
                module.weight[torch.randperm(n, generator=generator)[: int(n * ratio)]] = 0
    path = folder / f"{name}.safetensors"
    slimspec.save_weights(model, model.spec, path)
    return path


def _threads(text: str | None) -> tuple[int, ...]:
    """``--threads 1,2``; default: one thread and the machine's (torch's default count)."""
    if text:
        return tuple(int(t) for t in text.split(","))
    return tuple(sorted({1, torch.get_num_threads()}))


def _summary(case: str, threads: int, labels: list[str], ratios: list[dict], ms: dict, batches: tuple[int, ...],
             runtimes: tuple[str, ...]) -> list[list[str]]:
    """One row per variant: at each batch size the runtime that runs the pruned model fastest and the fraction
    of the MAC ratio reached there, and at batch 1 how much faster that runtime is than eager."""
    rows = []
    models = list(dict.fromkeys(r["model"] for r in ratios))
    for model, label in zip(models, labels):
        mine = {(r["runtime"], r["batch"]): r for r in ratios if r["model"] == model}
        cells = []
        for batch in batches:
            best = min(runtimes, key=lambda rt: ms[(model, rt, batch)])
            cells.append(f"{best} {mine[(best, batch)]['fraction_of_mac_ratio']:.2f}")
        best1 = min(runtimes, key=lambda rt: ms[(model, rt, 1)]) if 1 in batches else None
        versus = (f"{ms[(model, 'eager', 1)] / ms[(model, best1, 1)]:.2f}x"
                  if best1 and "eager" in runtimes else "-")
        rows.append([case, label, str(threads), f"{next(iter(mine.values()))['mac_ratio']:.2f}x", *cells, versus])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", help="comma-separated intra-op thread counts "
                        f"(default: 1 and the machine's, here {torch.get_num_threads()})")
    parser.add_argument("--batch", default="1,32")
    parser.add_argument("--runtime", default="eager,channels-last,onnxruntime")
    parser.add_argument("--min-run-time", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--round-to", default="auto",
                        help="also time a variant pruned with --round-to N or auto (the probe's multiple for each "
                             "thread count; default auto); 0: none")
    parser.add_argument("--only", help="run one case (vgg19 or resnet56)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    batches = tuple(int(b) for b in args.batch.split(","))
    runtimes = tuple(args.runtime.split(","))
    round_to: int | str = args.round_to if args.round_to == "auto" else int(args.round_to)
    rows, out, summary = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for threads in _threads(args.threads):
            for name, ratio in CASES:
                if args.only and name != args.only:
                    continue
                weights = sparse_weights(name, ratio, folder)
                models, labels = [weights], []
                for options in [{}] + ([{"round_to": round_to, "target_options": {"threads": threads}}] if round_to else []):
                    result = slimspec.prune(weights, "slimming", ratio=ratio, **options)
                    labels.append(f"round_to {result.options.round_to}{' (auto)' if round_to == 'auto' else ''}"
                                  if options else "pruned")
                    models.append(result.save(folder / f"{name}_t{threads}_{len(models)}.yaml")[1])
                print(f"timing {name} ({ratio:.0%} slimmed), {threads} thread(s) ...", file=sys.stderr)
                report = bench(models, batches=batches, runtimes=runtimes, threads=threads,
                               min_run_time=args.min_run_time, rounds=args.rounds)
                out.append({"threads": threads, **report.as_dict()})
                ms = {(r["model"], r["runtime"], r["batch"]): r["median_ms"] for r in report.rows}
                summary += _summary(f"{name} {ratio:.0%}", threads, labels, report.ratios, ms, batches, runtimes)
                for r, label in zip(report.ratios, [v for v in labels for _ in runtimes for _ in batches]):
                    best = min(runtimes, key=lambda rt: ms[(r["model"], rt, 1)]) if 1 in batches else None
                    rows.append([f"{name} {ratio:.0%} {label}", str(threads), r["runtime"], str(r["batch"]),
                                 f"{ms[(r['base'], r['runtime'], r['batch'])]:.2f}",
                                 f"{ms[(r['model'], r['runtime'], r['batch'])]:.2f}",
                                 f"{r['speedup']:.2f}x", f"{r['mac_ratio']:.2f}x", f"{r['fraction_of_mac_ratio']:.2f}",
                                 f"{r['speedup_of_minima'] / r['mac_ratio']:.2f}",
                                 f"{best} {ms[(r['model'], 'eager', 1)] / ms[(r['model'], best, 1)]:.2f}x"
                                 if best and "eager" in runtimes else "-"])
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(f"BN folded, median of {args.rounds} interleaved rounds; threads: {', '.join(map(str, _threads(args.threads)))}")
    print(format_table(["model", "threads", "runtime", "batch", "orig ms", "pruned ms", "latency ratio", "MAC ratio",
                        "of MAC ratio", "(minima)", "best bs1 vs eager"], rows))
    print("\nIn the best runtime (the one that runs the pruned model fastest at that batch size); "
          "goal: >= 0.8 of the MAC ratio, >= 2x eager at batch 1")
    print(format_table(["model", "variant", "threads", "MAC ratio", *[f"bs{b}: best, of MAC ratio" for b in batches],
                        "best vs eager, bs1"], summary))


if __name__ == "__main__":
    main()
