"""Hardening of everything that reads YAML (issue 8): bounded parsing, located one-line errors,
allocation guard, validate/diff exit codes, CRLF specs, the API's single exclude pattern."""
from __future__ import annotations

import json
import tracemalloc

import pytest
import torch
from safetensors.torch import save_file

import slimspec
from slimspec.document import dump_spec, load_spec
from slimspec.pruning.options import PruneOptions, load_plan
from slimspec.specio import SpecError, parse_yaml, update_spec_text
from slimspec.specio import limits

from .conftest import SPECS

DIGITS = (SPECS / "digits_vgg.yaml").read_text(encoding="utf-8")
# 9 anchors, each a list of 9 aliases of the one before: 442 bytes that expand to 9**9 nodes
BOMB = "a0: &a0 [1,1,1,1,1,1,1,1,1]\n" + "".join(
    f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10))
LONG_NAME = "x" * 300 + ".yaml"


def write(tmp_path, name: str, text: str | bytes):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def one_error(exc: SpecError) -> str:
    assert len(exc.lines()) == 1
    return exc.lines()[0]


# ---- parse limits --------------------------------------------------------------------------

def test_alias_bomb_is_refused_while_composing_with_bounded_memory() -> None:
    tracemalloc.start()
    try:
        with pytest.raises(SpecError) as err:
            parse_yaml(BOMB, "bomb.yaml")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    line = one_error(err.value)
    assert line.startswith("bomb.yaml: line 6, column ") and "MAX_NODES" in line and f"{limits.MAX_NODES:,}" in line
    assert peak < 20 * 2**20  # refused after a few thousand nodes, never expanded


def test_node_count_limit_is_exact() -> None:
    # root, key a, list x (1 + 999 items), key b, list b (1 + 98 aliases of x + pad scalars)
    assert limits.MAX_NODES == 100_000
    pad = limits.MAX_NODES - (4 + 1000 * 99)
    text = "a: &x [" + ",".join(["1"] * 999) + "]\nb: [" + ",".join(["*x"] * 98 + ["2"] * pad) + "]\n"
    assert len(parse_yaml(text)["b"]) == 98 + pad
    with pytest.raises(SpecError, match="MAX_NODES"):
        parse_yaml(text.replace("b: [", "b: [3,"))


def test_recursive_alias_is_refused() -> None:
    with pytest.raises(SpecError) as err:
        parse_yaml("a: &x [1, *x]\n", "r.yaml")
    assert one_error(err.value) == "r.yaml: line 1, column 11: alias *x refers to a node that contains it (recursive alias)"


@pytest.mark.parametrize("levels", [limits.MAX_DEPTH + 1, 5000])
def test_deep_nesting_is_a_located_error_not_a_recursion_error(levels: int) -> None:
    text = "cfg: " + "[" * levels + "]" * levels + "\n"  # the top mapping is a level too
    with pytest.raises(SpecError) as err:
        parse_yaml(text, "deep.yaml")
    line = one_error(err.value)
    # the column is where the limit tripped: ours (5 + MAX_DEPTH), or libyaml's own 1000-level
    # guard, which newer PyYAML builds (6.0.4) check while scanning, before our composer sees the event
    assert line.startswith("deep.yaml: line 1, column ")
    assert line.endswith(f": more than {limits.MAX_DEPTH} nested levels (limit MAX_DEPTH)")
    if levels < 1000:
        assert line.startswith(f"deep.yaml: line 1, column {5 + limits.MAX_DEPTH}:")


def test_depth_is_counted_through_aliases() -> None:
    half = limits.MAX_DEPTH // 2 + 2
    text = "a: &a " + "[" * half + "]" * half + "\nb: " + "[" * half + "*a" + "]" * half + "\n"
    with pytest.raises(SpecError, match="nested levels with aliases expanded"):
        parse_yaml(text)
    assert parse_yaml("a: " + "[" * (limits.MAX_DEPTH - 1) + "]" * (limits.MAX_DEPTH - 1))


def test_integer_limit() -> None:
    assert parse_yaml(f"a: {limits.MAX_INT}")["a"] == 2**63 - 1
    assert parse_yaml(f"a: -{limits.MAX_INT}")["a"] == -(2**63 - 1)
    for text in (str(2**63), "0x8000000000000000", "1" + "0" * 400, "1" * 5000):
        with pytest.raises(SpecError) as err:
            parse_yaml(f"x: 1\na: {text}\n", "n.yaml")
        assert one_error(err.value).startswith("n.yaml: line 2, column 4: integer ")
        assert "too large (limit MAX_INT" in one_error(err.value)


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1b", "\x7f", "\ufffe"])
def test_control_characters_are_located(char: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_yaml(f"slimspec: 1\nname: 'ab{char}'\n", "c.yaml")
    assert one_error(err.value) == f"c.yaml: line 2, column 10: control character U+{ord(char):04X} is not allowed in YAML"


def test_text_size_limit() -> None:
    big = "# " + "x" * limits.MAX_FILE_BYTES + "\nslimspec: 1\n"
    with pytest.raises(SpecError, match="larger than 1,048,576 bytes \\(limit MAX_FILE_BYTES\\)"):
        parse_yaml(big)


# ---- files: specs, plans, weights ----------------------------------------------------------

BAD_FILES = {
    "bomb.yaml": (BOMB, "MAX_NODES"),
    "deep.yaml": ("cfg: " + "[" * 5000 + "]" * 5000, "MAX_DEPTH"),
    "bigint.yaml": (DIGITS.replace("[32, 32,", f"[{10**400}, 32,"), "MAX_INT"),
    "nul.yaml": (DIGITS.replace("digits_vgg", "digits\x00vgg"), "U+0000"),
    "arch.yaml": (DIGITS.replace("arch: vgg", "arch: [vgg]"), "arch: expected a family name, got a list"),
    "huge.yaml": (DIGITS + "#" * limits.MAX_FILE_BYTES, "MAX_FILE_BYTES"),
    "latin1.yaml": (DIGITS.replace("handwritten", "handwr\xefitten").encode("latin-1"), "not UTF-8 text (byte 0xef)"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
@pytest.mark.parametrize("command", ["validate", "info"])
def test_bad_spec_files_give_one_located_line(run, tmp_path, name: str, command: str) -> None:
    text, expected = BAD_FILES[name]
    path = write(tmp_path, name, text)
    result = run(command, path)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{path}: ") and expected in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_plan_files_give_one_located_line(tmp_path, name: str) -> None:
    text, expected = BAD_FILES[name]
    if name == "arch.yaml":  # a spec-only check; as a plan it is simply not a plan
        expected = "unknown key"
    path = write(tmp_path, name, text)
    with pytest.raises(SpecError) as err:
        load_plan(path)
    assert str(path) in err.value.lines()[0] and expected in str(err.value)


def test_long_file_names_are_one_line(run, tmp_path) -> None:
    path = str(tmp_path / LONG_NAME)
    for command in (["validate", path], ["info", path], ["build", path]):
        result = run(*command)
        assert result.exit_code == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "file name of 305 bytes is too long (limit MAX_NAME_BYTES: 255)" in lines[0]
    result = run("diff", path, "digits_vgg")
    assert result.exit_code == 2 and "MAX_NAME_BYTES" in result.stderr
    with pytest.raises(SpecError, match="MAX_NAME_BYTES"):
        load_plan(path)


def test_weights_file_embedding_a_bomb_is_refused(tmp_path) -> None:
    path = tmp_path / "bomb.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"slimspec.format": "1", "slimspec.spec": BOMB})
    with pytest.raises(SpecError) as err:
        slimspec.load_model(path)
    assert one_error(err.value).startswith(f"{path}#spec: line 6, column ") and "MAX_NODES" in str(err.value)


def test_plan_with_control_character_via_cli(run, tmp_path) -> None:
    weights = tmp_path / "w.safetensors"
    assert run("build", "digits_vgg", "--out", weights).exit_code == 0
    plan = write(tmp_path, "plan.yaml", "method: l1\nratio: 0.5\x07\n")
    result = run("prune", weights, "--plan", plan, "--out", tmp_path / "p.yaml")
    assert result.exit_code == 1
    assert result.stderr.strip() == f"{plan}: line 2, column 11: control character U+0007 is not allowed in YAML"
    assert not (tmp_path / "p.yaml").exists()


# ---- allocation guard ----------------------------------------------------------------------

def test_build_refuses_a_huge_spec_with_the_figure_and_the_limit(run, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(limits.MAX_PARAMS_ENV, raising=False)
    path = write(tmp_path, "big.yaml", DIGITS.replace("[32, 32,", "[1000000000, 32,"))
    params = json.loads(run("info", path, "--json").output)["params"]  # info stays analytic
    assert params == 299_000_130_890
    result = run("build", path)
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"{path}: 299,000,130,890 parameters is more than the limit of 2,147,483,648 that build allocates "
        f"(MAX_PARAMS; raise it with --max-params or {limits.MAX_PARAMS_ENV})")
    with pytest.raises(SpecError, match="299,000,130,890 parameters"):
        slimspec.build(path)


def test_max_params_flag_and_environment(run, monkeypatch) -> None:
    assert "more than the limit of 140,457" in run("build", "digits_vgg", "--max-params", 140_457).stderr
    assert run("build", "digits_vgg", "--max-params", 140_458).exit_code == 0
    monkeypatch.setenv(limits.MAX_PARAMS_ENV, "1000")
    assert "limit of 1,000 " in run("build", "digits_vgg").stderr
    assert slimspec.build("digits_vgg", max_params=200_000) is not None  # the argument wins
    monkeypatch.setenv(limits.MAX_PARAMS_ENV, "lots")
    result = run("build", "digits_vgg")
    assert result.exit_code == 1 and result.stderr.strip() == "SLIMSPEC_MAX_PARAMS: expected a positive integer, got 'lots'"


# ---- validate, diff ------------------------------------------------------------------------

def test_validate_checks_every_file(run, tmp_path) -> None:
    bad = [write(tmp_path, name, BAD_FILES[name][0]) for name in ("bomb.yaml", "deep.yaml", "arch.yaml")]
    result = run("validate", bad[0], "digits_vgg", bad[1], tmp_path / "missing.yaml", bad[2], "resnet20")
    assert result.exit_code == 1
    errors = result.stderr.strip().splitlines()
    assert [line.split(": ")[0] for line in errors] == [str(bad[0]), str(bad[1]), str(tmp_path / "missing.yaml"), str(bad[2])]
    assert result.stdout.splitlines() == ["digits_vgg: ok (vgg, 5 prunable slots)", "resnet20: ok (resnet, 19 prunable slots)"]


def test_diff_exit_codes_follow_diff1(run, tmp_path) -> None:
    assert run("diff", "digits_vgg", "digits_vgg").exit_code == 0
    assert run("diff", "digits_vgg", "digits_resnet").exit_code == 1
    bomb = write(tmp_path, "bomb.yaml", BOMB)
    for args in (("digits_vgg", tmp_path / "nope.yaml"), (bomb, "digits_vgg"), ("digits_vgg", tmp_path)):
        result = run("diff", *args)
        assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1 and not result.stdout


# ---- CRLF, exclude -------------------------------------------------------------------------

def test_crlf_spec_stays_crlf_through_prune_and_dump(tmp_path) -> None:
    crlf = DIGITS.replace("\n", "\r\n")
    parent = write(tmp_path, "net.yaml", crlf)
    spec = load_spec(parent)
    assert spec.text == crlf
    weights = tmp_path / "net.safetensors"
    slimspec.save_weights(slimspec.build(spec, seed=0), spec, weights)
    result = slimspec.prune(weights, method="l1", ratio=0.5)
    out = tmp_path / "pruned.yaml"
    result.save(out)
    data = out.read_bytes()
    assert data.count(b"\r\n") == data.count(b"\n") > 10 and b"cfg: [16, 16, M, 32, 32, M, 64]\r\n" in data
    assert load_spec(out).data["cfg"] == [16, 16, "M", 32, 32, "M", 64]
    copy = dump_spec(load_spec(out), tmp_path / "copy.yaml")
    assert copy.read_bytes() == data


def test_update_spec_text_keeps_crlf() -> None:
    crlf = DIGITS.replace("\n", "\r\n")
    data = parse_yaml(crlf)
    assert update_spec_text(crlf, data) == crlf
    data["cfg"] = [8, 8, "M", 8, 8, "M", 8]
    assert update_spec_text(crlf, data) == update_spec_text(DIGITS, data).replace("\n", "\r\n")


def test_api_exclude_accepts_one_pattern_string(tmp_path) -> None:
    assert PruneOptions.resolve(method="l1", ratio=0.5, exclude="cfg[0]").exclude == ["cfg[0]"]
    weights = tmp_path / "w.safetensors"
    slimspec.save_weights(slimspec.build("digits_vgg", seed=0), "digits_vgg", weights)
    result = slimspec.prune(weights, method="l1", ratio=0.5, exclude="cfg[0]")
    assert result.spec.data["cfg"] == [32, 16, "M", 32, 32, "M", 64]
