"""`slimspec demo` meets its bar, and the individual commands reproduce its numbers."""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from slimspec.cli.main import cli
from slimspec.weights import read_weights

from .conftest import DEFAULT_THREADS


@pytest.fixture
def demo(demo_run):
    return demo_run


def test_demo_bar(demo):
    out, output = demo
    summary = json.loads((out / "summary.json").read_text())
    for key in ("original", "pruned", "finetuned"):
        assert {"params", "macs", "accuracy", "latency_ms"} <= set(summary[key])
        assert summary[key]["latency_ms"] > 0
    assert summary["finetuned"]["macs"] <= 0.6 * summary["original"]["macs"]  # MACs drop by >= 40%
    assert summary["finetuned"]["accuracy"] >= summary["original"]["accuracy"] - 1.0
    assert summary["original"]["accuracy"] > 90
    assert f"{summary['finetuned']['accuracy']:.2f}" in output and "specs differ" in output


def test_demo_refuses_a_non_empty_folder(demo):
    out, _ = demo
    result = CliRunner().invoke(cli, ["demo", "--out", str(out)])
    assert result.exit_code == 1 and "--force" in result.stderr


def test_commands_by_hand_reproduce_the_demo(demo, tmp_path):
    out, _ = demo
    run = lambda *a: CliRunner().invoke(cli, [str(x) for x in a], catch_exceptions=False)  # noqa: E731
    threads = ("--threads", DEFAULT_THREADS)  # the demo's (trained weights depend on the thread count)
    assert run("train", out / "digits_vgg.yaml", "--epochs", "30", "--sparsity", "1e-3", "-o", tmp_path / "t", "-q",
               *threads).exit_code == 0
    assert run("prune", tmp_path / "t" / "last.safetensors", "-m", "slimming", "--target", "macs=0.5",
               "--out", tmp_path / "p.yaml").exit_code == 0
    assert (tmp_path / "p.yaml").read_text().split("pruned:")[0] == (out / "digits_vgg_pruned.yaml").read_text().split("pruned:")[0]
    assert run("finetune", tmp_path / "p.yaml", "--epochs", "20", "--lr", "0.01", "-o", tmp_path / "f", "-q",
               *threads).exit_code == 0
    mine, _ = read_weights(tmp_path / "f" / "last.safetensors")
    theirs, _ = read_weights(out / "finetune" / "last.safetensors")
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    result = run("eval", tmp_path / "f" / "last.safetensors", "--json")
    summary = json.loads((out / "summary.json").read_text())
    assert round(json.loads(result.output)["accuracy"], 2) == summary["finetuned"]["accuracy"]


@pytest.mark.parametrize("args,message", [
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["--target-macs", "1.5"], "target"),
    (["--target-macs", "nan"], "target"),
])
def test_demo_refuses_bad_options_before_training(tmp_path, args, message):
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--out", str(out), *args])
    assert result.exit_code == 1, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert not out.exists()
