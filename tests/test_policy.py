"""Policies: keep counts, the tie rule, thresholds, min_channels, round_to, patterns."""
from __future__ import annotations

import pytest
import torch

import slimspec
from slimspec.pruning.criteria import PruneError
from slimspec.pruning.patterns import matches
from slimspec.pruning.policy import PolicyConfig, decide, keep_count


@pytest.fixture(scope="module")
def ir():
    return slimspec.load_spec("digits_vgg").ir  # slots cfg[0]=32, cfg[1]=32, cfg[3]=64, cfg[4]=64, cfg[6]=128


def scores_for(ir, fill):
    return {path: fill(slot.size) for path, slot in ir.slots.items() if slot.prunable}


def test_keep_count_matches_li_reference_code():
    assert keep_count(16, 0.1) == 14 and keep_count(64, 0.1) == 57 and keep_count(32, 0.3) == 22
    assert keep_count(10, 0.9) == 1  # no float trap: 10 * (1 - 0.9) = 0.9999999999999998
    assert keep_count(5504, 0.7) == 1651


def test_ties_prune_earliest_channels_first(ir):
    scores = scores_for(ir, lambda n: torch.ones(n))
    decision = decide(ir, scores, PolicyConfig(ratio=0.25, scope="layer"))
    assert decision.kept["cfg[0]"] == tuple(range(8, 32))
    decision = decide(ir, scores, PolicyConfig(ratio=0.1, scope="global"))
    # global pool of 320 equal scores: the 32 pruned are the first 32 in network order (all of cfg[0]),
    # but min_channels=1 gives cfg[0] back its best channel (lowest index among equals)
    assert decision.kept["cfg[0]"] == (0,) and decision.clamped == ["cfg[0]"]
    assert decision.kept["cfg[1]"] == tuple(range(32))


def test_threshold_removes_scores_at_or_below(ir):
    scores = scores_for(ir, lambda n: torch.linspace(0, 1, n))
    decision = decide(ir, scores, PolicyConfig(threshold=0.5))
    for path, keep in decision.kept.items():
        if path in scores:
            assert all(float(scores[path][i]) > 0.5 for i in keep)
            assert all(float(scores[path][i]) <= 0.5 for i in set(range(len(scores[path]))) - set(keep))


def test_global_ratio_uses_one_threshold(ir):
    g = torch.Generator().manual_seed(0)
    scores = scores_for(ir, lambda n: torch.rand(n, generator=g))
    decision = decide(ir, scores, PolicyConfig(ratio=0.5, scope="global"))
    kept = [float(scores[p][i]) for p, keep in decision.kept.items() if p in scores for i in keep]
    assert len(kept) == keep_count(320, 0.5)
    assert min(kept) > decision.threshold


def test_min_channels_and_round_to(ir):
    scores = scores_for(ir, lambda n: torch.arange(n, dtype=torch.float))
    decision = decide(ir, scores, PolicyConfig(ratio=0.95, scope="layer", min_channels=4))
    assert len(decision.kept["cfg[0]"]) == 4 and decision.kept["cfg[0]"] == (28, 29, 30, 31)
    assert "cfg[0]" in decision.clamped
    decision = decide(ir, scores, PolicyConfig(ratio=0.3, scope="layer", round_to=8))
    assert all(len(decision.kept[p]) % 8 == 0 for p in scores)
    assert len(decision.kept["cfg[6]"]) == 96  # keep 89 -> rounded up to 96


def test_overrides_and_excludes(ir):
    scores = scores_for(ir, lambda n: torch.arange(n, dtype=torch.float))
    config = PolicyConfig(ratio=0.5, scope="layer", exclude=("cfg[6]",), overrides=(("cfg[0]", 0.25),))
    decision = decide(ir, scores, config)
    assert len(decision.kept["cfg[6]"]) == 128
    assert len(decision.kept["cfg[0]"]) == 24 and len(decision.kept["cfg[1]"]) == 16


@pytest.mark.parametrize("pattern,path,expected", [
    ("cfg[0]", "cfg[0]", True), ("cfg[0]", "cfg[01]", False), ("cfg[1]", "cfg[10]", False),
    ("stages[*].blocks[*]", "stages[2].blocks[8]", True),
    ("stages[*].blocks[*]", "stages[2].blocks[8][0]", True),
    ("stages[1]", "stages[1].blocks[3].inner[0]", True), ("stages[1]", "stages[10].blocks[0]", False),
    ("stages[0].blocks[*].select", "stages[0].blocks[3].select", True),
    ("stages[0].blocks[*].select", "stages[0].blocks[3].inner[0]", False),
])
def test_patterns(pattern, path, expected):
    assert matches(pattern, path) is expected


@pytest.mark.parametrize("kwargs", [{"ratio": 1.0}, {"ratio": -0.5}, {"min_channels": 0}, {"round_to": 0},
                                    {"scope": "everywhere"}, {"overrides": (("cfg[0]", 1.2),)}])
def test_bad_policy_values(kwargs):
    with pytest.raises(PruneError):
        PolicyConfig(**kwargs)
