"""Probes of issue 15 on exit codes, messages and ignored options, and a few import/export probes.

Exit codes: 0 ok, 1 bad input (one line), 2 usage (click's convention), 70 a bug (EX_SOFTWARE,
traceback + a line asking to report it), 141 stdout closed by its reader. Each test here failed
on the behaviour before the fix.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import slimspec
from slimspec.cli.errors import BUG_HINT, EXIT_BUG, EXIT_PIPE

from .conftest import ROOT

ESC = "\x1b"


def _one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: "), (result.exit_code, result.output)
    assert ESC not in result.output and "\\x1b" not in result.output and "Traceback" not in result.output
    return lines[0]


# ---- exit codes -----------------------------------------------------------------------------

def test_a_bug_exits_with_its_own_code_not_usages(run, monkeypatch) -> None:
    import slimspec.report.info

    # usage errors keep click's 2, bad input 1, a bug 70: three distinct codes
    assert run("info", "digits_vgg", "--no-such-option").exit_code == 2
    assert run("info").exit_code == 2
    assert run("info", "no_such_spec_anywhere").exit_code == 1
    def broken(_spec):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(slimspec.report.info, "info", broken)
    result = run("info", "digits_vgg")
    assert result.exit_code == EXIT_BUG == 70
    assert "Traceback" in result.stderr and "ZeroDivisionError: a bug" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == BUG_HINT


def test_bugs_in_commands_without_their_own_handler_exit_70(run, monkeypatch) -> None:
    import slimspec.families

    monkeypatch.setattr(slimspec.families, "spec_schema", lambda: 1 / 0)
    result = run("schema")
    assert result.exit_code == EXIT_BUG and BUG_HINT in result.stderr and "ZeroDivisionError" in result.stderr

    def broken(_source):
        raise KeyError("a bug")

    monkeypatch.setattr("slimspec.cli.spec_cmds.read_spec", broken)
    result = run("validate", "digits_vgg", "digits_mlp")
    assert result.exit_code == EXIT_BUG and result.stderr.count(BUG_HINT) == 2  # every file still checked


def _closed_stdout(*args: str) -> subprocess.CompletedProcess:
    """Run ``slimspec ARGS`` with its stdout's reader gone before it writes (``| head -0``)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([sys.executable, "-m", "slimspec", *args], stdout=write, stderr=subprocess.PIPE,
                              text=True, env=env, cwd=ROOT, timeout=120)
    finally:
        os.close(write)


@pytest.mark.parametrize("args", [("info", "digits_vgg"), ("validate", "digits_vgg"), ("info", "--help")])
def test_a_closed_pipe_is_quiet(args) -> None:
    done = _closed_stdout(*args)
    assert done.returncode == EXIT_PIPE == 141, done.stderr
    assert done.stderr == ""  # no "error: Broken pipe", no "Exception ignored"


# ---- messages -------------------------------------------------------------------------------

NET = '''
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


def build():
    return Net()
'''


@pytest.fixture
def net_module(tmp_path, monkeypatch):
    """A python: source in the current directory: ``python:probe_net_<test>:build`` and its Net class."""
    import importlib

    name = f"probe_net_{abs(hash(str(tmp_path))) % 10**8}"
    (tmp_path / f"{name}.py").write_text(NET, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield f"python:{name}:build", importlib.import_module(name).Net
    sys.modules.pop(name, None)


def test_unpickling_errors_carry_no_escape_codes_and_no_advice_to_unpickle(run, tmp_path, net_module) -> None:
    from fractions import Fraction

    source, _ = net_module
    # a pickled object: torch.load(weights_only=True) refuses it with a page of advice and bold text
    torch.save({"conv.weight": torch.zeros(1), "extra": Fraction(1, 3)}, tmp_path / "pickled.pth")
    result = run("import", source, "--input", "3,8,8", "-o", tmp_path / "a.yaml", "--state-dict", tmp_path / "pickled.pth")
    line = _one_error_line(result)
    assert "weights_only" not in line and "two options" not in line and "trusted source" not in line
    assert "pickled" in line and "fractions.Fraction" in line and "pickled.pth" in line


def test_escape_sequences_never_reach_an_error_line() -> None:
    from slimspec.errors import ModelImportError

    line = ModelImportError("torch says \x1b[1mdo this\x1b[0m and \x1b]8;;http://x\x07link\x1b]8;;\x07").lines()[0]
    assert line == "error: torch says do this and link"


def test_python_state_dict_misfits_name_their_keys(run, tmp_path, net_module) -> None:
    source, net = net_module
    state = net().state_dict()
    extra = dict(state, **{"head.weight": torch.zeros(2)})
    del extra["conv.bias"]
    torch.save(extra, tmp_path / "extra.pth")
    line = _one_error_line(run("import", source, "--input", "3,8,8", "-o", tmp_path / "a.yaml",
                               "--state-dict", tmp_path / "extra.pth"))
    assert "missing conv.bias" in line and "unexpected head.weight" in line
    torch.save(dict(state, **{"fc.weight": torch.zeros(5, 8)}), tmp_path / "shape.pth")
    line = _one_error_line(run("import", source, "--input", "3,8,8", "-o", tmp_path / "b.yaml",
                               "--state-dict", tmp_path / "shape.pth"))
    assert "fc.weight (5, 8) vs module (10, 8)" in line


def test_num_classes_advice_only_for_a_classifier_of_another_size(run, tmp_path) -> None:
    import torchvision

    model = torchvision.models.resnet18(num_classes=7)
    torch.save(model.state_dict(), tmp_path / "seven.pth")
    state = torchvision.models.resnet18().state_dict()
    del state["layer1.0.conv1.weight"]
    state["bogus"] = torch.zeros(1)
    torch.save(state, tmp_path / "keys.pth")
    common = ("import", "torchvision:resnet18", "--input", "3,32,32")
    line = _one_error_line(run(*common, "-o", tmp_path / "a.yaml", "--state-dict", tmp_path / "keys.pth"))
    assert "missing layer1.0.conv1.weight" in line and "unexpected bogus" in line and "--num-classes" not in line
    line = _one_error_line(run(*common, "-o", tmp_path / "b.yaml", "--state-dict", tmp_path / "seven.pth"))
    assert line.endswith("give --num-classes 7)") and "fc.weight (7, 512) vs model (1000, 512)" in line
    assert run(*common, "-o", tmp_path / "c.yaml", "--state-dict", tmp_path / "seven.pth", "--num-classes", "7").exit_code == 0


@pytest.mark.parametrize("name", ["resnet18", "vgg11", "mobilenet_v2", "squeezenet1_0"])
def test_wrong_input_channels_are_named_as_such(run, tmp_path, name) -> None:
    line = _one_error_line(run("import", f"torchvision:{name}", "--input", "1,32,32", "-o", tmp_path / "a.yaml"))
    assert "has 1 channel(s)" in line and "takes 3" in line and "parameters" not in line


def test_info_validate_and_diff_read_the_spec_a_weights_file_embeds(run, tmp_path) -> None:
    weights = tmp_path / "w.safetensors"
    slimspec.save_weights(slimspec.build("digits_vgg", seed=0), "digits_vgg", weights)
    result = run("info", weights)
    assert result.exit_code == 0 and "digits_vgg (vgg)" in result.stdout and "UTF-8" not in result.output
    result = run("validate", weights)
    assert result.exit_code == 0 and result.stdout.startswith(f"{weights}: ok (vgg, 5 prunable slots)")
    assert run("diff", weights, "digits_vgg").exit_code == 0  # equal
    assert run("diff", "digits_mlp", weights).exit_code == 1  # different
    bare = tmp_path / "bare.safetensors"
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, bare)
    result = run("validate", bare)
    assert result.exit_code == 1 and "no embedded spec" in result.stderr and "UTF-8" not in result.stderr


# ---- ignored options are refused ----------------------------------------------------------

def test_import_options_that_would_be_ignored_are_refused(run, tmp_path, net_module) -> None:
    source, net = net_module
    torch.save(net().state_dict(), tmp_path / "net.pth")
    python = ("import", source, "--input", "3,8,8", "-o", tmp_path / "a.yaml")
    for args, option in (((*python, "--pretrained"), "--pretrained"),
                         ((*python, "--name", ""), "--name"),
                         ((*python, "--name", "  "), "--name"),
                         ((*python, "--state-dict", tmp_path / "net.pth", "--seed", "3"), "--seed"),
                         (("import", "torchvision:resnet18", "-o", tmp_path / "b.yaml", "--pretrained",
                           "--state-dict", tmp_path / "net.pth"), "--pretrained"),
                         (("import", "torchvision:resnet18", "-o", tmp_path / "b.yaml", "--pretrained",
                           "--seed", "1"), "--seed")):
        result = run(*args)
        assert result.exit_code == 2 and option in result.stderr, (args, result.output)
        assert not (tmp_path / "a.yaml").exists() and not (tmp_path / "b.yaml").exists()


def test_import_name_applies_to_torchvision_sources_too(run, tmp_path) -> None:
    result = run("import", "torchvision:resnet18", "--input", "3,32,32", "-o", tmp_path / "r.yaml", "--name", "my_r18")
    assert result.exit_code == 0, result.output
    assert slimspec.load_spec(tmp_path / "r.yaml").name == "my_r18"


# ---- import: --seed, input size, mnasnet state dicts --------------------------------------

def test_import_seed_gives_the_same_bytes(run, tmp_path, net_module) -> None:
    source, _ = net_module
    made = {}
    for label, args in (("tv", ("torchvision:resnet18", "--input", "3,32,32")), ("py", (source, "--input", "3,8,8"))):
        for tag, seed in (("a", "5"), ("b", "5"), ("c", "6")):
            torch.manual_seed(int(tag.encode()[0]))  # the global generator's state must not matter
            out = tmp_path / f"{label}{tag}.yaml"
            assert run("import", *args, "-o", out, "--seed", seed).exit_code == 0
            made[label + tag] = out.with_suffix(".safetensors").read_bytes()
        assert made[label + "a"] == made[label + "b"] != made[label + "c"]
    torch.manual_seed(123)
    assert run("import", source, "--input", "3,8,8", "-o", tmp_path / "default.yaml").exit_code == 0
    torch.manual_seed(456)
    assert run("import", source, "--input", "3,8,8", "-o", tmp_path / "default2.yaml").exit_code == 0
    assert (tmp_path / "default.safetensors").read_bytes() == (tmp_path / "default2.safetensors").read_bytes()


@pytest.mark.parametrize("source", ["torchvision:resnet18", "python"])
def test_an_input_too_large_to_trace_is_one_line(run, tmp_path, net_module, source) -> None:
    source = net_module[0] if source == "python" else source
    line = _one_error_line(run("import", source, "--input", "3,100000,100000", "-o", tmp_path / "a.yaml"))
    assert "30,000,000,000 values per image" in line and "MAX_INPUT_ELEMENTS" in line


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_mnasnet_imports_with_its_own_state_dict(run, tmp_path, suffix) -> None:
    import torchvision
    from safetensors.torch import save_file

    reference = torchvision.models.mnasnet0_5().eval()  # random init, no download
    path = tmp_path / f"mnas{suffix}"
    if suffix == ".pth":
        torch.save(reference.state_dict(), path)  # carries _metadata: MNASNet reads its version to load
    else:
        save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, path)  # no _metadata
    out = tmp_path / "m.yaml"
    result = run("import", "torchvision:mnasnet0_5", "--input", "3,32,32", "--state-dict", path, "-o", out)
    assert result.exit_code == 0, result.output
    model, _ = slimspec.load_model(out.with_suffix(".safetensors"))
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), reference(x), atol=1e-5, rtol=1e-5)


def test_read_state_dict_keeps_module_versions(tmp_path) -> None:
    from slimspec.weights import read_state_dict

    model = torch.nn.Sequential(torch.nn.BatchNorm2d(2))
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "plain.pth")
    torch.save(torch.nn.DataParallel(model).state_dict(), tmp_path / "dp.pth")
    state = read_state_dict(tmp_path / "dp.pth")
    assert list(state) == list(model.state_dict()) and state._metadata["0"]["version"] == 2
    assert getattr(read_state_dict(tmp_path / "plain.pth"), "_metadata", None) is None  # a plain dict has none


# ---- deterministic TorchScript ------------------------------------------------------------

def test_torchscript_exports_are_byte_identical(tmp_path) -> None:
    """The CLI in one process and the API in another, from other folders, to other names: one file."""
    weights = tmp_path / "w.safetensors"
    slimspec.save_weights(slimspec.build("digits_vgg", seed=0), "digits_vgg", weights)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    (tmp_path / "elsewhere").mkdir()
    cli = subprocess.run([sys.executable, "-m", "slimspec", "export", weights, "-o", tmp_path / "a.pt"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert cli.returncode == 0, cli.stderr
    api = subprocess.run([sys.executable, "-c", "import slimspec.workflows.export as e; "
                          f"e.export({str(weights)!r}, 'other_name.pt')"],
                         capture_output=True, text=True, env=env, cwd=tmp_path / "elsewhere", timeout=300)
    assert api.returncode == 0, api.stderr
    first, second = (tmp_path / "a.pt").read_bytes(), (tmp_path / "elsewhere" / "other_name.pt").read_bytes()
    assert first == second
    assert str(ROOT).encode() not in first and b"a.pt" not in first  # no paths, no file names inside
    loaded = torch.jit.load(str(tmp_path / "a.pt"))
    x = torch.randn(3, 1, 8, 8)
    model, _ = slimspec.load_model(weights)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x), atol=1e-4, rtol=1e-4)


# ---- min_channels: every clamped slot listed ------------------------------------------------

def test_the_min_channels_note_lists_every_clamped_slot(tmp_path) -> None:
    spec = ("slimspec: 1\nname: deep\narch: vgg\ninput: [1, 8, 8]\nnum_classes: 2\nbatch_norm: true\n"
            f"cfg: [{', '.join(['4'] * 16)}]\nhead: avg\nclassifier: []\n")
    model = slimspec.build(spec, seed=0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.zero_()  # every channel of every layer scores 0: all 16 slots are clamped
    weights = tmp_path / "w.safetensors"
    slimspec.save_weights(model, model.spec, weights)
    result = slimspec.prune(weights, "slimming", threshold=0.0)
    note = next(note for note in result.notes if "min_channels" in note)
    assert "more" not in note and all(f"cfg[{i}]" in note for i in range(16)), note


def test_other_options_that_would_be_ignored_are_refused(run, tmp_path, trained_weights) -> None:
    weights = trained_weights("digits_vgg")
    tmp_path = tmp_path / "outputs"
    tmp_path.mkdir()
    prune = ("prune", weights, "-m", "l1", "--ratio", "0.3", "--dry-run")
    for args, word in ((("build", "digits_vgg", "--binary-gates"), "--binary-gates"),  # plain mode has no gates
                       (("build", "digits_vgg", "--force"), "--force"),  # nothing written
                       ((*prune, "--out", tmp_path / "p.yaml"), "--out"),
                       ((*prune, "--weights-out", tmp_path / "p.safetensors"), "--weights-out"),
                       ((*prune, "--force"), "--force"),
                       ((*prune, "--seed", "3"), "--seed"),  # l1 draws no random numbers
                       ((*prune, "--data-dir", tmp_path), "--data-dir"),  # no data read
                       (("train", "digits_vgg", "--apg-gamma", "0.1", "-o", tmp_path / "r"), "--gates"),
                       (("train", "digits_vgg", "--binary-gates", "-o", tmp_path / "r"), "--gates"),
                       (("train", "digits_vgg", "--reference", "vgg16", "-o", tmp_path / "r"), "--scratch B"),
                       (("train", "digits_vgg", "--scratch", "E", "--weights", weights, "-o", tmp_path / "r"), "--weights")):
        result = run(*args)
        assert result.exit_code == 2 and word in result.stderr, (args, result.output)
        assert not any(tmp_path.iterdir()), args
    assert run("prune", weights, "-m", "random", "--ratio", "0.3", "--dry-run", "--seed", "3").exit_code == 0


def test_prune_warns_about_calibration_and_binary_gates_it_ignores(trained_weights, monkeypatch) -> None:
    import slimspec.pruning.api as api

    def not_loaded(*_args):
        raise AssertionError("calibration data loaded for a criterion that never reads it")

    monkeypatch.setattr(api, "_calibration_batches", not_loaded)
    result = slimspec.prune(trained_weights("digits_vgg"), "l1", ratio=0.3, calibration="digits", binary_gates=True)
    warnings = [note for note in result.notes if note.startswith("warning:")]
    assert any("calibration data (digits)" in note and "'l1'" in note for note in warnings), result.notes
    assert any("binary_gates" in note and "plain" in note for note in warnings), result.notes


def test_plot_threshold_must_be_finite(run, tmp_path, trained_weights) -> None:
    out = tmp_path / "g.svg"
    line = _one_error_line(run("plot", "gammas", trained_weights("digits_vgg"), "--threshold", "nan", "-o", out))
    assert "finite" in line and not out.exists()


def test_a_training_state_holding_objects_is_refused_without_advice_to_unpickle(tmp_path) -> None:
    from fractions import Fraction

    from slimspec.errors import TrainingError
    from slimspec.training.loop import load_state

    torch.save({"version": 1, "extra": Fraction(1, 3)}, tmp_path / "state.pt")
    with pytest.raises(TrainingError) as caught:
        load_state(tmp_path / "state.pt")
    (line,) = caught.value.lines()
    assert "fractions.Fraction" in line and "weights_only" not in line and ESC not in line and "\\x1b" not in line
