"""The command line: exit codes, located one-line errors, written files."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import slimspec

from .conftest import SPECS, randomize


def test_info_json_reference_figures(run):
    out = json.loads(run("info", SPECS / "vgg19.yaml", "--json").output)
    assert (out["params"], out["macs"], out["flops"]) == (20_035_018, 398_136_320, 796_272_640)
    rows = {r["name"]: r for r in out["layers"]}
    assert rows["features.0.conv"]["shape"] == [64, 32, 32] and rows["features.0.conv"]["slot"] == "cfg[0]"


def test_info_table_labels_macs_and_flops(run):
    result = run("info", SPECS / "preresnet164.yaml")
    assert result.exit_code == 0
    assert "1,703,258" in result.output and "247,646,720" in result.output and "2 x MACs" in result.output


def test_validate_reports_every_error_located(run, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("slimspec: 1\nname: x\narch: vgg\ninput: [3, 32, 32]\nnum_classes: 10\n"
                   "cfg: [64, M, -5, 0]\nhaed: avg\n")
    result = run("validate", bad)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert any(line.startswith(f"{bad}: cfg[2]:") and "-5" in line for line in lines)
    assert any(f"{bad}: cfg[3]:" in line for line in lines)
    assert any("haed" in line and "head" in line for line in lines)
    assert "Traceback" not in result.output


def test_validate_semantic_pooling_error(run, tmp_path):
    bad = tmp_path / "deep.yaml"
    bad.write_text("slimspec: 1\nname: x\narch: vgg\ninput: [1, 8, 8]\nnum_classes: 10\n"
                   "cfg: [8, M, 8, M, 8, M, 8, M]\n")
    result = run("validate", bad)
    assert result.exit_code == 1
    assert "cfg[7]:" in result.stderr and "below 1x1" in result.stderr


def test_validate_missing_file_and_ok(run):
    assert run("validate", "no/such/spec.yaml").exit_code == 1
    result = run("validate", SPECS / "resnet56.yaml", SPECS / "densenet40.yaml")
    assert result.exit_code == 0 and result.output.count(": ok") == 2


def test_build_summary_and_weights(run, tmp_path):
    out = tmp_path / "w.safetensors"
    result = run("build", SPECS / "digits_resnet.yaml", "--out", out)
    assert result.exit_code == 0, result.output
    assert "matches" in result.output and out.exists()
    model, spec = slimspec.load_model(out)
    assert spec.name == "digits_resnet"
    again = run("build", SPECS / "digits_resnet.yaml", "--out", out)
    assert again.exit_code == 1 and "already exists" in again.stderr


def test_schema_is_json(run):
    schema = json.loads(run("schema").output)
    assert schema["$schema"].startswith("https://json-schema.org/")
    plan = json.loads(run("schema", "--plan").output)
    assert "overrides" in plan["properties"] and plan["additionalProperties"] is False


@pytest.fixture
def weights(tmp_path):
    model = randomize(slimspec.build("digits_vgg", seed=0))
    path = tmp_path / "digits_vgg.safetensors"
    slimspec.save_weights(model, model.spec, path)
    return path


def test_prune_writes_spec_and_weights(run, weights, tmp_path):
    out = tmp_path / "p50.yaml"
    result = run("prune", weights, "--method", "slimming", "--ratio", "0.5", "--out", out)
    assert result.exit_code == 0, result.output
    assert out.exists() and out.with_suffix(".safetensors").exists()
    model, spec = slimspec.load_model(out.with_suffix(".safetensors"))
    assert spec.text == out.read_text()
    assert run("diff", SPECS / "digits_vgg.yaml", out).exit_code == 1
    assert run("diff", out, out).exit_code == 0


def test_prune_is_deterministic_byte_for_byte(run, weights, tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    run("prune", weights, "-m", "l1", "--ratio", "0.3", "--out", a)
    run("prune", weights, "-m", "l1", "--ratio", "0.3", "--out", b)
    assert a.read_bytes() == b.read_bytes()


def test_prune_refuses_to_overwrite(run, weights, tmp_path):
    out = tmp_path / "p.yaml"
    out.write_text("precious")
    result = run("prune", weights, "-m", "l1", "--ratio", "0.3", "--out", out)
    assert result.exit_code == 1 and "already exists" in result.stderr
    assert out.read_text() == "precious"
    assert not out.with_suffix(".safetensors").exists()
    assert run("prune", weights, "-m", "l1", "--ratio", "0.3", "--out", out, "--force").exit_code == 0


@pytest.mark.parametrize("args,message", [
    (["--ratio", "1.5"], "ratio"),
    (["--ratio", "-0.1"], "ratio"),
    (["--target", "macs=2"], "target"),
    (["--target", "flops"], "target"),
    (["--exclude", "cfg[99]"], "matches no slot"),
    (["--method", "nope", "--ratio", "0.5"], "'nope' is not one of 'attention'"),
])
def test_prune_bad_requests(run, weights, tmp_path, args, message):
    base = ["prune", weights, "--out", tmp_path / "x.yaml"]
    if "--method" not in args:
        base += ["--method", "l1"]
    result = run(*base, *args)
    assert result.exit_code != 0
    assert message in (result.stderr + result.output)
    assert "Traceback" not in result.output
    assert not (tmp_path / "x.yaml").exists()


def test_prune_dry_run_writes_nothing(run, weights, tmp_path):
    result = run("prune", weights, "-m", "slimming", "--ratio", "0.5", "--dry-run")
    assert result.exit_code == 0 and "kept %" in result.output and "macs" in result.output
    assert list(tmp_path.glob("*.yaml")) == []


def test_prune_plan_errors_are_located(run, weights, tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text("method: l1\nratio: 2\nexclud: [\"cfg[0]\"]\n")
    result = run("prune", weights, "--plan", plan, "--out", tmp_path / "x.yaml")
    assert result.exit_code == 1
    assert "ratio:" in result.stderr and "exclud" in result.stderr


def test_weights_for_another_spec_are_refused(run, weights, tmp_path):
    result = run("prune", weights, "--spec", SPECS / "digits_resnet.yaml", "-m", "l1", "--ratio", "0.5",
                 "--out", tmp_path / "x.yaml")
    assert result.exit_code == 1
    assert "do not fit" in result.stderr and "features.0.conv.weight" in result.stderr


def test_torch_free_commands_do_not_import_torch():
    code = ("import sys; from slimspec.cli.main import cli; from click.testing import CliRunner; "
            f"r = CliRunner().invoke(cli, ['info', r'{SPECS / 'vgg19.yaml'}']); assert r.exit_code == 0; "
            f"r = CliRunner().invoke(cli, ['validate', r'{SPECS / 'vgg19.yaml'}']); assert r.exit_code == 0; "
            f"r = CliRunner().invoke(cli, ['diff', r'{SPECS / 'vgg19.yaml'}', r'{SPECS / 'vgg16.yaml'}']); "
            "assert r.exit_code == 1, r.output; "
            f"r = CliRunner().invoke(cli, ['textconv', r'{SPECS / 'vgg19.yaml'}']); assert r.exit_code == 0; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_outputs_get_normal_permissions(run, tmp_path):
    import os
    import stat

    out = tmp_path / "w.safetensors"
    run("build", SPECS / "digits_mlp.yaml", "--out", out)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask
