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
