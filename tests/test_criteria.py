"""Criteria score what their papers say; unstructured masks travel with the weights."""
from __future__ import annotations

import pytest
import torch

import slimspec
from slimspec.pruning.api import PruneError, prune
from slimspec.pruning.criteria import ScoreContext, criteria, get_criterion
from slimspec.pruning.criteria.attention import attention_change

from .conftest import randomize


@pytest.fixture
def model():
    return randomize(slimspec.build("digits_vgg", seed=0))


def context(model, calibration=None):
    return ScoreContext(model.spec.ir, model.state_dict(), model, calibration)


def test_registry_has_every_method():
    assert {"l1", "slimming", "gate", "sss", "attention", "attention-weight", "magnitude", "random"} <= set(criteria())
    with pytest.raises(PruneError, match="unknown method"):
        get_criterion("taylor")


def test_l1_is_the_filter_weight_sum(model):
    scores = get_criterion("l1").score(context(model))
    weight = model.state_dict()["features.3.conv.weight"]
    expected = torch.tensor([weight[j].abs().sum() for j in range(weight.shape[0])])
    torch.testing.assert_close(scores["cfg[3]"], expected)


def test_slimming_is_abs_gamma(model):
    with torch.no_grad():
        model.get_submodule("features.0.bn").weight[3] = -2.0
    scores = get_criterion("slimming").score(context(model))
    assert scores["cfg[0]"][3] == 2.0
    torch.testing.assert_close(scores["cfg[6]"], model.get_submodule("features.6.bn").weight.abs())


def test_attention_change_matches_the_definition():
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(2, 5, 9, generator=g)
    got = attention_change(maps)
    for n in range(2):
        full = maps[n].sum(0)
        for j in range(5):
            without = full - maps[n, j]
            expected = (full / full.norm() - without / without.norm()).abs().sum()
            torch.testing.assert_close(got[n, j], expected)


def test_attention_needs_and_uses_calibration(model, tmp_path):
    weights = tmp_path / "w.safetensors"
    slimspec.save_weights(model, model.spec, weights)
    with pytest.raises(PruneError, match="calibration"):
        prune(weights, "attention", ratio=0.5)
    result = prune(weights, "attention", ratio=0.5, calibration="digits", calibration_batches=2)
    assert result.params[1] < result.params[0]
    assert result.spec.data["pruned"]["calibration"] == "digits"


def test_a_dead_channel_scores_lowest_under_attention(model):
    with torch.no_grad():
        model.get_submodule("features.0.bn").weight[7] = 0
        model.get_submodule("features.0.bn").bias[7] = -5  # ReLU output is always 0
    batches = [torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))]
    scores = get_criterion("attention").score(context(model, batches))
    assert float(scores["cfg[0]"][7]) == 0.0 == float(scores["cfg[0]"].min())
    assert float(scores["cfg[0]"].max()) > 0


def test_random_is_seeded(model):
    a = get_criterion("random").score(ScoreContext(model.spec.ir, model.state_dict(), model, None, seed=1))
    b = get_criterion("random").score(ScoreContext(model.spec.ir, model.state_dict(), model, None, seed=1))
    c = get_criterion("random").score(ScoreContext(model.spec.ir, model.state_dict(), model, None, seed=2))
    assert all(torch.equal(a[k], b[k]) for k in a) and not torch.equal(a["cfg[0]"], c["cfg[0]"])


def test_magnitude_masks_travel_with_the_weights(model, tmp_path):
    weights = tmp_path / "w.safetensors"
    slimspec.save_weights(model, model.spec, weights)
    result = prune(weights, "magnitude", ratio=0.8)
    assert result.spec.data["cfg"] == model.spec.data["cfg"]  # widths unchanged
    out, out_weights = result.save(tmp_path / "m80.yaml")
    loaded, spec = slimspec.load_model(out_weights)
    assert loaded.mode == "masked"
    masks = {k: v for k, v in loaded.state_dict().items() if k.endswith("weight_mask")}
    total = sum(m.numel() for m in masks.values())
    zeros = sum(int((m == 0).sum()) for m in masks.values())
    assert zeros == total - int(total * 0.2 + 1e-9)
    conv = loaded.get_submodule("features.1.conv")
    assert torch.all(conv.weight[conv.weight_mask == 0] == 0)
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), result.model.eval()(x))
    # structured pruning of masked weights keeps the masks (sliced) and stays masked
    again = prune(out_weights, "l1", ratio=0.5)
    assert again.model.mode == "masked"


def test_magnitude_params_target(model, tmp_path):
    weights = tmp_path / "w.safetensors"
    slimspec.save_weights(model, model.spec, weights)
    result = prune(weights, "magnitude", target={"params": 0.3})
    assert result.params[1] <= 0.3 * result.params[0]
    with pytest.raises(PruneError, match="params"):
        prune(weights, "magnitude", target={"macs": 0.5})


def test_magnitude_layer_scope_prunes_each_tensor_alike(model, tmp_path):
    weights = tmp_path / "w.safetensors"
    slimspec.save_weights(model, model.spec, weights)
    result = prune(weights, "magnitude", ratio=0.5, scope="layer")
    for row in result.report:
        assert row.after == int(row.before * 0.5 + 1e-9)
    state = result.model.state_dict()
    conv = state["features.3.conv.weight"].abs()
    mask = state["features.3.conv.weight_mask"].bool()
    assert conv[mask].min() >= conv[~mask].max()  # the largest half survives
