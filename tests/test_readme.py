"""The README's examples are what the commands print.

Every fenced block without a language (or ``diff``) in README.md is output a user would see. Each one
carries a marker on the line before it: ``<!-- readme-check: ID -->`` names the check below that
re-runs the commands on a clean checkout and compares; ``<!-- readme-check: machine-dependent -->``
marks timings and figures that differ from machine to machine; ``<!-- readme-check: diagram -->``
marks text that is not command output. Deterministic examples are compared exactly, except where
the README writes ``...`` for lines left out (then the lines shown must appear, in order).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import DEFAULT_THREADS, ROOT, cli_run

README = (ROOT / "README.md").read_text(encoding="utf-8")
MARKER = re.compile(r"<!-- readme-check: ([\w-]+) -->")
KINDS_NOT_CHECKED = {"machine-dependent", "diagram"}


def blocks() -> list[tuple[str | None, str, str, int]]:
    """``(marker, language, body, line)`` of every fenced block."""
    found, lines, i = [], README.splitlines(), 0
    while i < len(lines):
        if lines[i].startswith("```"):
            language, start = lines[i][3:].strip(), i
            j = i + 1
            while not lines[j].startswith("```"):
                j += 1
            previous = next((lines[k] for k in range(start - 1, -1, -1) if lines[k].strip()), "")
            marker = MARKER.fullmatch(previous.strip())
            found.append((marker.group(1) if marker else None, language, "\n".join(lines[start + 1:j]), start + 1))
            i = j + 1
        else:
            i += 1
    return found


def block(check: str) -> str:
    bodies = [body for marker, _, body, _ in blocks() if marker == check]
    assert len(bodies) == 1, f"README has {len(bodies)} blocks marked {check}"
    return bodies[0]


def output_of(body: str) -> tuple[list[str], str]:
    """The ``$ command`` lines of a transcript and the output after them."""
    lines = body.splitlines()
    commands = [line[2:] for line in lines if line.startswith("$ ")]
    return commands, "\n".join(line for line in lines if not line.startswith("$ "))


def run_transcript(body: str, folder: Path) -> tuple[list[str], list[str]]:
    """Run a transcript's ``$ slimspec ...`` commands in ``folder``: ``(commands, each one's stdout)``."""
    import os

    commands, _ = output_of(body)
    outputs, cwd = [], Path.cwd()
    os.chdir(folder)
    try:
        for command in commands:
            result = cli_run(*command.split()[1:])
            assert result.exit_code == 0, result.output
            outputs.append(result.stdout)
    finally:
        os.chdir(cwd)
    return commands, outputs


def assert_shown(expected: str, actual: str) -> None:
    """``expected`` equals ``actual``; a ``...`` line in it stands for any run of lines."""
    parts = [p.strip("\n") for p in re.split(r"^\s*\.\.\.\s*$", expected, flags=re.M)]
    if len(parts) == 1:
        assert actual.strip("\n") == expected.strip("\n")
        return
    position = 0
    for part in parts:
        if not part:
            continue
        found = actual.find(part, position)
        assert found >= 0, f"README lines not in the output (in this order):\n{part}\n--- output ---\n{actual}"
        position = found + len(part)


def test_every_output_block_is_checked_or_marked():
    checks = {name[len("test_readme_"):].replace("_", "-") for name in globals() if name.startswith("test_readme_")}
    for marker, language, body, line in blocks():
        if language in ("", "diff"):
            assert marker is not None, f"README.md:{line}: an output block without a readme-check marker"
        if marker is not None:
            assert marker in checks | KINDS_NOT_CHECKED, f"README.md:{line}: no check named {marker}"


# -- the checks -----------------------------------------------------------------------------------
def test_readme_validate_bad_spec(tmp_path, monkeypatch):
    (tmp_path / "bad.yaml").write_text(block("bad-spec") + "\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    (command,), expected = output_of(block("validate-bad-spec"))
    result = cli_run(*command.split()[1:])
    assert result.exit_code == 1
    assert_shown(expected, result.output)


def test_readme_bad_spec():
    assert "haed:" in block("bad-spec")  # the input of the validate example, shown before it


@pytest.fixture(scope="module")
def my_net(tmp_path_factory):
    """The README's own commands on examples/my_net.py, run from a copy of the repository's examples."""
    work = tmp_path_factory.mktemp("my_net")
    shutil.copytree(ROOT / "examples", work / "examples")
    cwd = Path.cwd()
    import os
    os.chdir(work)
    try:
        assert cli_run("import", "python:examples.my_net:build", "--input", "3,32,32", "--out", "my_net.yaml").exit_code == 0
        result = cli_run("prune", "my_net.safetensors", "--method", "l1", "--target", "macs=0.5",
                         "--out", "my_net_half.yaml")
        assert result.exit_code == 0, result.output
        diff = cli_run("diff", "my_net.yaml", "my_net_half.yaml")
    finally:
        os.chdir(cwd)
    return work, diff.output


def test_readme_my_net_spec(my_net):
    work, _ = my_net
    assert_shown(block("my-net-spec"), (work / "my_net.yaml").read_text(encoding="utf-8"))


def test_readme_my_net_diff(my_net):
    _, output = my_net
    commands, expected = output_of(block("my-net-diff"))
    assert commands == ["slimspec diff my_net.yaml my_net_half.yaml"]
    assert_shown(expected, output)


def test_readme_demo_table(demo_run):
    out, _ = demo_run
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    rows = [line.split() for line in block("demo-table").splitlines()[2:]]
    for name, params, macs, accuracy, _latency in rows:  # latency: machine-dependent
        assert (params, macs, accuracy) == (f"{summary[name]['params']:,}", f"{summary[name]['macs']:,}",
                                             f"{summary[name]['accuracy']:.2f}")


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False).stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_readme_demo_diff(demo_run, tmp_path):
    out, _ = demo_run
    shutil.copytree(out, tmp_path / "slimspec-demo", ignore=shutil.ignore_patterns("*.png", "*.safetensors", "*.pt"))
    (command,), expected = output_of(block("demo-diff"))
    actual = _git(*command.split()[1:], cwd=tmp_path)
    assert_shown(expected, "\n".join(actual.splitlines()[4:]))  # after the diff/index/---/+++ header lines


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_readme_textconv_diff(demo_run, tmp_path, monkeypatch):
    out, _ = demo_run
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(out / "digits_vgg.yaml", repo / "digits_vgg.yaml")
    (repo / "slimspec-demo").mkdir()
    shutil.copy(out / "digits_vgg_pruned.yaml", repo / "slimspec-demo" / "digits_vgg_pruned.yaml")
    _git("init", "-q", cwd=repo)
    _git("-c", "user.email=t@t", "-c", "user.name=t", "add", "digits_vgg.yaml", cwd=repo)
    _git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "parent", cwd=repo)
    monkeypatch.chdir(repo)
    setup, copy = output_of(block("textconv-diff"))[0]
    assert cli_run(*setup.split()[1:]).exit_code == 0
    shutil.copy(repo / "slimspec-demo" / "digits_vgg_pruned.yaml", repo / "digits_vgg.yaml")
    actual = _git("diff", "digits_vgg.yaml", cwd=repo)
    assert_shown(output_of(block("textconv-diff"))[1], "\n".join(actual.splitlines()[4:]))


def test_readme_sensitivity(demo_run):
    out, _ = demo_run
    (command,), expected = output_of(block("sensitivity"))
    args = [str(out / a[len("slimspec-demo/"):]) if a.startswith("slimspec-demo/") else a for a in command.split()[1:]]
    result = cli_run(*args, "--threads", DEFAULT_THREADS)  # as a fresh process would run it
    assert result.exit_code == 0, result.output
    assert_shown(expected, result.stdout)


# -- Detectors: import a Darknet cfg, prune, diff, export back (tests/data's yolov3-tiny.cfg, the test's weights) --
@pytest.fixture(scope="module")
def yolo_tiny_run(tmp_path_factory):
    """The Detectors section's commands, run in a folder holding yolov3-tiny.cfg and random .weights (seed 0)."""
    from .darknet_reference import Darknet, random_weights_file

    work = tmp_path_factory.mktemp("detectors")
    shutil.copy(ROOT / "tests" / "data" / "yolov3-tiny.cfg", work / "yolov3-tiny.cfg")
    random_weights_file(Darknet(str(work / "yolov3-tiny.cfg")), str(work / "yolov3-tiny.weights"), seed=0)
    commands, outputs = run_transcript(block("detectors"), work)
    return work, commands, outputs


def test_readme_detectors(yolo_tiny_run):
    _, commands, outputs = yolo_tiny_run
    parts = re.split(r"^\$ .*$", block("detectors"), flags=re.M)[1:]
    assert len(parts) == len(outputs) == len(commands)
    for part, output in zip(parts, outputs):
        assert_shown(part, output)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_readme_detectors_diff(yolo_tiny_run):
    work, _, _ = yolo_tiny_run
    (command,), expected = output_of(block("detectors-diff"))
    assert_shown(expected, "\n".join(_git(*command.split()[1:], cwd=work).splitlines()[4:]))


def test_readme_detectors_cfg(yolo_tiny_run):
    work, _, _ = yolo_tiny_run
    (command,), expected = output_of(block("detectors-cfg"))
    actual = subprocess.run(command.split(), cwd=work, capture_output=True, text=True, check=False).stdout
    assert_shown(expected, "\n".join(actual.splitlines()[4:]))


def test_readme_detectors_sizes(yolo_tiny_run):
    work, _, _ = yolo_tiny_run
    rows = [line.split() for line in block("detectors-sizes").splitlines()[2:]]
    for name, params, macs, *_latency in rows:  # latency: machine-dependent
        source = work / f"{name}.yaml" if (work / f"{name}.yaml").exists() else name  # else a stock spec
        info = json.loads(cli_run("info", source, "--json").output)
        assert (params, macs) == (f"{info['params']:,}", f"{info['macs']:,}")


def test_readme_every_cnn_spec():
    """The README's block spec: the slots it describes, and a prune equal to its masked original."""
    import torch

    import slimspec
    from slimspec.document import spec_from_text
    from slimspec.nn.net import SpecNet
    from slimspec.pruning.masking import apply_channel_masks

    from .conftest import randomize

    spec = spec_from_text(block("every-cnn-spec"), "README.md")
    slots = spec.ir.slots
    assert slots["layers[0].conv.out"].kind == "channel" and "layers[9].conv.out" not in slots
    assert slots["layers[12].conv.out"].parts == slots["layers[15].conv.out"].parts == 4
    assert slots["layers[18].chunk"].view == ("layers[15].conv.out", 0, 16)
    model = randomize(SpecNet(spec)).eval()
    result = slimspec.prune(model, "l1", ratio=0.5, scope="layer")
    kept = result.decision.kept
    assert len(kept["layers[12].conv.out"]) % 4 == 0 and len(kept["layers[15].conv.out"]) % 4 == 0
    assert len(kept["layers[18].chunk"]) == len(kept["layers[19].chunk"]) == len(kept["layers[15].conv.out"]) // 2
    masked = SpecNet(spec, "masked")
    masked.load_state_dict(model.state_dict(), strict=False)
    apply_channel_masks(masked, spec.ir, kept)
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(result.model.eval()(x), masked.eval()(x))


def test_readme_supported_models():
    """The README's list of torchvision and timm models is the one tests/test_torchvision_models.py and
    tests/test_timm_models.py walk (each row verified there, the slow ones under ``-m slow``)."""
    from .test_torchvision_models import supported_models_text

    assert block("supported-models") == supported_models_text()


# -- YOLOv8 (Ultralytics): extract a checkpoint's state dict, import, prune, diff (640x640: slow) --------
@pytest.fixture(scope="module")
def yolov8_run(tmp_path_factory):
    """The YOLOv8 subsection's commands, run in a folder holding a yolov8n.pt pickled as Ultralytics saves one
    (``{'model': DetectionModel in half precision}``; random weights, seed 0)."""
    import shlex
    import sys

    import torch

    pytest.importorskip("ultralytics")
    from slimspec.interop.ultralytics_models import ultralytics_model

    work = tmp_path_factory.mktemp("yolov8")
    torch.save({"model": ultralytics_model("yolov8n.yaml", seed=0).half()}, work / "yolov8n.pt")
    extract = shlex.split(block("yolov8-extract"))
    assert extract[0] == "python"
    subprocess.run([sys.executable, *extract[1:]], cwd=work, check=True)
    _, outputs = run_transcript(block("yolov8"), work)
    return work, outputs


@pytest.mark.slow
def test_readme_yolov8_extract(yolov8_run):
    import torch
    from safetensors.torch import load_file

    work, _ = yolov8_run
    model = torch.load(work / "yolov8n.pt", weights_only=False)["model"]  # the test's own pickle
    state = load_file(work / "yolov8n_pt.safetensors")
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[k], v.float()) for k, v in model.state_dict().items())


@pytest.mark.slow
def test_readme_yolov8(yolov8_run):
    _, outputs = yolov8_run
    parts = re.split(r"^\$ .*$", block("yolov8"), flags=re.M)[1:]
    assert len(parts) == len(outputs)
    for part, output in zip(parts, outputs):
        assert_shown(part, output)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_readme_yolov8_diff(yolov8_run):
    work, _ = yolov8_run
    (command,), expected = output_of(block("yolov8-diff"))
    assert_shown(expected, "\n".join(_git(*command.split()[1:], cwd=work).splitlines()[4:]))
