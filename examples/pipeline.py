"""The whole loop through the Python API on scikit-learn's digits (offline).

Sparse Structure Selection gates trained with APG -> remove the channels and blocks whose
gate is zero -> fine-tune -> compare with the same pruned architecture trained from scratch
(Scratch-B: epochs scaled by the MACs saved, Liu et al. 2019).

    python examples/pipeline.py [OUT_DIR]

One torch thread throughout: nets this small gain nothing from more, and on a machine where
another process keeps a core busy, torch's default (one thread per core) spends its time
waiting for the busy core instead.
"""
from __future__ import annotations

import sys
from pathlib import Path

import slimspec
from slimspec.training.api import scratch_epochs


THREADS = 1


def main(out: Path) -> None:
    parent = slimspec.load_spec("digits_resnet")
    epochs = 15
    gated = slimspec.train(parent, "digits", out / "gated", gates="sss", apg_gamma=0.05, epochs=epochs,
                           quiet=True, force=True, threads=THREADS)
    print(f"gated training: {gated.best_accuracy:.2f}%, {100 * gated.final['gates_zero']:.0f}% of gates at zero")

    result = slimspec.prune(out / "gated" / "last.safetensors", method="gate")
    spec_path, _ = result.save(out / "digits_resnet_sss.yaml", overwrite=True)
    print(result.table(changed_only=True))
    print(f"params {result.params[0]:,} -> {result.params[1]:,}; MACs {result.macs[0]:,} -> {result.macs[1]:,}")
    print(f"accuracy right after pruning: {slimspec.evaluate(result.model, 'digits', threads=THREADS)['accuracy']:.2f}% (gates at 0 change nothing)")

    tuned = slimspec.finetune(spec_path, "digits", out / "finetune", epochs=5, lr=0.01, quiet=True, force=True,
                              threads=THREADS)
    pruned = slimspec.load_spec(spec_path)
    budget = scratch_epochs(epochs, "B", pruned, parent)
    scratch = slimspec.train(spec_path, "digits", out / "scratch", scratch="B", reference=parent, epochs=epochs,
                             quiet=True, force=True, threads=THREADS)
    print(f"fine-tuned: {tuned.final['test_accuracy']:.2f}%   Scratch-B ({budget} epochs): "
          f"{scratch.final['test_accuracy']:.2f}%")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs/example"))
