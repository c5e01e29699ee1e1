"""``validate``, ``info``, ``build``, ``schema``, ``diff``, ``textconv``, ``git-setup``."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click

from ..document import load_spec
from ..spec.errors import SpecError
from .choices import MODES
from .errors import report_errors


@click.command()
@click.argument("specs", nargs=-1, required=True)
def validate(specs: tuple[str, ...]) -> None:
    """Check spec files; print every problem as 'file: location: message'."""
    failed = False
    for source in specs:
        try:
            spec = load_spec(source)
        except SpecError as exc:
            failed = True
            for line in exc.with_source(exc.source or source).lines():
                click.echo(line, err=True)
            continue
        click.echo(f"{source}: ok ({spec.arch}, {len(spec.ir.prunable_slots())} prunable slots)")
    sys.exit(1 if failed else 0)


@click.command()
@click.argument("spec")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@report_errors
def info(spec: str, as_json: bool) -> None:
    """Params, MACs and FLOPs (2 x MACs) with a per-layer table, from the spec alone."""
    from ..report.info import info as spec_info
    from ..report.tables import format_table, human

    summary = spec_info(spec)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    rows = [[r["name"], r["op"], "x".join(map(str, r["shape"])), r["slot"], f"{r['params']:,}", f"{r['macs']:,}"]
            for r in summary["layers"]]
    click.echo(format_table(["layer", "op", "output", "slot", "params", "MACs"], rows, "llllrr"))
    click.echo(f"\n{summary['name']} ({summary['arch']}), input {summary['input']}, {summary['num_classes']} classes")
    click.echo(f"params {summary['params']:,} ({human(summary['params'])})")
    click.echo(f"MACs   {summary['macs']:,} ({human(summary['macs'])})   [Li et al. 2017 count MACs]")
    click.echo(f"FLOPs  {summary['flops']:,} ({human(summary['flops'])})   [= 2 x MACs, Liu et al. 2017's convention]")


@click.command()
@click.argument("spec")
@click.option("--mode", type=MODES, default="plain", show_default=True)
@click.option("--binary-gates", is_flag=True, help="Gated mode: binarize gates with a straight-through estimator.")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the initialized weights (safetensors, spec embedded).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@report_errors
def build(spec: str, mode: str, binary_gates: bool, out: str | None, seed: int, force: bool) -> None:
    """Build the model, run one forward pass on a dummy input, print a Keras-like summary."""
    from ..model import build as build_model
    from ..model import save_weights
    from ..report.summary import model_summary
    from ..utils.fileio import check_writable

    if out:
        check_writable(out, force)
    loaded = load_spec(spec)
    model = build_model(loaded, mode, binary_gates=binary_gates, seed=seed)
    click.echo(model_summary(model, loaded))
    if out:
        save_weights(model, loaded, out, overwrite=force)
        click.echo(f"wrote {out}")


@click.command()
@click.option("--plan", is_flag=True, help="Print the pruning-plan schema instead.")
def schema(plan: bool) -> None:
    """Print the spec JSON Schema (or the plan schema), for editors and CI."""
    if plan:
        from ..pruning.options import plan_schema as chosen
    else:
        from ..spec.validate import schema as chosen

    click.echo(json.dumps(chosen(), indent=2))


@click.command()
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True)
@report_errors
def diff(a: str, b: str, as_json: bool) -> None:
    """Per-slot width changes and params/MACs deltas; exit 0 if equal, 1 if they differ."""
    from ..report.diff import format_diff, spec_diff

    result = spec_diff(load_spec(a), load_spec(b))
    click.echo(json.dumps(result, indent=2) if as_json else format_diff(result))
    sys.exit(0 if result["equal"] else 1)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False))
def textconv(file: str) -> None:
    """Git textconv driver: one line per layer slot (non-spec files are printed as they are)."""
    from ..report.textconv import textconv as render

    raw = Path(file).read_bytes()
    try:
        text = render(load_spec(file))
    except (SpecError, UnicodeDecodeError):
        sys.stdout.buffer.write(raw)
        return
    click.echo(text, nl=False)


@click.command("git-setup")
@click.option("--pattern", default="*.yaml", show_default=True, help="Files the driver applies to.")
@report_errors
def git_setup(pattern: str) -> None:
    """Register the spec textconv driver in this repository (.git/config + .gitattributes)."""
    try:
        top = subprocess.run(["git", "rev-parse", "--show-toplevel"], check=True, capture_output=True, text=True).stdout.strip()
    except (subprocess.CalledProcessError, FileNotFoundError):
        raise click.ClickException("not inside a git repository") from None
    subprocess.run(["git", "config", "diff.slimspec.textconv", "slimspec textconv"], check=True, cwd=top)
    subprocess.run(["git", "config", "diff.slimspec.cachetextconv", "false"], check=True, cwd=top)
    attributes = Path(top) / ".gitattributes"
    line = f"{pattern} diff=slimspec"
    existing = attributes.read_text(encoding="utf-8").splitlines() if attributes.exists() else []
    if line not in existing:
        attributes.write_text("\n".join(existing + [line]) + "\n", encoding="utf-8")
    click.echo(f"git diff now shows {pattern} specs one layer per line (diff.slimspec.textconv = slimspec textconv)")
