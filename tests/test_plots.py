"""``slimspec plot`` and slimspec.report.plots: every figure from the demo's real artifacts.

Checks the files (PNG signature, parseable SVG), the plotted data against the pruning policy
and the specs, and the one-line errors for bad input.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
import torch

from slimspec.document import load_spec
from slimspec.errors import MissingExtraError, SlimspecError
from slimspec.ir import count_macs
from slimspec.model import load_model
from slimspec.pruning.api import prune
from slimspec.report import plots
from slimspec.workflows.demo import run_demo
from slimspec.workflows.sensitivity import sensitivity

from .conftest import cli_run

PNG = b"\x89PNG\r\n\x1a\n"


def is_svg(path) -> bool:
    return ET.parse(path).getroot().tag == "{http://www.w3.org/2000/svg}svg"


def run(*args):
    return cli_run(*args, catch_exceptions=True)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A 2+1-epoch demo: trained weights, run folders, parent and pruned specs, summary.json."""
    out = tmp_path_factory.mktemp("plots") / "demo"
    torch.manual_seed(0)
    before = torch.get_num_threads()
    threads_seen: set[int] = set()
    summary = run_demo(out, epochs=2, finetune_epochs=1, quiet=True, threads=1,
                       say=lambda line: threads_seen.add(torch.get_num_threads()))
    assert threads_seen == {1} and torch.get_num_threads() == before  # --threads for the run, restored after
    return out, summary


def test_demo_writes_its_figures(demo):
    out, _ = demo
    assert run("demo", "--threads", "0", "--out", out / "x").exit_code == 2
    for name in ("gammas.png", "widths.png", "training.png", "tradeoff.png"):
        assert (out / name).read_bytes()[:8] == PNG, name


def test_gammas_threshold_and_kept_counts_are_the_policys(demo, tmp_path):
    out, _ = demo
    weights = out / "train" / "last.safetensors"
    data = plots.score_data(weights, "slimming", ratio=0.5)
    result = prune(weights, "slimming", ratio=0.5)
    assert data.threshold == result.decision.threshold
    assert data.kept == {path: result.spec.ir.slots[path].size for path in data.kept}
    model, _ = load_model(weights)
    gammas = sorted(float(v) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) for v in m.weight.detach().abs())
    assert sorted(data.values) == gammas  # every BN |gamma| of digits_vgg, one per channel
    counts, edges = plots.histogram(data.values, bins=50)
    assert sum(counts) == len(gammas) and len(edges) == 51 and edges[0] == 0.0
    assert data.pruned == len(gammas) - len(gammas) // 2

    result = run("plot", "gammas", weights, "--ratio", "0.5", "-o", tmp_path / "g.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "g.png").read_bytes()[:8] == PNG
    # --percent is prune's (Network Slimming's fraction), not a ratio in percent
    result = run("plot", "gammas", weights, "--percent", "50", "-o", tmp_path / "p.png")
    assert result.exit_code == 1 and result.stderr == "error: percent: a pruning ratio must be in [0, 1), got 50.0\n"
    assert not (tmp_path / "p.png").exists()


def test_gammas_per_layer_svg_has_each_slots_cut(demo, tmp_path):
    out, _ = demo
    weights = out / "train" / "last.safetensors"
    data = plots.score_data(weights, "l1", ratio=0.25)  # l1 is per layer: no global threshold
    assert data.threshold is None
    for path, scores in data.scores.items():
        dropped = sorted(scores)[: len(scores) - int(len(scores) * 0.75)]
        assert data.slot_thresholds[path] == max(dropped)
    target = plots.plot_gammas(weights, tmp_path / "l1.svg", method="l1", per_layer=True, ratio=0.25)
    assert is_svg(target)


def test_gammas_bad_method_input_is_one_line(demo, tmp_path):
    out, _ = demo
    result = run("plot", "gammas", out / "train" / "last.safetensors", "-m", "gate", "-o", tmp_path / "g.png")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "--gates sss" in result.stderr
    result = run("plot", "gammas", out / "train" / "last.safetensors", "--ratio", "0.5", "--percent", "0.1",
                 "-o", tmp_path / "g.png")
    assert result.exit_code == 1 and result.stderr == "error: give either percent or ratio, not both\n"
    assert not (tmp_path / "g.png").exists()


PLOT_AND_PRUNE = [  # the same flags for `plot gammas` and `prune --dry-run`, and as keywords of score_data
    (["--ratio", "0.5"], {"ratio": 0.5}),
    (["--percent", "0.4"], {"percent": 0.4}),
    (["--threshold", "0.3", "--min-channels", "6"], {"threshold": 0.3, "min_channels": 6}),
    (["--target", "macs=0.5"], {"target": "macs=0.5"}),
    (["--ratio", "0.6", "--exclude", "cfg[0]", "--round-to", "8"], {"ratio": 0.6, "exclude": ["cfg[0]"], "round_to": 8}),
    (["--percent", "0.5", "--override", "cfg[6]=0.1", "--scope", "layer"],
     {"percent": 0.5, "overrides": {"cfg[6]": 0.1}, "scope": "layer"}),
    (["--plan", "PLAN"], {"plan": "PLAN"}),
]


@pytest.mark.parametrize("flags, keywords", PLOT_AND_PRUNE, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_gammas_draws_the_threshold_prune_dry_run_reports(trained_weights, tmp_path, flags, keywords):
    weights = trained_weights("digits_vgg")
    plan = tmp_path / "plan.yaml"
    plan.write_text("method: slimming\npercent: 0.3\nexclude: [\"cfg[6]\"]\nmin_channels: 4\n", encoding="utf-8")
    flags = [str(plan) if f == "PLAN" else f for f in flags]
    keywords = {k: str(plan) if v == "PLAN" else v for k, v in keywords.items()}
    report = json.loads(run("prune", weights, "-m", "slimming", *flags, "--dry-run", "--json").stdout)
    printed = run("prune", weights, "-m", "slimming", *flags, "--dry-run").stdout
    result = run("plot", "gammas", weights, *flags, "-o", tmp_path / "g.svg")
    assert result.exit_code == 0, result.output

    data = plots.score_data(weights, **keywords)
    assert data.threshold == report["threshold"]  # exactly prune's
    assert data.pruned == sum(row["before"] - row["after"] for row in report["slots"] if row["slot"] in data.kept)
    if report["threshold"] is None:  # per-layer percent: each slot's own cut, no global line
        assert "threshold" not in printed and data.slot_thresholds
        return
    # the figure's legend (SVG keeps text as a comment) against the line prune --dry-run prints
    drawn = re.search(r"<!-- threshold (\S+): (\d+) of (\d+) channels pruned", (tmp_path / "g.svg").read_text())
    assert drawn, "no threshold in the legend"
    assert f"threshold {drawn[1]} (channels with score <= threshold removed)" in printed
    assert (int(drawn[2]), int(drawn[3])) == (data.pruned, len(data.values))


def test_widths_data_are_the_slot_sizes(demo, tmp_path):
    out, _ = demo
    parent, child = out / "digits_vgg.yaml", out / "digits_vgg_pruned.yaml"
    data = plots.width_data(parent, child)
    a, b = load_spec(parent).ir.slots, load_spec(child).ir.slots
    assert data.slots == [p for p, s in a.items() if s.kind in plots.WIDTH_KINDS]
    assert data.before == [a[p].size for p in data.slots] and data.after == [b[p].size for p in data.slots]
    assert data.after != data.before
    # the pruned weights file carries its spec: same data without reading the YAML
    assert plots.width_data(parent, out / "digits_vgg_pruned.safetensors").after == data.after
    result = run("plot", "widths", parent, child, "-o", tmp_path / "w.svg")
    assert result.exit_code == 0 and is_svg(tmp_path / "w.svg")


def test_widths_from_specs_never_import_torch(demo, tmp_path):
    out, _ = demo
    code = ("import sys; from slimspec.report.plots import plot_widths; "
            f"plot_widths({str(out / 'digits_vgg.yaml')!r}, {str(out / 'digits_vgg_pruned.yaml')!r}, "
            f"{str(tmp_path / 'w.png')!r}); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (tmp_path / "w.png").read_bytes()[:8] == PNG


def test_sensitivity_curves_from_the_json(demo, tmp_path, capsys):
    out, _ = demo
    result = sensitivity(out / "train" / "last.safetensors", "digits", ratios=(0.25, 0.75), slots=("cfg[1]",),
                         limit=64, quiet=True)
    assert capsys.readouterr() == ("", "")  # quiet: no progress
    (tmp_path / "sens.json").write_text(json.dumps(result))
    assert plots.sensitivity_data(tmp_path / "sens.json")["slots"] == result["slots"]
    cli_result = run("plot", "sensitivity", tmp_path / "sens.json", "-o", tmp_path / "s.png")
    assert cli_result.exit_code == 0 and (tmp_path / "s.png").read_bytes()[:8] == PNG


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("{not json", "not JSON"),
    ('{"slots": {}}', "not a 'slimspec sensitivity --json' result"),
    ('{"ratios": [0.5], "slots": {"cfg[0]": {"0.5": "high"}}}', "slots.cfg[0]: expected"),
])
def test_sensitivity_bad_input_is_one_located_line(tmp_path, content, message):
    source = tmp_path / "sens.json"
    if content is not None:
        source.write_text(content)
    result = run("plot", "sensitivity", source, "-o", tmp_path / "s.png")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"error: {source}") and message in result.stderr
    assert not (tmp_path / "s.png").exists()


def test_training_curves_and_bad_metrics(demo, tmp_path):
    out, _ = demo
    records = plots.training_data(out / "train")
    assert [r["epoch"] for r in records] == [1, 2]
    result = run("plot", "training", out / "train", out / "finetune", "-o", tmp_path / "t.svg")
    assert result.exit_code == 0 and is_svg(tmp_path / "t.svg")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "metrics.jsonl").write_text("")
    with pytest.raises(SlimspecError, match="empty, no epoch recorded"):
        plots.training_data(empty)
    (empty / "metrics.jsonl").write_text('{"epoch": 1}\n{oops\n')
    result = run("plot", "training", empty, "-o", tmp_path / "t.png")
    assert result.exit_code == 1 and f"{empty / 'metrics.jsonl'}:2: not JSON" in result.stderr
    result = run("plot", "training", tmp_path / "nowhere", "-o", tmp_path / "t.png")
    assert result.exit_code == 1 and "no such file" in result.stderr


def test_tradeoff_points_from_run_folders_and_the_demo_summary(demo, tmp_path):
    out, summary = demo
    points = plots.tradeoff_data([out / "train", out])
    run_point = points[0]
    last = plots.training_data(out / "train")[-1]
    _, spec = load_model(out / "train" / "last.safetensors")
    assert (run_point.label, run_point.accuracy, run_point.macs) == ("train", last["test_accuracy"], count_macs(spec.ir))
    assert [(p.label, p.macs, p.accuracy) for p in points[1:]] == [
        (f"demo/{k}", summary[k]["macs"], summary[k]["accuracy"]) for k in ("original", "pruned", "finetuned")]
    result = run("plot", "tradeoff", out, "--x", "latency", "-o", tmp_path / "lat.svg")
    assert result.exit_code == 0 and is_svg(tmp_path / "lat.svg")
    result = run("plot", "tradeoff", out / "train", "--x", "latency", "-o", tmp_path / "lat2.svg")
    assert result.exit_code == 1 and "no latency recorded" in result.stderr


def test_outputs_are_not_clobbered_and_need_a_known_suffix(demo, tmp_path):
    out, _ = demo
    args = ["plot", "widths", out / "digits_vgg.yaml", out / "digits_vgg_pruned.yaml"]
    target = tmp_path / "w.png"
    target.write_bytes(b"keep me")
    result = run(*args, "-o", target)
    assert result.exit_code == 1 and "already exists (use --force" in result.stderr
    assert target.read_bytes() == b"keep me"
    assert run(*args, "-o", target, "--force").exit_code == 0 and target.read_bytes()[:8] == PNG
    result = run(*args, "-o", tmp_path / "w.pdf")
    assert result.exit_code == 1 and "unsupported figure format '.pdf'" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.png"]  # no temporary left behind


def test_missing_matplotlib_names_the_extra(demo, tmp_path, monkeypatch):
    out, _ = demo
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import` raise ImportError
    with pytest.raises(MissingExtraError, match=r"slimspec\[plot\]"):
        plots.plot_widths(out / "digits_vgg.yaml", out / "digits_vgg_pruned.yaml", tmp_path / "w.png")
    assert not (tmp_path / "w.png").exists()
