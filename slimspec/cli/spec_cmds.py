"""``validate``, ``info``, ``build``, ``schema``, ``diff``, ``textconv``, ``git-setup``."""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import click

from ..document import load_spec
from ..report.info import read_spec
from ..errors import SlimspecError, SpecError
from .choices import MODES
from .paths import OUTPUT_FILE
from ..utils.text import plural
from .errors import (EXIT_BUG, EXIT_INPUT, EXIT_OK, EXIT_USAGE, INPUT_ERRORS, exit_with, os_error_line, pipe_closed,
                     report_bug, report_errors)


@click.command()
@click.argument("specs", nargs=-1, required=True)
def validate(specs: tuple[str, ...]) -> None:
    """Check spec files (or the spec a weights file embeds); print every problem as 'file: location: message'.

    Every file is checked (a bad one never stops the rest); exit 1 if any failed.
    """
    failed = bug = False
    for source in specs:
        try:
            spec = read_spec(source)
        except SlimspecError as exc:
            failed = True
            lines = exc.with_source(exc.source or source).lines() if isinstance(exc, SpecError) else exc.lines()
            for line in lines:
                click.echo(line, err=True)
            continue
        except OSError as exc:
            failed = True
            click.echo(os_error_line(exc), err=True)
            continue
        except Exception:  # a bug: keep its traceback, but still check the other files
            report_bug(f"{source}: ")
            bug = True
            continue
        click.echo(f"{source}: ok ({spec.arch}, {plural(len(spec.ir.prunable_slots()), 'prunable slot')})")
    sys.exit(EXIT_BUG if bug else EXIT_INPUT if failed else EXIT_OK)


@click.command()
@click.argument("spec")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@report_errors
def info(spec: str, as_json: bool) -> None:
    """Params, MACs and FLOPs (2 x MACs) with a per-layer table, from the spec alone (SPEC: a spec file,
    a stock name, or a weights file, whose embedded spec is read)."""
    from ..report.info import info as spec_info
    from ..utils.tables import format_table, human

    summary = spec_info(spec)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    rows = [[r["name"], r["op"], "x".join(map(str, r["shape"])), r["slot"], f"{r['params']:,}", f"{r['macs']:,}"]
            for r in summary["layers"]]
    click.echo(format_table(["layer", "op", "output", "slot", "params", "MACs"], rows, "llllrr"))
    returns = (f"{summary['num_classes']} classes" if summary["num_classes"] is not None else "outputs " + ", ".join(
        f"{o['name']} {'x'.join(map(str, o['shape']))}" for o in summary["outputs"]))
    click.echo(f"\n{summary['name']} ({summary['arch']}), input {summary['input']}, {returns}")
    click.echo(f"params {summary['params']:,} ({human(summary['params'])})")
    click.echo(f"MACs   {summary['macs']:,} ({human(summary['macs'])})   [Li et al. 2017 count MACs]")
    click.echo(f"FLOPs  {summary['flops']:,} ({human(summary['flops'])})   [= 2 x MACs, Liu et al. 2017's convention]")


@click.command()
@click.argument("spec")
@click.option("--mode", type=MODES, default="plain", show_default=True)
@click.option("--binary-gates", is_flag=True, help="Gated mode: binarize gates with a straight-through estimator.")
@click.option("--out", type=OUTPUT_FILE, help="Write the initialized weights (safetensors, spec embedded).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@click.option("--max-params", type=click.IntRange(min=1), default=None,
              help="Largest model built (analytic parameter count) [default: $SLIMSPEC_MAX_PARAMS or 2**31].")
@report_errors
def build(spec: str, mode: str, binary_gates: bool, out: str | None, seed: int, force: bool,
          max_params: int | None) -> None:
    """Build the model, run one forward pass on a dummy input, print a Keras-like summary."""
    from contextlib import nullcontext

    if binary_gates and mode != "gated":
        raise click.BadParameter(f"binarizes gates, which only --mode gated has (this build is {mode})",
                                 param_hint="--binary-gates")
    if force and not out:
        raise click.BadParameter("overwrites --out, and this build writes nothing (give --out FILE)", param_hint="--force")

    from ..model import build as build_model
    from ..report.summary import model_summary
    from ..utils.fileio import OutputTransaction
    from ..weights import save_weights

    outputs = OutputTransaction(force=force) if out else None
    with outputs if outputs else nullcontext():  # --out: refused before any work if it collides or exists
        if outputs:
            outputs.check_inputs(spec)
            outputs.reserve(out)
        loaded = load_spec(spec)
        model = build_model(loaded, mode, binary_gates=binary_gates, seed=seed, max_params=max_params)
        click.echo(model_summary(model, loaded))
        if outputs:
            save_weights(model, loaded.text, out, transaction=outputs)
    if out:
        click.echo(f"wrote {out}")


@click.command()
@click.option("--plan", is_flag=True, help="Print the pruning-plan schema instead.")
def schema(plan: bool) -> None:
    """Print the spec JSON Schema (or the plan schema), for editors and CI."""
    if plan:
        from ..pruning.options import plan_schema as chosen
    else:
        from ..families import spec_schema as chosen

    click.echo(json.dumps(chosen(), indent=2))


@click.command()
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True)
@report_errors
def diff(a: str, b: str, as_json: bool) -> None:
    """Per-slot width changes and params/MACs deltas (of specs, or the specs weights files embed).

    Exit status as diff(1): 0 if the specs are equal (provenance aside), 1 if they differ,
    2 if either cannot be read or is not a valid spec.
    """
    from ..report.diff import format_diff, spec_diff

    try:
        specs = [read_spec(a), read_spec(b)]
    except INPUT_ERRORS as exc:
        exit_with(exc, EXIT_USAGE)  # diff(1): trouble is 2
    result = spec_diff(*specs)
    click.echo(json.dumps(result, indent=2) if as_json else format_diff(result))
    sys.exit(0 if result["equal"] else 1)


@click.command()
@click.argument("file")
def textconv(file: str) -> None:
    """Git textconv driver: one line per layer slot. Never fails: files that are not
    readable slimspec specs are printed as they are, and the exit status is always 0."""
    from ..report.textconv import write_textconv

    try:
        write_textconv(file, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    except BrokenPipeError:  # git stopped reading: nothing left to do, nothing to say
        pipe_closed(EXIT_OK)
    except OSError as exc:  # e.g. a closed pipe (git stopped reading): nothing left to do
        click.echo(f"slimspec textconv: {os_error_line(exc)}", err=True)
    sys.exit(0)


def driver_command() -> str:
    """The textconv command git runs: this Python's slimspec, so it works outside the venv."""
    if not sys.executable:
        return "slimspec textconv"
    return f"{shlex.quote(sys.executable)} -m slimspec textconv"


def _check_pattern(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if not value or any(char.isspace() for char in value) or any(ord(char) < 32 for char in value):
        raise click.BadParameter(f"{value!r}: a .gitattributes pattern must be non-empty, without spaces or line breaks")
    return value


@click.command("git-setup")
@click.option("--pattern", default="*.yaml", show_default=True, callback=_check_pattern,
              help="Files the driver applies to (a .gitattributes pattern).")
@report_errors
def git_setup(pattern: str) -> None:
    """Register the spec textconv driver in this repository (.git/config + .gitattributes)."""
    from ..utils.fileio import atomic_write

    def git(*args: str, cwd: str | None = None) -> str:
        try:
            done = subprocess.run(["git", *args], check=True, capture_output=True, text=True, cwd=cwd)
        except FileNotFoundError:
            raise click.ClickException("git is not installed") from None
        except subprocess.CalledProcessError as exc:
            reason = (exc.stderr or "").strip().splitlines()
            raise click.ClickException(f"git {args[0]} failed: {reason[-1] if reason else exc.returncode}") from None
        return done.stdout.strip()

    try:
        top = git("rev-parse", "--show-toplevel")
    except click.ClickException:
        raise click.ClickException("not inside a git repository") from None
    command = driver_command()
    git("config", "diff.slimspec.textconv", command, cwd=top)
    git("config", "diff.slimspec.cachetextconv", "false", cwd=top)
    attributes = Path(top) / ".gitattributes"
    line = f"{pattern} diff=slimspec"
    existing = attributes.read_text(encoding="utf-8").splitlines() if attributes.exists() else []
    if line not in existing:
        atomic_write(attributes, "\n".join(existing + [line]) + "\n")
    click.echo(f"git diff now shows {pattern} specs one layer per line (diff.slimspec.textconv = {command})")
