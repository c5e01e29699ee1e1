"""``percent``: Network Slimming's own threshold rule, checked against a re-implementation of the
reference scripts' mask computation (network-slimming ``vggprune.py`` / ``resprune.py`` /
``denseprune.py``) on VGG-19, PreResNet-164 and DenseNet-40, ties and whole ``N * p`` included."""
from __future__ import annotations

import pytest
import torch
import yaml
from click.testing import CliRunner

import slimspec
from slimspec.cli.main import cli
from slimspec.ir.ops import slot_sources
from slimspec.pruning.api import PruneError, prune
from slimspec.pruning.criteria import ScoreContext, get_criterion
from slimspec.pruning.policy import PolicyConfig, decide, keep_count

from .test_prune_exact import assert_equivalent

PERCENTS = [0.25, 0.4, 0.5, 0.6, 0.7]


def bn2d_nodes(ir):
    return [node for node in ir.nodes if node.op == "bn" and len(node.shape) == 3]


def gammas(ir, seed: int, rounded: bool) -> dict[str, torch.Tensor]:
    """A state with only BN gammas (all the reference reads); signed, some rounded to 0.01 (ties)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for node in bn2d_nodes(ir):
        gamma = torch.randn(node.shape[0], generator=g) * torch.rand(1, generator=g)
        state[f"{node.name}.weight"] = (gamma * 100).round() / 100 if rounded else gamma
    return state


def reference_masks(ir, state, percent: float) -> dict[str, torch.Tensor]:
    """vggprune.py, line for line: pool |gamma| of every BatchNorm2d, sort, threshold, mask = gt."""
    total = sum(state[f"{n.name}.weight"].shape[0] for n in bn2d_nodes(ir))
    bn = torch.zeros(total)
    index = 0
    for node in bn2d_nodes(ir):
        size = state[f"{node.name}.weight"].shape[0]
        bn[index:(index + size)] = state[f"{node.name}.weight"].abs().clone()
        index += size
    y, i = torch.sort(bn)
    thre_index = int(total * percent)
    thre = y[thre_index]
    return {node.name: state[f"{node.name}.weight"].abs().gt(thre) for node in bn2d_nodes(ir)}


def slimspec_decision(ir, state, percent: float):
    scores = get_criterion("slimming").score(ScoreContext(ir, state, torch.nn.Module()))
    return decide(ir, scores, PolicyConfig(percent=percent, scope="global")), scores


@pytest.fixture(scope="module", params=["vgg19", "preresnet164", "densenet40"])
def ir(request):
    return slimspec.load_spec(request.param).ir


@pytest.mark.parametrize("rounded", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("percent", PERCENTS)
def test_percent_keeps_the_reference_channels(ir, percent, rounded):
    state = gammas(ir, seed=int(percent * 100), rounded=rounded)
    masks = reference_masks(ir, state, percent)
    decision, scores = slimspec_decision(ir, state, percent)
    covered = set()
    clamped = []
    for path, sources in slot_sources(ir).items():
        if ir.slots[path].kind not in ("channel", "select"):
            continue
        for src in (s for s in sources if s.kind == "bn"):
            want = [k for k, pos in enumerate(src.positions) if masks[src.node][pos]]
            covered.update((src.node, pos) for pos in src.positions)
            if want:
                assert list(decision.kept[path]) == want, (path, percent)
            else:  # the reference empties the layer; slimspec keeps its best channel and reports it
                assert decision.kept[path] == (int(torch.argmax(scores[path])),)
                clamped.append(path)
    # every BatchNorm2d channel the reference pools is scored by exactly one prunable slot
    assert covered == {(n.name, i) for n in bn2d_nodes(ir) for i in range(n.shape[0])}
    assert sorted(decision.clamped) == sorted(clamped)
    removed = sum(int((~m).sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    if not rounded:  # distinct gammas: exactly int(N * p) + 1 go (the ratio rule removes N - floor(N(1-p)))
        assert removed == int(total * percent) + 1
        if (total * percent).is_integer():
            assert removed == total - keep_count(total, percent) + 1
    else:
        assert removed >= int(total * percent) + 1


def test_ties_make_percent_and_ratio_differ():
    """With gammas rounded to 0.01 the threshold is tied: percent removes every tied channel."""
    ir = slimspec.load_spec("vgg19").ir
    state = gammas(ir, seed=3, rounded=True)
    by_percent, scores = slimspec_decision(ir, state, 0.5)
    by_ratio = decide(ir, scores, PolicyConfig(ratio=0.5, scope="global"))
    kept = lambda d: sum(len(d.kept[p]) for p in scores)  # noqa: E731
    assert kept(by_ratio) == keep_count(5504, 0.5) + len(by_ratio.clamped) == 2752 + len(by_ratio.clamped)
    assert kept(by_percent) < kept(by_ratio)
    assert all(float(scores[p][i]) > by_percent.threshold for p in scores for i in by_percent.kept[p]
               if p not in by_percent.clamped)


def test_layer_scope_applies_the_rule_per_slot():
    ir = slimspec.load_spec("digits_vgg").ir
    scores = {p: torch.arange(s.size, dtype=torch.float) for p, s in ir.slots.items() if s.prunable}
    decision = decide(ir, scores, PolicyConfig(percent=0.5, scope="layer"))
    # cfg[0] has 32 channels: threshold = sorted[16] = 16, scores 0..16 go
    assert decision.kept["cfg[0]"] == tuple(range(17, 32))


def test_percent_and_ratio_are_exclusive():
    with pytest.raises(PruneError, match="percent or ratio"):
        PolicyConfig(percent=0.5, ratio=0.5)
    with pytest.raises(PruneError, match=r"percent: a pruning ratio must be in \[0, 1\)"):
        PolicyConfig(percent=1.0)


def test_prune_densenet_with_percent_end_to_end(tmp_path):
    """prune(percent=0.4) on a DenseNet with ties: the reference's channels, provenance, pruned == masked."""
    model = slimspec.build("digits_densenet")
    state = gammas(model.spec.ir, seed=7, rounded=True)
    with torch.no_grad():
        for key, value in state.items():
            model.state_dict()[key].copy_(value)
    weights = tmp_path / "d.safetensors"
    slimspec.save_weights(model.eval(), model.spec, weights)
    result = prune(weights, "slimming", percent=0.4)
    masks = reference_masks(model.spec.ir, state, 0.4)
    kept_total = sum(len(result.decision.kept[row.slot]) for row in result.report if row.kind == "select")
    assert kept_total == sum(int(m.sum()) for m in masks.values()) + len(result.decision.clamped)
    assert result.spec.data["pruned"]["percent"] == 0.4
    assert result.spec.data["pruned"]["threshold"] > 0
    assert_equivalent(weights, result)


def test_cli_percent_and_plan(tmp_path, trained_weights):
    weights = trained_weights("digits_vgg")
    runner = CliRunner()
    out = runner.invoke(cli, ["prune", str(weights), "-m", "slimming", "--percent", "0.5", "--out",
                              str(tmp_path / "a.yaml")])
    assert out.exit_code == 0, out.output
    assert "threshold" in out.output
    plan = tmp_path / "plan.yaml"
    plan.write_text("method: slimming\npercent: 0.5\n")
    out = runner.invoke(cli, ["prune", str(weights), "--plan", str(plan), "--out", str(tmp_path / "b.yaml")])
    assert out.exit_code == 0, out.output
    a, b = (yaml.safe_load((tmp_path / f"{n}.yaml").read_text()) for n in "ab")
    assert a["cfg"] == b["cfg"] and a["pruned"]["percent"] == 0.5
    out = runner.invoke(cli, ["prune", str(weights), "-m", "slimming", "--percent", "0.5", "--ratio", "0.5",
                              "--dry-run"])
    assert out.exit_code == 1 and "give either percent or ratio, not both" in out.output
    plan.write_text("method: slimming\npercent: 1.5\n")
    out = runner.invoke(cli, ["prune", str(weights), "--plan", str(plan), "--dry-run"])
    assert out.exit_code == 1 and "percent" in out.output


def test_stock_network_slimming_plan_uses_percent():
    from pathlib import Path

    from slimspec.pruning.options import load_plan

    plan = load_plan(Path(__file__).resolve().parents[1] / "examples" / "plans" / "vgg19_slimming_70.yaml")
    assert plan["percent"] == 0.7 and "ratio" not in plan


@pytest.mark.parametrize("other", [{"ratio": 0.0}, {"threshold": 0.0}])
def test_percent_with_a_zero_amount_is_refused_not_ignored(trained_weights, other):
    with pytest.raises(PruneError, match="give either percent or"):
        slimspec.prune(trained_weights("digits_vgg"), "slimming", percent=0.3, **other)
