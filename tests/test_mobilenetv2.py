"""``arch: mobilenetv2``: torchvision's MobileNetV2 exactly; depthwise coupling; pruning in the family's own form."""
from __future__ import annotations

import pytest
import torch
import torchvision
import yaml

import slimspec
from slimspec.document import spec_from_text
from slimspec.errors import SpecError
from slimspec.families import get_family
from slimspec.families.mobilenetv2 import make_divisible
from slimspec.ir import count_macs, count_params
from slimspec.pruning.api import prune

from .conftest import SPECS, randomize
from .test_prune_exact import assert_equivalent

DIGITS = (SPECS / "digits_mobilenetv2.yaml").read_text()


def test_stock_mobilenetv2_is_torchvisions():
    info = slimspec.info("mobilenetv2")
    assert (info["params"], info["macs"]) == (3_504_872, 300_774_272)
    model = slimspec.build("mobilenetv2")
    assert sum(p.numel() for p in model.parameters()) == 3_504_872
    torch.manual_seed(0)
    reference = randomize(torchvision.models.mobilenet_v2(weights=None))
    model.load_state_dict(reference.state_dict())  # torchvision's parameter names, strictly
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), reference.eval()(x), atol=1e-5, rtol=1e-5)


def test_cifar_variant_counts():
    info = slimspec.info("mobilenetv2_cifar")
    assert (info["params"], info["macs"]) == (2_236_682, 87_976_448)


def test_readme_example(trained_weights):
    """The README's pruned digits MobileNetV2 (slimming, percent 0.4, the suite's randomized weights)."""
    data = yaml.safe_load(prune(trained_weights("digits_mobilenetv2"), "slimming", percent=0.4).spec.text)
    assert data["stem"] == 9 and data["last_channel"] == 38
    assert data["stages"] == [{"t": 1, "c": 4, "n": 1, "s": 1}, {"t": 4, "c": 16, "n": 2, "s": 2, "expand": [19, 36]},
                              {"t": 4, "c": 24, "n": 2, "s": 2, "expand": [37, 63]}]


@pytest.mark.parametrize("mult", [0.35, 0.5, 0.75, 1.3])
def test_width_multiplier_matches_torchvision(mult):
    text = (SPECS / "mobilenetv2.yaml").read_text().replace("width_mult: 1.0", f"width_mult: {mult}")
    reference = torchvision.models.mobilenet_v2(weights=None, width_mult=mult)
    spec = spec_from_text(text)
    assert count_params(spec.ir) == sum(p.numel() for p in reference.parameters())
    assert set(slimspec.build(spec).state_dict()) == set(reference.state_dict())


def test_make_divisible_is_torchvisions():
    from torchvision.models._utils import _make_divisible

    for value in [3.2, 8, 11.2, 12, 16 * 0.35, 24 * 1.3, 320 * 0.75, 1280 * 1.3, 37, 4]:
        assert make_divisible(value, 8) == _make_divisible(value, 8)


def test_slots_and_depthwise_coupling():
    ir = slimspec.load_spec("digits_mobilenetv2").ir
    kinds = {path: slot.kind for path, slot in ir.slots.items() if not path.startswith("#")}
    assert kinds == {"stem": "channel", "stages[0].c": "channel", "stages[1].c": "stream", "stages[2].c": "stream",
                     "stages[1].expand[0]": "channel", "stages[1].expand[1]": "channel",
                     "stages[2].expand[0]": "channel", "stages[2].expand[1]": "channel", "last_channel": "channel"}
    # the depthwise conv of a block runs on its expansion slot: same axis in and out, groups = width
    dw = ir.node("features.2.conv.1.0")
    assert dw.axis == dw.in_axis == ir.node("features.2.conv.0.0").axis
    assert dw.attr("groups") == ir.slots["stages[1].expand[0]"].size == 32
    # t = 1: the first block's depthwise conv runs on the stem's channels
    assert ir.node("features.1.conv.0.0").axis.segments == ("stem",)
    assert ir.slots["stages[1].expand[1]"].group == ("stages[1]", "stages[1].expand[1]")
    assert "features.3.add" in ir and "features.2.add" not in ir


def test_pruned_spec_keeps_its_form_and_is_exact(trained_weights):
    weights = trained_weights("digits_mobilenetv2")
    result = prune(weights, "l1", ratio=0.5)
    data = yaml.safe_load(result.spec.text)
    assert [st.get("expand") for st in data["stages"]] == [None, [16, 32], [32, 48]]
    assert data["stem"] == 8 and data["last_channel"] == 32 and data["stages"][0]["c"] == 4
    assert data["stages"][1]["c"] == 16  # a stream: untouched without prune_stream
    assert count_params(result.spec.ir) == sum(p.numel() for p in result.model.parameters())
    assert_equivalent(weights, result)
    again = prune(_save(result, weights.parent / "p.yaml"), "l1", ratio=0.5)
    assert yaml.safe_load(again.spec.text)["stages"][1]["expand"] == [8, 16]


def _save(result, path):
    result.save(path)
    return path.with_suffix(".safetensors")


def test_stream_pruning_is_exact(trained_weights):
    weights = trained_weights("digits_mobilenetv2")
    result = prune(weights, "slimming", ratio=0.4, prune_stream=True)
    data = yaml.safe_load(result.spec.text)
    assert data["stages"][1]["c"] < 16 and data["stages"][2]["c"] < 24
    assert_equivalent(weights, result)


def test_pruning_never_adds_a_residual(trained_weights):
    """stem 16 -> stage 0 (c 8, stride 1): pruning the stem to 8 would make the widths match."""
    weights = trained_weights("digits_mobilenetv2")
    result = prune(weights, "l1", overrides={"stem": 0.5})
    data = yaml.safe_load(result.spec.text)
    assert data["stem"] == 8 and data["stages"][0]["c"] == 8 and data["stages"][0]["residual"] is False
    assert "features.1.add" not in result.spec.ir
    assert_equivalent(weights, result)


def test_width_multiplier_resolved_when_widths_change(tmp_path):
    text = DIGITS.replace("dropout: 0.0", "dropout: 0.0\nwidth_mult: 1.5")
    spec = spec_from_text(text)
    assert [spec.ir.slots[p].size for p in ("stem", "stages[0].c", "stages[2].c", "last_channel")] == [24, 16, 40, 96]
    model = randomize(slimspec.build(spec))
    path = tmp_path / "w.safetensors"
    slimspec.save_weights(model, spec, path)
    result = prune(path, "l1", ratio=0.5)
    data = yaml.safe_load(result.spec.text)
    assert data["width_mult"] == 1.0 and data["stem"] == 12 and data["last_channel"] == 48
    assert [st["c"] for st in data["stages"]] == [8, 24, 40]
    assert count_params(result.spec.ir) == sum(p.numel() for p in result.model.parameters())


@pytest.mark.parametrize("edit,replacement,message", [
    ("- {t: 4, c: 16, n: 2, s: 2}", "- {t: 4, c: 16, n: 2, s: 2, expand: [8]}",
     "d.yaml: stages[1].expand: expected 2 entries (n), got 1"),
    ("- {t: 1, c: 8, n: 1, s: 1}", "- {t: 1, c: 8, n: 1, s: 1, expand: [8]}",
     "d.yaml: stages[0].expand: a stage with t: 1 has no expansion layer to set widths for"),
    ("- {t: 4, c: 16, n: 2, s: 2}", "- {t: 4, c: 16, n: 2, s: 2, residual: true}",
     "d.yaml: stages[1].residual: a residual add needs stride 1 and equal widths (in 8, out 16)"),
    ("- {t: 4, c: 16, n: 2, s: 2}", "- {t: 4, c: 16, n: 2, s: 3}", "d.yaml: stages[1].s:"),
    ("last_channel: 64", "last_chanel: 64", "did you mean 'last_channel'"),
])
def test_located_errors(edit, replacement, message):
    with pytest.raises(SpecError) as info:
        spec_from_text(DIGITS.replace(edit, replacement), "d.yaml")
    assert message in str(info.value)


def test_family_is_registered_and_torch_free():
    import subprocess
    import sys

    assert get_family("mobilenetv2").arch == "mobilenetv2"
    code = ("import sys, slimspec.families, slimspec.document as d; d.load_spec('mobilenetv2');"
            "from slimspec.ir import count_macs; assert 'torch' not in sys.modules")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    assert count_macs(slimspec.load_spec("digits_mobilenetv2").ir) == 151_296
