"""Reviewing pruned specs: minimal git diffs, the textconv driver, `slimspec diff`."""
from __future__ import annotations

import difflib
import shutil
import subprocess

import pytest

import slimspec
from slimspec.document import load_spec
from slimspec.pruning.api import prune
from slimspec.report.diff import spec_diff
from slimspec.report.textconv import textconv

from .conftest import SPECS, randomize


@pytest.fixture(scope="module")
def vgg19_p70(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vgg19")
    model = randomize(slimspec.build("vgg19", seed=0))
    weights = folder / "vgg19.safetensors"
    slimspec.save_weights(model, model.spec, weights)
    result = prune(weights, "slimming", ratio=0.7, spec=SPECS / "vgg19.yaml")
    out, _ = result.save(folder / "vgg19_p70.yaml")
    return result, out


def test_git_diff_shows_only_cfg_and_provenance(vgg19_p70):
    result, out = vgg19_p70
    parent = (SPECS / "vgg19.yaml").read_text().splitlines()
    child = out.read_text().splitlines()
    removed = [l[1:] for l in difflib.unified_diff(parent, child, lineterm="", n=0) if l.startswith("-") and not l.startswith("---")]
    added = [l[1:] for l in difflib.unified_diff(parent, child, lineterm="", n=0) if l.startswith("+") and not l.startswith("+++")]
    assert len(removed) == 1 and removed[0].startswith("cfg: [64, 64, M")
    assert added[0].startswith("cfg: [") and added[1] == "pruned:"
    assert all(line.startswith("  ") for line in added[2:])
    assert child[0] == parent[0]  # the comment survives


def test_provenance_block(vgg19_p70):
    result, out = vgg19_p70
    pruned = load_spec(out).data["pruned"]
    assert pruned["parent"] == "vgg19" and pruned["method"] == "slimming" and pruned["ratio"] == 0.7
    assert pruned["parent_sha256"] == load_spec(SPECS / "vgg19.yaml").sha256
    assert pruned["params"] == {"before": 20_035_018, "after": result.params[1]}
    assert pruned["macs"]["before"] == 398_136_320
    kept = sum(v for v in result.spec.data["cfg"] if v != "M")
    assert kept == 5504 - (5504 - int(5504 * 0.3 + 1e-9))


def test_slimspec_diff(vgg19_p70):
    result, out = vgg19_p70
    diff = spec_diff(load_spec(SPECS / "vgg19.yaml"), load_spec(out))
    assert not diff["equal"]
    assert diff["params"]["after"] == result.params[1]
    assert {row["slot"] for row in diff["slots"]} <= {f"cfg[{i}]" for i in range(20)}


def test_textconv_one_line_per_slot(vgg19_p70):
    _, out = vgg19_p70
    lines = textconv(load_spec(out)).splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("cfg["))
    assert lines[first].split() == ["cfg[0]", str(load_spec(out).data["cfg"][0])]
    assert lines[first + 2].startswith("cfg[2]") and lines[first + 2].endswith("maxpool")
    assert "batch_norm: true" in lines
    assert any(line.startswith("pruned.method: \"slimming\"") for line in lines)


@pytest.mark.skipif(shutil.which("git") is None or shutil.which("slimspec") is None, reason="needs git and the installed CLI")
def test_git_setup_makes_git_diff_per_layer(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git = lambda *a: subprocess.run(["git", *a], cwd=repo, check=True, capture_output=True, text=True).stdout  # noqa: E731
    git("init", "-q")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    spec = repo / "net.yaml"
    spec.write_text((SPECS / "digits_vgg.yaml").read_text())
    subprocess.run(["slimspec", "git-setup"], cwd=repo, check=True, capture_output=True)
    git("add", ".")
    git("commit", "-qm", "base")
    spec.write_text(spec.read_text().replace("cfg: [32, 32, M, 64, 64, M, 128]", "cfg: [32, 20, M, 64, 64, M, 100]"))
    diff = git("diff")
    assert "-cfg[1]" in diff.replace(" ", "") and "+cfg[1]" in diff.replace(" ", "")
    assert "-cfg[6]" in diff.replace(" ", "")


def test_pruning_a_pruned_spec_keeps_the_lineage(vgg19_p70, tmp_path):
    result, out = vgg19_p70
    again = prune(out.with_suffix(".safetensors"), "l1", ratio=0.2)
    block = again.spec.data["pruned"]
    assert block["method"] == "l1" and block["parent_sha256"] == load_spec(out).sha256
    assert [h["method"] for h in block["history"]] == ["slimming"]
    assert block["history"][0]["params"]["before"] == 20_035_018
    third = prune(again.model, "random", ratio=0.1)
    assert [h["method"] for h in third.spec.data["pruned"]["history"]] == ["slimming", "l1"]
