"""torchvision models import as specs whose models compute exactly the same thing."""
from __future__ import annotations

import pytest
import torch
import torchvision
from click.testing import CliRunner

import slimspec
from slimspec.cli.main import cli
from slimspec.interop.torchvision_models import import_torchvision
from slimspec.ir import count_params
from slimspec.weights import load_state_into

from .conftest import randomize


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "wide_resnet50_2", "vgg11_bn", "vgg11"])
def test_import_is_exact(name):
    torch.manual_seed(0)
    reference = randomize(getattr(torchvision.models, name)(weights=None))
    spec, state = import_torchvision(name, model=reference)
    assert count_params(spec.ir) == sum(p.numel() for p in reference.parameters())
    model = slimspec.build(spec)
    load_state_into(model, state, name)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), reference.eval()(x), atol=1e-4, rtol=1e-4)


def test_stock_imagenet_specs_match_torchvision():
    for name in ("resnet18", "resnet50"):
        spec, _ = import_torchvision(name)
        stock = slimspec.load_spec(name)
        assert count_params(stock.ir) == count_params(spec.ir)
        assert {k: v for k, v in stock.data.items() if k != "name"} == {k: v for k, v in spec.data.items() if k != "name"}


def _assert_same(spec, state, reference, shape=(3, 64, 64), atol=1e-5):
    from slimspec.model import build_from_state

    model = build_from_state(spec, state)
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), reference.eval()(x), atol=atol, rtol=1e-5)


def test_mobilenet_v2_imports_as_the_stock_spec():
    torch.manual_seed(0)
    reference = randomize(torchvision.models.mobilenet_v2(weights=None))
    spec, state = import_torchvision("mobilenet_v2", model=reference, input_shape=(3, 32, 32))
    assert spec.arch == "mobilenetv2" and slimspec.info(spec)["params"] == 3_504_872
    assert set(state) == set(reference.state_dict())  # torchvision's names, unchanged
    stock = slimspec.load_spec("mobilenetv2").data
    skip = ("name", "input", "width_mult")
    assert {k: v for k, v in spec.data.items() if k not in skip} == {k: v for k, v in stock.items() if k not in skip}
    _assert_same(spec, state, reference, shape=(3, 32, 32))


def test_resnext50_32x4d_is_exact():
    torch.manual_seed(0)
    reference = randomize(torchvision.models.resnext50_32x4d(weights=None))
    spec, state = import_torchvision("resnext50_32x4d", model=reference, input_shape=(3, 64, 64))
    assert (spec.data["groups"], spec.data["width_per_group"]) == (32, 4)
    assert [st["blocks"] for st in spec.data["stages"]] == [3, 4, 6, 3]  # counts: inner widths are the default
    assert slimspec.info(spec)["params"] == 25_028_904
    grouped = {p for p, slot in spec.ir.slots.items() if slot.parts == 32 and slot.kind == "channel" and ".blocks[" in p}
    assert len(grouped) == 2 * 16  # both inner widths of every grouped block: its 32 groups' parts
    _assert_same(spec, state, reference, atol=1e-4)


def test_any_other_expressible_model_is_traced_into_a_graph():
    torch.manual_seed(0)
    reference = randomize(torchvision.models.mnasnet0_5(weights=None))
    spec, state = import_torchvision("mnasnet0_5", model=reference, input_shape=(3, 32, 32))
    assert spec.arch == "graph" and count_params(spec.ir) == sum(p.numel() for p in reference.parameters())
    _assert_same(spec, state, reference, shape=(3, 32, 32))


def test_unexpressible_model_is_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["import", "torchvision:vit_b_16", "--out", str(tmp_path / "s.yaml")])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert "vit_b_16: is a vision transformer" in result.output and not list(tmp_path.iterdir())
    result = CliRunner().invoke(cli, ["import", "torchvision:nonet", "--out", str(tmp_path / "s.yaml")])
    assert result.exit_code == 1 and "torchvision has no classification model 'nonet'" in result.output


def test_pretrained_offline_is_one_line(tmp_path, monkeypatch):
    import socket

    def offline(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(socket, "getaddrinfo", offline)
    result = CliRunner().invoke(cli, ["import", "torchvision:mobilenet_v2", "--pretrained", "--out",
                                      str(tmp_path / "m.yaml")])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert "cannot download its pretrained weights from download.pytorch.org" in result.output
    assert "--state-dict" in result.output and "Traceback" not in result.output


def test_fine_tuned_model_with_a_new_head(tmp_path):
    """--num-classes 10 --state-dict: a fine-tuned torchvision model (new head) imports exactly."""
    from slimspec.interop.torchvision_models import replace_head

    torch.manual_seed(0)
    tuned = torchvision.models.mobilenet_v2(weights=None)
    replace_head(tuned, 10, "mobilenet_v2")
    tuned = randomize(tuned)
    path = tmp_path / "tuned.pth"
    state = {f"module.{k}": v for k, v in tuned.state_dict().items()}  # saved from DataParallel
    torch.save({"state_dict": state, "epoch": 3}, path)
    out = tmp_path / "m.yaml"
    args = ["import", "torchvision:mobilenet_v2", "--state-dict", str(path), "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and "give --num-classes" in result.output and not out.exists()
    result = CliRunner().invoke(cli, [*args, "--num-classes", "10", "--input", "3,32,32"])
    assert result.exit_code == 0, result.output
    model, spec = slimspec.load_model(out.with_suffix(".safetensors"))
    assert spec.data["num_classes"] == 10 and spec.data["input"] == [3, 32, 32]
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), tuned.eval()(x), atol=1e-5, rtol=1e-5)


def test_safetensors_state_dict_and_unreadable_files(tmp_path):
    from safetensors.torch import save_file

    from slimspec.interop.torchvision_models import replace_head
    from slimspec.weights import WeightsError

    tuned = _digits_sized("mobilenet_v2")
    replace_head(tuned, 3, "mobilenet_v2")
    path = tmp_path / "tuned.safetensors"
    save_file({k: v.contiguous() for k, v in randomize(tuned).state_dict().items()}, path)
    fresh = _digits_sized("mobilenet_v2")
    spec, state = import_torchvision("mobilenet_v2", model=fresh, num_classes=3, state_dict=path,
                                     input_shape=(3, 16, 16))
    assert spec.data["num_classes"] == 3
    _assert_same(spec, state, tuned, shape=(3, 16, 16))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="bad.pth: cannot read a state dict"):
        import_torchvision("mobilenet_v2", model=_digits_sized("mobilenet_v2"), state_dict=bad)


def _digits_sized(kind: str):
    """Digits-sized torchvision models of its own classes: a short MobileNetV2 table, a 4-block ResNeXt."""
    from torchvision.models.mobilenetv2 import MobileNetV2
    from torchvision.models.resnet import Bottleneck, ResNet

    torch.manual_seed(0)
    if kind == "mobilenet_v2":
        table = [[1, 8, 1, 1], [6, 16, 2, 2], [6, 24, 2, 2]]
        return randomize(MobileNetV2(num_classes=10, width_mult=0.25, inverted_residual_setting=table))
    return randomize(ResNet(Bottleneck, [1, 1, 1, 1], groups=4, width_per_group=8, num_classes=10))


def _import_and_prune(kind: str, folder):
    from .test_prune_exact import assert_equivalent

    reference = _digits_sized(kind)
    spec, state = import_torchvision(kind, model=reference, input_shape=(3, 8, 8))
    _assert_same(spec, state, reference, shape=(3, 8, 8))
    weights = folder / f"{kind}.safetensors"
    slimspec.save_weights(state, spec.text, weights)
    pruned = slimspec.prune(weights, "slimming", percent=0.3, prune_stream=True)
    assert pruned.params[1] < pruned.params[0]
    assert_equivalent(weights, pruned)
    return pruned


def test_imported_mobilenet_v2_prunes_exactly(tmp_path):
    pruned = _import_and_prune("mobilenet_v2", tmp_path)
    assert pruned.spec.arch == "mobilenetv2" and len(pruned.spec.data["stages"]) == 3
    assert any(row.after < row.before for row in pruned.report if ".expand[" in row.slot)


def test_imported_resnext_prunes_by_groups_and_streams_exactly(tmp_path):
    """Grouped inner widths prune by groups (as many channels out of each of the 4), the streams too, and the
    pruned model equals the masked original."""
    pruned = _import_and_prune("resnext", tmp_path)
    assert pruned.spec.data["groups"] == 4
    rows = {row.slot: row for row in pruned.report}
    assert any(rows[p].after < rows[p].before for p in rows if p.endswith(".width") or p == "stem")
    inner = [rows[p] for p in rows if ".blocks[" in p]
    assert any(row.after < row.before for row in inner) and all(row.after % 4 == 0 for row in inner)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mobilenet_v2", "resnext"])
def test_imported_pruned_models_finetune_on_digits(tmp_path, kind):
    pruned = _import_and_prune(kind, tmp_path)
    pruned.save(tmp_path / "pruned.yaml")
    run = slimspec.finetune(tmp_path / "pruned.yaml", "digits", tmp_path / "ft", epochs=1, batch_size=128, quiet=True)
    assert run.epochs == 1 and 0 <= run.best_accuracy <= 100 and (run.run_dir / "best.safetensors").exists()


def test_num_classes_is_for_torchvision_sources(tmp_path):
    result = CliRunner().invoke(cli, ["import", "python:my_net:build", "--input", "3,32,32", "--num-classes", "10",
                                      "--out", str(tmp_path / "m.yaml")])
    assert result.exit_code == 2 and "--num-classes" in result.output and "only for torchvision" in result.output
    assert not list(tmp_path.iterdir())
