"""Outputs: collisions refused by real path and inode, no clobbering, stale temporaries, byte-determinism."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import slimspec
from slimspec.errors import OutputConflictError, OutputExistsError
from slimspec.utils.fileio import OutputTransaction, sha256_file
from slimspec.weights import embedded_spec_text, read_weights

from .conftest import SPECS, cli_run as invoke, one_line_error, randomize


def listing(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def weights(tmp_path) -> Path:
    model = randomize(slimspec.build("lenet5", seed=0))
    path = tmp_path / "in.safetensors"
    slimspec.save_weights(model, model.spec, path)
    return path


# ------------------------------------------------------------------ the transaction API


def test_output_equal_to_an_input_is_refused_by_name_symlink_and_hard_link(tmp_path):
    source = tmp_path / "in.bin"
    source.write_bytes(b"trained")
    (tmp_path / "link.bin").symlink_to(source)
    os.link(source, tmp_path / "hard.bin")
    for name in ("in.bin", "sub/../in.bin", "link.bin", "hard.bin"):
        with pytest.raises(OutputConflictError, match="output would overwrite an input"):
            with OutputTransaction(force=True) as tx:
                tx.check_inputs(source)
                tx.write(tmp_path / name, b"clobbered")
    # the order of the calls does not matter: an input registered after the output is checked too
    with pytest.raises(OutputConflictError, match="hard.bin"):
        with OutputTransaction(force=True) as tx:
            tx.reserve(tmp_path / "hard.bin")
            tx.check_inputs(source)
    assert source.read_bytes() == b"trained"
    assert sorted(os.listdir(tmp_path)) == ["hard.bin", "in.bin", "link.bin"]


def test_two_outputs_naming_one_file_are_refused(tmp_path):
    with pytest.raises(OutputConflictError, match=r"a.txt: named twice as an output"):
        with OutputTransaction() as tx:
            tx.write(tmp_path / "a.txt", "one")
            tx.write(tmp_path / "." / "a.txt", "two")
    assert os.listdir(tmp_path) == []


def test_existing_output_refused_without_force_and_replaced_with_it(tmp_path):
    target = tmp_path / "x.yaml"
    target.write_text("old")
    target.chmod(0o640)
    with pytest.raises(OutputExistsError, match="x.yaml: already exists"):
        with OutputTransaction() as tx:
            tx.write(tmp_path / "new.yaml", "new")
            tx.write(target, "new")
    assert listing(tmp_path) == {"x.yaml": b"old"}
    with OutputTransaction(force=True) as tx:
        tx.write(target, "new")
    assert listing(tmp_path) == {"x.yaml": b"new"}
    assert target.stat().st_mode & 0o777 == 0o640  # the replaced file's permissions are kept


def test_folders_and_devices_are_not_outputs(tmp_path):
    with pytest.raises(OutputConflictError, match="names a folder"):
        with OutputTransaction(force=True) as tx:
            tx.write(tmp_path, "x")
    with pytest.raises(OutputConflictError, match="/dev/null: is not a regular file"):
        with OutputTransaction(force=True) as tx:
            tx.write("/dev/null", "x")
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")


def test_rollback_removes_created_folders_and_locks(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with OutputTransaction() as tx:
            tx.write(tmp_path / "a" / "b" / "x.yaml", "x")
            assert (tmp_path / "a" / "b" / ".x.yaml.lock").exists()
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------ collisions on the command line


def test_prune_out_equal_to_the_input_weights_is_refused(weights):
    before = weights.read_bytes()
    result = invoke("prune", weights, "-m", "l1", "--ratio", "0.5", "--out", weights, "--force")
    one_line_error(result, str(weights), "would overwrite an input")
    assert weights.read_bytes() == before and sorted(os.listdir(weights.parent)) == ["in.safetensors"]


def test_prune_weights_out_equal_to_out_is_refused(weights, tmp_path):
    result = invoke("prune", weights, "-m", "l1", "--ratio", "0.5", "--out", tmp_path / "p.yaml",
                    "--weights-out", tmp_path / "p.yaml", "--force")
    one_line_error(result, "p.yaml: named twice as an output")
    assert sorted(os.listdir(tmp_path)) == ["in.safetensors"]


def test_prune_out_through_a_symlink_to_the_input_is_refused(weights, tmp_path):
    (tmp_path / "link.safetensors").symlink_to(weights)
    before = weights.read_bytes()
    result = invoke("prune", weights, "-m", "l1", "--ratio", "0.5", "--out", tmp_path / "p.yaml",
                    "--weights-out", tmp_path / "link.safetensors", "--force")
    one_line_error(result, "link.safetensors", f"the same file as input {weights}")
    assert weights.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["in.safetensors", "link.safetensors"]


def test_prune_out_equal_to_the_plan_or_spec_is_refused(weights, tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text("method: l1\nratio: 0.5\n")
    one_line_error(invoke("prune", weights, "--plan", plan, "--out", plan, "--force"), "plan.yaml", "an input")
    assert plan.read_text() == "method: l1\nratio: 0.5\n"
    spec = tmp_path / "lenet5.yaml"
    spec.write_text((SPECS / "lenet5.yaml").read_text())
    one_line_error(invoke("prune", weights, "--spec", spec, "-m", "l1", "--ratio", "0.5", "--out", tmp_path / "p.yaml",
                          "--weights-out", spec, "--force"), "lenet5.yaml", "an input")
    assert spec.read_text() == (SPECS / "lenet5.yaml").read_text()


def test_import_out_with_the_weights_suffix_is_refused_before_any_work(tmp_path):
    result = invoke("import", "torchvision:resnet18", "--out", tmp_path / "y.safetensors")
    one_line_error(result, "y.safetensors: named twice as an output")
    assert os.listdir(tmp_path) == []


def test_import_over_its_own_state_dict_is_refused(tmp_path):
    state = tmp_path / "r.pth"
    state.write_bytes(b"not really a state dict")
    result = invoke("import", "torchvision:resnet18", "--state-dict", state, "--out", tmp_path / "r.yaml",
                    "--weights-out", state, "--force")
    one_line_error(result, "r.pth", "would overwrite an input")
    assert state.read_bytes() == b"not really a state dict" and sorted(os.listdir(tmp_path)) == ["r.pth"]


def test_build_out_over_its_spec_is_refused_and_existing_out_kept(tmp_path):
    spec = tmp_path / "net.yaml"
    spec.write_text((SPECS / "lenet5.yaml").read_text())
    one_line_error(invoke("build", spec, "--out", spec, "--force"), "net.yaml", "would overwrite an input")
    assert spec.read_text() == (SPECS / "lenet5.yaml").read_text()
    out = tmp_path / "w.safetensors"
    assert invoke("build", spec, "--out", out).exit_code == 0
    before = out.read_bytes()
    one_line_error(invoke("build", spec, "--out", out, "--seed", "1"), "w.safetensors: already exists")
    assert out.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["net.yaml", "w.safetensors"]


# ------------------------------------------------------------------ leftovers of a killed run


def test_stale_temporaries_do_not_block_a_rerun_and_are_removed(weights, tmp_path):
    out = tmp_path / "c" / "x.yaml"
    out.parent.mkdir()
    for stale in (".x.yaml.0badc0de.tmp", ".x.safetensors.12345678.tmp", ".x.safetensors.deadbeef.old.tmp",
                  ".x.yaml.lock"):
        (out.parent / stale).write_text("left by kill -9")
    result = invoke("prune", weights, "-m", "l1", "--ratio", "0.5", "--out", out)
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(out.parent)) == ["x.safetensors", "x.yaml"]


def test_a_leftover_first_file_is_named_without_force_and_replaced_with_it(weights, tmp_path):
    out = tmp_path / "x.yaml"
    (tmp_path / "x.safetensors").write_bytes(b"half of an earlier pair")
    result = invoke("prune", weights, "-m", "l1", "--ratio", "0.5", "--out", out)
    one_line_error(result, "x.safetensors: already exists", "--force")
    assert not out.exists()
    assert invoke("prune", weights, "-m", "l1", "--ratio", "0.5", "--out", out, "--force").exit_code == 0
    _, meta = read_weights(tmp_path / "x.safetensors")
    assert embedded_spec_text(meta) == out.read_text()


# ------------------------------------------------------------------ byte-determinism across processes

DETERMINISM_SCRIPT = textwrap.dedent("""
    import sys
    from click.testing import CliRunner
    from slimspec.cli.main import cli
    for args in (["build", "lenet5", "--seed", "0", "--out", "w.safetensors"],
                 ["prune", "w.safetensors", "-m", "l1", "--ratio", "0.5", "--out", "p.yaml"],
                 ["prune", "w.safetensors", "-m", "random", "--seed", "3", "--ratio", "0.3", "--out", "r.yaml"]):
        result = CliRunner().invoke(cli, args)
        if result.exit_code:
            sys.exit(result.output)
""")


def test_identical_commands_in_separate_processes_write_identical_bytes(tmp_path):
    folders = [tmp_path / "one", tmp_path / "two"]
    runs = []
    for folder in folders:
        folder.mkdir()
        runs.append(subprocess.Popen([sys.executable, "-c", DETERMINISM_SCRIPT], cwd=folder,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for process in runs:
        output, _ = process.communicate(timeout=120)
        assert process.returncode == 0, output
    one, two = listing(folders[0]), listing(folders[1])
    assert sorted(one) == ["p.safetensors", "p.yaml", "r.safetensors", "r.yaml", "w.safetensors"]
    assert one == two  # every file, byte for byte (safetensors metadata order included)
    # the provenance's weights_sha256 is the parent file's hash, so it reproduces too
    pruned = slimspec.load_spec(folders[0] / "p.yaml")
    assert pruned.data["pruned"]["weights_sha256"] == sha256_file(folders[0] / "w.safetensors")
    header = one["w.safetensors"][8: 8 + int.from_bytes(one["w.safetensors"][:8], "little")]
    meta = json.loads(header)["__metadata__"]
    assert list(meta) == sorted(meta)
