"""Training loop, schedules, BN sparsity (Network Slimming), SSS gates, checkpoints, resume."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import slimspec
from slimspec.data import get_dataset
from slimspec.training import (
    TrainConfig,
    bn_l1_subgradient_,
    bn_weights,
    evaluate_model,
    gate_parameters,
    load_state,
    lr_at,
    sparsity_stats,
    train_model,
)
from slimspec.weights import read_weights

REPO = Path(slimspec.__file__).parent.parent


class Gate(nn.Module):
    """A per-channel scale, named like the builder's gated mode (``*.gate.weight``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1)


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, gated: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.gate = Gate(cout) if gated else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.gate(self.bn(self.conv(x))))


class TinyNet(nn.Module):
    """Conv-BN-ReLU x2 on 8x8 digits, dropout (so resume must restore the global RNG), Linear."""

    def __init__(self, gated: bool = False, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(Block(1, width, gated), nn.MaxPool2d(2), Block(width, 2 * width, gated))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1), nn.Linear(2 * width, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def tiny_net(seed: int = 0, gated: bool = False) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet(gated)


@pytest.fixture(scope="module")
def digits():
    return get_dataset("digits")


def fast(**overrides) -> TrainConfig:
    base = dict(epochs=4, lr=0.05, quiet=True, device="cpu")
    return TrainConfig(**{**base, **overrides})


# -- config and schedule ------------------------------------------------------------------
def test_config_defaults_are_network_slimming():
    c = TrainConfig()
    assert (c.epochs, c.batch_size, c.test_batch_size, c.lr, c.momentum, c.weight_decay) == (
        160, 64, 256, 0.1, 0.9, 1e-4
    )  # fmt: skip
    assert c.schedule == "slimming" and c.sparsity == 0.0 and c.gates is None and c.apg_gamma == 0.0
    assert c.amp == "auto" and c.channels_last == "auto" and c.device == "auto"
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="step")
    with pytest.raises(ValueError, match="gates"):
        TrainConfig(gates="l0")


def test_lr_schedules():
    c = TrainConfig(epochs=160, lr=0.1)
    assert lr_at(c, 0) == pytest.approx(0.1)
    assert lr_at(c, 79) == pytest.approx(0.1)
    assert lr_at(c, 80) == pytest.approx(0.01)  # 50%
    assert lr_at(c, 119) == pytest.approx(0.01)
    assert lr_at(c, 120) == pytest.approx(0.001)  # 75%
    assert lr_at(c, 159) == pytest.approx(0.001)
    li = TrainConfig(epochs=160, lr=0.1, schedule="li")
    assert {lr_at(li, e) for e in (0, 80, 120, 159)} == {0.1}
    cos = TrainConfig(epochs=160, lr=0.1, schedule="cosine")
    assert lr_at(cos, 0) == pytest.approx(0.1) and lr_at(cos, 80) == pytest.approx(0.05)
    assert lr_at(cos, 120) == pytest.approx(0.1 * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * 0.75)).item()))


# -- sparsity helpers ---------------------------------------------------------------------
def test_bn_l1_subgradient_matches_a_naive_per_module_loop():
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 5), nn.BatchNorm1d(5), nn.Linear(5, 2)
    )
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([0.5, -0.2, 0.0, 1.5]))
    x = torch.randn(8, 1, 8, 8)
    model(x).sum().backward()
    expected = {}
    for name, m in model.named_modules():  # Network Slimming's updateBN, one module at a time
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            expected[name] = m.weight.grad.clone() + 1e-3 * torch.sign(m.weight.data)
    other = model[3].weight.grad.clone()
    bn_l1_subgradient_(model, 1e-3)
    for name, m in model.named_modules():
        if name in expected:
            assert torch.equal(m.weight.grad, expected[name])
    assert torch.equal(model[3].weight.grad, other)  # only BN weights change
    assert [p.data_ptr() for p in bn_weights(model)] == [model[1].weight.data_ptr(), model[4].weight.data_ptr()]


def test_gate_parameters_and_sparsity_stats():
    model = TinyNet(gated=True, width=4)
    names = {n for n, p in model.named_parameters() if any(p is g for g in gate_parameters(model))}
    assert names == {"features.0.gate.weight", "features.2.gate.weight"}
    assert gate_parameters(TinyNet(gated=False)) == []
    with torch.no_grad():
        model.features[0].gate.weight.copy_(torch.tensor([0.0, 0.0, 1.0, 0.5]))
        model.features[0].bn.weight.copy_(torch.tensor([1e-3, -5e-3, 0.5, 1.0]))
    stats = sparsity_stats(model, eps=1e-2)
    assert stats["gates"] == 12 and stats["gates_zero"] == pytest.approx(2 / 12)
    assert stats["bn_channels"] == 12 and stats["bn_small"] == pytest.approx(2 / 12)


# -- training -----------------------------------------------------------------------------
def test_training_leaves_torch_s_global_settings_as_it_found_them(digits, tmp_path):
    threads = torch.get_num_threads()
    want = 1 if threads != 1 else 2
    seen = []

    def save_fn(model, path):  # called inside the loop: the run's own settings
        seen.append((torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()))

    train_model(tiny_net(), digits, fast(epochs=1, threads=want, deterministic=True), tmp_path, save_weights_fn=save_fn)
    assert seen and set(seen) == {(want, True)}
    assert torch.get_num_threads() == threads and not torch.are_deterministic_algorithms_enabled()


def test_training_learns_digits_and_writes_the_run(digits, tmp_path):
    saved = []

    def save_fn(model, path):
        saved.append(Path(path).name)
        slimspec.weights.save_weights(model, "spec: tiny", path)

    result = train_model(tiny_net(), digits, fast(epochs=5), tmp_path, save_weights_fn=save_fn)
    assert result.epochs == 5 and result.best_accuracy > 70.0  # chance is 10%
    assert result.final["test_accuracy"] == pytest.approx(evaluate_model(result.model, digits)["accuracy"])
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 3, 4, 5]
    assert {"train_loss", "train_accuracy", "test_loss", "test_accuracy", "lr", "bn_small"} <= set(lines[0])
    # x0.1 from the first epoch index >= 50% (2.5) and >= 75% (3.75) of 5 epochs
    assert [r["lr"] for r in lines] == pytest.approx([0.05, 0.05, 0.05, 0.005, 0.0005])
    assert saved.count("last.safetensors") == 5 and "best.safetensors" in saved
    tensors, meta = read_weights(tmp_path / "best.safetensors")
    assert meta["slimspec.spec"] == "spec: tiny" and "head.3.weight" in tensors
    state = torch.load(tmp_path / "state.pt", weights_only=True)  # plain tensors/dicts only
    assert state["epoch"] == 5 and state["best_epoch"] == result.best_epoch
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_sparsity_shrinks_bn_gammas(digits, tmp_path):
    plain = train_model(tiny_net(), digits, fast(epochs=3, schedule="li"), tmp_path / "plain").model
    sparse = train_model(tiny_net(), digits, fast(epochs=3, schedule="li", sparsity=2e-2), tmp_path / "sparse").model

    def l1(model):
        return sum(p.detach().abs().sum().item() for p in bn_weights(model))

    assert l1(sparse) < 0.75 * l1(plain)


def test_sss_gates_train_with_apg_to_exact_zeros(digits, tmp_path):
    model = tiny_net(gated=True)
    config = fast(epochs=3, gates="sss", apg_gamma=0.05, schedule="li")
    result = train_model(model, digits, config, tmp_path)
    gates = torch.cat([g.detach() for g in gate_parameters(model)])
    assert (gates >= 0).all() and (gates == 0).sum() > 0
    assert result.final["gates_zero"] == pytest.approx((gates == 0).float().mean().item())
    with pytest.raises(ValueError, match="gate.weight"):
        train_model(tiny_net(), digits, fast(epochs=1, gates="sss"), tmp_path / "nogates")


class Interrupt(Exception):
    pass


def test_resume_is_bit_identical_to_an_uninterrupted_run(digits, tmp_path):
    config = fast(epochs=4, sparsity=1e-3)  # slimming schedule: lr drops at epochs 2 and 3
    straight = train_model(tiny_net(), digits, config, tmp_path / "straight").model

    calls = []

    def crash_in_epoch_3(model, path):
        if Path(path).name == "last.safetensors":
            calls.append(path)
            if len(calls) == 3:  # dies while checkpointing epoch 3: state.pt still says epoch 2
                raise Interrupt
        slimspec.weights.save_weights(model, "", path)

    run = tmp_path / "resumed"
    with pytest.raises(Interrupt):
        train_model(tiny_net(), digits, config, run, save_weights_fn=crash_in_epoch_3)
    assert load_state(run / "state.pt")["epoch"] == 2
    torch.manual_seed(1234)  # disturb the global RNG; resume must restore it
    fresh = tiny_net(seed=99)  # a fresh model object with other weights
    resumed = train_model(fresh, digits, config, run, resume=True)
    assert resumed.epochs == 4 and [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]
    a, b = straight.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    again = train_model(tiny_net(), digits, config, run, resume=True)  # nothing left to do
    assert again.epochs == 4 and torch.equal(again.model.head[3].weight, b["head.3.weight"])


SCRIPT = textwrap.dedent(
    """
    import sys, time
    import torch
    sys.path.insert(0, sys.argv[4])
    from test_train import TinyNet
    from slimspec.data import get_dataset
    from slimspec.training import TrainConfig, train_model

    run_dir, resume, delay = sys.argv[1], sys.argv[2] == "1", float(sys.argv[3])
    torch.set_num_threads(1)

    class Slow(torch.nn.Module):
        def forward(self, x):
            time.sleep(delay)
            return x

    torch.manual_seed(0)
    model = torch.nn.Sequential(Slow(), TinyNet())
    config = TrainConfig(epochs=4, lr=0.05, sparsity=1e-3, quiet=True, device="cpu")
    train_model(model, get_dataset("digits"), config, run_dir, resume=resume)
    """
)


def _run(script: Path, run_dir: Path, resume: bool, delay: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.update(OMP_NUM_THREADS="1", WORLD_SIZE="1")
    args = [sys.executable, str(script), str(run_dir), "1" if resume else "0", str(delay), str(Path(__file__).parent)]
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_sigkill_mid_run_then_resume_matches_uninterrupted(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    straight = _run(script, tmp_path / "straight", resume=False, delay=0.0)
    victim = _run(script, tmp_path / "killed", resume=False, delay=0.02)
    state = tmp_path / "killed" / "state.pt"
    deadline = time.monotonic() + 120
    while not state.exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.15)  # into epoch 2
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL, victim.stderr.read().decode()
    killed_at = load_state(state)["epoch"]
    assert 1 <= killed_at < 4
    resumed = _run(script, tmp_path / "killed", resume=True, delay=0.0)
    for proc in (straight, resumed):
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err.decode()
    a, _ = read_weights(tmp_path / "straight" / "last.safetensors")
    b, _ = read_weights(tmp_path / "killed" / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    history = [json.loads(line)["epoch"] for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert history == [1, 2, 3, 4]
