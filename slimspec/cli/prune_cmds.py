"""``slimspec prune``: weights in, a new spec file and its transplanted weights out."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .choices import CRITERIA, PERCENT_RULES, RUNTIMES
from .errors import report_errors
from .options import ROUND_TO, threads_option, using_threads
from .paths import OUTPUT_FILE

# What decides which channels go: prune's flags, shared with `slimspec plot gammas` (same names, same meanings).
POLICY_OPTIONS = (
    click.option("--ratio", type=float, help="Fraction of prunable channels to remove."),
    click.option("--target", help="NAME=FRACTION: reach a fraction of the original (NAME: a registered target, e.g. macs=0.5)."),
    click.option("--latency-table", type=click.Path(dir_okay=False), help="Latency table for --target latency=R (from slimspec bench --profile; default: the cached one, profiled if missing)."),
    click.option("--latency-runtime", type=RUNTIMES, help="--target latency=R: the runtime the latency is for (default eager)."),
    click.option("--latency-batch", type=click.IntRange(min=1), help="--target latency=R: the batch size the latency is for (default 1)."),
    click.option("--allow-foreign-table", is_flag=True, default=None, help="Accept a --latency-table measured on another machine, thread count, runtime or batch (warned, and recorded in the pruned spec)."),
    click.option("--threshold", type=float, help="Remove channels whose score is <= this value."),
    click.option("--percent", type=float, help="Network Slimming's rule: threshold = sorted scores[int(N*P)], remove scores <= it."),
    click.option("--percent-rule", type=PERCENT_RULES, help="Which reference script --percent keeps the channels of: "
                 "slimming (Liu et al.'s vggprune.py: keep scores > the threshold; default) or darknet (Lam1360's "
                 "YOLOv3 test_prune.py: keep scores >= it)."),
    click.option("--plan", type=click.Path(dir_okay=False), help="A plan file (YAML) with the same keys; flags override it."),
    click.option("--scope", type=click.Choice(["global", "layer"]), help="One threshold for all slots, or per layer."),
    click.option("--min-channels", type=int, help="Never keep fewer channels in a slot (default 1)."),
    click.option("--round-to", type=ROUND_TO, help="Round kept channel counts up to a multiple of this; 'auto': the "
                 "pruned network rounded up to each candidate multiple is timed in each runtime here (this thread "
                 "count; --latency-runtime's only, with a latency target) and the largest multiple about as fast as "
                 "the fastest is kept (cached; the note says what was measured)."),
    click.option("--exclude", multiple=True, help="Spec-path pattern of slots to leave alone (repeatable; magnitude: of layers, e.g. stem, num_classes)."),
    click.option("--override", "overrides", multiple=True, help="PATTERN=RATIO per-slot ratio (repeatable)."),
    click.option("--prune-stream", is_flag=True, default=None, help="Also prune residual stream widths."),
)


def policy_options(command):
    """Give a click command prune's policy flags (``POLICY_OPTIONS``), in prune's order."""
    for option in reversed(POLICY_OPTIONS):
        command = option(command)
    return command


def policy_keywords(values: dict) -> dict:
    """The values of the ``POLICY_OPTIONS`` flags as keywords of ``slimspec.prune`` (``plan=`` included)."""
    overrides = {}
    for item in values["overrides"]:
        pattern, sep, value = item.rpartition("=")
        try:
            overrides[pattern] = float(value)
        except ValueError:
            sep = ""
        if not sep or not pattern:
            raise click.BadParameter(f"expected PATTERN=RATIO, got '{item}'", param_hint="--override")
    latency = {"latency_table": values["latency_table"], "latency_runtime": values["latency_runtime"],
               "latency_batch": values["latency_batch"], "allow_foreign_table": values["allow_foreign_table"]}
    return {"plan": values["plan"], "ratio": values["ratio"], "target": values["target"],
            "threshold": values["threshold"], "percent": values["percent"],
            "percent_rule": values["percent_rule"], "scope": values["scope"],
            "min_channels": values["min_channels"], "round_to": values["round_to"], "exclude": list(values["exclude"]),
            "overrides": overrides, "prune_stream": values["prune_stream"],
            "target_options": {k: v for k, v in latency.items() if v is not None} or None}


@click.command()
@click.argument("weights", type=click.Path(dir_okay=False))
@click.option("--method", "-m", type=CRITERIA, help="Pruning criterion (registered methods).")
@policy_options
@click.option("--data", "calibration", help="Calibration dataset for 'attention' (e.g. digits, cifar10).")
@click.option("--data-dir", help="Where torchvision datasets live.")
@click.option("--seed", type=int, help="Seed for 'random' and calibration order.")
@click.option("--fold-bias", is_flag=True, default=None, help="Fold removed channels' constant output into the next layer.")
@click.option("--binary-gates", is_flag=True, default=None, help="Gated weights were trained with binarized gates.")
@click.option("--eval-data", help="Report test accuracy of the original and the pruned model on this dataset.")
@click.option("--spec", "spec_path", help="Spec of the weights (default: the one embedded in the weights file).")
@click.option("--out", "-o", "out", type=OUTPUT_FILE, help="New spec file to write.")
@click.option("--weights-out", type=OUTPUT_FILE, help="New weights (default: OUT with .safetensors).")
@click.option("--dry-run", is_flag=True, help="Print the per-slot table and counts; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@click.option("--check/--no-check", default=None,
              help="Before writing, check that the pruned network computes what the original computes with the "
                   "removed channels masked (one random batch, eval mode; builds both models). Default: on where "
                   "cheap, i.e. for a source of at most 4 million parameters (16 MB in float32: well under a "
                   "second and a few times the weights' memory); off above, where the prune itself streams the "
                   "file without building any model.")
@threads_option("CPU threads for torch while pruning; a latency target's table is profiled and keyed at this count "
                "(default: torch's choice; latency tables: 1).")
@report_errors
def prune(weights: str, method: str | None, calibration: str | None, data_dir: str | None, seed: int | None,
          fold_bias: bool | None, binary_gates: bool | None, eval_data: str | None, spec_path: str | None,
          out: str | None, weights_out: str | None, dry_run: bool, as_json: bool, force: bool,
          check: bool | None, threads: int | None, **policy) -> None:
    """Prune trained WEIGHTS and write the pruned spec (same form as its parent) plus weights."""
    from ..utils.fileio import OutputTransaction

    if not dry_run and not out:
        raise click.UsageError("give --out NEW.yaml (or --dry-run)")
    if dry_run and (out or weights_out or force):  # each would be ignored: --dry-run writes nothing
        given = [flag for flag, value in (("--out", out), ("--weights-out", weights_out), ("--force", force)) if value]
        raise click.UsageError(f"--dry-run writes nothing: leave out {', '.join(given)} (or --dry-run)")
    if data_dir and not calibration and not eval_data and not policy["plan"]:
        raise click.BadParameter("is where --data or --eval-data are read from, and neither is given",
                                 param_hint="--data-dir")
    if seed is not None and method and not calibration and not policy["plan"]:
        from ..pruning.criteria import get_criterion

        if not get_criterion(method).uses_seed:  # the seed orders calibration data, and draws 'random''s scores
            raise click.BadParameter(f"method '{method}' draws no random numbers and no --data is read: "
                                     "leave --seed out", param_hint="--seed")
    keywords = policy_keywords(policy)
    plan = keywords.pop("plan")
    if threads is not None:  # the latency target keys its table by the threads the prune runs on
        keywords["target_options"] = {**(keywords["target_options"] or {}), "threads": threads}
    saved = None
    # collisions, existing outputs and concurrent writers are refused before any work; both
    # files are renamed together when the block ends and removed again on any failure
    with OutputTransaction(force=force) as outputs, using_threads(threads):
        if not dry_run:
            weights_file = Path(weights_out) if weights_out else Path(out).with_suffix(".safetensors")
            outputs.check_inputs(weights, spec_path, plan, policy["latency_table"])
            outputs.reserve(weights_file)  # renamed first: a spec never appears without its weights
            outputs.reserve(out)
        from ..pruning.api import prune as run_prune  # torch: imported after the cheap checks
        from ..utils.tables import human

        if check and not _structured(method, plan):  # refused before any work
            raise click.BadParameter("applies to methods that remove channels (this one masks single weights)",
                                     param_hint="--check")

        result = run_prune(weights, method, spec=spec_path, plan=plan, calibration=calibration, data_dir=data_dir,
                           seed=seed, fold_bias=fold_bias, binary_gates=binary_gates, progress=True, **keywords)
        latency = (result.spec.data["pruned"].get("measured") or {}).get("latency")
        if latency and latency.get("foreign"):
            click.echo(f"warning: {_foreign_line(policy['latency_table'], latency['foreign'])}", err=True)
        if as_json:
            summary = result.summary()
            if latency:
                summary["latency"] = _latency_summary(latency)
            click.echo(json.dumps(summary, indent=2))
        else:
            click.echo(result.table())
            for key in ("params", "macs"):
                before, after = getattr(result, key)
                click.echo(f"{key:6s} {before:>13,} -> {after:>13,}  ({human(before)} -> {human(after)}, "
                           f"{100 * after / before:.1f}% kept)")
            if latency:
                click.echo(_latency_line(latency))
            if result.decision.threshold is not None:
                click.echo(f"threshold {result.decision.threshold:.6g} (channels with score <= threshold removed)")
            for note in result.notes:
                warning = note.startswith("warning:")
                click.echo(note if warning else f"note: {note}", err=warning)
        _check(result, check, err=as_json)
        if eval_data:
            _report_accuracy(result, eval_data, data_dir, err=as_json)
        if not dry_run:
            saved = result.save(out, weights_file, transaction=outputs)
    if saved:
        click.echo(f"wrote {saved[0]} and {saved[1]}", err=as_json)
    sys.exit(0)


def _check(result, check: bool | None, err: bool) -> None:
    """``--check``: the pruned network against the masked original (refused in one line if they differ)."""
    if check is False or not _structured(result.options.method, None):
        return
    from ..pruning.exactness import CHEAP_PARAMS, check_exact, check_is_cheap

    if check is None and not check_is_cheap(result):
        return
    worst = check_exact(result)
    click.echo(f"check: the pruned network computes what the masked original computes (max abs difference "
               f"{worst:.2g}, one random batch){'' if check else f'; on by default up to {CHEAP_PARAMS:,} parameters'}",
               err=err)


def _structured(method: str | None, plan: str | None) -> bool:
    """Whether the method (the flag's, else the plan's) removes channels; True when neither names one."""
    from ..pruning.criteria import get_criterion
    from ..pruning.options import load_plan

    method = method or (load_plan(plan).get("method") if plan else None)
    return method is None or get_criterion(method).structured


def _latency_summary(latency: dict) -> dict:
    """The latency target's estimate (ms, from its table) before and after, and what it was measured on."""
    estimate = latency["estimate_ms"]
    return {"estimate_ms": dict(estimate), "ratio": estimate["after"] / estimate["before"],
            "runtime": latency["runtime"], "batch": latency["batch"], "threads": latency["machine"]["threads"],
            "foreign": latency.get("foreign")}


def _latency_line(latency: dict) -> str:
    """``latency 1.23 ms -> 0.61 ms (estimated, 49.6% kept; eager, batch 1, 1 thread)``."""
    summary = _latency_summary(latency)
    before, after = summary["estimate_ms"]["before"], summary["estimate_ms"]["after"]
    threads = summary["threads"]
    return (f"latency {before:.4g} ms -> {after:.4g} ms  (estimated from the latency table, ratio "
            f"{summary['ratio']:.3f}, {100 * summary['ratio']:.1f}% kept; {summary['runtime']}, batch "
            f"{summary['batch']}, {threads} thread{'s' if threads != 1 else ''})")


def _foreign_line(path: str | None, foreign: dict) -> str:
    listed = ", ".join(f"{what} {v['table']!r} (this prune: {v['run']!r})" for what, v in foreign.items())
    return (f"latency table {path} was measured otherwise than this prune runs: {listed}; its estimate may not "
            f"hold here (recorded in the pruned spec's provenance)")


def _report_accuracy(result, data: str, data_dir: str | None, err: bool) -> None:
    """Accuracy of the original and of each pruned variant (before any fine-tuning)."""
    from ..training.api import evaluate

    models = {"original": result.source_model, "pruned": result.model, **result.variants}
    if result.variants:
        models["pruned (bias folded)"] = models.pop("pruned")
    for label, model in models.items():
        metrics = evaluate(model, data, data_dir=data_dir)
        click.echo(f"accuracy {label:22s} {metrics['accuracy']:6.2f}%  ({data} test)", err=err)


@click.command()
@click.argument("weights", type=click.Path(dir_okay=False))
@click.option("--data", required=True, help="Dataset to measure accuracy on (test split).")
@click.option("--data-dir")
@click.option("--method", "-m", default="l1", show_default=True)
@click.option("--ratios", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9", show_default=True)
@click.option("--slot", "slots", multiple=True, help="Spec-path pattern of slots to analyse (default: all).")
@click.option("--limit", type=int, help="Evaluate on the first N test images only.")
@click.option("--device", default="cpu", show_default=True)
@threads_option()
@click.option("--json", "as_json", is_flag=True)
@report_errors
def sensitivity(weights: str, data: str, data_dir: str | None, method: str, ratios: str, slots: tuple[str, ...],
                limit: int | None, device: str, threads: int | None, as_json: bool) -> None:
    """Accuracy after pruning each layer alone at several ratios (Li et al. 2017, Fig. 2)."""
    from ..workflows.sensitivity import sensitivity as analyse
    from ..utils.tables import format_table

    try:
        values = [float(v) for v in ratios.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated ratios, got '{ratios}'", param_hint="--ratios") from None
    result = analyse(weights, data, method=method, ratios=values, slots=slots, limit=limit, data_dir=data_dir,
                     device=device, threads=threads)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    keys = [f"{r:g}" for r in values]
    rows = [[slot, *(f"{acc[k]:.1f}" for k in keys)] for slot, acc in result["slots"].items()]
    click.echo(format_table(["slot \\ ratio", *keys], rows))
    click.echo(f"unpruned accuracy {result['baseline']:.2f}% ({data} test, method {method}, no fine-tuning)")
