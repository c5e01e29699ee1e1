"""Your own nn.Module in: torch.fx import into sequential/graph specs, the python: CLI source, prune(module)."""
from __future__ import annotations

import difflib
import re
import shlex
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from click.testing import CliRunner
from torch import nn

import slimspec
from slimspec.cli.main import cli
from slimspec.errors import ModelImportError
from slimspec.interop.fx_import import import_python
from slimspec.interop.fx_trace import from_module, import_module
from slimspec.ir import count_params
from slimspec.pruning.masking import apply_channel_masks

from .conftest import randomize

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (3, 16, 16)


def assert_same(module: nn.Module, model: nn.Module, shape=SHAPE, atol=1e-5):
    x = torch.randn(4, *shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), module.eval()(x), atol=atol, rtol=1e-4)


class Chain(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 16, 3), nn.ReLU())
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(16 * 6 * 6, 32), nn.ReLU(), nn.Dropout(0.3),
                                        nn.Linear(32, 7))

    def forward(self, x):
        return self.classifier(self.features(x))


class Functional(nn.Module):
    """Functional ops, methods, dilation, 'same' padding, SiLU/Hardswish/Sigmoid, identity, a skip from the input."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 12, 3, padding="same", dilation=2, bias=False)
        self.bn = nn.BatchNorm2d(12)
        self.b = nn.Conv2d(12, 3, 1)
        self.c = nn.Conv2d(6, 10, 3, stride=2, padding=1)
        self.acts = nn.ModuleList([nn.SiLU(), nn.Hardswish(), nn.Sigmoid(), nn.Identity()])
        self.head = nn.Linear(20 * 4 * 4, 5)

    def forward(self, x):
        y = F.relu(self.bn(self.a(x)))
        y = self.acts[1](self.acts[0](y))
        y = torch.add(self.b(y), x)  # a skip from the network input
        y = torch.cat([y, self.acts[2](x)], 1)
        y = self.acts[3](F.relu6(self.c(y)))
        pooled = torch.cat([F.avg_pool2d(F.max_pool2d(y, 3, 1, 1), 2), F.adaptive_avg_pool2d(y, 4)], 1)
        return self.head(pooled.view(pooled.size(0), -1))


def test_a_chain_becomes_a_sequential_spec():
    spec, _ = from_module(randomize(Chain()), SHAPE)
    assert spec.arch == "sequential"
    assert spec.data["layers"] == [
        {"conv": {"out": 8, "kernel": 3, "padding": 1}}, "bn", "relu", {"maxpool": 2},
        {"conv": {"out": 16, "kernel": 3}}, "relu", "flatten", {"linear": 32}, "relu", {"dropout": 0.3}]
    assert spec.data["num_classes"] == 7
    assert "# 0 features.0" in spec.text and "# 7 classifier.1" in spec.text
    module = randomize(Chain())
    assert_same(module, from_module(module, SHAPE)[1])


class DepthwiseChain(nn.Module):
    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8, eps=eps), nn.ReLU(), nn.Conv2d(8, 8, 3, groups=8),
                               nn.ReLU(), nn.Flatten(), nn.Linear(8 * 12 * 12, 4))

    def forward(self, x):
        return self.f(x)


def test_a_depthwise_chain_is_sequential_and_prunes_with_its_input():
    module = randomize(DepthwiseChain())
    spec, model = from_module(module, SHAPE)
    assert spec.arch == "sequential"
    assert spec.data["layers"][3] == {"conv": {"out": 8, "kernel": 3, "groups": 8}}
    assert_same(module, model)
    pruned = slimspec.prune(module, "l1", ratio=0.5, input_shape=SHAPE).spec.data["layers"]
    assert pruned[0] == {"conv": {"out": 4, "kernel": 3}} and pruned[3] == {"conv": {"out": 4, "kernel": 3, "groups": 4}}


def test_batchnorm_eps_is_kept():
    module = randomize(DepthwiseChain(eps=1e-3))
    spec, model = from_module(module, SHAPE)
    assert spec.arch == "sequential" and spec.data["layers"][1] == {"bn": {"eps": 0.001}}  # a chain: sequential
    assert model.get_submodule("layers.1").eps == 1e-3
    assert_same(module, model)


class MeanHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 6, 3, bias=False), nn.Linear(6, 4)

    def forward(self, x):
        return self.fc(self.conv(x).relu().mean((2, 3)))


def test_a_mean_head_is_a_global_pool_and_flatten():
    module = MeanHead()
    spec, model = from_module(module, SHAPE)
    assert spec.data["layers"] == [{"conv": {"out": 6, "kernel": 3, "bias": False}}, "relu",
                                   {"adaptive_avgpool": 1}, "flatten"]
    assert_same(module, model)


def test_functional_code_becomes_a_graph_spec_that_computes_the_same():
    module = randomize(Functional())
    spec, model = from_module(module, SHAPE)
    assert spec.arch == "graph"
    assert count_params(spec.ir) == sum(p.numel() for p in module.parameters())
    kinds = [next(iter(e)) if isinstance(e, dict) else e for e in spec.data["layers"]]
    assert kinds == ["conv", "bn", "relu", "silu", "hardswish", "conv", "add", "sigmoid", "concat", "conv", "relu6",
                     "identity", "maxpool", "avgpool", "adaptive_avgpool", "concat", "flatten"]
    assert spec.data["layers"][0] == {"conv": {"out": 12, "kernel": 3, "padding": 2, "dilation": 2, "bias": False}}
    assert spec.data["layers"][6] == {"add": {"from": [-1, -7]}}  # -7 from layer 6: the input
    assert_same(module, model)


def test_my_net_residual_depthwise_concat():
    from examples.my_net import MyNet

    module = randomize(MyNet()).train()
    spec, model = from_module(module, (3, 32, 32))
    assert module.training and model.training  # traced in eval mode, both handed back in the module's mode
    assert spec.arch == "graph" and spec.name == "mynet"
    kinds = {p: s.kind for p, s in spec.ir.slots.items() if not p.startswith("#")}
    assert kinds == {"layers[0].conv.out": "stream", "layers[3].conv.out": "channel",
                     "layers[10].conv.out": "channel", "layers[19].conv.out": "channel"}
    assert spec.data["layers"][13] == {"conv": {"out": 96, "kernel": 3, "padding": 1, "groups": 96, "bias": False}}
    assert_same(module, model, (3, 32, 32))


def test_torchvision_resnet18_by_python_reference():
    """``python:torchvision.models:resnet18`` traces to a graph spec computing what resnet18 computes."""
    torch.manual_seed(0)
    spec, state = import_python("torchvision.models:resnet18", (3, 32, 32), name="r18")
    torch.manual_seed(0)
    reference = torchvision.models.resnet18()
    assert spec.name == "r18" and spec.arch == "graph" and spec.data["num_classes"] == 1000
    assert count_params(spec.ir) == sum(p.numel() for p in reference.parameters()) == 11_689_512
    model = slimspec.build(spec)
    model.load_state_dict(state)
    assert_same(reference, model, (3, 32, 32), atol=1e-4)


def _error(module: nn.Module, shape=SHAPE) -> str:
    with pytest.raises(ModelImportError) as info:
        import_module(module, shape)
    message = str(info.value)
    assert "\n" not in message
    return message


class Erf(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3), nn.Linear(4, 2)

    def forward(self, x):
        x = torch.erf(self.conv(x))
        return self.fc(x.mean((2, 3)))


class Softplus(Erf):
    def __init__(self):
        super().__init__()
        self.act = nn.Softplus()

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).mean((2, 3)))


class Shared(Erf):
    def forward(self, x):
        return self.fc(self.conv(self.conv(x)[:, :3]).mean((2, 3)))


class Branchy(Erf):
    def forward(self, x):
        if x.sum() > 0:
            x = -x
        return self.fc(self.conv(x).mean((2, 3)))


class NoHead(Erf):
    def forward(self, x):
        return self.conv(x).mean((2, 3))


class Pyramid(Erf):
    """Two feature maps out (a detector's neck), the second read through a bias-free Linear too."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.proj = nn.Linear(6, 5, bias=False)

    def forward(self, x):
        a = torch.relu(self.conv(x))
        b = self.down(a)
        return a, b, self.proj(b.mean((2, 3)))


class ReturnsInput(Erf):
    def forward(self, x):
        return x, self.conv(x)


def test_unsupported_node_is_named_with_its_line():
    line = next(i for i, text in enumerate(Path(__file__).read_text().splitlines(), 1) if "torch.erf(self.conv" in text)
    assert _error(Erf()).startswith(f"cannot import Erf: torch.erf at test_fx_import.py:{line} "
                                    "(x = torch.erf(self.conv(x))) is not expressible in a slimspec spec")
    assert _error(Softplus()).startswith("cannot import Softplus: module 'act' (Softplus) at test_fx_import.py:")


class SqueezeExcite(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.fc(x.mean((2, 3), keepdim=True)))


class WithSE(Erf):
    def __init__(self):
        super().__init__()
        self.se = SqueezeExcite()

    def forward(self, x):
        return self.fc(self.se(self.conv(x)).mean((2, 3)))


class ErfGate(SqueezeExcite):
    def forward(self, x):
        return x * torch.erf(self.fc(x.mean((2, 3), keepdim=True)))


class WithErfGate(WithSE):
    def __init__(self):
        super().__init__()
        self.se = ErfGate()


def test_unsupported_node_inside_a_submodule_names_the_submodule():
    line = next(i for i, text in enumerate(Path(__file__).read_text().splitlines(), 1) if "return x * torch.erf" in text)
    assert _error(WithErfGate()).startswith(f"cannot import WithErfGate: torch.erf in 'se' (ErfGate) at "
                                            f"test_fx_import.py:{line} (return x * torch.erf(")


def test_squeeze_excitation_imports_as_a_mul_join():
    module = randomize(WithSE())
    spec, model = from_module(module, SHAPE)
    assert spec.arch == "graph"
    assert {"mul": {"from": [0, -1]}} in spec.data["layers"]
    assert_same(module, model)


@pytest.mark.parametrize("module, expected", [
    (Shared(), r"module .conv. \(Conv2d\) at test_fx_import\.py:\d+ .* is called a second time"),  # its slice imports now
    (Branchy(), r"cannot trace Branchy with torch.fx: symbolically traced variables cannot be used as inputs to "
                r"control flow"),
    (ReturnsInput(), r"cannot import ReturnsInput: its output must be a tensor or a tuple of tensors computed by "
                     r"the network"),
])
def test_inexpressible_modules_are_refused_in_one_line(module, expected):
    assert re.search(expected, _error(module))


def test_outputs_other_than_a_final_linear_are_the_specs_outputs():
    """No implied classifier: the returned tensors are ``outputs`` (a tuple comes back as a tuple)."""
    module = randomize(NoHead())
    spec, model = from_module(module, SHAPE)
    assert spec.data["outputs"] == [2] and "num_classes" not in spec.data
    assert count_params(spec.ir) == sum(p.numel() for p in module.conv.parameters())
    assert_same(module, model)
    module = randomize(Pyramid())
    spec, model = from_module(module, SHAPE)
    kinds = [next(iter(item)) if isinstance(item, dict) else item for item in spec.data["layers"]]
    assert kinds == ["conv", "relu", "conv", "adaptive_avgpool", "flatten", "linear"]
    assert spec.data["outputs"] == [1, 2, 5]
    x = torch.randn(2, *SHAPE)
    with torch.no_grad():
        for got, want in zip(model.eval()(x), module(x), strict=True):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_shared_weights_are_refused():
    class Twice(Erf):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(self.conv(self.conv(x)).mean((2, 3)))

    assert "module 'conv' (Conv2d)" in _error(Twice()) and "called a second time" in _error(Twice())


def test_check_refuses_a_model_that_computes_something_else():
    from slimspec.interop.fx_trace import _check

    module = randomize(Chain())
    spec, state = import_module(module, SHAPE)
    x = torch.randn(2, *SHAPE)
    with torch.no_grad():
        expected = module(x)
    assert isinstance(_check(spec, state, x, expected, "Chain"), nn.Module)
    with pytest.raises(ModelImportError, match="does not compute what the module computes"):
        _check(spec, dict(state, **{"fc.bias": state["fc.bias"] + 1}), x, expected, "Chain")


def masked_original(spec, state, decision):
    masked = slimspec.build(spec, "masked")
    masked.load_state_dict(state, strict=False)
    return apply_channel_masks(masked, spec.ir, decision.kept).eval()


@pytest.mark.parametrize("method", ["l1", "slimming"])
def test_prune_my_net_at_half_the_macs_equals_its_masked_original(method):
    from examples.my_net import MyNet

    module = randomize(MyNet())
    result = slimspec.prune(module, method, target={"macs": 0.5})
    assert result.parent.arch == "graph"
    assert 0.45 < result.macs[1] / result.macs[0] <= 0.5
    spec, model = from_module(module, (3, 32, 32))
    assert_same(masked_original(spec, model.state_dict(), result.decision), result.model, (3, 32, 32))


def test_prune_a_plain_module_in_one_call():
    result = slimspec.prune(randomize(Chain()), "l1", ratio=0.3)  # input shape guessed: 3x32x32 fails, ...
    assert result.parent.data["input"] == [3, 16, 16]  # ... Linear(16*6*6) fits 16x16
    assert result.params[1] < result.params[0]
    given = slimspec.prune(randomize(Chain()), "l1", ratio=0.3, input_shape=(3, 16, 16))
    assert given.spec.data["layers"] == result.spec.data["layers"]


# -- the CLI and the README's worked example -------------------------------------------------------
def readme_commands(title: str) -> list[list[str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line.split("#", 1)[0]) for line in block.splitlines() if line.strip()]


def test_readme_bring_your_own_model_commands(tmp_path, monkeypatch):
    commands = readme_commands("Bring your own model")
    assert [c[:2] for c in commands] == [["slimspec", "import"], ["slimspec", "prune"], ["slimspec", "diff"]]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    runner = CliRunner()
    outputs = []
    for command in commands:
        result = runner.invoke(cli, command[1:], catch_exceptions=False)
        outputs.append(result.output)
        assert result.exit_code == (1 if command[1] == "diff" else 0), result.output  # diff: 1 = the specs differ
    assert "graph, 4 prunable slots" in outputs[0]
    for line in ("layers[3].conv.out       32     15    46.9", "layers[10].conv.out      96     47    49.0",
                 "layers[19].conv.out      64     31    48.4"):
        assert line in outputs[2]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert all(line in readme for line in outputs[2].splitlines()[3:6])
    # the pruned spec differs from the import in out/groups values and the provenance block only
    before = (tmp_path / "my_net.yaml").read_text().splitlines()
    after = (tmp_path / "my_net_half.yaml").read_text().splitlines()
    changed = [line for line in difflib.unified_diff(before, after, lineterm="", n=0)
               if line.startswith("+") and not line.startswith("+++")]
    layer_lines = changed[:changed.index("+pruned:")]
    assert [line.split("# ")[1] for line in layer_lines] == ["3 block1.conv1", "10 block2.expand", "13 block2.dw",
                                                             "19 down.0"]
    # the weights hold what the pruned spec needs, and the imported spec's model is the module's
    model, spec = slimspec.load_model(tmp_path / "my_net_half.safetensors")
    assert spec.data["layers"][13]["conv"]["groups"] == 47


def test_python_source_with_a_state_dict_is_exact(tmp_path, monkeypatch):
    from examples.my_net import MyNet

    module = randomize(MyNet())
    torch.save(module.state_dict(), tmp_path / "trained.pth")
    monkeypatch.chdir(ROOT)
    result = CliRunner().invoke(cli, ["import", "python:examples.my_net:MyNet", "--input", "3,32,32", "--state-dict",
                                      str(tmp_path / "trained.pth"), "--name", "mine", "--out", str(tmp_path / "m.yaml")])
    assert result.exit_code == 0, result.output
    model, spec = slimspec.load_model(tmp_path / "m.safetensors")
    assert spec.name == "mine"
    assert_same(module, model, (3, 32, 32))


@pytest.mark.parametrize("args, code, message", [
    (["python:examples.my_net:build", "--out", "x.yaml"], 2, "a python: source needs the input shape"),
    (["python:examples.my_net:build", "--input", "3,32", "--out", "x.yaml"], 2, "expected three positive integers"),
    (["python:examples.nope:build", "--input", "3,32,32", "--out", "x.yaml"], 1,
     "error: python:examples.nope:build: no module named 'examples.nope'"),
    (["python:examples.my_net:nope", "--input", "3,32,32", "--out", "x.yaml"], 1, "has no attribute 'nope'"),
    (["python:examples.my_net:torch", "--input", "3,32,32", "--out", "x.yaml"], 1, "is neither a module nor a callable"),
    (["python:examples.my_net", "--input", "3,32,32", "--out", "x.yaml"], 1, "expected python:PACKAGE.MODULE:FACTORY"),
    (["python:examples.my_net:build", "--input", "3,1,1", "--out", "x.yaml"], 1, "does not run on an input of shape"),
])
def test_python_source_errors(tmp_path, monkeypatch, args, code, message):
    monkeypatch.chdir(ROOT)
    args = [a if a != "x.yaml" else str(tmp_path / "x.yaml") for a in args]
    result = CliRunner().invoke(cli, ["import", *args])
    assert result.exit_code == code, result.output
    assert message in result.output
    assert not (tmp_path / "x.yaml").exists() and not (tmp_path / "x.safetensors").exists()


# -- the blocks of torchvision's and timm's CNNs, written by hand -----------------------------------
class Blocks(nn.Module):
    """Squeeze-excitation with a hand-written hardsigmoid, a ConvNeXt block (channels-last LayerNorm, Linear, GELU,
    layer scale), ShuffleNet's chunk + channel shuffle, an equal split, GroupNorm, stochastic depth, a ceil-mode
    pool, 1x7 / 7x1 convolutions and a tuple of outputs."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.fc1, self.fc2 = nn.Conv2d(16, 8, 1), nn.Conv2d(8, 16, 1)
        self.dw = nn.Conv2d(16, 16, 7, padding=3, groups=16)
        self.norm = nn.LayerNorm(16, eps=1e-6)
        self.pw1, self.act, self.pw2 = nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 16)
        self.gamma = nn.Parameter(torch.rand(16, 1, 1))
        self.drop = torchvision.ops.StochasticDepth(0.1, "row")
        self.branch = nn.Conv2d(8, 8, 1)
        self.gn = nn.GroupNorm(4, 16)
        self.pool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.wide = nn.Conv2d(16, 12, (1, 7), padding=(0, 3))
        self.tall = nn.Conv2d(12, 12, (7, 1), padding=(3, 0))
        self.head = nn.Conv2d(12, 5, 1)

    def forward(self, x):
        x = torch.relu(self.bn(self.stem(x)))
        s = self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True))))
        x = x * (F.relu6(s + 3.0) / 6.0)
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.pw2(self.act(self.pw1(self.norm(y)))).permute(0, 3, 1, 2)
        x = x + self.drop(self.gamma * y)
        a, b = x.chunk(2, dim=1)
        x = torch.cat((a, self.branch(b)), dim=1)
        n, c, h, w = x.size()
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
        p, q = torch.split(x, 8, dim=1)
        x = self.gn(torch.cat([q, p], 1))
        x = self.tall(self.wide(self.pool(x)))
        return self.head(x), x


def test_blocks_of_every_cnn_import_exactly_and_prune_to_their_masked_original():
    module = randomize(Blocks())
    shape = (3, 15, 15)
    spec, model = from_module(module, shape)
    kinds = {next(iter(item)) if isinstance(item, dict) else item for item in spec.data["layers"]}
    assert {"mul", "const", "relu6", "layernorm", "scale", "droppath", "chunk", "shuffle", "groupnorm"} <= kinds
    assert {"conv": {"out": 32, "kernel": 1}} in spec.data["layers"]  # the channels-last Linear
    assert {"maxpool": {"kernel": 3, "stride": 2, "ceil": True}} in spec.data["layers"]
    assert {"conv": {"out": 12, "kernel": [1, 7], "padding": [0, 3]}} in spec.data["layers"]
    assert len(spec.data["outputs"]) == 2 and count_params(spec.ir) == sum(p.numel() for p in module.parameters())
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        for got, want in zip(model.eval()(x), module(x), strict=True):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    result = slimspec.prune(model, "l1", target={"macs": 0.7})
    assert result.macs[1] < result.macs[0]
    masked = masked_original(spec, model.state_dict(), result.decision)
    with torch.no_grad():
        for got, want in zip(result.model.eval()(x), masked(x), strict=True):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


class Transposed(Erf):
    def forward(self, x):
        return self.fc(self.conv(x).permute(0, 1, 3, 2).mean((2, 3)))


class HalfSlice(Erf):
    def forward(self, x):
        y = self.conv(x)
        return self.fc(torch.cat([y[:, :3] * 2.0, y[:, 3:]], 1).mean((2, 3)))


class LastPool(Erf):
    def forward(self, x):
        return self.fc(F.avg_pool2d(self.conv(x).permute(0, 2, 3, 1), 1).permute(0, 3, 1, 2).mean((2, 3)))


def test_an_unequal_channel_slice_imports_as_slice_layers():
    spec, _ = import_module(randomize(HalfSlice()), SHAPE)  # the import checks the module's own output
    kinds = [next(iter(item)) if isinstance(item, dict) else item for item in spec.data["layers"]]
    assert kinds.count("slice") == 1 and "chunk" in kinds  # y[:, 3:] of 4 is an equal quarter: a chunk


@pytest.mark.parametrize("module, expected", [
    (Transposed(), r"tensor\.permute\(\) at test_fx_import\.py:\d+ \(return self\.fc\(self\.conv\(x\)\.permute\(0, 1, "
                   r"3, 2\).*permutes dims \(0, 1, 3, 2\)"),
    (LastPool(), r"F\.avg_pool2d at test_fx_import\.py:\d+ .* reads a channels-last tensor"),
])
def test_layouts_a_spec_cannot_express_are_refused_at_their_line(module, expected):
    assert re.search(expected, _error(module))
