"""One route from options to the policy: ``PruneOptions.policy``, taken by prune, its target search,
``plot gammas`` and ``sensitivity``; the policy's values are checked once, by ``PolicyConfig``."""
from __future__ import annotations

import math

import pytest
from torch import nn

import slimspec
from slimspec.errors import PruneError, SlimspecError
from slimspec.pruning.criteria import get_criterion
from slimspec.pruning.options import PruneOptions
from slimspec.pruning.policy import PolicyConfig


def test_the_policy_carries_every_policy_option():
    options = PruneOptions.resolve(method="slimming", percent=0.4, scope="layer", min_channels=3, round_to=4,
                                   exclude=["cfg[6]"], overrides={"cfg[0]": 0.25}, prune_stream=True)
    assert options.policy(get_criterion("slimming")) == PolicyConfig(
        percent=0.4, scope="layer", min_channels=3, round_to=4, exclude=("cfg[6]",), overrides=(("cfg[0]", 0.25),),
        prune_stream=True)


def test_defaults_come_from_the_criterion():
    gate = get_criterion("gate")
    assert PruneOptions.resolve(method="gate").policy(gate) == PolicyConfig(
        threshold=gate.default_threshold, scope=gate.default_scope, prune_blocks=True)
    # the default threshold is for "nothing said": an override or a target says something
    assert PruneOptions.resolve(method="gate", overrides={"cfg[0]": 0.5}).policy(gate).threshold is None
    assert PruneOptions.resolve(method="gate", target="macs=0.5").policy(gate).empty
    l1 = get_criterion("l1")
    assert PruneOptions.resolve(method="l1").policy(l1) == PolicyConfig(scope="layer")


def test_a_searched_ratio_replaces_the_amount_and_keeps_the_rest():
    slimming = get_criterion("slimming")
    options = PruneOptions.resolve(method="slimming", threshold=0.2, min_channels=2, exclude=["cfg[0]"])
    policy = options.policy(slimming, ratio=0.3)  # what a target search asks for
    assert (policy.ratio, policy.threshold, policy.percent) == (0.3, None, None)
    assert policy.min_channels == 2 and policy.exclude == ("cfg[0]",) and policy.scope == "global"


@pytest.mark.parametrize("values, message", [
    ({"percent": 0.5, "ratio": 0.5}, "give either percent or ratio, not both"),
    ({"percent": 0.5, "threshold": 0.0}, "give either percent or threshold, not both"),
    ({"ratio": 0.5, "threshold": 0.0}, "give either threshold or ratio, not both"),
    ({"ratio": 0.0, "threshold": 0.1, "percent": 0.2}, "give either percent or threshold, not both"),
    ({"ratio": 1.0}, r"ratio: a pruning ratio must be in \[0, 1\), got 1.0"),
    ({"percent": 50.0}, r"percent: a pruning ratio must be in \[0, 1\), got 50.0"),
    ({"threshold": math.inf}, "threshold: expected a finite number, got inf"),
    ({"ratio": math.nan}, "ratio: expected a finite number, got nan"),
    ({"overrides": {"cfg[0]": 1.5}}, r"overrides\[cfg\[0\]\]: a pruning ratio must be in \[0, 1\), got 1.5"),
    ({"min_channels": 0}, "min_channels: must be >= 1, got 0"),
    ({"round_to": 0}, "round_to: must be >= 1, got 0"),
    ({"scope": "everywhere"}, "scope: expected one of global, layer, got 'everywhere'"),
])
def test_options_and_policy_refuse_bad_values_with_the_policys_one_check(values, message, tmp_path):
    policy_values = {k: tuple(v.items()) if k == "overrides" else v for k, v in values.items()}
    with pytest.raises(PruneError, match=f"^{message}$"):
        PolicyConfig(**policy_values)
    with pytest.raises(PruneError, match=f"^{message}$"):
        PruneOptions.resolve(method="slimming", **values)
    # checked before any weights are read: a missing weights file is not what is reported
    with pytest.raises(PruneError, match=f"^{message}$"):
        slimspec.prune(tmp_path / "missing.safetensors", "slimming", **values)


@pytest.mark.parametrize("values, message", [
    ({"ratio": 0.5, "target": "macs=0.5"}, "give either ratio or target, not both"),
    ({"ratio": 0.0, "target": "macs=0.5"}, "give either ratio or target, not both"),
    ({"percent": 0.5, "target": "macs=0.5"}, "give either percent or target, not both"),
    ({"threshold": 0.1, "target": "macs=0.5"}, "give either threshold or target, not both"),
])
def test_a_target_excludes_every_other_amount(values, message):
    with pytest.raises(PruneError, match=f"^{message}$"):
        PruneOptions.resolve(method="slimming", **values)


def test_prune_and_its_target_search_decide_through_the_options_policy(trained_weights, monkeypatch):
    weights = trained_weights("digits_vgg")
    seen = []
    original = PruneOptions.policy

    def recorded(self, criterion, **kwargs):
        policy = original(self, criterion, **kwargs)
        seen.append(policy)
        return policy

    monkeypatch.setattr(PruneOptions, "policy", recorded)
    result = slimspec.prune(weights, "slimming", target="macs=0.5", exclude=["cfg[6]"], min_channels=3)
    searched = [p for p in seen if p.ratio is not None]
    assert len(searched) > 5 and all(p.exclude == ("cfg[6]",) and p.min_channels == 3 for p in searched)
    assert result.spec.data["pruned"]["ratio"] == round(searched[-1].ratio, 6)  # the last one decided
    assert result.decision.kept["cfg[6]"] == tuple(range(128))


def test_a_module_takes_its_input_shape_by_name_only():
    module = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 14 * 14, 4))
    result = slimspec.prune(module, "l1", ratio=0.5, input_shape=(3, 16, 16))
    assert result.spec.ir.input_shape == (3, 16, 16)
    with pytest.raises(SlimspecError, match=r"^\(3, 16, 16\): no such spec file"):  # spec= is a spec, never a shape
        slimspec.prune(module, "l1", ratio=0.5, spec=(3, 16, 16))
