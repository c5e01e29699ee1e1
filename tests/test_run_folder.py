"""The run folder (RunFolder names every file of a run), one name per training function, resume reads once,
evaluate's threads, RANK read in one place."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import slimspec
from slimspec.errors import TrainingError
from slimspec.training import RunFolder, TrainConfig, api
from slimspec.training.distributed import env_rank
from slimspec.utils.fileio import RUN_LOCK_NAME, OutputTransaction, weights_beside

from .conftest import SPECS, cli_run as run

MLP = SPECS / "digits_mlp.yaml"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A 2-epoch digits MLP run (library API); copied per test by ``run_dir``."""
    folder = tmp_path_factory.mktemp("runs") / "mlp"
    slimspec.train(MLP, "digits", folder, epochs=2, lr=0.05, quiet=True, device="cpu")
    return folder


@pytest.fixture
def run_dir(finished, tmp_path):
    import shutil

    return Path(shutil.copytree(finished, tmp_path / "run"))


# -- RunFolder -------------------------------------------------------------------------------------
def test_a_finished_run_holds_exactly_the_files_run_folder_names(finished):
    folder = RunFolder(finished)
    assert sorted(os.listdir(finished)) == sorted(RunFolder.FILES)  # the lock went with the run
    paths = (folder.spec, folder.record, folder.best, folder.last, folder.state, folder.metrics)
    assert all(p.parent == finished and p.is_file() for p in paths)
    assert sorted(p.name for p in paths) == sorted(RunFolder.FILES)
    assert folder.tensorboard == finished / "tensorboard" and not folder.tensorboard.exists()  # only with --tensorboard
    record, spec = folder.read_run()
    assert record["spec"] == folder.spec.name and record["data"] == "digits" and record["config"]["epochs"] == 2
    assert spec.text == slimspec.load_spec(MLP).text
    assert [r["epoch"] for r in folder.read_metrics()] == [1, 2]
    assert folder.weights() == folder.last
    assert RunFolder(folder).path == finished and os.fspath(folder) == str(finished)  # a PathLike


def test_force_deletes_exactly_the_run_files_and_nothing_else(run_dir):
    (run_dir / "notes.txt").write_text("mine")
    slimspec.train(MLP, "digits", run_dir, epochs=1, lr=0.05, quiet=True, device="cpu", force=True)
    assert (run_dir / "notes.txt").read_text() == "mine"
    assert [r["epoch"] for r in RunFolder(run_dir).read_metrics()] == [1]  # not the old run's two epochs


def test_weights_fall_back_to_best_and_a_folder_without_weights_is_one_line(run_dir, tmp_path):
    folder = RunFolder(run_dir)
    folder.last.unlink()
    assert folder.weights() == folder.best
    folder.best.unlink()
    with pytest.raises(TrainingError, match=r"run: no last.safetensors or best.safetensors"):
        folder.weights()
    with pytest.raises(TrainingError, match=r"not a slimspec run folder \(no run.json\)"):
        RunFolder(tmp_path / "empty").read_run()


def test_plot_tradeoff_reads_the_run_through_the_folder(run_dir):
    from slimspec.report import plots

    (point,) = plots.tradeoff_data([run_dir])
    assert point.accuracy == RunFolder(run_dir).read_metrics()[-1]["test_accuracy"]
    RunFolder(run_dir).last.unlink()
    (point_best,) = plots.tradeoff_data([run_dir])  # best.safetensors carries the same spec
    assert point_best.macs == point.macs


def test_run_folder_and_plots_load_without_torch():
    code = ("import sys; from slimspec.training import RunFolder; from slimspec.report import plots; "
            "RunFolder('x').metrics; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- one name, one function --------------------------------------------------------------------------
def test_package_names_are_the_training_functions():
    import slimspec.training as training

    for name in ("train", "resume", "finetune", "evaluate"):
        assert getattr(slimspec, name) is getattr(training, name) is getattr(api, name)
    assert training.train_model is not training.train and training.evaluate_model is not training.evaluate
    assert not hasattr(OutputTransaction, "add")
    with pytest.raises(TrainingError, match=r"unknown training option\(s\): resume"):
        slimspec.train(MLP, "digits", "unused", resume=True)  # resuming is slimspec.resume


def test_weights_beside_a_spec():
    assert weights_beside("out/vgg_p70.yaml") == Path("out/vgg_p70.safetensors")


# -- resume reads the run once ------------------------------------------------------------------------
def test_resume_reads_run_json_and_the_spec_once(run_dir, monkeypatch):
    reads: list[str] = []
    read_text = Path.read_text

    def counting(self, *args, **kwargs):
        if self.parent == run_dir:
            reads.append(self.name)
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counting)
    result = slimspec.resume(run_dir, epochs=3, quiet=True)
    assert result.epochs == 3
    assert sorted(reads) == ["run.json", "spec.yaml"]
    monkeypatch.undo()
    record, _ = RunFolder(run_dir).read_run()
    assert record["config"]["epochs"] == 3 and record["config"]["lr"] == 0.05  # the record follows the run


def test_resume_refuses_changed_options_before_touching_the_folder(run_dir):
    before = {name: (run_dir / name).read_bytes() for name in RunFolder.FILES}
    with pytest.raises(TrainingError, match=r"--lr 0\.5 \(the run has 0\.05\)"):
        slimspec.resume(run_dir, lr=0.5)
    assert {name: (run_dir / name).read_bytes() for name in RunFolder.FILES} == before
    assert not (run_dir / RUN_LOCK_NAME).exists()


# -- evaluate(threads=) -----------------------------------------------------------------------------
def test_evaluate_threads_apply_while_it_runs_and_are_restored(finished, monkeypatch):
    seen = []
    evaluate_model = api.evaluate_model

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return evaluate_model(*args, **kwargs)

    monkeypatch.setattr(api, "evaluate_model", spy)
    before = torch.get_num_threads()
    target = 2 if before == 1 else 1
    metrics = slimspec.evaluate(RunFolder(finished).last, "digits", threads=target)
    assert seen == [target] and torch.get_num_threads() == before
    assert metrics["accuracy"] == slimspec.evaluate(RunFolder(finished).last, "digits")["accuracy"]


@pytest.mark.parametrize("threads", [0, -2, 1.5, True])
def test_evaluate_refuses_bad_threads_as_training_does(finished, threads):
    with pytest.raises(TrainingError) as refused:
        slimspec.evaluate(RunFolder(finished).last, "digits", threads=threads)
    with pytest.raises(TrainingError) as config:
        TrainConfig(threads=threads)
    message = f"threads must be an integer >= 1, got {threads!r}"
    assert str(refused.value) == message and str(config.value) == f"TrainConfig: {message}"


def test_demo_refuses_bad_threads_before_any_work(tmp_path):
    from slimspec.workflows.demo import run_demo

    with pytest.raises(TrainingError, match=r"--threads must be an integer >= 1, got 0"):
        run_demo(tmp_path / "demo", threads=0, quiet=True)
    assert not (tmp_path / "demo").exists()


# -- RANK ---------------------------------------------------------------------------------------------
def test_rank_is_read_from_the_environment(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    assert env_rank() == 0
    monkeypatch.setenv("RANK", "3")
    assert env_rank() == 3


def test_only_rank_0_reports_the_finished_run(finished, monkeypatch, capsys):
    from slimspec.cli.train_cmds import _done
    from slimspec.training import TrainResult

    result = TrainResult(finished, 2, 90.0, 2, RunFolder(finished).read_metrics())
    monkeypatch.setenv("RANK", "1")
    _done(result)
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("RANK", "0")
    _done(result)
    assert f"run folder {finished}" in capsys.readouterr().out


def test_cli_run_folder_via_out_holds_the_named_files(tmp_path):
    result = run("train", MLP, "--epochs", "1", "--lr", "0.05", "-o", tmp_path / "cli", "-q")
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(tmp_path / "cli")) == sorted(RunFolder.FILES)
    assert json.loads(RunFolder(tmp_path / "cli").record.read_text())["spec"] == RunFolder.SPEC
