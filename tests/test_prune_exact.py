"""The pruned plain model computes exactly what the masked original computes (eval mode)."""
from __future__ import annotations

import pytest
import torch

import slimspec
from slimspec.pruning.api import PruneError, prune
from slimspec.pruning.criteria import criteria
from slimspec.pruning.masking import apply_channel_masks

from .conftest import DIGITS_SPECS

# every registered structured criterion that works on plain weights: a new one is tested here automatically
STRUCTURED = sorted(name for name, c in criteria().items() if c.structured and not c.needs_gates)
GATED = sorted(name for name, c in criteria().items() if c.needs_gates)


def masked_reference(weights, decision):
    model, spec = slimspec.load_model(weights)
    masked = slimspec.build(spec, "masked")
    masked.load_state_dict(model.state_dict(), strict=False)
    return apply_channel_masks(masked, spec.ir, decision.kept).eval(), spec


def assert_equivalent(weights, result, atol=1e-5):
    reference, spec = masked_reference(weights, result.decision)
    x = torch.randn(16, *spec.ir.input_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, actual = reference(x), result.model.eval()(x)
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, atol=atol, rtol=1e-4)


@pytest.mark.parametrize("name", DIGITS_SPECS)
@pytest.mark.parametrize("method", STRUCTURED)
def test_pruned_equals_masked(trained_weights, name, method):
    weights = trained_weights(name)
    if method == "slimming" and name == "digits_mlp":  # no BatchNorm to read scales from
        with pytest.raises(PruneError, match="found nothing to score"):
            prune(weights, method, ratio=0.4)
        return
    calibration = {"calibration": "digits", "calibration_batches": 1} if method == "attention" else {}
    result = prune(weights, method, ratio=0.4, **calibration)
    assert result.params[1] < result.params[0]
    assert_equivalent(weights, result)


@pytest.mark.parametrize("name", ["digits_resnet"])
def test_stream_pruning_equals_masked(trained_weights, name):
    weights = trained_weights(name)
    result = prune(weights, "l1", ratio=0.3, prune_stream=True)
    stream = [row for row in result.report if row.kind == "stream"]
    assert stream and all(row.after < row.before for row in stream)
    assert_equivalent(weights, result)


@pytest.mark.parametrize("name", DIGITS_SPECS)
@pytest.mark.parametrize("method", GATED)
def test_gated_weights_prune_to_plain(trained_weights, name, method):
    """Gates at zero are removed; the rest fold into BN; output equals the gated original."""
    weights = trained_weights(name, "gated")
    result = prune(weights, method)
    gated, _ = slimspec.load_model(weights)
    x = torch.randn(8, *result.parent.ir.input_shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(result.model.eval()(x), gated.eval()(x), atol=1e-5, rtol=1e-4)
    assert result.params[1] < result.params[0]


def test_resnet20_cifar_shape_exactness(trained_weights):
    weights = trained_weights("resnet20")
    result = prune(weights, "slimming", ratio=0.5)
    assert_equivalent(weights, result)


@pytest.mark.parametrize("name", ["digits_resnet", "digits_preresnet", "resnet20"])
def test_zero_block_gate_removes_the_block(tmp_path, name):
    """SSS on residual nets: a block whose gate is zero leaves the spec; the rest transplant by name."""
    from .conftest import randomize

    model = randomize(slimspec.build(name, "gated", seed=0))
    with torch.no_grad():
        model.get_submodule("layer1.1.gate").weight.zero_()
        for gate in [m for n, m in model.named_modules() if n.endswith(".gate") and m.weight.numel() == 1]:
            if gate is not model.get_submodule("layer1.1.gate"):
                gate.weight.fill_(0.8)
    weights = tmp_path / "gated.safetensors"
    slimspec.save_weights(model, model.spec, weights)
    result = prune(weights, "gate")
    stage0 = result.spec.data["stages"][0]["blocks"]
    before = model.spec.data["stages"][0]["blocks"]
    assert len(stage0) == (before if isinstance(before, int) else len(before)) - 1
    x = torch.randn(4, *model.spec.ir.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(result.model.eval()(x), model.eval()(x), atol=1e-5, rtol=1e-4)


def test_fold_bias_keeps_the_removed_channels_constant_output(tmp_path):
    """Channels with gamma = 0 output ReLU(beta); folding it into the classifier bias is exact."""
    from .conftest import randomize

    model = randomize(slimspec.build("digits_vgg", seed=0))
    with torch.no_grad():
        bn = model.get_submodule("features.6.bn")
        bn.weight[:40] = 0
        bn.bias[:40] = 0.3
    weights = tmp_path / "w.safetensors"
    slimspec.save_weights(model, model.spec, weights)
    folded = prune(weights, "slimming", threshold=0.0, fold_bias=True, exclude=["cfg[0]", "cfg[1]", "cfg[3]", "cfg[4]"])
    assert folded.spec.data["cfg"][6] == 128 - 40
    x = torch.randn(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        original = model.eval()(x)
        torch.testing.assert_close(folded.model.eval()(x), original, atol=1e-5, rtol=1e-4)
        dropped = folded.variants["bias dropped"].eval()(x)
    assert (dropped - original).abs().max() > 1e-2
