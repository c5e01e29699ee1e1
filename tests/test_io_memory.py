"""Import and export hold one copy of the weights: no second model, no cloned state, no serialized copy.

Deterministic checks, no timing or RSS: the SpecNet instances alive while export makes the
deployable model, writes, checks and runs back its file are counted; the state an import
writes is the source module's own tensors, and the source module is gone before it is
written; the ONNX file streamed one initializer at a time is byte for byte what torch writes;
the deployable model made from the mapped file equals the one made from the loaded model.
(``python benchmarks/io_memory.py`` measures the processes' peak RSS.)
"""
from __future__ import annotations

import dataclasses
import textwrap
import weakref

import pytest
import torch

import slimspec
import slimspec.weights
from slimspec.errors import WeightsError
from slimspec.latency.fold import fold_batchnorm
from slimspec.nn import SpecNet
from slimspec.weights import tensor_bytes
from slimspec.workflows import deploy, export

from .conftest import cli_run, randomize


@pytest.fixture
def live_models(monkeypatch) -> weakref.WeakSet:
    """Every SpecNet made from now on, while it is alive (no garbage collection forced)."""
    live: weakref.WeakSet = weakref.WeakSet()
    init = SpecNet.__init__

    def tracked(self, *args, **kwargs) -> None:
        init(self, *args, **kwargs)
        live.add(self)

    monkeypatch.setattr(SpecNet, "__init__", tracked)
    return live


def _count_models_at(monkeypatch, live: weakref.WeakSet, fmt: str) -> dict[str, int]:
    """How many SpecNets are alive when the deployable model is made, written, its file checked and run."""
    seen: dict[str, int] = {}
    plain_tensors = deploy.plain_tensors

    def counting(name: str, fn):
        def wrapped(*args, **kwargs):
            seen[name] = len(live)
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(deploy, "plain_tensors", counting("made", plain_tensors))
    entry = export._FORMATS.get(fmt)
    hooks = {hook: counting(hook, getattr(entry, hook)) for hook in ("write", "check", "run")
             if getattr(entry, hook) is not None}
    monkeypatch.setitem(export._FORMATS._items, fmt, dataclasses.replace(entry, **hooks))
    return seen


@pytest.mark.parametrize("fmt, suffix", [("pt2", ".pt2"), ("onnx", ".onnx")])
@pytest.mark.parametrize("mode", ["plain", "gated"])
def test_export_of_a_file_holds_one_model_at_a_time(trained_weights, tmp_path, monkeypatch, live_models, fmt,
                                                    suffix, mode):
    weights = trained_weights("digits_resnet", mode)
    seen = _count_models_at(monkeypatch, live_models, fmt)
    result = export.export(weights, tmp_path / f"m{suffix}")
    assert result.max_abs_diff < 1e-4
    # the reference ran and was let go before the deployable was made; that one was let go once written
    assert seen == {"made": 0, "write": 1, "run": 0, **({"check": 0} if fmt == "onnx" else {})}


def test_export_of_a_spec_and_of_a_model(tmp_path, monkeypatch, live_models):
    seen = _count_models_at(monkeypatch, live_models, "pt2")
    export.export(slimspec.load_spec("digits_vgg"), tmp_path / "s.pt2")
    assert seen == {"made": 0, "write": 1, "run": 0}
    model = slimspec.build("digits_vgg", seed=1)
    export.export(model, tmp_path / "m.pt2")  # the caller's model stays the caller's: one more, never two more
    assert seen == {"made": 1, "write": 2, "run": 1}


@pytest.mark.parametrize("mode", ["plain", "masked", "gated"])
def test_deployable_from_the_mapped_file_equals_the_one_from_the_model(trained_weights, mode):
    weights = trained_weights("digits_resnet", mode, seed=2)
    if mode == "masked":  # masks that mask something
        model = slimspec.load_model(weights)[0]
        with torch.no_grad():
            for name, tensor in model.state_dict().items():
                if name.endswith("mask"):
                    tensor.copy_((torch.rand(tensor.shape, generator=torch.Generator().manual_seed(3)) > 0.3).float())
        slimspec.save_weights(model, model.spec, weights)
    reference = slimspec.load_model(weights)[0].eval()
    x = torch.randn(3, *reference.ir.input_shape, generator=torch.Generator().manual_seed(1))
    got_x, expected, model = deploy.reference_then_deployable(weights, lambda shape: x)
    assert got_x is x and model.mode == "plain"
    with torch.no_grad():
        assert torch.equal(expected, reference(x))
    old = deploy.deployable(reference, fold_bn=False)
    assert list(model.state_dict()) == list(old.state_dict())
    for (name, a), b in zip(model.state_dict().items(), old.state_dict().values()):
        assert a.dtype == b.dtype and torch.equal(a, b), name
    assert fold_batchnorm(model) == fold_batchnorm(old)
    with torch.no_grad():
        assert torch.equal(model(x), old(x))


def test_deployable_copies_unless_asked_to_share():
    model = randomize(slimspec.build("digits_resnet", seed=0))
    pointers = {t.data_ptr() for t in model.state_dict().values() if t.numel()}
    copied = deploy.deployable(model, fold_bn=False)
    assert not pointers & {t.data_ptr() for t in copied.state_dict().values() if t.numel()}
    shared = deploy.deployable(model, fold_bn=False, share=True)
    assert {t.data_ptr() for t in shared.state_dict().values() if t.numel()} == pointers


def test_streamed_onnx_is_the_bytes_torch_writes(tmp_path):
    pytest.importorskip("onnxscript")
    from slimspec.latency.runtimes import onnx_export

    model = randomize(slimspec.build("digits_resnet", seed=0))
    fold_batchnorm(model)
    program = onnx_export(model, torch.randn(2, *model.ir.input_shape))
    export._save_onnx(program, tmp_path / "streamed.onnx")
    program.save(str(tmp_path / "torch.onnx"))  # after: the program's initializers are its own again
    assert (tmp_path / "streamed.onnx").read_bytes() == (tmp_path / "torch.onnx").read_bytes()


def test_weights_are_written_from_the_tensors_themselves():
    tensor = torch.randn(4, 5)
    assert torch.frombuffer(tensor_bytes(tensor), dtype=torch.uint8).data_ptr() == tensor.data_ptr()


def test_a_family_import_hands_over_the_model_s_own_tensors():
    import torchvision

    from slimspec.interop.torchvision_models import import_torchvision

    model = torchvision.models.resnet18()
    pointers = {t.data_ptr() for t in model.state_dict().values() if t.numel()}
    spec, state = import_torchvision("resnet18", model=model, input_shape=(3, 64, 64))
    assert spec.arch == "resnet" and {t.data_ptr() for t in state.values() if t.numel()} == pointers


def test_a_traced_import_hands_over_the_module_s_own_tensors_and_from_module_copies():
    from torch import nn

    from slimspec.interop.fx_trace import from_module, import_module

    module = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 1),
                           nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    pointers = {t.data_ptr() for t in module.state_dict().values() if t.numel()}
    _, state = import_module(module, (3, 8, 8))
    assert {t.data_ptr() for t in state.values() if t.numel()} == pointers
    _, model = from_module(module, (3, 8, 8))  # a model of its own: training it must not touch the module
    assert not pointers & {t.data_ptr() for t in model.state_dict().values() if t.numel()}


def test_darknet_weights_are_read_once_and_written_one_tensor_at_a_time(tmp_path):
    from slimspec.interop.darknet_weights import Header, read_weights_file, weights_writer

    layout = [("a.weight", (4, 3, 3, 3)), ("a.bias", (4,)), ("b.weight", (2, 4, 1, 1))]
    tensors = {key: torch.randn(shape) for key, shape in layout}
    writer = weights_writer(Header(seen=7), layout, tensors)
    writer(tmp_path / "w.weights")
    data = (tmp_path / "w.weights").read_bytes()
    assert len(data) == 20 + 4 * sum(t.numel() for t in tensors.values())
    header, read = read_weights_file(tmp_path / "w.weights", layout)
    assert header == Header(seen=7) and all(torch.equal(read[k], tensors[k]) for k in tensors)
    first = read["a.weight"]  # every tensor is a view of the one buffer the file was read into
    assert read["b.weight"].data_ptr() - first.data_ptr() == 4 * (first.numel() + read["a.bias"].numel())
    with pytest.raises(WeightsError, match="b.weight: shape"):
        weights_writer(Header(), layout, {**tensors, "b.weight": torch.zeros(3)})


def _record_save(monkeypatch, check) -> list[bool]:
    """``slimspec.weights.save_weights`` calling ``check()`` first; the list of its answers."""
    answers: list[bool] = []
    save = slimspec.weights.save_weights

    def checked(*args, **kwargs):
        answers.append(check())
        return save(*args, **kwargs)

    monkeypatch.setattr(slimspec.weights, "save_weights", checked)
    return answers


def test_import_python_frees_the_module_before_writing(tmp_path, monkeypatch):
    (tmp_path / "freed_net.py").write_text(textwrap.dedent("""
        import weakref
        from torch import nn

        MADE = []

        def build():
            model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
            MADE.append(weakref.ref(model))
            return model
    """))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    import freed_net

    answers = _record_save(monkeypatch, lambda: [ref() for ref in freed_net.MADE] == [None])
    result = cli_run("import", "python:freed_net:build", "--input", "3,8,8", "-o", tmp_path / "net.yaml")
    assert result.exit_code == 0, result.output
    assert answers == [True]  # torch.fx's graph held it in reference cycles: collected before the write


def test_import_lets_the_state_dict_file_go_once_loaded(tmp_path, monkeypatch):
    import torchvision

    import slimspec.interop.fx_import as fx_import

    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    loaded: list[weakref.ref] = []
    read = fx_import.read_state_dict

    def recording(path):
        state = read(path)
        loaded.extend(weakref.ref(tensor) for tensor in state.values())
        return state

    monkeypatch.setattr(fx_import, "read_state_dict", recording)
    answers = _record_save(monkeypatch, lambda: bool(loaded) and all(ref() is None for ref in loaded))
    result = cli_run("import", "torchvision:resnet18", "--input", "3,64,64", "--state-dict", tmp_path / "r18.pth",
                     "-o", tmp_path / "r18.yaml")
    assert result.exit_code == 0, result.output
    assert answers == [True]
