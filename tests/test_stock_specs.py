"""Stock specs reproduce the reference figures; built models match the analytic counts."""
from __future__ import annotations

import pytest
import torch

import slimspec
from slimspec.document import spec_from_text
from slimspec.ir import count_macs, count_params
from slimspec.nn import Gate

from .conftest import ALL_SPECS, SPECS

REFERENCE = [  # DESIGN.md's table
    ("vgg19", 20_035_018, 398_136_320),
    ("vgg16_li", 14_987_722, 313_463_808),
    ("resnet20", 269_722, 40_551_040),
    ("resnet56", 853_018, 125_485_696),
    ("resnet110", 1_727_962, 252_887_680),
    ("preresnet164", 1_703_258, 247_646_720),
    ("densenet40", 1_059_298, 282_917_328),
]


@pytest.mark.parametrize("name,params,macs", REFERENCE)
def test_reference_figures(name, params, macs):
    info = slimspec.info(SPECS / f"{name}.yaml")
    assert (info["params"], info["macs"], info["flops"]) == (params, macs, 2 * macs)


def test_vgg19_cifar100():
    text = (SPECS / "vgg19.yaml").read_text().replace("num_classes: 10", "num_classes: 100")
    assert count_params(spec_from_text(text).ir) == 20_081_188


@pytest.mark.parametrize("name", ALL_SPECS)
def test_built_params_equal_analytic(name):
    spec = slimspec.load_spec(name)
    for mode in ("plain", "masked", "gated"):
        model = slimspec.build(spec, mode)
        gates = {id(m.weight) for m in model.modules() if isinstance(m, Gate)}
        built = sum(p.numel() for p in model.parameters() if id(p) not in gates)
        assert built == count_params(spec.ir), mode
    assert count_macs(spec.ir) > 0


@pytest.mark.parametrize("name", ALL_SPECS)
def test_every_stock_spec_has_a_comment_and_runs(name):
    text = (SPECS / f"{name}.yaml").read_text()
    assert text.startswith("# ")
    spec = slimspec.load_spec(name)
    if count_macs(spec.ir) < 50_000_000:
        with torch.no_grad():
            out = slimspec.build(spec).eval()(torch.zeros(2, *spec.ir.input_shape))
        assert out.shape == (2, spec.ir.num_classes)


def test_parameter_names_are_stable_across_builds_and_modes():
    spec = slimspec.load_spec("resnet20")
    plain = list(slimspec.build(spec, seed=1).state_dict())
    assert plain == list(slimspec.build(spec, seed=2).state_dict())
    masked = list(slimspec.build(spec, "masked").state_dict())
    assert [k for k in masked if not k.endswith("mask")] == plain
    assert plain[:3] == ["stem.conv.weight", "stem.bn.weight", "stem.bn.bias"]


def test_same_seed_same_weights():
    a = slimspec.build("digits_resnet", seed=3).state_dict()
    b = slimspec.build("digits_resnet", seed=3).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_unseeded_builds_draw_fresh_weights_from_the_global_rng():
    torch.manual_seed(0)
    a = slimspec.build("digits_mlp").state_dict()
    b = slimspec.build("digits_mlp").state_dict()
    assert not torch.equal(a["layers.0.linear.weight"], b["layers.0.linear.weight"])
    torch.manual_seed(0)
    assert torch.equal(slimspec.build("digits_mlp").state_dict()["layers.0.linear.weight"], a["layers.0.linear.weight"])
