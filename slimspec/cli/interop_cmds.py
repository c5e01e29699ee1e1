"""``slimspec import``: a torchvision or timm model or your own nn.Module in, a spec and its weights out."""
from __future__ import annotations

import gc
import sys
from pathlib import Path

import click

from .errors import report_errors
from .paths import OUTPUT_FILE


class _InputShape(click.ParamType):
    """``C,H,W`` -> a tuple of three positive integers."""

    name = "C,H,W"

    def convert(self, value, param, ctx):  # type: ignore[override]
        if isinstance(value, tuple):
            return value
        parts = str(value).replace("x", ",").split(",")
        try:
            shape = tuple(int(p) for p in parts)
        except ValueError:
            shape = ()
        if len(shape) != 3 or min(shape) < 1:
            self.fail(f"expected three positive integers C,H,W such as 3,32,32, got {value!r}", param, ctx)
        return shape


INPUT_SHAPE = _InputShape()


def _note_module_sources(reference: str, loaded: set[str]) -> None:
    """The files ``import python:`` read are inputs: the module itself and every module it imported.

    An output naming one of them (``--out pk/net.py``, ``--weights-out net.py``, by path or
    inode) is refused before anything is renamed, so the model's own source is never replaced.
    """
    from ..utils.fileio import note_input

    module_name = reference.partition(":")[0]
    names = [module_name, *(name for name in list(sys.modules) if name not in loaded)]
    for name in dict.fromkeys(names):
        source = getattr(sys.modules.get(name), "__file__", None)
        if isinstance(source, str):
            note_input(source)


@click.command("import")
@click.argument("source")
@click.option("--out", "-o", required=True, type=OUTPUT_FILE, help="Spec file to write.")
@click.option("--weights-out", type=OUTPUT_FILE, help="Weights (default: OUT with .safetensors).")
@click.option("--pretrained", is_flag=True, help="Ask torchvision for its default pretrained weights (downloads).")
@click.option("--state-dict", type=click.Path(exists=True, dir_okay=False),
              help="A local state dict (.pth, read with weights_only=True, or .safetensors) of that architecture.")
@click.option("--weights", "darknet_weights", type=click.Path(exists=True, dir_okay=False),
              help="darknet: the cfg's Darknet .weights file (else random weights from --seed).")
@click.option("--num-classes", type=click.IntRange(min=1),
              help="torchvision: replace the classifier with one of N outputs; timm, ultralytics: make the model with N "
                   "classes (before --state-dict is loaded).")
@click.option("--input", "input_shape", type=INPUT_SHAPE, metavar="C,H,W",
              help="One image's shape (python: the module is traced on it; torchvision: the spec's input, default "
                   "3,224,224; timm: default the model's; ultralytics: 3,640,640).")
@click.option("--name", "spec_name", help="Spec name (default: the module's file name, or the model's name).")
@click.option("--seed", type=int, help="Seed of the random initialization (a model without weights, a new "
                                       "--num-classes head): same seed, same bytes [default: 0].")
@click.option("--force", is_flag=True, help="Overwrite existing outputs.")
@report_errors
def import_model(source: str, out: str, weights_out: str | None, pretrained: bool, state_dict: str | None,
                 darknet_weights: str | None, num_classes: int | None, input_shape: tuple[int, int, int] | None, spec_name: str | None,
                 seed: int | None, force: bool) -> None:
    """Import SOURCE = torchvision:NAME (resnet*, wide_resnet*, resnext*, vgg*, mobilenet_v2 as their families, any
    other classification CNN as a graph spec), timm:NAME (a timm CNN, made offline; weights via --state-dict) or
    python:PACKAGE.MODULE:FACTORY (your own nn.Module, traced with torch.fx into a sequential or graph spec) or
    darknet:FILE.cfg (a Darknet detector such as YOLOv3, as a graph spec; --weights reads its .weights) or
    ultralytics:MODEL.yaml (an Ultralytics detector such as yolov8n.yaml or your YAML's path, as a graph spec returning
    the Detect head's raw maps; weights via --state-dict)."""
    from ..utils.fileio import OutputTransaction, weights_beside
    from ..utils.text import plural
    from ..weights import save_weights

    library, _, name = source.partition(":")
    if library not in ("torchvision", "timm", "python", "darknet", "ultralytics") or not name:
        raise click.BadParameter("expected torchvision:NAME, timm:NAME, python:PACKAGE.MODULE:FACTORY, "
                                 "darknet:FILE.cfg or ultralytics:MODEL.yaml, e.g. torchvision:resnet50",
                                 param_hint="SOURCE")
    if darknet_weights is not None and library != "darknet":
        raise click.BadParameter("only for darknet: sources (give other weights with --state-dict)", param_hint="--weights")
    if library == "darknet" and (num_classes is not None or pretrained or state_dict):
        raise click.BadParameter("a darknet: source takes its weights from --weights and its classes from the cfg",
                                 param_hint="--num-classes/--pretrained/--state-dict")
    if library == "python" and num_classes is not None:
        raise click.BadParameter("only for torchvision: sources (a python: factory builds its own head)",
                                 param_hint="--num-classes")
    if library != "torchvision" and pretrained:
        raise click.BadParameter(f"only for torchvision: sources (give a {library}: model's weights with --state-dict)",
                                 param_hint="--pretrained")
    if library == "python" and input_shape is None:
        raise click.BadParameter("a python: source needs the input shape, e.g. --input 3,32,32", param_hint="--input")
    if spec_name is not None and not spec_name.strip():
        raise click.BadParameter("the spec name is empty (leave --name out for the default)", param_hint="--name")
    if pretrained and state_dict:
        raise click.BadParameter("give one source of weights: torchvision's (--pretrained) or a file (--state-dict)",
                                 param_hint="--pretrained")
    if seed is not None and (state_dict or darknet_weights or pretrained and num_classes is None):
        raise click.BadParameter(f"nothing is randomly initialized: every weight comes from "
                                 f"{'--pretrained' if pretrained else '--state-dict' if state_dict else '--weights'}",
                                 param_hint="--seed")
    seed = 0 if seed is None else seed
    weights_path = Path(weights_out) if weights_out else weights_beside(out)
    metadata: dict[str, str] = {}
    with OutputTransaction(force=force) as outputs:  # both files or neither; refused before any work
        outputs.check_inputs(state_dict, darknet_weights, name if library in ("darknet", "ultralytics") else None)
        outputs.reserve(weights_path)
        outputs.reserve(out)
        if library == "python":
            from ..interop.fx_import import import_python

            loaded = set(sys.modules)
            spec, state = import_python(name, input_shape, name=spec_name, state_dict=state_dict, seed=seed)
            _note_module_sources(name, loaded)
        elif library == "timm":
            from ..interop.timm_models import import_timm

            spec, state = import_timm(name, state_dict=state_dict, num_classes=num_classes, input_shape=input_shape,
                                      seed=seed, spec_name=spec_name)
        elif library == "ultralytics":
            from ..interop.ultralytics_models import import_ultralytics

            spec, state = import_ultralytics(name, state_dict=state_dict, num_classes=num_classes,
                                             input_shape=input_shape, seed=seed, spec_name=spec_name)
        elif library == "darknet":
            from ..interop.darknet import import_darknet

            spec, state, metadata = import_darknet(name, weights=darknet_weights, input_shape=input_shape,
                                                   name=spec_name, seed=seed)
        else:
            from ..interop.torchvision_models import import_torchvision

            spec, state = import_torchvision(name, pretrained=pretrained, state_dict=state_dict,
                                             num_classes=num_classes, input_shape=input_shape, seed=seed,
                                             spec_name=spec_name)
        gc.collect()  # the source module is done with: freed before writing (torch.fx's graph holds it in cycles)
        save_weights(state, spec.text, weights_path, transaction=outputs, metadata=metadata)
        outputs.write(out, spec.text)
    click.echo(f"wrote {out} and {weights_path} ({spec.arch}, {plural(len(spec.ir.prunable_slots()), 'prunable slot')})")
