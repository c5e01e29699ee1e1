"""``--round-to auto``: the prune's network rounded up to each multiple, the networks timed, the choice an integer."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

import slimspec
from slimspec.errors import MissingExtraError, PruneError
from slimspec.latency import rounding, runtimes
from slimspec.latency.rounding import MULTIPLES, TIE, RoundChoice, pick, probe
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


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SLIMSPEC_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def networks(weights, ratio=0.6):
    """multiple -> the spec prune writes with that round_to (what the probe receives)."""
    return {m: prune(weights, "l1", ratio=ratio, round_to=m).spec for m in MULTIPLES}


def widths(spec) -> list[int]:
    return [size for size in spec.data["cfg"] if isinstance(size, int)]


def test_pick_takes_the_largest_multiple_within_the_tie_of_the_fastest():
    assert pick({1: 1.0, 4: 0.9, 8: 0.8, 16: 0.8 * (1 + TIE / 2), 32: 0.8 * (1 + 2 * TIE)}) == 16
    assert pick({1: 1.0, 8: 1.0 + 2 * TIE}) == 1  # rounding up must not cost more than the tie
    assert pick({1: 1.0, 16: 1.0 + TIE / 2}) == 16  # channels kept at no extra time


def fake_minima(ms_of):
    """A stand-in for the timing: each runner's time from ``ms_of(runtime, batch, network widths)``."""
    def prepare(runtime):
        def run(model, x, threads):
            convs = [m.out_channels for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
            return (runtime, x.shape[0], tuple(convs))
        return run

    def minima(runners, min_run_time, threads):
        return [ms_of(*runner) for runner in runners]
    return prepare, minima


def with_quick(monkeypatch, name, quick):
    """Registry entry ``name`` with its quick preparation replaced (for this test only)."""
    monkeypatch.setitem(runtimes._RUNTIMES._items, name, replace(runtimes.get_runtime(name), quick=quick))


def test_probe_times_each_network_in_each_runtime_and_picks_the_fastest_pair(weights, monkeypatch):
    nets = networks(weights)
    distinct = {tuple(widths(spec)) for spec in nets.values()}
    assert len(distinct) > 2  # the multiples give different networks here
    sixteen = tuple(widths(nets[16]))

    def ms_of(runtime, batch, convs):  # channels-last runs the unrounded network fastest, onnxruntime the 16 one
        if runtime == "onnxruntime":
            return batch * (0.5 if convs == sixteen else 4.0)
        return batch * {"eager": 3.0, "channels-last": 2.0}[runtime]
    prepare, minima = fake_minima(ms_of)
    for name in runtimes.runtime_names():
        with_quick(monkeypatch, name, prepare(name))
    timed = []
    monkeypatch.setattr(rounding, "_minima", lambda runners, *a: timed.append(list(runners)) or minima(runners, *a))
    choice = probe(nets, threads=1)
    assert choice.multiple == 16 and choice.runtime == "onnxruntime"
    assert set(choice.candidates) == set(runtimes.runtime_names())
    assert choice.relative[1] == 1.0 and choice.relative[16] == pytest.approx(0.5 / 4.0)  # in onnxruntime
    assert choice.macs[1] == 1.0 and choice.macs[32] >= choice.macs[16] > 1.0
    # one alternating pass: each distinct network in each runtime at both batch sizes
    (runners,) = timed
    assert len(runners) == len(runtimes.runtime_names()) * len(distinct) * 2
    assert {r[2] for r in runners} == distinct and {r[1] for r in runners} == {1, rounding.PROBE_BATCH}
    assert "round-to auto: 16" in choice.describe() and "onnxruntime, the fastest of" in choice.describe()


def test_probe_takes_the_runtime_asked_for_and_skips_runtimes_that_cannot_run(weights, monkeypatch):
    nets = networks(weights)
    prepare, minima = fake_minima(lambda runtime, batch, convs: float(sum(convs)))  # time grows with the widths

    def missing(model, x, threads):
        raise MissingExtraError("ONNX Runtime", "onnx", "onnxruntime")
    for name in runtimes.runtime_names():
        with_quick(monkeypatch, name, missing if name == "onnxruntime" else prepare(name))
    monkeypatch.setattr(rounding, "_minima", minima)
    chosen = probe(nets, threads=1, use_cache=False)
    assert chosen.multiple == 1 and "onnxruntime" not in chosen.candidates  # wider is slower: no rounding
    asked = probe(nets, runtime="channels-last", threads=1, use_cache=False)
    assert asked.runtime == "channels-last" and asked.candidates == ()


def test_probe_of_one_network_times_nothing_and_the_cache_answers_again(weights, cache, monkeypatch):
    same = prune(weights, "l1", ratio=0.0, round_to=1).spec  # nothing pruned: every multiple gives this network
    monkeypatch.setattr(rounding, "_minima", lambda *a: pytest.fail("timed one network"))
    alone = probe(dict.fromkeys(MULTIPLES, same))
    assert alone.multiple == 1 and alone.describe() == ("round-to auto: 1 (every multiple of 1, 4, 8, 16, 32 gives "
                                                        "the same network: nothing to time)")
    monkeypatch.undo()
    monkeypatch.setenv("SLIMSPEC_CACHE", str(cache))
    nets = networks(weights)
    first = probe(nets, runtime="eager", threads=1, min_run_time=0.001)  # really timed
    assert first.multiple in MULTIPLES and first.relative[1] == 1.0
    assert len(list(cache.rglob("round-*.json"))) == 1
    monkeypatch.setattr(rounding, "_minima", lambda *a: pytest.fail("timed again instead of reading the cache"))
    again = probe(nets, runtime="eager", threads=1, min_run_time=0.001)
    assert again == first


def test_probe_needs_the_unrounded_network(weights):
    nets = networks(weights)
    with pytest.raises(ValueError, match="unrounded"):
        probe({m: nets[m] for m in (4, 8)})


def test_quick_onnxruntime_runs_the_same_model():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    model = randomize(slimspec.build("digits_vgg", seed=0), 0).eval()
    x = torch.randn(3, *model.spec.ir.input_shape)
    (out,) = runtimes.get_runtime("onnxruntime").prepare_quick(model, x, 1)()
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(out), model(x), atol=1e-4)


def test_auto_prunes_as_the_chosen_multiple_does(weights, tmp_path, monkeypatch):
    seen = {}

    def fake_probe(nets, **kw):
        seen.update(nets=nets, **kw)
        return RoundChoice(8, {m: 1.0 for m in nets}, "eager", 2)
    monkeypatch.setattr(rounding, "probe", fake_probe)
    auto = prune(weights, "l1", ratio=0.6, round_to="auto", target_options={"threads": 2})
    fixed = prune(weights, "l1", ratio=0.6, round_to=8)
    assert set(seen["nets"]) == set(MULTIPLES) and seen["threads"] == 2 and seen["runtime"] is None
    assert widths(seen["nets"][8]) == widths(fixed.spec) and widths(seen["nets"][1]) == widths(
        prune(weights, "l1", ratio=0.6).spec)
    assert auto.options.round_to == 8 and auto.spec.data["pruned"]["round_to"] == 8
    assert any(note.startswith("round-to auto: 8") for note in auto.notes)
    ir = auto.parent.ir
    for path, keep in auto.decision.kept.items():
        assert len(keep) % 8 == 0 or len(keep) == ir.slots[path].size
    assert auto.decision.kept == fixed.decision.kept
    a, b = auto.save(tmp_path / "a.yaml")[1], fixed.save(tmp_path / "b.yaml")[1]
    assert a.read_bytes() == b.read_bytes()


def test_auto_with_a_target_rounds_each_search_and_drops_the_multiples_that_cannot_reach_it(weights, monkeypatch):
    seen = {}

    def fake_probe(nets, **kw):
        seen.update(nets)
        return RoundChoice(4, {m: 1.0 for m in nets}, "eager", 1)
    monkeypatch.setattr(rounding, "probe", fake_probe)
    auto = prune(weights, "l1", target={"macs": 0.5}, round_to="auto")
    fixed = prune(weights, "l1", target={"macs": 0.5}, round_to=4)
    assert auto.decision.kept == fixed.decision.kept and auto.macs == fixed.macs
    with pytest.raises(PruneError, match="out of reach"):
        prune(weights, "l1", target={"macs": 0.5}, round_to=32)
    assert 1 in seen and 4 in seen and 32 not in seen  # 32 cannot reach half the MACs on this small network
    for multiple, spec in seen.items():
        assert spec.data["cfg"] == prune(weights, "l1", target={"macs": 0.5}, round_to=multiple).spec.data["cfg"]


def test_auto_in_plans_and_flags_and_its_refusals(run, weights, tmp_path, monkeypatch):
    assert load_plan({"method": "l1", "ratio": 0.5, "round_to": "auto"})["round_to"] == "auto"
    with pytest.raises(slimspec.SpecError):
        load_plan({"method": "l1", "ratio": 0.5, "round_to": "fast"})
    options = PruneOptions.resolve(method="l1", ratio=0.5, round_to="auto")
    with pytest.raises(PruneError, match="'auto' is resolved by prune"):
        options.policy(get_criterion("l1"))
    with pytest.raises(PruneError, match="expected an integer >= 1 or 'auto'"):
        PruneOptions.resolve(method="l1", ratio=0.5, round_to="fast")
    monkeypatch.setattr(rounding, "probe", lambda nets, **kw: RoundChoice(4, {m: 1.0 for m in nets}, "eager", 1))
    result = run("prune", weights, "-m", "l1", "--ratio", "0.5", "--round-to", "auto", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert "round-to auto: 4" in result.output
    result = run("prune", weights, "-m", "l1", "--ratio", "0.5", "--round-to", "fast", "--dry-run")
    assert result.exit_code == 2 and "expected an integer >= 1 or 'auto'" in result.output
