"""No command ever writes over (or deletes) a file it reads: source modules, state dicts, latency
tables, profiled specs, plot inputs, run folders (issue 15, data loss); outputs naming a folder;
a demo that cannot prune is refused before training; counts in messages are pluralised."""
from __future__ import annotations

import os
import shutil
import sys
import textwrap
from pathlib import Path

import pytest

import slimspec
from slimspec.errors import OutputConflictError, TrainingError
from slimspec.training.run_folder import RunFolder

from .conftest import SPECS, cli_run as invoke, one_line_error, randomize

DATA = Path(__file__).parent / "data"


def listing(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def weights_file(path: Path, spec: str = "digits_mlp", seed: int = 0) -> Path:
    model = randomize(slimspec.build(spec, seed=seed), seed)
    slimspec.save_weights(model, model.spec, path)
    return path


# ------------------------------------------------------------------ import python: its own source

NET = textwrap.dedent("""
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)
            self.fc = nn.Linear(4 * 8 * 8, 10)

        def forward(self, x):
            return self.fc(torch.flatten(torch.relu(self.bn(self.conv(x))), 1))
""")


@pytest.fixture
def user_package(tmp_path, monkeypatch):
    """A package of the user's own in the current directory; a unique name per test (no module cache)."""
    name = f"userpk_{os.getpid()}_{len(os.listdir(tmp_path.parent))}_{tmp_path.name[-6:].replace('-', '_')}"
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "net.py").write_text(NET)
    (tmp_path / f"{name}_top.py").write_text(NET)
    monkeypatch.chdir(tmp_path)
    yield name
    for module in [m for m in sys.modules if m.startswith(name)]:
        del sys.modules[module]


def test_import_python_out_over_the_modules_own_source_is_refused(user_package, tmp_path):
    source = tmp_path / user_package / "net.py"
    before = listing(tmp_path)
    result = invoke("import", f"python:{user_package}.net:Net", "--input", "1,8,8", "--out", f"{user_package}/net.py",
                    "--force")
    one_line_error(result, "net.py", "would overwrite an input")
    assert source.read_text() == NET
    assert {k: v for k, v in listing(tmp_path).items() if "__pycache__" not in k} == \
        {k: v for k, v in before.items() if "__pycache__" not in k}


def test_import_python_weights_out_over_the_module_source_is_refused(user_package, tmp_path):
    top = f"{user_package}_top"
    result = invoke("import", f"python:{top}:Net", "--input", "1,8,8", "--out", "n.yaml", "--weights-out", f"{top}.py",
                    "--force")
    one_line_error(result, f"{top}.py", "would overwrite an input")
    assert (tmp_path / f"{top}.py").read_text() == NET
    assert not (tmp_path / "n.yaml").exists()


def test_import_python_over_a_hard_link_of_the_source_is_refused(user_package, tmp_path):
    os.link(tmp_path / user_package / "net.py", tmp_path / "alias.py")
    result = invoke("import", f"python:{user_package}.net:Net", "--input", "1,8,8", "--out", "alias.py", "--force")
    one_line_error(result, "alias.py", "would overwrite an input")
    assert (tmp_path / "alias.py").read_text() == NET


# ------------------------------------------------------------------ latency tables, profiled specs, plot inputs


def test_prune_weights_out_over_its_latency_table_is_refused_before_any_work(tmp_path):
    weights = weights_file(tmp_path / "w.safetensors", "digits_lenet")
    table = tmp_path / "t.json"
    shutil.copy(DATA / "latency_table_format2.json", table)
    before = listing(tmp_path)
    result = invoke("prune", weights, "-m", "l1", "--target", "latency=0.7", "--latency-table", table,
                    "--out", tmp_path / "p.yaml", "--weights-out", table, "--force")
    one_line_error(result, "t.json", "would overwrite an input")
    assert listing(tmp_path) == before


def test_bench_profile_out_over_the_profiled_spec_is_refused(tmp_path):
    spec = tmp_path / "dv.yaml"
    spec.write_text((SPECS / "digits_mlp.yaml").read_text())
    result = invoke("bench", "--profile", spec, "--batch", "1", "-o", spec, "--force")
    one_line_error(result, "dv.yaml", "would overwrite an input")
    assert spec.read_text() == (SPECS / "digits_mlp.yaml").read_text()


def test_plot_widths_out_over_an_input_spec_is_refused(tmp_path):
    pytest.importorskip("matplotlib")
    spec = tmp_path / "spec.svg"  # a spec file with an unusual name
    spec.write_text((SPECS / "digits_mlp.yaml").read_text())
    before = listing(tmp_path)
    result = invoke("plot", "widths", spec, "digits_mlp", "-o", spec, "--force")
    one_line_error(result, "spec.svg", "would overwrite an input")
    assert listing(tmp_path) == before


def test_plot_gammas_out_over_its_weights_is_refused(tmp_path):
    pytest.importorskip("matplotlib")
    weights = weights_file(tmp_path / "w.svg", "digits_vgg")
    before = listing(tmp_path)
    result = invoke("plot", "gammas", weights, "-o", weights, "--force")
    one_line_error(result, "w.svg", "would overwrite an input")
    assert listing(tmp_path) == before


def test_plot_training_out_over_the_metrics_it_reads_is_refused(tmp_path):
    pytest.importorskip("matplotlib")
    metrics = tmp_path / "m.svg"
    metrics.write_text('{"epoch": 1, "test_accuracy": 50.0, "train_loss": 1.0}\n')
    before = listing(tmp_path)
    one_line_error(invoke("plot", "training", metrics, "-o", metrics, "--force"), "m.svg", "would overwrite an input")
    assert listing(tmp_path) == before


def test_a_file_read_after_its_name_was_reserved_as_an_output_is_refused(tmp_path):
    """The API: an input read while a transaction holds the name (in one command's scope) is refused."""
    from slimspec.utils.fileio import OutputTransaction, command_inputs, note_input

    target = tmp_path / "x.yaml"
    target.write_text("old")
    with command_inputs():
        with pytest.raises(OutputConflictError, match="x.yaml: output would overwrite an input"):
            with OutputTransaction(force=True) as tx:
                tx.reserve(target)
                note_input(target)  # e.g. a spec loaded by the work inside the transaction
                tx.write(target, "new")
        with pytest.raises(OutputConflictError, match="would overwrite an input"):  # and read first, written after
            with OutputTransaction(force=True) as tx:
                tx.write(target, "new")
    assert target.read_text() == "old"
    with OutputTransaction(force=True) as tx:  # outside a command's scope nothing was recorded
        tx.write(target, "new")
    assert target.read_text() == "new"


def test_a_data_folder_read_is_an_input_its_files_are_never_replaced(tmp_path):
    """An image tree read by the command: an output replacing one of its files is refused; new files may go beside."""
    np = pytest.importorskip("numpy")
    image = pytest.importorskip("PIL.Image")
    for split in ("train", "val"):
        for label in range(2):
            folder = tmp_path / "d" / split / f"class{label}"
            folder.mkdir(parents=True)
            for i in range(2):
                image.fromarray(np.full((8, 8, 3), 60 + 100 * label + i, dtype=np.uint8)).save(folder / f"{i}.png")
    spec = slimspec.Spec.from_data({"slimspec": 1, "name": "tiny", "arch": "vgg", "input": [3, 8, 8], "num_classes": 2,
                                    "cfg": [4, "M", 8]})
    weights = tmp_path / "w.safetensors"
    slimspec.save_weights(randomize(slimspec.build(spec)), spec, weights)
    before = listing(tmp_path / "d")
    victim = tmp_path / "d" / "train" / "class0" / "0.png"
    result = invoke("prune", weights, "-m", "l1", "--ratio", "0.5", "--eval-data", "imagefolder", "--data-dir",
                    tmp_path / "d", "--out", victim, "--weights-out", tmp_path / "p.safetensors", "--force")
    one_line_error(result, "0.png", "would overwrite an input", "input folder")
    assert listing(tmp_path / "d") == before and not (tmp_path / "p.safetensors").exists()

    from slimspec.utils.fileio import OutputTransaction, command_inputs, note_input

    with command_inputs():
        note_input(tmp_path / "d" / "train")
        with pytest.raises(OutputConflictError, match="input folder"):
            with OutputTransaction(force=True) as tx:
                tx.write(victim, b"x")
        with OutputTransaction() as tx:  # a new file beside the images replaces nothing
            tx.write(tmp_path / "d" / "train" / "notes.txt", b"x")
    assert listing(tmp_path / "d") == {**before, "train/notes.txt": b"x"}


# ------------------------------------------------------------------ run folders: --force never deletes an input


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """A finished-looking run folder of digits_mlp: spec, record, best, last, state, metrics."""
    folder = tmp_path / "rd"
    folder.mkdir()
    (folder / RunFolder.SPEC).write_text((SPECS / "digits_mlp.yaml").read_text())
    (folder / RunFolder.RECORD).write_text('{"spec": "spec.yaml", "data": "digits", "config": {}}\n')
    weights_file(folder / RunFolder.BEST, seed=1)
    weights_file(folder / RunFolder.LAST, seed=2)
    (folder / RunFolder.STATE).write_bytes(b"resume state")
    (folder / RunFolder.METRICS).write_text('{"epoch": 1, "test_accuracy": 50.0}\n')
    return folder


@pytest.mark.parametrize("command", ["train", "finetune"])
def test_force_on_the_run_folder_holding_the_input_weights_is_refused(run_dir, command):
    before = listing(run_dir)
    result = invoke(command, SPECS / "digits_mlp.yaml", "--weights", run_dir / "best.safetensors", "-o", run_dir,
                    "--force", "--epochs", "1", "-q")
    one_line_error(result, str(run_dir / "best.safetensors"), "--force")
    assert listing(run_dir) == before


def test_the_issues_command_spec_and_weights_in_the_run_folder_is_refused(run_dir):
    before = listing(run_dir)
    result = invoke("train", run_dir / "spec.yaml", "--weights", run_dir / "best.safetensors", "-o", run_dir,
                    "--force", "--epochs", "1", "-q")
    one_line_error(result, str(run_dir), "--force")
    assert listing(run_dir) == before


def test_force_refuses_inputs_reached_through_a_symlink_or_as_the_reference(run_dir, tmp_path):
    before = listing(run_dir)
    (tmp_path / "link.safetensors").symlink_to(run_dir / "last.safetensors")
    one_line_error(invoke("train", SPECS / "digits_mlp.yaml", "--weights", tmp_path / "link.safetensors", "-o", run_dir,
                          "--force", "--epochs", "1", "-q"), "link.safetensors", "--force")
    one_line_error(invoke("train", run_dir / "spec.yaml", "-o", run_dir, "--force", "--epochs", "1", "-q"),
                   "spec.yaml", "--force")
    assert listing(run_dir) == before


def test_the_api_refuses_too(run_dir):
    before = listing(run_dir)
    with pytest.raises(OutputConflictError, match="best.safetensors"):
        slimspec.train(SPECS / "digits_mlp.yaml", "digits", run_dir, weights=run_dir / "best.safetensors", force=True,
                       epochs=1, quiet=True)
    with pytest.raises((OutputConflictError, TrainingError), match="best.safetensors"):
        slimspec.finetune(SPECS / "digits_mlp.yaml", "digits", run_dir, weights=run_dir / "best.safetensors",
                          force=True, epochs=1, quiet=True)
    assert listing(run_dir) == before


def test_resume_given_the_runs_own_spec_still_rewrites_its_files(tmp_path):
    """The run's own files are its state, not inputs: a resume naming RUN/spec.yaml continues the run."""
    folder = tmp_path / "rd"
    assert invoke("train", SPECS / "digits_mlp.yaml", "--epochs", "1", "-o", folder, "-q").exit_code == 0
    result = invoke("train", folder / "spec.yaml", "--resume", folder, "--epochs", "2", "-q")
    assert result.exit_code == 0, result.output
    assert "done: 2 epochs" in result.output and len(RunFolder(folder).read_metrics()) == 2


# ------------------------------------------------------------------ outputs naming a folder


def _output_commands(weights: Path) -> list[list[object]]:
    return [
        ["import", "torchvision:resnet18", "--out", "{D}"],
        ["import", "torchvision:resnet18", "--out", "x.yaml", "--weights-out", "{D}"],
        ["prune", weights, "-m", "l1", "--ratio", "0.5", "--out", "{D}"],
        ["prune", weights, "-m", "l1", "--ratio", "0.5", "--out", "p.yaml", "--weights-out", "{D}"],
        ["export", weights, "--format", "torchscript", "-o", "{D}"],
        ["bench", "--profile", "digits_mlp", "--batch", "1", "-o", "{D}"],
        ["build", "digits_mlp", "--out", "{D}"],
        ["plot", "widths", "digits_mlp", "digits_mlp", "-o", "{D}"],
        ["plot", "gammas", weights, "-o", "{D}"],
    ]


@pytest.mark.parametrize("case", range(9))
@pytest.mark.parametrize("form", ["newdir/", "olddir", "olddir/"])
def test_an_output_naming_a_folder_is_refused_for_every_command(tmp_path, monkeypatch, case, form):
    monkeypatch.chdir(tmp_path)
    weights = weights_file(tmp_path / "w.safetensors", "digits_vgg")
    (tmp_path / "olddir").mkdir()
    before = listing(tmp_path)
    args = [str(a).replace("{D}", form) for a in _output_commands(weights)[case]]
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert "names a folder" in result.output and "Traceback" not in result.output, result.output
    assert sorted(os.listdir(tmp_path)) == ["olddir", "w.safetensors"]
    assert listing(tmp_path) == before


def test_the_fileio_api_refuses_a_name_ending_with_a_separator(tmp_path):
    from slimspec.utils.fileio import OutputTransaction, atomic_write

    with pytest.raises(OutputConflictError, match="names a folder"):
        atomic_write(f"{tmp_path}/newdir/", "x")
    with pytest.raises(OutputConflictError, match="names a folder"):
        with OutputTransaction() as tx:
            tx.reserve(f"{tmp_path}/newdir{os.sep}")
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------ demo: refused before training; no blocking leftovers


def test_demo_with_a_spec_slimming_cannot_prune_is_refused_before_training(tmp_path):
    out = tmp_path / "demo"
    result = invoke("demo", "--spec", "digits_mlp", "--out", out, "--epochs", "1", "--finetune-epochs", "1", "-q")
    line = one_line_error(result, "digits_mlp", "BatchNorm")
    assert "epoch" not in result.output.replace(line, "")  # nothing trained
    assert not out.exists()


def test_a_failed_demo_leaves_no_folder_that_blocks_the_rerun(tmp_path, monkeypatch):
    from slimspec.workflows import demo as demo_mod

    def failing_train(*args, **kwargs):
        raise TrainingError("simulated failure during training")

    monkeypatch.setattr(demo_mod, "train", failing_train)
    said: list[str] = []
    out = tmp_path / "demo"
    with pytest.raises(TrainingError, match="simulated"):
        demo_mod.run_demo(out, epochs=1, finetune_epochs=1, quiet=True, say=said.append)
    assert not out.exists()
    assert any("for 1 epoch with" in line for line in said), said  # "1 epoch", not "1 epochs"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TrainingError, match="simulated"):
        demo_mod.run_demo(empty, epochs=2, finetune_epochs=1, quiet=True, say=said.append)
    assert empty.is_dir() and os.listdir(empty) == []  # a folder the user made stays, emptied of what the demo wrote
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "mine.txt").write_text("the user's")
    with pytest.raises(TrainingError, match="simulated"):
        demo_mod.run_demo(kept, epochs=1, finetune_epochs=1, quiet=True, force=True, say=said.append)
    assert (kept / "mine.txt").read_text() == "the user's"


# ------------------------------------------------------------------ counts


def test_one_epoch_is_singular(tmp_path):
    result = invoke("train", SPECS / "digits_mlp.yaml", "--epochs", "1", "-o", tmp_path / "r", "-q")
    assert result.exit_code == 0, result.output
    assert "done: 1 epoch," in result.output and "1 epochs" not in result.output
