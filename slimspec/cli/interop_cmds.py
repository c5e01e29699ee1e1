"""``slimspec import``: a torchvision model in, a spec and its weights out."""
from __future__ import annotations

from pathlib import Path

import click

from .errors import report_errors


@click.command("import")
@click.argument("source")
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False), help="Spec file to write.")
@click.option("--weights-out", type=click.Path(dir_okay=False), help="Weights (default: OUT with .safetensors).")
@click.option("--pretrained", is_flag=True, help="Ask torchvision for its default pretrained weights (downloads).")
@click.option("--state-dict", type=click.Path(exists=True, dir_okay=False), help="A local .pth state dict of that architecture.")
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@report_errors
def import_model(source: str, out: str, weights_out: str | None, pretrained: bool, state_dict: str | None,
                 force: bool) -> None:
    """Import SOURCE = torchvision:NAME (resnet18/34/50/101/152, wide_resnet*, vgg11..19[_bn])."""
    from ..interop.torchvision_models import import_torchvision
    from ..utils.fileio import OutputTransaction
    from ..weights import save_weights

    library, _, name = source.partition(":")
    if library != "torchvision" or not name:
        raise click.BadParameter("expected torchvision:NAME, e.g. torchvision:resnet50", param_hint="SOURCE")
    weights_path = Path(weights_out) if weights_out else Path(out).with_suffix(".safetensors")
    with OutputTransaction(force=force) as outputs:  # both files or neither; refused before any work
        outputs.check_inputs(state_dict)
        outputs.reserve(weights_path)
        outputs.reserve(out)
        spec, state = import_torchvision(name, pretrained=pretrained, state_dict=state_dict)
        save_weights(state, spec.text, weights_path, transaction=outputs)
        outputs.write(out, spec.text)
    click.echo(f"wrote {out} and {weights_path} ({spec.arch}, {len(spec.ir.prunable_slots())} prunable slots)")
