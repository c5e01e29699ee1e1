"""slimspec export: BN folded, dynamic batch, outputs equal PyTorch's, files load without slimspec."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import onnx
import pytest
import torch

import slimspec
from slimspec.errors import ExportError, MissingExtraError
from slimspec.workflows.export import export
from slimspec.workflows.deploy import deployable

from .conftest import cli_run as invoke, randomize


@pytest.fixture
def pruned_vgg(trained_weights, tmp_path):
    result = slimspec.prune(trained_weights("digits_vgg"), "slimming", ratio=0.4)
    spec_path, weights = result.save(tmp_path / "pruned.yaml")
    return weights


def _ops(path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


def test_cli_exports_every_format_of_a_pruned_model_and_each_file_runs_without_slimspec(pruned_vgg, tmp_path):
    outs = {"onnx": tmp_path / "m.onnx", "pt2": tmp_path / "m.pt2", "torchscript": tmp_path / "m.pt"}
    for fmt, out in outs.items():
        result = invoke("export", pruned_vgg, "--out", out)
        assert result.exit_code == 0, result.output
        assert f"wrote {out} ({fmt}; 5 BatchNorm layers folded)" in result.output
        diff = float(result.output.split("max abs diff to PyTorch: ")[1].split()[0])
        assert diff < 1e-4
    assert "BatchNormalization" not in _ops(outs["onnx"]) and "Conv" in _ops(outs["onnx"])
    model, _ = slimspec.load_model(pruned_vgg)
    x = torch.randn(5, 1, 8, 8)  # a batch size never exported with: the batch axis is dynamic
    expected = model.eval()(x).detach()
    torch.save(x, tmp_path / "x.pt")
    script = textwrap.dedent(f"""
        import sys
        sys.modules["slimspec"] = None  # the files must load without slimspec
        import numpy, onnxruntime, torch, warnings
        warnings.simplefilter("ignore")
        x = torch.load({str(tmp_path / 'x.pt')!r}, weights_only=True)
        ort = onnxruntime.InferenceSession({str(outs['onnx'])!r}, providers=["CPUExecutionProvider"])
        outs = [torch.from_numpy(ort.run(None, {{"input": x.numpy()}})[0]),
                torch.export.load({str(outs['pt2'])!r}).module()(x),
                torch.jit.load({str(outs['torchscript'])!r})(x)]
        torch.save([o.detach() for o in outs], {str(tmp_path / 'y.pt')!r})
    """)
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    for got in torch.load(tmp_path / "y.pt", weights_only=True):
        assert got.shape == (5, 10)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_resnet_onnx_has_no_batchnorm_and_matches(trained_weights, tmp_path):
    result = export(trained_weights("digits_resnet"), tmp_path / "r.onnx")
    assert result.max_abs_diff < 1e-4
    assert len(result.folded_bn) == len(slimspec.load_spec("digits_resnet").ir.nodes_of("bn"))
    assert "BatchNormalization" not in _ops(tmp_path / "r.onnx")


def test_export_reports_the_difference_relative_to_the_outputs_when_they_are_large(trained_weights, tmp_path):
    from slimspec.workflows.export import ExportResult

    weights = trained_weights("digits_mlp")
    result = export(weights, tmp_path / "m.pt2")
    model, _ = slimspec.load_model(weights)
    x = torch.randn(3, *model.ir.input_shape, generator=torch.Generator().manual_seed(1))  # the check batch
    with torch.no_grad():
        assert result.output_scale == float(model.eval()(x).abs().max())
    line = ExportResult(tmp_path, "onnx", 0.0658, [], 3, 109901.7).check_line()
    assert line == "max abs diff to PyTorch: 0.0658 (batch of 3; 6e-07 of the largest output, 1.1e+05)"
    assert ExportResult(tmp_path, "onnx", 0.0, [], 3, 1e5).check_line() == "max abs diff to PyTorch: 0 (batch of 3)"
    assert ExportResult(tmp_path, "onnx", 1e-6, [], 3, 0.5).check_line() == "max abs diff to PyTorch: 1e-06 (batch of 3)"


def test_export_threads_reach_the_onnx_runtime_check(trained_weights, tmp_path, monkeypatch):
    import slimspec.workflows.export as export_module

    asked: list[int | None] = []
    session = export_module.ort_session

    def recording(model, threads=None):
        asked.append(threads)
        return session(model, threads)

    monkeypatch.setattr(export_module, "ort_session", recording)
    result = invoke("export", trained_weights("digits_mlp"), "--out", tmp_path / "m.onnx", "--threads", "1")
    assert result.exit_code == 0, result.output
    assert asked == [1]


@pytest.mark.parametrize("mode", ["masked", "gated"])
def test_deployable_folds_masks_and_gates_exactly(mode):
    model = randomize(slimspec.build("digits_resnet", mode, seed=1), seed=1)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("mask"):
                tensor.copy_((torch.rand_like(tensor) > 0.3).float())
    plain = deployable(model)
    assert plain.mode == "plain"
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(plain(x), model(x), atol=1e-5, rtol=0)


def test_pt2_of_a_gated_weights_file(trained_weights, tmp_path):
    result = export(trained_weights("digits_vgg", "gated"), tmp_path / "g.pt2")
    assert result.format == "pt2" and result.max_abs_diff < 1e-4


def test_refuses_to_clobber_without_force(pruned_vgg, tmp_path):
    out = tmp_path / "m.pt2"
    out.write_bytes(b"keep me")
    result = invoke("export", pruned_vgg, "--out", out)
    assert result.exit_code == 1
    assert "already exists (use --force to overwrite)" in result.output
    assert out.read_bytes() == b"keep me"
    assert invoke("export", pruned_vgg, "--out", out, "--force").exit_code == 0
    assert out.read_bytes() != b"keep me"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left
    before = pruned_vgg.read_bytes()
    result = invoke("export", pruned_vgg, "--format", "onnx", "--out", pruned_vgg, "--force")
    assert result.exit_code == 1 and str(pruned_vgg.name) in result.output and pruned_vgg.read_bytes() == before


def test_unknown_suffix_and_missing_extra(pruned_vgg, tmp_path, monkeypatch):
    with pytest.raises(ExportError, match="cannot tell the format from the suffix '.bin'"):
        export(pruned_vgg, tmp_path / "m.bin")
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    result = invoke("export", pruned_vgg, "--out", tmp_path / "m.onnx")
    assert result.exit_code == 1
    assert "pip install 'slimspec[onnx]'" in result.output
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(MissingExtraError):
        export(pruned_vgg, tmp_path / "m.onnx")


@pytest.mark.slow
@pytest.mark.parametrize("name, ratio", [("vgg19", 0.7), ("resnet56", 0.5)])
def test_stock_pruned_models_export_to_onnx_and_pt2(tmp_path, name, ratio):
    model = randomize(slimspec.build(name, seed=0))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight[torch.rand(module.num_features) < ratio] = 0
    weights = tmp_path / f"{name}.safetensors"
    slimspec.save_weights(model, model.spec, weights)
    _, pruned = slimspec.prune(weights, "slimming", ratio=ratio).save(tmp_path / f"{name}_p.yaml")
    result = export(pruned, tmp_path / f"{name}.onnx")
    assert result.max_abs_diff < 1e-4 and "BatchNormalization" not in _ops(tmp_path / f"{name}.onnx")
    assert export(pruned, tmp_path / f"{name}.pt2").max_abs_diff < 1e-4
