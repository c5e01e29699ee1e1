"""torchvision ResNets and VGGs import as specs whose models compute exactly the same thing."""
from __future__ import annotations

import pytest
import torch
import torchvision
from click.testing import CliRunner

import slimspec
from slimspec.cli.main import cli
from slimspec.interop.torchvision_models import ImportModelError, import_torchvision
from slimspec.ir import count_params
from slimspec.weights import load_state_into

from .conftest import randomize


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "wide_resnet50_2", "vgg11_bn", "vgg11"])
def test_import_is_exact(name):
    torch.manual_seed(0)
    reference = randomize(getattr(torchvision.models, name)(weights=None))
    spec, state = import_torchvision(name, model=reference)
    assert count_params(spec.ir) == sum(p.numel() for p in reference.parameters())
    model = slimspec.build(spec)
    load_state_into(model, state, name)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), reference.eval()(x), atol=1e-4, rtol=1e-4)


def test_stock_imagenet_specs_match_torchvision():
    for name in ("resnet18", "resnet50"):
        spec, _ = import_torchvision(name)
        stock = slimspec.load_spec(name)
        assert count_params(stock.ir) == count_params(spec.ir)
        assert {k: v for k, v in stock.data.items() if k != "name"} == {k: v for k, v in spec.data.items() if k != "name"}


def test_resnext_is_refused():
    with pytest.raises(ImportModelError, match="grouped"):
        import_torchvision("resnext50_32x4d")


def test_cli_import_then_prune(tmp_path):
    out = tmp_path / "r18.yaml"
    result = CliRunner().invoke(cli, ["import", "torchvision:resnet18", "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    model, spec = slimspec.load_model(out.with_suffix(".safetensors"))
    assert spec.text == out.read_text()
    result = CliRunner().invoke(cli, ["prune", str(out.with_suffix(".safetensors")), "-m", "l1", "--ratio", "0.3",
                                      "--dry-run"], catch_exceptions=False)
    assert result.exit_code == 0 and "stages[0].blocks[0]" in result.output
