"""Training on bad input: resume keeps the run's options, damaged state, devices, non-finite numbers, locks."""
from __future__ import annotations

import functools
import json
import math

import pytest
import torch
from torch import nn

import slimspec
from slimspec.data import get_dataset
from slimspec.training import RunFolder, TrainConfig, load_state, lr_at, make_scheduler, train_model
from slimspec.utils.fileio import claim_run_dir
from slimspec.weights import read_weights

from .conftest import SPECS, cli_run as run

MLP = SPECS / "digits_mlp.yaml"


def one_line_error(result, *words: str) -> str:
    """The command failed with exit 1 and exactly one stderr line containing ``words``."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A 2-epoch digits MLP run folder (copied per test by ``run_dir``)."""
    folder = tmp_path_factory.mktemp("finished") / "run"
    result = run("train", MLP, "--epochs", "2", "--lr", "0.05", "-o", folder, "-q")
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture
def run_dir(finished_run, tmp_path):
    import shutil

    target = tmp_path / "run"
    shutil.copytree(finished_run, target)
    return target


# -- lr schedules ----------------------------------------------------------------------------
def _old_formula(config: TrainConfig, epoch: int) -> float:
    """The hand-written schedule the LambdaLR replaced (kept here as the reference)."""
    if config.schedule == "li" or config.epochs == 0:
        return config.lr
    if config.schedule == "cosine":
        return config.lr * (0.5 * (1.0 + math.cos(math.pi * epoch / config.epochs)))
    return config.lr * config.lr_decay ** sum(1 for m in config.milestones if epoch >= m * config.epochs)


@pytest.mark.parametrize("schedule", ["slimming", "li", "cosine"])
def test_scheduler_gives_exactly_the_old_lr_every_epoch(schedule):
    for epochs in (1, 2, 3, 7, 40, 160):
        for lr in (0.1, 0.05, 0.001):
            config = TrainConfig(epochs=epochs, lr=lr, schedule=schedule)
            sgd = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
            scheduler = make_scheduler(sgd, config)
            for epoch in range(epochs):
                assert sgd.param_groups[0]["lr"] == _old_formula(config, epoch) == lr_at(config, epoch)
                sgd.step()
                scheduler.step()


# -- resume: the saved options are authoritative -----------------------------------------------
def test_resume_refuses_contradicting_flags_and_lists_them(run_dir):
    before = (run_dir / "run.json").read_text()
    line = one_line_error(run("train", "--resume", run_dir, "--lr", "0.5", "--data", "synthetic", "--sparsity", "1e-3"),
                          "--lr 0.5", "(the run has 0.05)", "--data 'synthetic'", "--sparsity")
    assert "digits" in line
    one_line_error(run("train", "--resume", run_dir, "--epochs", "1"), "--epochs 1 (more epochs only)")
    one_line_error(run("train", "specs/vgg19.yaml", "--resume", run_dir), "SPEC")
    one_line_error(run("train", "--resume", run_dir, "-o", run_dir.parent / "elsewhere"), "in place")
    assert run("train", "--resume", run_dir, "--force").exit_code == 2
    assert (run_dir / "run.json").read_text() == before and load_state(run_dir / "state.pt")["epoch"] == 2


def test_resume_with_more_epochs_device_threads_and_same_flags(run_dir, monkeypatch):
    import slimspec.training.loop as loop

    threads, seen = torch.get_num_threads(), []
    epoch = loop._train_epoch

    def recording(*args, **kwargs):  # the resumed epoch runs on the threads asked for
        seen.append(torch.get_num_threads())
        return epoch(*args, **kwargs)

    monkeypatch.setattr(loop, "_train_epoch", recording)
    want = 1 if threads != 1 else 2
    result = run("train", MLP, "--resume", run_dir, "--epochs", "3", "--device", "cpu", "--threads", str(want), "-q",
                 "--lr", "0.05", "--data", "digits")
    assert result.exit_code == 0, result.output
    assert seen == [want] and torch.get_num_threads() == threads  # and the caller's setting is back
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    config = json.loads((run_dir / "run.json").read_text())["config"]
    assert config["epochs"] == 3 and config["lr"] == 0.05  # the record follows the run
    # the schedule is stretched to 3 epochs: epoch 3 (index 2 >= 1.5) runs at lr x0.1
    assert metrics[2]["lr"] == lr_at(TrainConfig(epochs=3, lr=0.05), 2)


def test_a_cuda_run_resumes_on_cpu(run_dir):
    """A run saved with --device cuda (AMP scaler state, CUDA RNG states) continues with --device cpu."""
    state = torch.load(run_dir / "state.pt", weights_only=True)
    state["config"].update(device="cuda", amp="on")
    state["scaler"] = {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
                       "_growth_tracker": 0}
    state["rng"]["cuda"] = [torch.get_rng_state()]
    torch.save(state, run_dir / "state.pt")
    record = json.loads((run_dir / "run.json").read_text())
    record["config"].update(device="cuda", amp="on")
    (run_dir / "run.json").write_text(json.dumps(record))
    if not torch.cuda.is_available():
        one_line_error(run("train", "--resume", run_dir, "--epochs", "3"), "--device cuda", "not available")
    result = run("train", "--resume", run_dir, "--epochs", "3", "--device", "cpu", "-q")
    assert result.exit_code == 0, result.output
    assert load_state(run_dir / "state.pt")["epoch"] == 3


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_device_cuda_without_a_gpu_is_one_line(tmp_path):
    one_line_error(run("train", MLP, "--device", "cuda", "--epochs", "1", "-o", tmp_path / "r"), "--device cuda",
                   "not available")
    one_line_error(run("train", MLP, "--device", "tpu", "--epochs", "1", "-o", tmp_path / "r"), "--device tpu")
    one_line_error(run("eval", SPECS.parent / "nothing.safetensors", "--device", "cuda:3"), "--device cuda:3")
    assert not (tmp_path / "r").exists()


# -- damaged run folders ---------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage", "old_version", "not_a_dict"])
def test_damaged_state_is_one_line_naming_the_file(run_dir, damage):
    path = run_dir / "state.pt"
    data = path.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"hello world, not a checkpoint")
    elif damage == "old_version":
        state = torch.load(path, weights_only=True)
        state["version"] = 1
        torch.save(state, path)
    else:
        torch.save([1, 2, 3], path)
    line = one_line_error(run("train", "--resume", run_dir, "-q"), str(path))
    if damage == "old_version":
        assert "version 1" in line and "another slimspec version" in line


@pytest.mark.parametrize("damage", ["no_config", "not_json", "missing"])
def test_damaged_run_record_is_one_line_naming_the_file(run_dir, damage):
    path = run_dir / "run.json"
    if damage == "no_config":
        record = json.loads(path.read_text())
        del record["config"]
        path.write_text(json.dumps(record))
        one_line_error(run("train", "--resume", run_dir), str(path), "config")
    elif damage == "not_json":
        path.write_text("{ not json")
        one_line_error(run("train", "--resume", run_dir), str(path))
    else:
        path.unlink()
        one_line_error(run("train", "--resume", run_dir), "not a slimspec run folder")


# -- non-finite numbers --------------------------------------------------------------------------------
@pytest.mark.parametrize("flag,value", [("--lr", "nan"), ("--momentum", "inf"), ("--weight-decay", "nan"),
                                        ("--sparsity", "inf"), ("--lr", "-inf")])
def test_non_finite_hyperparameters_are_refused_up_front(tmp_path, flag, value):
    one_line_error(run("train", MLP, flag, value, "--epochs", "1", "-o", tmp_path / "r"), flag.lstrip("-").replace("-", "_"))
    assert not (tmp_path / "r").exists()


class NanAfter(nn.Module):
    """Identity until ``after`` training forwards have run, then NaN (a diverging model)."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.after, self.calls = after, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.calls += 1
        return x * float("nan") if self.calls > self.after else x


def test_a_non_finite_loss_stops_with_the_last_good_checkpoint(tmp_path):
    data = get_dataset("digits")
    steps = data.num_batches("train", 64)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), NanAfter(steps + 3))  # diverges in epoch 2
    with pytest.raises(slimspec.errors.TrainingError, match=r"epoch 2: the training loss is nan .*keeps the last good "
                                                            r"checkpoint \(epoch 1\)"):
        train_model(model, data, TrainConfig(epochs=3, lr=0.05, quiet=True, device="cpu"), tmp_path)
    state = load_state(tmp_path / "state.pt")
    assert state["epoch"] == 1
    tensors, _ = read_weights(tmp_path / "last.safetensors")
    assert all(torch.isfinite(t).all() for t in tensors.values())
    assert all(torch.equal(tensors[k], state["model"][k]) for k in tensors)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1]


def test_a_diverging_cli_run_exits_1_and_leaves_no_half_made_run(tmp_path):
    line = one_line_error(run("train", MLP, "--lr", "1e8", "--epochs", "2", "-o", tmp_path / "r", "-q"), "epoch 1",
                          "loss is nan", "no checkpoint was written")
    assert "lr 1e+08" in line
    assert not (tmp_path / "r").exists()  # the rerun is not refused as "holds a run"


def test_metrics_never_hold_bare_nan(tmp_path):
    folder = RunFolder(tmp_path)
    folder.write_metrics([{"epoch": 1, "test_loss": float("nan"), "x": [float("inf"), 1.0]}])
    text = (tmp_path / "metrics.jsonl").read_text()

    def refuse(name):
        raise AssertionError(f"bare {name} in JSON")

    assert json.loads(text, parse_constant=refuse) == {"epoch": 1, "test_loss": None, "x": [None, 1.0]}
    assert folder.read_metrics() == [{"epoch": 1, "test_loss": None, "x": [None, 1.0]}]


# -- run folders, eval ---------------------------------------------------------------------------------------
def test_a_second_run_on_a_busy_folder_is_refused(tmp_path):
    folder = tmp_path / "same"
    with claim_run_dir(folder):  # what a first `train -o runs/same` holds while it runs
        line = one_line_error(run("train", MLP, "--epochs", "1", "-o", folder, "-q"), str(folder), "in use")
    assert "another slimspec process" in line
    assert sorted(p.name for p in folder.iterdir()) == []


def test_eval_spec_flag_for_weights_without_an_embedded_spec(tmp_path):
    spec = slimspec.load_spec(MLP)
    model = slimspec.build(spec, seed=0)
    bare = tmp_path / "bare.safetensors"
    slimspec.weights.save_weights(model, "", bare)
    line = one_line_error(run("eval", bare), "--spec")
    assert "pass --spec" in line
    result = run("eval", bare, "--spec", MLP, "--json", "--threads", "1")
    assert result.exit_code == 0, result.output
    embedded = tmp_path / "w.safetensors"
    slimspec.save_weights(model, spec, embedded)
    assert json.loads(result.stdout) == json.loads(run("eval", embedded, "--json").stdout)


def test_eval_progress_goes_to_stderr_not_stdout(tmp_path, monkeypatch):
    from slimspec.training import api
    from slimspec.utils.progress import progress

    monkeypatch.setattr(api, "progress", functools.partial(progress, interval=0.0))
    spec = slimspec.load_spec(MLP)
    weights = tmp_path / "w.safetensors"
    slimspec.save_weights(slimspec.build(spec, seed=0), spec, weights)
    result = run("eval", weights, "--json")
    assert json.loads(result.stdout)["count"] > 0
    assert "eval digits test" in result.stderr and "done" in result.stderr
    quiet = run("eval", weights, "--json", "-q")
    assert quiet.stderr == ""


def test_training_progress_goes_to_stderr_and_epoch_lines_to_stdout(tmp_path, monkeypatch, capsys):
    from slimspec.training import loop
    from slimspec.utils.progress import progress

    monkeypatch.setattr(loop, "progress", functools.partial(progress, interval=0.0))
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    train_model(model, get_dataset("digits"), TrainConfig(epochs=2, lr=0.05, device="cpu"), tmp_path)
    out, err = capsys.readouterr()
    assert [line.split(" | ")[0] for line in out.splitlines()] == ["epoch 1/2", "epoch 2/2"]
    assert "epoch 1/2: done" in err and "epoch 2/2: done" in err and "loss " in err
    train_model(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), get_dataset("digits"),
          TrainConfig(epochs=1, lr=0.05, device="cpu", quiet=True), tmp_path / "quiet")
    assert capsys.readouterr() == ("", "")
