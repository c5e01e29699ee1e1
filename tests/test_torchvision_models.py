"""Every torchvision classification model: each CNN imports exactly and prunes; each vision transformer is refused.

For each CNN of ``torchvision.models.list_models(module=torchvision.models)`` (random weights with
trained-looking BatchNorm statistics, eval mode, a small input): the imported spec has torchvision's
parameter count (less the auxiliary heads eval never runs), its model returns torchvision's output
(relative 1e-5), and ``prune -m l1 --target macs=0.7`` (no ``--prune-stream``) gives a model that
runs, within the target, whose output equals its masked original's. The small ones run in the
default suite, the rest are ``slow``. The README's supported-models list is rendered from the tables
here (:func:`supported_models_text`).
"""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import slimspec
from slimspec.errors import ModelImportError, PruneError, SpecError
from slimspec.interop.torchvision_models import import_torchvision
from slimspec.ir import count_params
from slimspec.pruning.masking import apply_channel_masks

from .conftest import cli_run, one_line_error, randomize

MODELS = torchvision.models.list_models(module=torchvision.models)
TRANSFORMERS = sorted(name for name in MODELS if name.startswith(("vit_", "swin_", "maxvit_")))
CNNS = sorted(name for name in MODELS if name not in TRANSFORMERS)
FAST = {"efficientnet_b0", "mobilenet_v3_small", "regnet_y_400mf", "resnet18", "shufflenet_v2_x0_5",
        "squeezenet1_1"}  # one small model of each kind of block (ConvNeXt's: timm's convnext_atto)
INPUTS = {"inception_v3": (3, 75, 75)}  # its smallest input; every other model runs on 3x64x64
DEFAULT_INPUT = (3, 64, 64)
UNUSED_IN_EVAL = {"googlenet": ("aux1.", "aux2."), "inception_v3": ("AuxLogits.",)}  # auxiliary heads (training only)
# models that import exactly but do not prune to the target, and why (a limit outside the importer)
PRUNE_LIMITS: dict[str, str] = {}
TARGET = 0.7


def marks(name: str) -> list:
    return [] if name in FAST else [pytest.mark.slow]


def make(name: str) -> nn.Module:
    torch.manual_seed(0)
    return randomize(torchvision.models.get_model(name, weights=None))


def used_params(model: nn.Module, name: str) -> int:
    skip = UNUSED_IN_EVAL.get(name, ())
    return sum(p.numel() for key, p in model.named_parameters() if not key.startswith(skip))


def assert_close(got: torch.Tensor, want: torch.Tensor) -> None:
    scale = max(1.0, float(want.abs().max()))
    assert got.shape == want.shape
    assert float((got - want).abs().max()) <= 1e-5 * scale


def check_model(name: str, model: nn.Module, spec, state, shape, limits: dict[str, str] | None = None) -> None:
    """Exact import, then l1 pruning to the MACs target equal to the masked original (``limits``: models whose
    pruning is refused, by name)."""
    limits = limits or {}
    assert count_params(spec.ir) == used_params(model, name)
    built = slimspec.build(spec)
    built.load_state_dict(state)
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert_close(built.eval()(x), model.eval()(x))
    if name in PRUNE_LIMITS or name in limits:
        with pytest.raises((PruneError, SpecError)):  # a limit outside the importer: refused, not mis-pruned
            slimspec.prune(built, "l1", target={"macs": TARGET})
        return
    result = slimspec.prune(built, "l1", target={"macs": TARGET})
    assert TARGET - 0.05 < result.macs[1] / result.macs[0] <= TARGET + 1e-9
    masked = slimspec.build(spec, "masked")
    masked.load_state_dict(state, strict=False)
    masked = apply_channel_masks(masked, spec.ir, result.decision.kept).eval()
    with torch.no_grad():
        assert_close(result.model.eval()(x), masked(x))


@pytest.mark.parametrize("name", [pytest.param(name, marks=marks(name)) for name in CNNS])
def test_cnn_imports_exactly_and_prunes(name):
    model = make(name)
    shape = INPUTS.get(name, DEFAULT_INPUT)
    spec, state = import_torchvision(name, model=model, input_shape=shape)
    check_model(name, model, spec, state, shape)


@pytest.mark.parametrize("name", TRANSFORMERS)
def test_vision_transformers_are_refused_in_one_line(name, tmp_path):
    result = cli_run("import", f"torchvision:{name}", "--out", tmp_path / "t.yaml")
    one_line_error(result, f"torchvision:{name}: is a vision transformer")
    assert not list(tmp_path.iterdir())


def test_a_transformer_made_elsewhere_is_refused_too():
    with pytest.raises(ModelImportError, match="is a vision transformer"):
        import_torchvision("vit_b_32", model=nn.Sequential(nn.MultiheadAttention(8, 2)))


def test_the_list_is_torchvisions():
    """Every model torchvision lists is tested here: a new one shows up as a new case."""
    assert sorted(CNNS + TRANSFORMERS) == sorted(MODELS)
    assert FAST <= set(CNNS) and set(INPUTS) <= set(CNNS) and set(UNUSED_IN_EVAL) <= set(CNNS)


# -- the README's list -------------------------------------------------------------------------------
def _wrap(names: list[str], indent: str = "  ", width: int = 100) -> list[str]:
    lines, line = [], indent
    for name in names:
        piece = name + ", "
        if len(line) + len(piece) > width:
            lines.append(line.rstrip())
            line = indent
        line += piece
    lines.append(line.rstrip().rstrip(","))
    return lines


def supported_models_text() -> str:
    """The README block: what these tests and tests/test_timm_models.py verify, model by model."""
    from .test_timm_models import TIMM_MODELS, TIMM_PRUNE_LIMITS, TIMM_REFUSED

    pruned = [name for name in CNNS if name not in PRUNE_LIMITS]
    lines = [f"torchvision: import exactly and prune to {TARGET} of their MACs ({len(pruned)} models):",
             *_wrap(pruned)]
    for reason in sorted(set(PRUNE_LIMITS.values())):
        names = [name for name, why in PRUNE_LIMITS.items() if why == reason]
        lines += [f"torchvision: import exactly; {reason} ({len(names)} models):", *_wrap(names)]
    lines += [f"torchvision: refused in one line, vision transformers ({len(TRANSFORMERS)} models):",
              *_wrap(TRANSFORMERS)]
    timm_pruned = [name for name in TIMM_MODELS if name not in TIMM_PRUNE_LIMITS]
    lines += [f"timm: import exactly and prune to {TARGET} of their MACs ({len(timm_pruned)} models):",
              *_wrap(timm_pruned)]
    for name, reason in TIMM_PRUNE_LIMITS.items():
        lines += [f"timm: {name} imports exactly; pruning is refused: {reason}"]
    for name, reason in TIMM_REFUSED.items():
        lines += [f"timm: {name} is refused: it {reason}"]
    return "\n".join(lines)
