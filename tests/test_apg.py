"""APG (Sparse Structure Selection, Huang & Wang 2018) against hand-computed updates."""
from __future__ import annotations

import io

import pytest
import torch

from slimspec.training.apg import APG


def soft(x: float, a: float) -> float:
    """S(x, a) = sign(x) * max(|x| - a, 0), on plain floats."""
    return (1.0 if x > 0 else -1.0) * max(abs(x) - a, 0.0)


def test_three_steps_match_hand_arithmetic():
    lr, gamma, mu = 0.1, 0.5, 0.9  # threshold lr*gamma = 0.05
    w = torch.nn.Parameter(torch.tensor([1.0, 0.3]))
    opt = APG([w], lr=lr, gamma=gamma, momentum=mu)
    grads = [[0.5, 0.2], [-0.4, 0.1], [0.3, 0.6]]

    # step 1, w = [1.0, 0.3], v = [0, 0]
    #   w0: z = S(1.0 - 0.1*0.5, 0.05) = S(0.95, 0.05) = 0.90;  v = 0.90 - 1.0 + 0 = -0.10
    #       w = max(0, 0.90 + 0.9*(-0.10)) = 0.81
    #   w1: z = S(0.3 - 0.02, 0.05) = 0.23;  v = 0.23 - 0.3 = -0.07;  w = 0.23 - 0.063 = 0.167
    # step 2, g = [-0.4, 0.1]
    #   w0: z = S(0.81 + 0.04, 0.05) = 0.80;  v = 0.80 - 0.81 + 0.9*(-0.10) = -0.10
    #       w = 0.80 - 0.09 = 0.71
    #   w1: z = S(0.167 - 0.01, 0.05) = 0.107;  v = 0.107 - 0.167 - 0.063 = -0.123
    #       w = 0.107 - 0.1107 = -0.0037 -> max(0, .) = 0.0
    # step 3, g = [0.3, 0.6]
    #   w0: z = S(0.71 - 0.03, 0.05) = 0.63;  v = 0.63 - 0.71 - 0.09 = -0.17;  w = 0.63 - 0.153 = 0.477
    #   w1: z = S(0.0 - 0.06, 0.05) = -0.01;  v = -0.01 - 0.0 + 0.9*(-0.123) = -0.1207
    #       w = max(0, -0.01 - 0.10863) = 0.0
    expected_w = [[0.81, 0.167], [0.71, 0.0], [0.477, 0.0]]
    expected_v = [[-0.10, -0.07], [-0.10, -0.123], [-0.17, -0.1207]]

    # the same arithmetic, mechanically, as a cross-check of the comments above
    ref_w, ref_v = [1.0, 0.3], [0.0, 0.0]
    for step, g in enumerate(grads):
        for i in range(2):
            z = soft(ref_w[i] - lr * g[i], lr * gamma)
            ref_v[i] = z - ref_w[i] + mu * ref_v[i]
            ref_w[i] = max(0.0, z + mu * ref_v[i])
        assert ref_w == pytest.approx(expected_w[step], abs=1e-12)
        assert ref_v == pytest.approx(expected_v[step], abs=1e-12)

    for step, g in enumerate(grads):
        w.grad = torch.tensor(g)
        opt.step()
        assert w.detach().tolist() == pytest.approx(expected_w[step], abs=1e-6)
        assert opt.state[w]["v"].tolist() == pytest.approx(expected_v[step], abs=1e-6)


def test_without_l1_and_momentum_it_is_plain_gradient_descent():
    w = torch.nn.Parameter(torch.tensor([0.5, 2.0]))
    opt = APG([w], lr=0.1, gamma=0.0, momentum=0.0)
    w.grad = torch.tensor([1.0, -3.0])
    opt.step()
    assert w.detach().tolist() == pytest.approx([0.4, 2.3])


def test_soft_threshold_drives_small_gates_exactly_to_zero():
    w = torch.nn.Parameter(torch.tensor([0.004, 0.009, 0.5, 1.0]))
    opt = APG([w], lr=0.1, gamma=0.1, momentum=0.9)  # threshold 0.01
    w.grad = torch.zeros(4)
    opt.step()
    assert w[0].item() == 0.0 and w[1].item() == 0.0  # exactly zero, not merely small
    assert w[2].item() > 0.0 and w[3].item() > 0.0
    for _ in range(200):  # the L1 pull alone empties every gate in finite time
        w.grad = torch.zeros(4)
        opt.step()
    assert torch.count_nonzero(w).item() == 0


def test_non_negative_projection_is_optional():
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.rand(64))
    b = torch.nn.Parameter(a.detach().clone())
    pos = APG([a], lr=0.2, gamma=0.05, momentum=0.9)
    free = APG([b], lr=0.2, gamma=0.05, momentum=0.9, nonnegative=False)
    for _ in range(20):
        g = torch.randn(64)
        a.grad, b.grad = g.clone(), g.clone()
        pos.step()
        free.step()
        assert (a >= 0).all()
    assert (b < 0).any()


def test_params_without_grad_are_untouched_and_lr_is_schedulable():
    w = torch.nn.Parameter(torch.ones(3))
    idle = torch.nn.Parameter(torch.ones(3))
    opt = APG([w, idle], lr=0.1, gamma=0.0, momentum=0.0)
    opt.param_groups[0]["lr"] = 0.01
    w.grad = torch.ones(3)
    opt.step()
    assert torch.allclose(w, torch.full((3,), 0.99)) and torch.equal(idle, torch.ones(3))
    assert idle not in opt.state


def test_state_dict_round_trip_continues_identically():
    torch.manual_seed(1)
    init = torch.rand(5)
    grads = [torch.randn(5) for _ in range(4)]
    a = torch.nn.Parameter(init.clone())
    opt_a = APG([a], lr=0.1, gamma=0.2, momentum=0.9)
    for g in grads[:2]:
        a.grad = g.clone()
        opt_a.step()
    buffer = io.BytesIO()  # through the bytes, as state.pt does (weights_only loading)
    torch.save(opt_a.state_dict(), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    assert set(saved["param_groups"][0]) >= {"lr", "gamma", "momentum", "nonnegative"}

    b = torch.nn.Parameter(a.detach().clone())
    opt_b = APG([b], lr=0.5, gamma=0.0, momentum=0.1)  # hyper-parameters come from the state dict
    opt_b.load_state_dict(saved)
    assert torch.equal(opt_b.state[b]["v"], opt_a.state[a]["v"])
    for g in grads[2:]:
        a.grad, b.grad = g.clone(), g.clone()
        opt_a.step()
        opt_b.step()
    assert torch.equal(a, b)


def test_rejects_bad_hyper_parameters():
    w = torch.nn.Parameter(torch.ones(1))
    with pytest.raises(ValueError):
        APG([w], lr=-1.0)
    with pytest.raises(ValueError):
        APG([w], gamma=-0.1)
    with pytest.raises(ValueError):
        APG([w], momentum=1.0)
