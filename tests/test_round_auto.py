"""``--round-to auto``: a quick probe picks the multiple, resolved into an integer before the policy decides."""
from __future__ import annotations

import pytest

import slimspec
from slimspec.errors import PruneError
from slimspec.latency import rounding
from slimspec.latency.rounding import MULTIPLES, RoundChoice, heaviest_layer, probe
from slimspec.pruning.api import prune
from slimspec.pruning.criteria import get_criterion
from slimspec.pruning.options import PruneOptions, load_plan

from .conftest import randomize


@pytest.fixture
def weights(tmp_path):
    model = randomize(slimspec.build("digits_vgg", seed=0), 0)
    path = tmp_path / "w.safetensors"
    slimspec.save_weights(model, model.spec, path)
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SLIMSPEC_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_probe_times_the_heaviest_conv_and_caches_its_choice(cache, monkeypatch):
    ir = slimspec.load_spec("digits_vgg").ir
    name, layer = heaviest_layer(ir)
    assert layer.shape.op == "conv" and not layer.cout_fixed
    choice = probe(ir, threads=1, min_run_time=0.001)
    assert choice.multiple in MULTIPLES and choice.layer == name and choice.threads == 1
    assert choice.relative[1] == pytest.approx(1.0) and set(choice.relative) == set(MULTIPLES)
    assert all(choice.relative[choice.multiple] <= t * (1 + 1e-9) for t in choice.relative.values()
               if t >= choice.relative[choice.multiple])  # the pick is the fastest (ties: the smaller)
    assert len(list(cache.rglob("round-*.json"))) == 1

    def no_timing(*args, **kwargs):
        raise AssertionError("timed again instead of reading the cache")

    monkeypatch.setattr(rounding, "time_call", no_timing)
    again = probe(ir, threads=1)
    assert again.multiple == choice.multiple and again.relative == choice.relative


def test_probe_needs_a_prunable_conv():
    assert probe(slimspec.load_spec("digits_mlp").ir, use_cache=False).multiple == 1


def test_auto_resolves_to_the_probed_multiple_before_the_decision(weights, tmp_path, monkeypatch):
    monkeypatch.setattr(rounding, "probe", lambda ir, **kw: RoundChoice(8, {1: 1.0, 8: 0.5}, "x", "eager", 2))
    auto = prune(weights, "l1", ratio=0.6, round_to="auto")
    fixed = prune(weights, "l1", ratio=0.6, round_to=8)
    assert auto.options.round_to == 8 and auto.spec.data["pruned"]["round_to"] == 8
    assert any(note.startswith("round-to auto: 8") for note in auto.notes)
    ir = auto.parent.ir
    for path, keep in auto.decision.kept.items():
        assert len(keep) % 8 == 0 or len(keep) == ir.slots[path].size
    assert auto.decision.kept == fixed.decision.kept
    a, b = auto.save(tmp_path / "a.yaml")[1], fixed.save(tmp_path / "b.yaml")[1]
    assert a.read_bytes() == b.read_bytes()


def test_auto_in_plans_and_flags_and_its_refusals(run, weights, tmp_path, monkeypatch):
    assert load_plan({"method": "l1", "ratio": 0.5, "round_to": "auto"})["round_to"] == "auto"
    with pytest.raises(slimspec.SpecError):
        load_plan({"method": "l1", "ratio": 0.5, "round_to": "fast"})
    options = PruneOptions.resolve(method="l1", ratio=0.5, round_to="auto")
    with pytest.raises(PruneError, match="'auto' is resolved by prune"):
        options.policy(get_criterion("l1"))
    with pytest.raises(PruneError, match="expected an integer >= 1 or 'auto'"):
        PruneOptions.resolve(method="l1", ratio=0.5, round_to="fast")
    monkeypatch.setattr(rounding, "probe", lambda ir, **kw: RoundChoice(4, {1: 1.0, 4: 0.9}, "x", "eager", 1))
    result = run("prune", weights, "-m", "l1", "--ratio", "0.5", "--round-to", "auto", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert "round-to auto: 4" in result.output
    result = run("prune", weights, "-m", "l1", "--ratio", "0.5", "--round-to", "fast", "--dry-run")
    assert result.exit_code == 2 and "expected an integer >= 1 or 'auto'" in result.output
