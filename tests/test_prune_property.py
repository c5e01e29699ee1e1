"""Every stock spec, pruned at ratios across 0..0.95, validates, builds and runs, with no empty layer."""
from __future__ import annotations

import pytest
import torch

import slimspec
from slimspec.document import spec_from_text
from slimspec.pruning.api import prune

from .conftest import ALL_SPECS, DIGITS_SPECS, randomize

RATIOS = [0.0, 0.3, 0.6, 0.9, 0.95]


@pytest.fixture(scope="module")
def stock_weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stock")
    cache = {}

    def get(name: str):
        if name not in cache:
            model = randomize(slimspec.build(name, seed=0))
            cache[name] = folder / f"{name}.safetensors"
            slimspec.save_weights(model, model.spec, cache[name])
        return cache[name]

    return get


def check(result) -> None:
    reparsed = spec_from_text(result.spec.text)  # the written text validates on its own
    assert reparsed.data == result.spec.data
    for path, slot in reparsed.ir.slots.items():
        assert slot.size >= 1, f"{path} is empty"
    with torch.no_grad():
        out = result.model.eval()(torch.randn(2, *reparsed.ir.input_shape))
    outs = out if isinstance(out, tuple) else (out,)  # a detector returns its heads' maps
    assert [o.shape for o in outs] == [(2, *reparsed.ir.node(name).shape) for name in reparsed.ir.outputs]
    assert all(torch.isfinite(o).all() for o in outs)


@pytest.mark.parametrize("name", ALL_SPECS)
@pytest.mark.parametrize("ratio", [0.5, 0.95])
def test_every_stock_spec(stock_weights, name, ratio):
    method = "slimming" if "mlp" not in name and name not in ("convnet_mnist", "lenet5") else "l1"
    result = prune(stock_weights(name), method, ratio=ratio)
    check(result)
    assert result.params[1] <= result.params[0]


@pytest.mark.parametrize("name", DIGITS_SPECS)
@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("method", ["l1", "random", "attention-weight"])
def test_ratios_across_range(stock_weights, name, ratio, method):
    result = prune(stock_weights(name), method, ratio=ratio)
    check(result)
    if ratio == 0.0:
        assert result.spec.data == {**result.parent.data, "pruned": result.spec.data["pruned"]}


@pytest.mark.parametrize("name", ["digits_vgg", "digits_resnet", "digits_preresnet", "resnet56"])
@pytest.mark.parametrize("goal", [0.3, 0.5, 0.8])
def test_macs_target_is_met(stock_weights, name, goal):
    result = prune(stock_weights(name), "l1", target={"macs": goal})
    check(result)
    assert result.macs[1] <= goal * result.macs[0]
    assert result.macs[1] >= (goal - 0.1) * result.macs[0]  # close to the goal, not far below it
