"""The shipped plan files reproduce Li et al. 2017's published pruned architectures (Table 1).

Li et al.'s parameter counts leave out BatchNorm's affine parameters (their VGG-16-A 5.4e6 is
5,390,698 conv + linear parameters; slimspec's ``params`` adds BN's and reports 5,397,034);
MACs count conv and linear layers in both. Figures are checked at the paper's precision.
"""
from __future__ import annotations

from pathlib import Path

import pytest

import slimspec
from slimspec.ir import node_params
from slimspec.pruning.api import prune

PLANS = Path(__file__).resolve().parents[1] / "examples" / "plans"

TABLE_1 = [  # plan, spec, params (no BN), MACs, significant digits of the paper's figures
    ("vgg16_li_A", "vgg16_li", 5.4e6, 2.06e8, (2, 3)),
    ("resnet56_li_A", "resnet56", 7.7e5, 1.12e8, (2, 3)),
    ("resnet56_li_B", "resnet56", 7.3e5, 9.09e7, (2, 3)),
    ("resnet110_li_A", "resnet110", 1.68e6, 2.13e8, (3, 3)),
    ("resnet110_li_B", "resnet110", 1.16e6, 1.55e8, (3, 3)),
]


def rounded(value: float, digits: int) -> float:
    return float(f"{value:.{digits - 1}e}")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = tmp_path_factory.mktemp("li")
    paths = {}
    for name in {row[1] for row in TABLE_1}:
        model = slimspec.build(name, seed=0)
        paths[name] = folder / f"{name}.safetensors"
        slimspec.save_weights(model, model.spec, paths[name])
    return paths


@pytest.mark.parametrize("plan,spec,params,macs,digits", TABLE_1)
def test_table_1(weights, plan, spec, params, macs, digits):
    result = prune(weights[spec], plan=PLANS / f"{plan}.yaml")
    ir = result.spec.ir
    conv_linear = sum(node_params(ir, node) for node in ir.nodes if node.op != "bn")
    assert rounded(conv_linear, digits[0]) == params
    assert rounded(result.macs[1], digits[1]) == macs


def test_vgg16_a_architecture(weights):
    result = prune(weights["vgg16_li"], plan=PLANS / "vgg16_li_A.yaml")
    assert result.spec.data["cfg"] == [32, 64, "M", 128, 128, "M", 256, 256, 256, "M", 256, 256, 256, "M", 256, 256, 256]
    assert result.spec.data["classifier"] == [512]


def test_resnet56_b_architecture(weights):
    """int(width * (1 - ratio)) filters kept in conv1 of every non-skipped block, as the reference code does."""
    result = prune(weights["resnet56"], plan=PLANS / "resnet56_li_B.yaml")
    stages = result.spec.data["stages"]
    assert stages[0]["blocks"] == [6, 6, 6, 6, 6, 6, 6, 16, 16]
    assert stages[1]["blocks"] == [32, 22, 22, 22, 22, 22, 22, 32, 22]
    assert stages[2]["blocks"] == [64, 57, 57, 57, 57, 57, 57, 57, 64]
    assert [s["width"] for s in stages] == [16, 32, 64]


def test_provenance_records_the_plan(weights):
    result = prune(weights["resnet56"], plan=PLANS / "resnet56_li_B.yaml")
    options = result.spec.data["pruned"]["options"]
    assert options["overrides"] == {"stages[0].blocks[*]": 0.6, "stages[1].blocks[*]": 0.3, "stages[2].blocks[*]": 0.1}
    assert "stages[1].blocks[7]" in options["exclude"]
