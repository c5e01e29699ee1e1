"""Build modes: masked channels produce exactly zero; binary gates use a straight-through estimator."""
from __future__ import annotations

import torch

import slimspec
from slimspec.nn import ChannelMask, Gate, MaskedConv2d


def test_masked_channel_outputs_exact_zero():
    model = slimspec.build("digits_vgg", "masked", seed=0).eval()
    seen = {}
    mask = model.get_submodule("features.0.gate")
    mask.mask[[1, 5]] = 0
    model.get_submodule("features.0.gate").register_forward_hook(lambda m, i, o: seen.setdefault("out", o))
    model(torch.randn(4, 1, 8, 8))
    assert torch.all(seen["out"][:, [1, 5]] == 0)
    assert seen["out"][:, 0].abs().sum() > 0


def test_weight_mask_zeroes_weights_in_forward():
    conv = MaskedConv2d(2, 3, 3, padding=1, bias=False)
    x = torch.randn(1, 2, 5, 5)
    conv.weight_mask.zero_()
    assert torch.all(conv(x) == 0)


def test_binary_gate_forward_and_straight_through_backward():
    gate = Gate(3, binary=True)
    with torch.no_grad():
        gate.weight.copy_(torch.tensor([0.7, 0.0, -0.2]))
    x = torch.ones(2, 3, 4, 4, requires_grad=True)
    y = gate(x)
    assert torch.equal(y[0, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]))  # forward: binarized
    y.sum().backward()
    assert torch.allclose(gate.weight.grad, torch.full((3,), 32.0))  # backward: to the float gate


def test_float_gate_scales_channels():
    gate = Gate(2)
    with torch.no_grad():
        gate.weight.copy_(torch.tensor([0.5, 2.0]))
    out = gate(torch.ones(1, 2, 1, 1))
    assert out.flatten().tolist() == [0.5, 2.0]


def test_gated_mode_has_gates_at_every_prunable_slot():
    spec = slimspec.load_spec("digits_preresnet")
    model = slimspec.build(spec, "gated")
    gates = [m for m in model.modules() if isinstance(m, Gate)]
    gate_nodes = [n for n in spec.ir.nodes if n.op in ("gate", "blockgate")]
    assert len(gates) == len(gate_nodes) == len(spec.ir.prunable_slots())
    assert {n.name for n in gate_nodes if n.op == "blockgate"} == {"layer1.1.gate", "layer2.1.gate"}
    assert not any(isinstance(m, ChannelMask) for m in model.modules())


def test_plain_models_export_for_deployment():
    """The generic executor has static control flow: torch.export captures it."""
    for name in ("digits_resnet", "digits_densenet"):
        model = slimspec.build(name, seed=0).eval()
        x = torch.randn(2, *model.spec.ir.input_shape)
        exported = torch.export.export(model, (x,))
        torch.testing.assert_close(exported.module()(x), model(x))
