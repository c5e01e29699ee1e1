"""``groups`` on sequential convolutions: depthwise convs share their input's slot, grouped convs prune by groups
(the same number of channels out of every group)."""
from __future__ import annotations

import pytest
import torch
import yaml

import slimspec
from slimspec.document import spec_from_text
from slimspec.errors import SpecError
from slimspec.ir import count_params
from slimspec.pruning.api import prune
from slimspec.pruning.criteria import criteria

from .conftest import randomize
from .test_prune_exact import assert_equivalent

SPEC = """\
slimspec: 1
name: seq_groups
arch: sequential
input: [1, 8, 8]
num_classes: 10
layers:
  - conv: {out: 16, kernel: 3, padding: 1}
  - bn
  - relu
  - conv: {out: 16, kernel: 3, padding: 1, groups: 16, bias: false}   # depthwise
  - bn
  - relu
  - conv: {out: 24, kernel: 1}
  - bn
  - relu
  - conv: {out: 24, kernel: 3, padding: 1, groups: 4}                 # grouped (ResNeXt-style)
  - bn
  - relu
  - conv: {out: 32, kernel: 1}
  - bn
  - relu
  - maxpool: 2
  - flatten
  - linear: 20
  - relu
"""
STRUCTURED = sorted(n for n, c in criteria().items() if c.structured and not c.needs_gates)


@pytest.fixture
def weights(tmp_path):
    def make(mode: str = "plain"):
        spec = spec_from_text(SPEC, "seq_groups.yaml")
        model = randomize(slimspec.build(spec, mode))
        path = tmp_path / f"{mode}.safetensors"
        slimspec.save_weights(model, spec, path)
        return path
    return make


def test_slots_counts_and_torch_equivalence():
    spec = spec_from_text(SPEC)
    kinds = {p: (s.size, s.kind) for p, s in spec.ir.slots.items() if not p.startswith("#")}
    assert kinds == {"layers[0].conv.out": (16, "channel"), "layers[6].conv.out": (24, "channel"),
                     "layers[9].conv.out": (24, "channel"), "layers[12].conv.out": (32, "channel"),
                     "layers[17].linear": (20, "channel")}
    assert spec.ir.slots["layers[6].conv.out"].parts == spec.ir.slots["layers[9].conv.out"].parts == 4
    model = slimspec.build(spec)
    assert count_params(spec.ir) == sum(p.numel() for p in model.parameters()) == 13_526
    conv = lambda i: model.get_submodule(f"layers.{i}")  # noqa: E731
    assert conv(3).groups == 16 and conv(9).groups == 4
    assert tuple(conv(9).weight.shape) == (24, 6, 3, 3)


@pytest.mark.parametrize("method", STRUCTURED)
def test_pruned_equals_masked(weights, method):
    path = weights()
    calibration = {"calibration": "digits", "calibration_batches": 1} if method == "attention" else {}
    result = prune(path, method, ratio=0.4, **calibration)
    layers = yaml.safe_load(result.spec.text)["layers"]
    dw = layers[3]["conv"]
    assert dw["out"] == dw["groups"] == layers[0]["conv"]["out"] < 16  # the depthwise conv follows its input
    grouped = layers[9]["conv"]
    assert grouped["groups"] == 4  # pruned by groups: each keeps as many channels
    for slot in ("layers[6].conv.out", "layers[9].conv.out"):
        kept = result.decision.kept[slot]
        assert len({sum(1 for k in kept if k // 6 == g) for g in range(4)}) == 1
        assert len(kept) % 4 == 0
    assert_equivalent(path, result)


def test_gated_weights_prune_to_plain(weights):
    path = weights("gated")
    result = prune(path, "gate")
    gated, _ = slimspec.load_model(path)
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(result.model.eval()(x), gated.eval()(x), atol=1e-5, rtol=1e-4)
    assert result.params[1] < result.params[0]


def test_old_specs_read_the_same():
    plain = SPEC.replace(", groups: 16", "").replace(", groups: 4", "")
    with_ones = SPEC.replace("groups: 16", "groups: 1").replace("groups: 4", "groups: 1")
    a, b = spec_from_text(plain).ir, spec_from_text(with_ones).ir
    assert count_params(a) == count_params(b) and a.slots == b.slots


@pytest.mark.parametrize("old,new,message", [
    ("groups: 4}", "groups: 5}", "layers[9].conv.groups: groups 5 does not divide the input width 24"),
    ("groups: 4}", "groups: 8}", None),  # 8 divides 24 and 24
    ("{out: 24, kernel: 3, padding: 1, groups: 4}", "{out: 18, kernel: 3, padding: 1, groups: 4}",
     "layers[9].conv.groups: groups 4 does not divide the out 18"),
    ("groups: 4}", "groups: 0}", "layers[9]"),
])
def test_group_errors(old, new, message):
    text = SPEC.replace(old, new)
    if message is None:
        spec_from_text(text)
        return
    with pytest.raises(SpecError) as info:
        spec_from_text(text, "g.yaml")
    assert message in str(info.value)
