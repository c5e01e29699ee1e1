"""``train --tensorboard``: the events file holds the metrics.jsonl numbers and BN-gamma histograms."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest


from .conftest import SPECS, cli_run as run

pytest.importorskip("tensorboard")


def test_tensorboard_scalars_equal_metrics_and_histograms_are_written(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = tmp_path / "run"
    result = run("train", SPECS / "digits_vgg.yaml", "--epochs", "2", "--sparsity", "1e-3", "--tensorboard", "-q",
                 "-o", folder)
    assert result.exit_code == 0, result.output
    metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(folder / "tensorboard"), size_guidance={"scalars": 0, "histograms": 0})
    events.Reload()
    tags = events.Tags()
    for tag, key in [("train/loss", "train_loss"), ("train/accuracy", "train_accuracy"), ("test/loss", "test_loss"),
                     ("test/accuracy", "test_accuracy"), ("lr", "lr"), ("sparsity/bn_small", "bn_small")]:
        assert tag in tags["scalars"], tag
        logged = [(e.step, e.value) for e in events.Scalars(tag)]
        assert logged == [(m["epoch"], np.float32(m[key])) for m in metrics], tag  # stored as float32
    assert "bn_gamma/all" in tags["histograms"] and "bn_gamma/features.0.bn" in tags["histograms"]
    histogram = events.Histograms("bn_gamma/all")
    assert [h.step for h in histogram] == [1, 2]
    assert histogram[-1].histogram_value.num == 32 + 32 + 64 + 64 + 128  # one |gamma| per BN channel of cfg
    assert histogram[-1].histogram_value.min >= 0


def test_resumed_run_continues_the_same_log(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder = tmp_path / "run"
    assert run("train", SPECS / "digits_mlp.yaml", "--epochs", "1", "--tensorboard", "-q", "-o", folder).exit_code == 0
    assert run("train", "--resume", folder, "--epochs", "2", "--tensorboard", "-q").exit_code == 0
    events = EventAccumulator(str(folder / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("test/accuracy")] == [1, 2]


def test_missing_tensorboard_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails as if not installed
    result = run("train", SPECS / "digits_mlp.yaml", "--epochs", "1", "--tensorboard", "-o", tmp_path / "r")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "pip install 'slimspec[tensorboard]'" in result.stderr
    assert not (tmp_path / "r").exists()
