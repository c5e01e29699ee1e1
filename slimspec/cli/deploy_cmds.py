"""``slimspec export`` and ``slimspec bench``: out to deployment, and what the pruning bought."""
from __future__ import annotations

import json

import click

from .choices import RegistryChoice
from .errors import report_errors
from .interop_cmds import INPUT_SHAPE
from .options import SECONDS, threads_option
from .paths import OUTPUT_FILE


def _format_names() -> list[str]:
    from ..workflows.export import export_formats

    return export_formats()


def _runtime_names() -> list[str]:
    from ..latency import runtime_names

    return runtime_names()


def _int_list(value: str, hint: str) -> tuple[int, ...]:
    try:
        items = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        items = ()
    if not items or min(items) < 1:
        raise click.BadParameter(f"expected positive integers separated by commas, got '{value}'", param_hint=hint)
    return items


def _runtimes(value: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    known = _runtime_names()
    for name in names:
        if name not in known:
            raise click.BadParameter(f"unknown runtime '{name}' (choose from {', '.join(known)})",
                                     param_hint="--runtime")
    return names


@click.command()
@click.argument("weights")
@click.option("--format", "fmt", type=RegistryChoice(_format_names), help="Output format (default: the format whose suffix --out has).")
@click.option("--out", "-o", required=True, type=OUTPUT_FILE, help="File to write.")
@click.option("--no-fold-bn", is_flag=True, help="Keep BatchNorm layers instead of folding them into the conv/linear before them.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
@threads_option("CPU threads for torch and ONNX Runtime while exporting and checking (default: torch's choice).")
@report_errors
def export(weights: str, fmt: str | None, out: str, no_fold_bn: bool, as_json: bool, force: bool,
           threads: int | None) -> None:
    """Export WEIGHTS (a weights file, or a spec with random weights) to ONNX, torch.export (.pt2), TorchScript
    or a Darknet cfg + .weights.

    BN is folded (kept in a Darknet cfg), gates and masks applied; the written file is loaded back in its own runtime,
    run once, and the largest difference to the PyTorch model is printed.
    """
    from ..latency import torch_threads
    from ..workflows.export import export as run_export

    with torch_threads(threads):
        result = run_export(weights, out, fmt, force=force, fold_bn=not no_fold_bn)
    if as_json:
        click.echo(json.dumps(result.summary(), indent=2))
        return
    click.echo(f"wrote {result.path} ({result.format}; {len(result.folded_bn)} BatchNorm layers folded)")
    click.echo(result.check_line())


@click.command()
@click.argument("models", nargs=-1)
@click.option("--batch", help="Batch sizes, comma-separated (default 1,32; --profile: 1).")
@click.option("--runtime", "runtime", default="eager", show_default=True,
              help="Runtimes, comma-separated (eager, channels-last, onnxruntime).")
@threads_option("Intra-op threads for PyTorch and ONNX Runtime (default: torch's; --profile: 1).")
@click.option("--min-run-time", type=SECONDS,
              help="Seconds of measurement per timing (default 0.2; --profile: 0.02 per sampled width).")
@click.option("--no-fold-bn", is_flag=True, help="Time the models with their BatchNorm layers unfolded.")
@click.option("--input", "input_shape", type=INPUT_SHAPE, metavar="C,H,W",
              help="Time every model on this input (needed when the models' specs take different inputs).")
@click.option("--profile", "profile_spec", help="Build the per-layer latency table of this spec (for --target latency=R).")
@click.option("--out", "-o", type=OUTPUT_FILE, help="With --profile: also write the table here.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--force", is_flag=True, help="With --profile: re-measure (and overwrite --out).")
@report_errors
def bench(models: tuple[str, ...], batch: str | None, runtime: str, threads: int | None, min_run_time: float | None,
          no_fold_bn: bool, input_shape: tuple[int, int, int] | None, profile_spec: str | None, out: str | None,
          as_json: bool, force: bool) -> None:
    """Measure latency of MODELS (weights files, or spec files / stock names with random weights).

    With two or more models, the first is the baseline: the speed-up of each other model is
    printed next to its MAC ratio. ``--profile SPEC`` builds the latency table instead.
    Models whose specs take different inputs are refused unless ``--input`` names one.
    """
    batches = _int_list(batch or ("1" if profile_spec else "1,32"), "--batch")
    runtimes = _runtimes(runtime)
    if profile_spec:
        if models:
            raise click.UsageError("--profile takes a spec, not MODELS")
        for flag, given in (("--no-fold-bn", no_fold_bn), ("--input", input_shape)):
            if given:
                raise click.UsageError(f"{flag} is not read by --profile (a table times the spec's own input, "
                                       f"BN folded)")
        if len(batches) != 1 or len(runtimes) != 1:
            raise click.UsageError("--profile measures one runtime at one batch size (e.g. --runtime eager --batch 1)")
        from ..workflows.bench import profile_table

        table, path = profile_table(profile_spec, runtime=runtimes[0], batch=batches[0], threads=threads,
                                    out=out, force=force, progress=lambda line: click.echo(line, err=True),
                                    min_run_time=min_run_time)
        if as_json:
            click.echo(json.dumps({"spec": table.spec, "runtime": table.runtime, "batch": table.batch,
                                   "threads": table.machine.threads,
                                   "machine": table.machine.as_dict(), "total_ms": table.total_ms,
                                   "scale": table.scale, "path": str(path)}, indent=2))
        else:
            click.echo(f"latency table of {table.spec} ({table.runtime}, batch {table.batch}, "
                       f"{table.machine.threads} thread{'s' if table.machine.threads != 1 else ''}): "
                       f"{len(table.layers)} layers, {len(table.entries)} shapes, network "
                       f"{table.total_ms:.3f} ms; {path}")
        return
    if not models:
        raise click.UsageError("give one or more MODELS (or --profile SPEC)")
    for flag, given in (("--out", out), ("--force", force)):
        if given:
            raise click.UsageError(f"{flag} is read by --profile only (it writes a latency table): "
                                   f"give --profile SPEC or leave {flag} out")
    from ..workflows.bench import bench as run_bench

    report = run_bench(list(models), batches=batches, runtimes=runtimes, threads=threads, fold_bn=not no_fold_bn,
                       min_run_time=0.2 if min_run_time is None else min_run_time, input_shape=input_shape)
    click.echo(json.dumps(report.as_dict(), indent=2) if as_json else report.table())
    for warning in report.warnings:
        click.echo(warning, err=True)
