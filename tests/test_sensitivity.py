"""Per-layer sensitivity (Li et al. Fig. 2): one slot pruned at a time, accuracy without fine-tuning."""
from __future__ import annotations

import json

from click.testing import CliRunner

import slimspec
from slimspec.cli.main import cli
from slimspec.workflows.sensitivity import sensitivity


def test_sensitivity_table(tmp_path):
    slimspec.train("digits_vgg", "digits", tmp_path / "run", epochs=3, quiet=True)
    weights = tmp_path / "run" / "last.safetensors"
    result = sensitivity(weights, "digits", ratios=[0.0, 0.95], slots=["cfg[0]", "cfg[6]"], limit=200)
    assert list(result["slots"]) == ["cfg[0]", "cfg[6]"]
    for row in result["slots"].values():
        assert row["0"] == result["baseline"]  # ratio 0 is the unpruned network
    assert result["slots"]["cfg[0]"]["0.95"] < result["baseline"] - 20  # 2 of 32 first-layer filters left
    out = CliRunner().invoke(cli, ["sensitivity", str(weights), "--data", "digits", "--ratios", "0.5",
                                   "--slot", "cfg[1]", "--json"], catch_exceptions=False)
    assert out.exit_code == 0 and list(json.loads(out.output)["slots"]) == ["cfg[1]"]
    bad = CliRunner().invoke(cli, ["sensitivity", str(weights), "--data", "digits", "--ratios", "half"])
    assert bad.exit_code == 2 and "ratios" in bad.output


def test_sensitivity_refuses_requests_that_would_give_an_empty_table(trained_weights):
    weights = str(trained_weights("digits_vgg"))
    runner = CliRunner()
    for args, message in [(["--limit", "0"], "--limit must be at least 1"),
                          (["--slot", "cfg[99]"], "slot: pattern 'cfg[99]' matches no slot"),
                          (["--ratios", ","], "give at least one ratio"),
                          (["--ratios", "1.5"], "ratio: a pruning ratio must be in [0, 1), got 1.5"),
                          (["--ratios", "0.5,nan"], "ratio: expected a finite number, got nan")]:
        out = runner.invoke(cli, ["sensitivity", weights, "--data", "digits", *args])
        assert out.exit_code == 1, (args, out.output)
        assert message in out.stderr and "Traceback" not in out.output
