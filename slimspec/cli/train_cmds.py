"""``train``, ``finetune``, ``eval`` and ``demo``."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click
from click.core import ParameterSource

from .choices import DATASETS, FINETUNE_PRESETS, SCHEDULES
from .errors import report_errors
from .options import threads_option


def training_options(func: Callable) -> Callable:
    """Flags shared by train and finetune; None means 'use the default'."""
    options = [
        click.option("--data", type=DATASETS, default="digits", show_default=True, help="Dataset (registered names)."),
        click.option("--data-dir", help="Where torchvision datasets live (default $SLIMSPEC_DATA_DIR or ./data)."),
        click.option("--download", is_flag=True, help="Let torchvision download the dataset."),
        click.option("--out", "-o", "run_dir", help="Run folder (checkpoints, metrics.jsonl)."),
        click.option("--epochs", type=int),
        click.option("--batch-size", type=int),
        click.option("--lr", type=float),
        click.option("--momentum", type=float),
        click.option("--weight-decay", type=float),
        click.option("--sparsity", type=float, help="Network Slimming: add s*sign(gamma) to every BN gamma's gradient."),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--device", help="auto | cpu | cuda | cuda:N"),
        click.option("--quiet", "-q", is_flag=True, help="No progress bars or per-epoch lines."),
        threads_option(),
        click.option("--tensorboard", is_flag=True,
                     help="Log scalars and BN-gamma histograms to RUN_DIR/tensorboard (extra: tensorboard)."),
        click.option("--force", is_flag=True, help="Start over in a run folder that holds a previous run."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _config(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None and v is not False}


def _given_for_resume(resume_dir: str) -> dict[str, Any]:
    """The options typed on the command line next to ``--resume`` (defaults do not count)."""
    from pathlib import Path

    from ..errors import TrainingError

    ctx = click.get_current_context()
    typed = {name: value for name, value in ctx.params.items()
             if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)
             and name not in ("spec", "resume_dir")}
    if typed.pop("force", False):
        raise click.UsageError("--force starts a run over and --resume continues it: give one of them")
    run_dir = typed.pop("run_dir", None)
    if run_dir is not None and Path(run_dir).resolve() != Path(resume_dir).resolve():
        raise TrainingError(f"--out {run_dir}: --resume continues {resume_dir} in place (leave --out out)")
    return typed


@click.command()
@click.argument("spec", required=False)
@training_options
@click.option("--schedule", type=SCHEDULES, help="lr schedule (default slimming).")
@click.option("--gates", type=click.Choice(["sss"]), help="Train Sparse Structure Selection gates with APG.")
@click.option("--apg-gamma", type=float, help="L1 weight on the gates (APG soft threshold).")
@click.option("--binary-gates", is_flag=True, help="Binarize gates in the forward pass (straight-through estimator).")
@click.option("--weights", help="Start from these weights instead of a random init.")
@click.option("--scratch", type=click.Choice(["E", "B"], case_sensitive=False), help="Retrain from random init: Scratch-E (same epochs) or Scratch-B (epochs x MACs(reference)/MACs(spec)).")
@click.option("--reference", help="The unpruned parent spec, for --scratch B.")
@click.option("--resume", "resume_dir",
              help="Continue a run from its folder with its own options (more --epochs, --device, --threads, "
                   "--quiet, --tensorboard may change).")
@report_errors
def train(spec: str | None, data: str, data_dir: str | None, download: bool, run_dir: str | None, gates: str | None,
          apg_gamma: float | None, binary_gates: bool, weights: str | None, scratch: str | None,
          reference: str | None, resume_dir: str | None, **values: Any) -> None:
    """Train SPEC (Network Slimming defaults: SGD 0.9, wd 1e-4, lr 0.1, x0.1 at 50%/75%, batch 64)."""
    from ..training.api import resume, train as run_train

    if resume_dir:
        result = resume(resume_dir, spec, **_given_for_resume(resume_dir))
    else:
        if not spec:
            raise click.UsageError("give SPEC (or --resume RUN_DIR)")
        # options another option gives meaning to: refused alone rather than ignored
        if not gates and (apg_gamma is not None or binary_gates):
            raise click.UsageError(f"{'--apg-gamma' if apg_gamma is not None else '--binary-gates'} trains gates: "
                                   "give --gates sss")
        if reference and (scratch or "").upper() != "B":
            raise click.UsageError("--reference is the parent Scratch-B scales the epochs by: give --scratch B")
        if scratch and weights:
            raise click.UsageError("--scratch retrains from a random init and --weights starts from weights: give one")
        result = run_train(spec, data, run_dir or f"runs/{_stem(spec)}", gates=gates, apg_gamma=apg_gamma,
                           binary_gates=binary_gates, weights=weights, scratch=scratch, reference=reference,
                           data_dir=data_dir, download=download, **_config(**values))
    _done(result)


@click.command()
@click.argument("spec")
@training_options
@click.option("--weights", help="Weights to start from (default: the .safetensors prune wrote next to SPEC).")
@click.option("--schedule", "preset", type=FINETUNE_PRESETS, default="slimming", show_default=True,
              help="slimming: as training; li: 40 epochs at constant lr 0.001 (Li et al. 2017).")
@report_errors
def finetune(spec: str, data: str, data_dir: str | None, download: bool, run_dir: str | None, weights: str | None,
             preset: str, **values: Any) -> None:
    """Fine-tune a pruned SPEC from its transplanted weights."""
    from ..training.api import finetune as run_finetune

    result = run_finetune(spec, data, run_dir or f"runs/{_stem(spec)}_ft", weights=weights, schedule=preset,
                          data_dir=data_dir, download=download, **_config(**values))
    _done(result)


@click.command("eval")
@click.argument("weights")
@click.option("--data", type=DATASETS, default="digits", show_default=True, help="Dataset (registered names).")
@click.option("--data-dir")
@click.option("--download", is_flag=True)
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--spec", help="The spec of WEIGHTS, for weights files saved without one embedded.")
@threads_option()
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
@click.option("--json", "as_json", is_flag=True)
@report_errors
def eval_cmd(weights: str, data: str, data_dir: str | None, download: bool, split: str, device: str,
             spec: str | None, threads: int | None, quiet: bool, as_json: bool) -> None:
    """Accuracy and loss of WEIGHTS (the spec embedded in the file, or --spec) on a dataset."""
    from ..training.api import evaluate
    from ..utils.text import plural

    metrics = evaluate(weights, data, split=split, data_dir=data_dir, download=download, device=device, spec=spec,
                       threads=threads, quiet=quiet)
    if as_json:
        click.echo(json.dumps(metrics))
    else:
        click.echo(f"{weights}: {data} {split} accuracy {metrics['accuracy']:.2f}%  loss {metrics['loss']:.4f}  "
                   f"({plural(int(metrics['count']), 'image')})")


@click.command()
@click.option("--out", "-o", default="slimspec-demo", show_default=True, help="Folder for every artifact.")
@click.option("--spec", default="digits_vgg", show_default=True)
@click.option("--epochs", type=int, default=30, show_default=True)
@click.option("--finetune-epochs", type=int, default=20, show_default=True)
@click.option("--sparsity", type=float, default=1e-3, show_default=True)
@click.option("--target-macs", type=float, default=0.5, show_default=True, help="Fraction of MACs to keep.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--verbose", "-v", is_flag=True, help="Per-epoch lines.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
@threads_option()
@click.option("--force", is_flag=True, help="Reuse a non-empty --out folder.")
@report_errors
def demo(out: str, spec: str, epochs: int, finetune_epochs: int, sparsity: float, target_macs: float, seed: int,
         verbose: bool, quiet: bool, threads: int | None, force: bool) -> None:
    """Sparsity training -> slimming prune -> fine-tune on the bundled digits, offline."""
    from ..workflows.demo import run_demo

    run_demo(out, spec=spec, epochs=epochs, finetune_epochs=finetune_epochs, sparsity=sparsity,
             target_macs=target_macs, seed=seed, force=force, verbose=verbose, quiet=quiet, threads=threads,
             say=click.echo)


def _stem(spec: str) -> str:
    from pathlib import Path

    return Path(spec).stem


def _done(result: Any) -> None:
    from ..training.distributed import env_rank

    if env_rank() != 0:  # torchrun: rank 0 reports
        return
    final = result.final
    from ..utils.text import plural

    click.echo(f"done: {plural(result.epochs, 'epoch')}, best test accuracy {result.best_accuracy:.2f}% (epoch {result.best_epoch}), "
               f"last {final.get('test_accuracy', float('nan')):.2f}%; run folder {result.run_dir}")


def register(group: click.Group) -> None:
    for command in (train, finetune, eval_cmd, demo):
        group.add_command(command)
