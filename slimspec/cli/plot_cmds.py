"""``slimspec plot``: figures from weights, specs, sensitivity results and run folders (PNG or SVG by suffix)."""
from __future__ import annotations

import click

from ..report.plots import TRADEOFF_AXES  # torch- and matplotlib-free at import time
from .choices import CRITERIA
from .errors import report_errors
from .paths import OUTPUT_FILE
from .prune_cmds import policy_keywords, policy_options

OUT = click.option("--out", "-o", required=True, type=OUTPUT_FILE,
                   help="Output file; .png or .svg picks the format.")
FORCE = click.option("--force", is_flag=True, help="Overwrite an existing output file.")


@click.group()
def plot() -> None:
    """Draw what pruning papers show: score histograms, widths, sensitivity, training, trade-offs."""


@plot.command()
@click.argument("weights", type=click.Path(dir_okay=False))
@click.option("--method", "-m", type=CRITERIA,
              help="Criterion whose channel scores are drawn (slimming = |BN gamma|, gate, l1, ...; "
                   "default: the plan's, else slimming).")
@click.option("--per-layer", is_flag=True, help="One histogram per slot instead of one global histogram.")
@policy_options
@click.option("--bins", type=click.IntRange(min=2), default=50, show_default=True)
@OUT
@FORCE
@report_errors
def gammas(weights: str, method: str | None, per_layer: bool, bins: int, out: str, force: bool, **policy) -> None:
    """Histogram of BN |gamma| (or another criterion's scores) with the threshold `slimspec prune` would use
    with the same flags (Network Slimming Fig. 4)."""
    from ..report.plots import plot_gammas

    click.echo(plot_gammas(weights, out, method=method, per_layer=per_layer, bins=bins, overwrite=force,
                           **policy_keywords(policy)))


@plot.command()
@click.argument("spec_a")
@click.argument("spec_b")
@OUT
@FORCE
@report_errors
def widths(spec_a: str, spec_b: str, out: str, force: bool) -> None:
    """Per-slot widths of SPEC_A and SPEC_B side by side (specs, stock names or weights files)."""
    from ..report.plots import plot_widths

    click.echo(plot_widths(spec_a, spec_b, out, overwrite=force))


@plot.command()
@click.argument("result", type=click.Path(dir_okay=False))
@OUT
@FORCE
@report_errors
def sensitivity(result: str, out: str, force: bool) -> None:
    """Accuracy vs ratio per slot from `slimspec sensitivity --json` output (Li et al. Fig. 2)."""
    from ..report.plots import plot_sensitivity

    click.echo(plot_sensitivity(result, out, overwrite=force))


@plot.command()
@click.argument("run_dirs", nargs=-1, required=True)
@OUT
@FORCE
@report_errors
def training(run_dirs: tuple[str, ...], out: str, force: bool) -> None:
    """Training curves (accuracy, loss, BN sparsity) from run folders' metrics.jsonl."""
    from ..report.plots import plot_training

    click.echo(plot_training(run_dirs, out, overwrite=force))


@plot.command()
@click.argument("sources", nargs=-1, required=True)
@click.option("--x", "x", type=click.Choice(list(TRADEOFF_AXES)), default="macs", show_default=True)
@OUT
@FORCE
@report_errors
def tradeoff(sources: tuple[str, ...], x: str, out: str, force: bool) -> None:
    """Accuracy vs MACs (or params, latency) across run folders and demo folders (summary.json)."""
    from ..report.plots import plot_tradeoff

    click.echo(plot_tradeoff(sources, out, x=x, overwrite=force))
