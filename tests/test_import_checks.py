"""``import python:`` / ``from_module`` never import silently wrong: in-place ops are imported (or refused), the
check runs against the module itself, NaN weights and tied weights are refused, a factory that exits is an
error — and a property test over generated modules finds no silent difference."""
from __future__ import annotations

import textwrap

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings, strategies as st
from torch import nn

from slimspec.errors import ModelImportError
from slimspec.interop.fx_trace import from_module

from .conftest import cli_run, randomize

SHAPE = (3, 8, 8)


def same(module: nn.Module, model: nn.Module) -> None:
    x = torch.randn(3, *SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x.clone()), module.eval()(x.clone()), atol=1e-5, rtol=1e-4)


class InPlace(nn.Module):
    """Every in-place spelling whose result is not re-assigned."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 6, 3, padding=1), nn.Conv2d(6, 6, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        y = self.a(x)
        y.relu_()  # method
        z = self.b(y)
        z.add_(y)  # a residual written in place
        self.act(z)  # nn.ReLU(inplace=True), result unused
        F.relu_(z)  # function
        z = torch.sigmoid_(z)
        return self.fc(z.mean((2, 3)))


def test_in_place_ops_are_imported_not_dropped():
    module = randomize(InPlace())
    spec, model = from_module(module, SHAPE)
    kinds = [next(iter(item)) if isinstance(item, dict) else item for item in spec.data["layers"]]
    assert kinds == ["conv", "relu", "conv", "add", "relu", "relu", "sigmoid", "adaptive_avgpool", "flatten"]
    same(module, model)


class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.fc = nn.Conv2d(3, 6, 3), nn.Linear(6, 2)

    def forward(self, x):
        y = self.a(x)
        y.exp_()  # no spec kind computes exp: refused, never dropped
        return self.fc(y.mean((2, 3)))


def test_an_in_place_op_a_spec_cannot_express_is_refused_in_one_line():
    with pytest.raises(ModelImportError) as info:
        from_module(Scaled(), SHAPE)
    message = str(info.value)
    assert "\n" not in message and "tensor.exp_() at test_import_checks.py:" in message and "(y.exp_()" in message


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1)
        self.b.weight = self.a.weight
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.b(torch.relu(self.a(x))).mean((2, 3)))


def test_tied_weights_are_refused():
    with pytest.raises(ModelImportError, match=r"'b\.weight' is the same tensor as 'a\.weight' \(tied weights"):
        from_module(Tied(), (4, 8, 8))


def test_nan_weights_are_refused():
    module = InPlace()
    with torch.no_grad():
        module.b.bias[2] = float("nan")
    with pytest.raises(ModelImportError, match=r"NaN or inf values in layers\.2\.bias"):
        from_module(module, SHAPE)


class SeenOnce(nn.Module):
    """Traced on its first call; every later call also applies a ReLU torch.fx never saw."""

    def __init__(self):
        super().__init__()
        self.a, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 2)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        y = self.a(x)
        if self.calls > 1:
            y = torch.relu(y)
        return self.fc(y.mean((2, 3)))


def test_the_check_runs_the_module_itself():
    """The reference output is the module's own, not the traced graph's (which agrees with the spec by
    construction and so could never show what fx missed)."""
    with pytest.raises(ModelImportError, match="does not compute what the module computes"):
        from_module(SeenOnce(), SHAPE)


def test_python_factory_that_exits_is_an_error(tmp_path, monkeypatch):
    (tmp_path / "exits.py").write_text(textwrap.dedent("""
        import sys
        def build():
            sys.exit(0)
    """), encoding="utf-8")
    (tmp_path / "exits_on_import.py").write_text("import sys\nsys.exit(3)\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    result = cli_run("import", "python:exits:build", "--input", "3,8,8", "--out", tmp_path / "n.yaml")
    assert result.exit_code == 1
    assert "python:exits:build: calling build() called sys.exit(0)" in result.output
    result = cli_run("import", "python:exits_on_import:build", "--input", "3,8,8", "--out", tmp_path / "m.yaml")
    assert result.exit_code == 1 and "importing exits_on_import called sys.exit(3)" in result.output
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".py" and p.name != "__pycache__") == []


def test_python_state_dict_holding_nan_is_refused(tmp_path, monkeypatch):
    (tmp_path / "small.py").write_text(textwrap.dedent("""
        import torch
        from torch import nn
        class Small(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 2)
            def forward(self, x):
                return self.fc(torch.relu(self.conv(x)).mean((2, 3)))
    """), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    from small import Small  # noqa: E402  (written just above)

    state = Small().state_dict()
    state["conv.weight"][0, 0, 0, 0] = float("nan")
    torch.save(state, tmp_path / "w.pth")
    result = cli_run("import", "python:small:Small", "--input", "3,8,8", "--state-dict", tmp_path / "w.pth",
                     "--out", tmp_path / "small.yaml")
    assert result.exit_code == 1 and "NaN or inf values in layers.0.weight" in result.output
    assert not (tmp_path / "small.yaml").exists()


# -- property: generated modules import exactly or are refused in one line ---------------------------------
OPS = ("conv", "conv_dw", "bn", "relu", "relu_method", "relu_inplace_fn", "relu_module_inplace", "silu", "add",
       "add_inplace", "iadd", "concat", "maxpool", "mul_inplace")


class Generated(nn.Module):
    """Interprets a fixed program of ops over a list of tensors (fx unrolls the loop: the program is constant)."""

    def __init__(self, program: list[tuple[str, int]]):
        super().__init__()
        self.program = program
        self.layers = nn.ModuleList()
        widths = [3]
        for op, pick in program:
            w = widths[-1]
            if op == "conv":
                self.layers.append(nn.Conv2d(w, 4 + pick % 5, 3, padding=1))
                widths.append(4 + pick % 5)
            elif op == "conv_dw":
                self.layers.append(nn.Conv2d(w, w, 3, padding=1, groups=w))
                widths.append(w)
            elif op == "bn":
                self.layers.append(nn.BatchNorm2d(w))
                widths.append(w)
            elif op == "relu_module_inplace":
                self.layers.append(nn.ReLU(inplace=True))
                widths.append(w)
            elif op == "concat":
                self.layers.append(nn.Identity())
                widths.append(w + widths[pick % len(widths)])
            else:
                self.layers.append(nn.Identity())
                widths.append(w)
        self.fc = nn.Linear(widths[-1], 3)

    def forward(self, x):
        values = [x]
        for (op, pick), layer in zip(self.program, self.layers):
            y = values[-1]
            other = values[pick % len(values)]
            if op in ("conv", "conv_dw", "bn"):
                y = layer(y)
            elif op == "relu":
                y = torch.relu(y)
            elif op == "relu_method":  # in place on a tensor other values may share: they see the change
                y.relu_()
            elif op == "relu_inplace_fn":
                y = F.relu(y, inplace=True)
            elif op == "relu_module_inplace":
                layer(y)
            elif op == "silu":
                y = F.silu(y)
            elif op == "add":
                y = y + other if other.shape == y.shape else y
            elif op == "add_inplace":
                if other.shape == y.shape and other is not y:
                    y.add_(other)
            elif op == "iadd":
                if other.shape == y.shape and other is not y:
                    y += other
            elif op == "concat":
                y = torch.cat([y, other], 1)
            elif op == "maxpool":
                y = F.max_pool2d(y, 3, 1, 1)
            elif op == "mul_inplace":
                y.mul_(0.5)
            values.append(y)
        return self.fc(values[-1].mean((2, 3)))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 20)), min_size=1, max_size=7))
def test_generated_modules_import_exactly_or_are_refused(program):
    module = randomize(Generated(program))
    try:
        spec, model = from_module(module, SHAPE)
    except ModelImportError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("cannot ")
        return
    same(module, model)
