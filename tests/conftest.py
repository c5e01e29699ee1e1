"""Shared fixtures: stock specs, trained-looking random weights, tiny data."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import slimspec
from click.testing import CliRunner, Result

from slimspec.cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
DIGITS_SPECS = sorted(p.stem for p in SPECS.glob("digits_*.yaml"))
# torch's thread count in a fresh process (what `slimspec demo` gets), read before any test changes it:
# float sums, and so trained weights, depend on it, and the README's demo figures are a fresh run's
DEFAULT_THREADS = torch.get_num_threads()
ALL_SPECS = sorted(p.stem for p in SPECS.glob("*.yaml"))


def cli_run(*args: object, catch_exceptions: bool = False) -> Result:
    """Run ``slimspec ARGS...`` in-process (paths and numbers become strings)."""
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=catch_exceptions)


def one_line_error(result: Result, *fragments: str) -> str:
    """The command failed with exit 1 and one ``error:`` line holding every fragment; that line."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def run():
    """``run(*args)``: the CLI, as :func:`cli_run`."""
    return cli_run


@torch.no_grad()
def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Make BN statistics, scales and gates look trained (non-trivial, distinct per channel)."""
    generator = torch.Generator().manual_seed(seed)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            module.weight.copy_(torch.rand(n, generator=generator))
            module.bias.copy_(torch.rand(n, generator=generator) - 0.5)
            module.running_mean.copy_(torch.rand(n, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
        elif type(module).__name__ == "Gate":
            gate = torch.rand(module.weight.numel(), generator=generator)
            gate[gate < 0.3] = 0
            module.weight.copy_(gate)
    return model.eval()


@pytest.fixture
def trained_weights(tmp_path):
    """Factory: (spec name, mode) -> path of a weights file with randomized 'trained' state."""

    def make(name: str, mode: str = "plain", seed: int = 0) -> Path:
        model = randomize(slimspec.build(name, mode, seed=seed), seed)
        path = tmp_path / f"{name}_{mode}_{seed}.safetensors"
        slimspec.save_weights(model, model.spec, path)
        return path

    return make


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """``(folder, output)`` of one ``slimspec demo`` run, shared by the tests that read it."""
    out = tmp_path_factory.mktemp("demo") / "run"
    result = CliRunner().invoke(cli, ["demo", "--out", str(out), "--threads", str(DEFAULT_THREADS)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out, result.output
