"""Fuzzing everything that reads a spec or a plan (issue 8): mutated stock specs and plans go
through the API and the CLI; whatever the input, the answer is a result or a located one-line
error with the documented exit code, never a traceback, in bounded time."""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import slimspec
from slimspec.cli.main import cli
from slimspec.document import load_spec
from slimspec.errors import SlimspecError, SpecError
from slimspec.pruning.options import PruneOptions, load_plan

from .conftest import ROOT, SPECS
from .test_hardening_spec import BOMB

STOCK = ["digits_vgg", "digits_resnet", "digits_preresnet", "digits_densenet", "digits_lenet", "digits_mlp",
         "resnet20", "vgg16_li"]
SPEC_DATA = {name: yaml.safe_load((SPECS / f"{name}.yaml").read_text()) for name in STOCK}
PLANS = sorted((ROOT / "examples" / "plans").glob("*.yaml"))
PLAN_DATA = [yaml.safe_load(p.read_text()) for p in PLANS] + [{"method": "l1", "ratio": 0.5}]
# The default run is small and the same every time; SLIMSPEC_FUZZ_EXAMPLES=5000 fuzzes longer, at random.
EXAMPLES = int(os.environ.get("SLIMSPEC_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=EXAMPLES or 60, deadline=5000, derandomize=not EXAMPLES, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ---- strategies ----------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 1, 3, 2**31, 2**62, 2**63 - 1, 2**63, -(2**63), 10**400]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["M", "A", "B", "avg", "flatten", "basic", "bottleneck", "0-5,9", "3-1", "vgg", "resnet",
                     "sequential", "conv", "relu", "l1", "slimming", "global", "cfg[0]", "stages[*].blocks[*]"]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.one_of(st.text(max_size=8), st.sampled_from(["width", "blocks", "stride", "out", "kernel", "select", "inner"])),
    inner, max_size=4), max_leaves=8)
SNIPPETS = st.sampled_from([
    BOMB, "x: &a [1, *a]\n", "\x00", "\x07", "\ufeff", "\r\n", "\t", "- - - -\n", "? [a, b]\n: 1\n",
    "<<: *nowhere\n", "{" * 100, "[" * 5000, "!!python/object/apply:os.system [ls]", "&a ", "*a", "%YAML 1.1\n---\n",
    "---\n", "...\n", "'", '"', "#", ": ", "cfg: [1000000000]\n", "arch: [vgg]\n", "name: " + "n" * 300 + "\n",
    "1" * 500, "0x" + "f" * 40, "é\u2028\u0085", "\ud7ff\U0001f600",
])


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            out += _paths(item, prefix + (index,))
    return out


@st.composite
def mutated(draw: st.DrawFn, documents: list[dict]) -> str:
    """YAML text of a stock document after a few data edits and, sometimes, raw text edits."""
    data = copy.deepcopy(draw(st.sampled_from(documents)))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(data)))
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        target = parent[path[-1]] if path else data
        op = draw(st.sampled_from(["delete", "replace", "nest", "insert"]))
        if op == "delete" and path:
            del parent[path[-1]]
        elif op == "replace" and path:
            parent[path[-1]] = draw(VALUES)
        elif op == "nest" and path:
            value = parent[path[-1]]
            for _ in range(draw(st.sampled_from([1, 2, 10, 70]))):
                value = [value]
            parent[path[-1]] = value
        elif op == "insert" and isinstance(target, dict):
            target[draw(st.one_of(st.text(max_size=8), st.sampled_from(sorted(SPEC_DATA["digits_vgg"]))))] = draw(VALUES)
        elif op == "insert" and isinstance(target, list):
            target.insert(draw(st.integers(0, len(target))), draw(VALUES))
    text = yaml.safe_dump(data, allow_unicode=True, sort_keys=False, default_flow_style=draw(st.booleans()))
    for _ in range(draw(st.integers(0, 2))):
        edit = draw(st.sampled_from(["insert", "truncate", "snippet"]))
        at = draw(st.integers(0, len(text)))
        if edit == "insert":
            text = text[:at] + draw(st.text(min_size=1, max_size=4)) + text[at:]
        elif edit == "truncate":
            text = text[:at]
        else:
            text = text[:at] + draw(SNIPPETS) + text[at:]
    return text


# ---- checks --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fuzz")
    slimspec.save_weights(slimspec.build("digits_vgg", seed=0), "digits_vgg", folder / "w.safetensors")
    return folder


def _write(folder: Path, text: str) -> Path:
    path = folder / "fuzzed.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    return path


def _cli(*args: Any):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _check_clean(result, codes: tuple[int, ...], path: Path, trouble: int = 1) -> None:
    """An allowed exit code, no exception escaping, and every error line located at the file."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in codes, (result.exit_code, result.output)
    assert "Traceback" not in result.output
    if result.exit_code == trouble:
        lines = result.stderr.strip().splitlines()
        assert lines and all(line.startswith((f"{path}: ", "error: ")) for line in lines), lines


@FUZZ
@given(text=mutated(list(SPEC_DATA.values())))
def test_fuzzed_specs(workdir: Path, text: str) -> None:
    path = _write(workdir, text)
    try:
        load_spec(path)
        valid = True
    except SpecError as exc:
        valid = False
        assert exc.lines() and all(line.startswith(f"{path}: ") for line in exc.lines())
    for command, codes in (("validate", (0, 1)), ("info", (0, 1))):
        result = _cli(command, path)
        _check_clean(result, codes, path)
        assert result.exit_code == (0 if valid else 1)
    result = _cli("diff", "digits_vgg", path)
    _check_clean(result, (0, 1, 2), path, trouble=2)
    assert (result.exit_code == 2) == (not valid)
    result = _cli("textconv", path)
    assert result.exit_code == 0 and result.exception is None or isinstance(result.exception, SystemExit)
    if valid:
        assert result.stdout_bytes.startswith(b"name: ")
    else:
        assert result.stdout_bytes == path.read_bytes()


@settings(FUZZ, max_examples=EXAMPLES or 40)
@given(text=mutated(PLAN_DATA))
def test_fuzzed_plans(workdir: Path, text: str) -> None:
    path = _write(workdir, text)
    try:
        load_plan(path)
        PruneOptions.resolve(path)
    except SlimspecError as exc:
        if isinstance(exc, SpecError):
            assert exc.lines() and all(line.startswith(f"{path}: ") for line in exc.lines())
    result = _cli("prune", workdir / "w.safetensors", "--plan", path, "--dry-run")
    _check_clean(result, (0, 1), path)
