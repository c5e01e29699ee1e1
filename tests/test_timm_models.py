"""timm's CNNs (``slimspec import timm:NAME``): each imports exactly and prunes like torchvision's.

timm is an optional extra: without it these tests skip. Models are made offline
(``timm.create_model(name, pretrained=False)``), with trained-looking BatchNorm statistics, and checked
as in tests/test_torchvision_models.py: timm's parameter count, timm's output (relative 1e-5), and
``-m l1 --target macs=0.7`` pruning equal to the masked original.
"""
from __future__ import annotations

import pytest
import torch


from .conftest import cli_run, one_line_error, randomize
from .test_torchvision_models import check_model

TIMM_MODELS = ["convnext_atto", "densenet121", "efficientnet_b0", "ghostnet_100", "mobilenetv3_large_100",
               "regnety_008", "resnet50d", "rexnet_100"]
FAST = {"convnext_atto", "ghostnet_100"}  # channels-last regions and layer scale; a concat of a map and its copy
# models that import exactly but whose pruning is refused, and why (none now: GhostNet's depthwise convs reading a
# concat of a map and its own depthwise copy are resized until the widths settle)
TIMM_PRUNE_LIMITS: dict[str, str] = {}
# models refused, with the first construct a spec cannot express
TIMM_REFUSED: dict[str, str] = {}  # none now: ReXNet's x[:, 0:in_channels] + shortcut is a `slice` layer
SHAPE = (3, 64, 64)


def make(name: str):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    return randomize(timm.create_model(name, pretrained=False))


@pytest.mark.parametrize("name", [pytest.param(n, marks=[] if n in FAST else [pytest.mark.slow]) for n in TIMM_MODELS])
def test_timm_cnn_imports_exactly_and_prunes(name):
    from slimspec.interop.timm_models import import_timm

    model = make(name)
    spec, state = import_timm(name, model=model, input_shape=SHAPE)
    assert spec.arch == "graph" and spec.name == name
    check_model(name, model, spec, state, SHAPE, TIMM_PRUNE_LIMITS)


def test_cli_timm_source_with_a_state_dict(tmp_path):
    """Weights only from a file (offline): the import's weights are the file's."""
    import slimspec

    model = make("efficientnet_b0")
    with torch.no_grad():
        model.classifier.bias.fill_(0.25)
    torch.save(model.state_dict(), tmp_path / "w.pth")
    result = cli_run("import", "timm:efficientnet_b0", "--state-dict", tmp_path / "w.pth", "--input", "3,32,32",
                     "--out", tmp_path / "e.yaml")
    assert result.exit_code == 0, result.output
    assert "(graph, " in result.output
    net = slimspec.load_model(tmp_path / "e.safetensors")[0]
    assert torch.equal(net.state_dict()["fc.bias"], torch.full((1000,), 0.25))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), model.eval()(x), atol=1e-5, rtol=1e-5)


def test_cli_timm_refusals(tmp_path):
    pytest.importorskip("timm")
    one_line_error(cli_run("import", "timm:nonet_9", "--out", tmp_path / "a.yaml"), "timm has no model 'nonet_9'")
    one_line_error(cli_run("import", "timm:vit_tiny_patch16_224", "--out", tmp_path / "a.yaml"),
                   "timm:vit_tiny_patch16_224: is a vision transformer")
    result = cli_run("import", "timm:resnet18", "--pretrained", "--out", tmp_path / "a.yaml")
    assert result.exit_code == 2 and "--state-dict" in result.output
    assert not list(tmp_path.iterdir())
