"""Does ``prune --target latency=R`` meet R when the result is re-measured by ``slimspec bench``?

For each spec: random weights with BN gammas drawn at random (so slimming has something to
rank), the per-layer latency table (``bench --profile``, profiled into a private cache),
a slimming prune to ``latency=R`` with that table, then original and pruned timed side by
side by the bench code (interleaved rounds). Prints the table's estimate and the measured
latency ratio, and whether the measurement is within 10% of R.

Run: ``python benchmarks/latency_target.py [--target 0.5] [--specs vgg19,resnet56] [--threads 1]``.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

import slimspec
from slimspec.latency.table import table_for_spec
from slimspec.utils.tables import format_table
from slimspec.workflows.bench import bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--specs", default="vgg19,resnet56")
    parser.add_argument("--runtime", default="eager")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--min-run-time", type=float, default=1.0)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ.setdefault("SLIMSPEC_CACHE", str(folder / "cache"))
        for name in args.specs.split(","):
            model = slimspec.build(name, seed=0)
            with torch.no_grad():
                for module in model.modules():
                    if isinstance(module, torch.nn.BatchNorm2d):
                        module.weight.copy_(torch.rand(module.num_features, generator=torch.Generator().manual_seed(1)))
            weights = folder / f"{name}.safetensors"
            slimspec.save_weights(model, model.spec, weights)
            print(f"profiling {name} ({args.runtime}, batch {args.batch}, {args.threads} thread(s)) ...", file=sys.stderr)
            table, table_path = table_for_spec(name, runtime=args.runtime, batch=args.batch, threads=args.threads)
            result = slimspec.prune(weights, "slimming", target={"latency": args.target},
                                    target_options={"latency_table": str(table_path), "threads": args.threads,
                                                    "latency_runtime": args.runtime, "latency_batch": args.batch})
            _, pruned = result.save(folder / f"{name}_lat.yaml")
            estimated = table.estimate(result.spec.ir) / table.estimate(model.spec.ir)
            report = bench([weights, pruned], batches=(args.batch,), runtimes=(args.runtime,), threads=args.threads,
                           min_run_time=args.min_run_time, rounds=5)
            ms = [r["median_ms"] for r in report.rows]
            minima = [r["min_ms"] for r in report.rows]
            measured, measured_min = ms[1] / ms[0], minima[1] / minima[0]
            rows.append([name, f"{args.target:g}", f"{estimated:.3f}", f"{ms[0]:.2f}", f"{ms[1]:.2f}",
                         f"{measured:.3f}", f"{measured_min:.3f}", f"{result.macs[1] / result.macs[0]:.3f}",
                         "yes" if abs(measured - args.target) <= 0.1 * args.target else "no"])
    print(f"runtime {args.runtime}, batch {args.batch}, threads {args.threads}; latency ratio = pruned / original")
    print(format_table(["spec", "target", "table estimate", "orig ms", "pruned ms", "measured (medians)",
                        "(minima)", "MAC ratio", "medians within 10%"], rows))


if __name__ == "__main__":
    main()
