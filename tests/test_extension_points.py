"""Extension points: what a new criterion or target metric needs is its class and one
registration line; plans, the CLI and the schema pick it up from the registries."""
from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

import slimspec
from slimspec.cli.main import cli
from slimspec.errors import PruneError
from slimspec.pruning.criteria import Criterion, ScoreContext, Scores, base as criteria_base
from slimspec.pruning import targets as targets_module
from slimspec.pruning.options import plan_schema

from .conftest import randomize


class LastChannelsFirst(Criterion):
    """A throwaway criterion: channel i scores i (so the first channels go first)."""

    name = "index-order"

    def score(self, ctx: ScoreContext) -> Scores:
        return {path: torch.arange(slot.size, dtype=torch.float32)
                for path, slot in ctx.ir.slots.items() if slot.prunable and slot.kind == "channel"}


@pytest.fixture
def index_order(monkeypatch):
    monkeypatch.setattr(criteria_base._CRITERIA, "_items", dict(criteria_base._CRITERIA._items))
    criteria_base.register_criterion(LastChannelsFirst)
    return LastChannelsFirst.name


def test_a_criterion_registered_at_runtime_works_from_a_plan_file(index_order, trained_weights, tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(f"method: {index_order}\nratio: 0.5\nscope: layer\n", encoding="utf-8")
    assert index_order in plan_schema()["properties"]["method"]["enum"]
    result = slimspec.prune(trained_weights("digits_vgg"), plan=plan)
    for path, keep in result.decision.kept.items():
        slot = result.parent.ir.slots[path]
        if slot.kind == "channel":
            assert keep == tuple(range(slot.size - len(keep), slot.size))  # the highest indices stay


def test_a_criterion_registered_at_runtime_works_from_the_cli(index_order, trained_weights, tmp_path):
    result = CliRunner().invoke(cli, ["prune", str(trained_weights("digits_vgg")), "-m", index_order,
                                      "--ratio", "0.5", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "params" in result.output


def test_a_target_metric_registered_at_runtime_is_a_plan_key(monkeypatch, trained_weights, tmp_path):
    monkeypatch.setattr(targets_module._TARGETS, "_items", dict(targets_module._TARGETS._items))

    @targets_module.register_target
    class ConvFilters(targets_module.TargetMetric):
        name = "filters"
        help = "conv output channels"

        def measure(self, ir, context):
            return float(sum(node.shape[0] for node in ir.nodes if node.op == "conv"))

    plan = tmp_path / "plan.yaml"
    plan.write_text("method: l1\ntarget: {filters: 0.5}\n", encoding="utf-8")
    result = slimspec.prune(trained_weights("digits_vgg"), plan=plan)
    metric = ConvFilters()
    ratio = metric.measure(result.spec.ir, None) / metric.measure(result.parent.ir, None)
    assert 0.4 < ratio <= 0.5


def test_untrained_weights_get_a_warning_listing_every_clamped_slot(tmp_path):
    model = slimspec.build("vgg19", seed=0)  # every BN gamma is 1: all scores tie
    weights = tmp_path / "w.safetensors"
    slimspec.save_weights(model, model.spec, weights)
    result = slimspec.prune(weights, "slimming", ratio=0.7)
    text = "\n".join(result.notes)
    assert "warning: every channel scored the same" in text


def test_many_clamped_slots_are_all_listed(tmp_path):
    model = randomize(slimspec.build("vgg19", seed=0))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight[: module.num_features // 2] = 0.0  # half the channels of every layer are dead
        model.get_submodule("features.0.bn").weight.zero_()  # ...and all of the first two layers'
        model.get_submodule("features.1.bn").weight.zero_()
    weights = tmp_path / "w.safetensors"
    slimspec.save_weights(model, model.spec, weights)
    result = slimspec.prune(weights, "slimming", threshold=0.0)
    clamped = [note for note in result.notes if "min_channels" in note]
    assert clamped and "cfg[0]" in clamped[0] and "cfg[1]" in clamped[0]


def test_weights_with_nan_are_refused_naming_the_tensor(tmp_path):
    model = slimspec.build("digits_vgg", seed=0)
    with torch.no_grad():
        model.get_submodule("features.0.conv").weight[0, 0, 0, 0] = float("nan")
    weights = tmp_path / "w.safetensors"
    slimspec.save_weights(model, model.spec, weights)
    with pytest.raises(PruneError, match=r"NaN or inf values in features\.0\.conv\.weight"):
        slimspec.prune(weights, "l1", ratio=0.5)


def test_fold_bias_moves_removed_constants_into_the_next_bn_running_mean(tmp_path):
    """An MLP with BN: a removed channel's constant ReLU(beta) lands in the next BN's running mean
    (a linear consumer, so the fold is exact: the pruned model equals the original)."""
    spec = slimspec.load_spec("slimspec: 1\nname: m\narch: mlp\ninput: [1, 8, 8]\nnum_classes: 10\n"
                              "cfg: [32, 16, 12]\nbatch_norm: true\n")
    model = randomize(slimspec.build(spec, seed=0))
    with torch.no_grad():
        bn = model.get_submodule("layers.0.bn")
        bn.weight[:10] = 0.0  # dead channels output the constant ReLU(beta)...
        bn.bias[:10] = torch.linspace(0.2, 1.0, 10)  # ...which is not zero
    weights = tmp_path / "w.safetensors"
    slimspec.save_weights(model, spec, weights)
    x = torch.randn(16, 1, 8, 8)
    folded = slimspec.prune(weights, "slimming", threshold=0.0, fold_bias=True, exclude=["cfg[1]", "cfg[2]"])
    dropped = slimspec.prune(weights, "slimming", threshold=0.0, exclude=["cfg[1]", "cfg[2]"])
    assert folded.decision.kept["cfg[0]"] == tuple(range(10, 32))
    with torch.no_grad():
        reference = model.eval()(x)
        assert torch.allclose(folded.model.eval()(x), reference, atol=1e-5)
        assert not torch.allclose(dropped.model.eval()(x), reference, atol=1e-3)


def test_a_flag_amount_replaces_the_plan_amount(trained_weights, tmp_path):
    """Flags override the plan: a --target given with a plan holding a ratio is not a conflict."""
    plan = tmp_path / "plan.yaml"
    plan.write_text("method: l1\nratio: 0.3\n", encoding="utf-8")
    result = slimspec.prune(trained_weights("digits_vgg"), plan=plan, target="macs=0.5")
    assert result.options.ratio is None and result.options.target == {"macs": 0.5}
    assert result.macs[1] <= 0.5 * result.macs[0]


@pytest.mark.parametrize("flag", ["ratio", "threshold", "percent"])
def test_non_finite_amounts_are_refused_by_name(trained_weights, flag):
    with pytest.raises(PruneError, match=f"{flag}: expected a finite number, got nan"):
        slimspec.prune(trained_weights("digits_vgg"), "slimming", **{flag: float("nan")})
