"""``slimspec prune`` from the file: lean start-up, ``--check``, atomic output."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import slimspec
from slimspec.errors import PruneError
from slimspec.pruning.api import prune
from slimspec.pruning.exactness import check_exact
from slimspec.pruning.policy import Decision

from .conftest import ROOT, randomize

# what a prune from the file never needs
NEVER = ("slimspec.training", "slimspec.data", "slimspec.report.plots", "slimspec.workflows", "slimspec.interop",
         "slimspec.pruning.exactness", "torchvision", "matplotlib", "onnx", "onnxruntime")


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "digits_resnet.safetensors"
    model = randomize(slimspec.build("digits_resnet", seed=0), 0)
    slimspec.save_weights(model, model.spec, path)
    return path


def test_prune_imports_nothing_of_training_data_plots_or_export(weights, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "slimspec", "prune", str(weights), "-m", "l1",
                          "--ratio", "0.5", "--no-check", "-o", str(tmp_path / "p.yaml")],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "slimspec.pruning.filewise" in imported and "torch" in imported
    assert not [name for name in imported if name.startswith(NEVER)]
    assert (tmp_path / "p.safetensors").is_file() and (tmp_path / "p.yaml").is_file()


def test_check_is_on_by_default_for_small_sources(run, weights, tmp_path):
    result = run("prune", weights, "-m", "l1", "--ratio", "0.5", "-o", tmp_path / "p.yaml")
    assert result.exit_code == 0 and "check: the pruned network computes what the masked original" in result.output
    result = run("prune", weights, "-m", "l1", "--ratio", "0.5", "--no-check", "--dry-run")
    assert result.exit_code == 0 and "check:" not in result.output
    result = run("prune", weights, "-m", "magnitude", "--ratio", "0.5", "--check", "-o", tmp_path / "m.yaml")
    assert result.exit_code == 2 and "masks single weights" in result.stderr  # refused before any work:
    assert result.stdout == "" and not list(tmp_path.glob("m.*"))  # no table printed, nothing written
    (tmp_path / "plan.yaml").write_text("method: magnitude\nratio: 0.5\n")
    result = run("prune", weights, "--plan", tmp_path / "plan.yaml", "--check", "--dry-run")
    assert result.exit_code == 2 and "masks single weights" in result.stderr and result.stdout == ""


def test_check_catches_a_wrong_transplant_and_nothing_is_written(run, weights, tmp_path, monkeypatch):
    good = prune(weights, "l1", ratio=0.5)
    assert check_exact(good) < 1e-5
    wrong = dict(good.decision.kept)
    slot = next(path for path, keep in wrong.items() if 1 < len(keep) < good.parent.ir.slots[path].size)
    removed = sorted(set(range(good.parent.ir.slots[slot].size)) - set(wrong[slot]))
    wrong[slot] = tuple(sorted(wrong[slot][1:] + (removed[0],)))  # same width, another channel
    good.decision = Decision(wrong, good.decision.threshold, good.decision.clamped)
    with pytest.raises(PruneError, match="differ from the masked original"):
        check_exact(good)

    import slimspec.pruning.filewise as filewise

    real = filewise.transplant

    def off_by_one(ir, state, kept, keys, renames):  # a transplant bug: one BN shift taken one channel over
        out = real(ir, state, kept, keys, renames)
        return {key: value.roll(1) if key.endswith("bn.bias") else value for key, value in out.items()}

    monkeypatch.setattr(filewise, "transplant", off_by_one)
    out = tmp_path / "p.yaml"
    result = run("prune", weights, "-m", "l1", "--ratio", "0.5", "-o", out)
    assert result.exit_code == 1 and "differ from the masked original" in result.output
    assert not out.exists() and not out.with_suffix(".safetensors").exists()


def test_gated_check_and_model_equal_the_gated_original(tmp_path):
    model = randomize(slimspec.build("digits_vgg", "gated", seed=0), 0)
    path = tmp_path / "g.safetensors"
    slimspec.save_weights(model, model.spec, path)
    result = prune(path, "gate")
    assert check_exact(result) < 1e-5 and not isinstance(result.source_model, type(None))
    x = torch.randn(4, *result.parent.ir.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(result.model.eval()(x), model.eval()(x), atol=1e-5, rtol=1e-4)
