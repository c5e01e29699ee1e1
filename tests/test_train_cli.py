"""Training from the command line: train -> prune -> finetune -> eval, Scratch-B, kill + resume."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from slimspec.document import load_spec
from slimspec.training import load_state
from slimspec.training.api import scratch_epochs
from slimspec.weights import read_weights

from .conftest import SPECS, cli_run as run


def test_pipeline_by_hand(tmp_path):
    assert run("train", SPECS / "digits_vgg.yaml", "--epochs", "3", "--sparsity", "1e-3", "-o", tmp_path / "t", "-q").exit_code == 0
    metrics = [json.loads(l) for l in (tmp_path / "t" / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2, 3] and metrics[-1]["test_accuracy"] > 50
    out = tmp_path / "p.yaml"
    assert run("prune", tmp_path / "t" / "last.safetensors", "-m", "slimming", "--target", "macs=0.6", "--out", out).exit_code == 0
    result = run("finetune", out, "--epochs", "2", "--lr", "0.01", "-o", tmp_path / "ft", "-q")
    assert result.exit_code == 0, result.output
    _, meta = read_weights(tmp_path / "ft" / "last.safetensors")
    assert meta["slimspec.spec"] == out.read_text()  # the fine-tuned weights know their pruned spec
    result = run("eval", tmp_path / "ft" / "last.safetensors", "--json")
    assert json.loads(result.output)["accuracy"] > 50


def test_train_refuses_previous_run(tmp_path):
    args = ["train", SPECS / "digits_mlp.yaml", "--epochs", "1", "-o", tmp_path / "r", "-q"]
    assert run(*args).exit_code == 0
    again = run(*args)
    assert again.exit_code == 1 and "--resume" in again.stderr


def test_data_shape_and_class_errors(tmp_path):
    result = run("train", SPECS / "vgg19.yaml", "--data", "mnist", "--data-dir", tmp_path, "--epochs", "1", "-o", tmp_path / "r")
    assert result.exit_code == 1 and "Traceback" not in result.output


def test_scratch_b_scales_epochs_by_macs(tmp_path):
    import slimspec
    from slimspec.errors import TrainingError
    from slimspec.ir import count_macs

    parent = load_spec(SPECS / "digits_vgg.yaml")
    weights = tmp_path / "w.safetensors"
    slimspec.save_weights(slimspec.build(parent, seed=0), parent, weights)
    child = slimspec.prune(weights, method="l1", ratio=0.5).spec
    assert scratch_epochs(10, "E", child, parent) == 10
    ratio = count_macs(parent.ir) / count_macs(child.ir)
    assert 3.5 < ratio < 4.5  # halving every width about quarters the MACs
    assert scratch_epochs(10, "B", child, parent) == round(10 * ratio)
    with pytest.raises(TrainingError, match="not the spec .* was pruned from"):
        scratch_epochs(10, "B", child, load_spec("vgg19"))
    with pytest.raises(TrainingError, match="needs a pruned spec"):
        scratch_epochs(10, "B", parent, parent)
    child_path = tmp_path / "child.yaml"
    child_path.write_text(child.text)
    result = run("train", child_path, "--scratch", "B", "--reference", "resnet56", "--epochs", "1", "-o", tmp_path / "r")
    assert result.exit_code == 1 and "was pruned from" in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "r").exists()


def _train_cmd(run_dir):
    return [sys.executable, "-m", "slimspec", "train", str(SPECS / "digits_vgg.yaml"), "--epochs", "6",
            "--sparsity", "1e-3", "-o", str(run_dir), "-q"]


@pytest.mark.slow
def test_kill_and_resume_is_bit_identical(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(_train_cmd(tmp_path / "straight"), check=True, env=env, capture_output=True)
    proc = subprocess.Popen(_train_cmd(tmp_path / "killed"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "killed" / "state.pt"
    deadline = time.time() + 120
    while not state.exists() and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = load_state(state)["epoch"]  # state.pt is the commit point (metrics.jsonl is written just after it)
    assert 1 <= done < 6, "the run finished before it could be killed"
    subprocess.run([sys.executable, "-m", "slimspec", "train", "--resume", str(tmp_path / "killed")], check=True, env=env,
                   capture_output=True)
    a, _ = read_weights(tmp_path / "straight" / "last.safetensors")
    b, _ = read_weights(tmp_path / "killed" / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("binary", [False, True])
def test_sss_gates_train_and_prune_exactly(tmp_path, binary):
    """APG drives gates to exactly zero; pruning them changes no prediction."""
    args = ["train", SPECS / "digits_resnet.yaml", "--gates", "sss", "--apg-gamma", "0.05", "--epochs", "6",
            "-o", tmp_path / "g", "-q"] + (["--binary-gates"] if binary else [])
    assert run(*args).exit_code == 0
    metrics = [json.loads(l) for l in (tmp_path / "g" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["gates_zero"] > 0.1
    assert run("prune", tmp_path / "g" / "last.safetensors", "-m", "gate", "--out", tmp_path / "p.yaml").exit_code == 0
    before = json.loads(run("eval", tmp_path / "g" / "last.safetensors", "--json").output)
    after = json.loads(run("eval", tmp_path / "p.safetensors", "--json").output)
    assert after["accuracy"] == pytest.approx(before["accuracy"])
    assert after["loss"] == pytest.approx(before["loss"], abs=1e-4)
