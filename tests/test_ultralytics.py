"""``import ultralytics:``: YOLOv8 built by Ultralytics from its own model YAML, traced into a graph spec whose
outputs are the Detect head's raw per-level maps — equal to what the DetectionModel itself computes (eval mode,
rel 1e-5), with Ultralytics' parameter count less the DFL conv, and pruned (l1 to 0.7 of the MACs, slimming) to a
model equal to its masked original with a spec in which only widths change. YOLOv8n at 64x64 here; 640 and
YOLOv8s are slow."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

pytest.importorskip("ultralytics")

import slimspec  # noqa: E402
from slimspec.errors import ModelImportError  # noqa: E402
from slimspec.ir.counts import count_macs, count_params  # noqa: E402
from slimspec.nn.net import SpecNet  # noqa: E402
from slimspec.pruning.masking import apply_channel_masks  # noqa: E402
from slimspec.interop.ultralytics_models import (dfl_params, import_ultralytics, raw_outputs,  # noqa: E402
                                                 ultralytics_model)
from slimspec.weights import read_weights, save_weights  # noqa: E402

from .conftest import cli_run, one_line_error, randomize  # noqa: E402

SIZE = 64  # a multiple of YOLOv8's largest stride (32): maps of 8x8, 4x4 and 2x2


def _x(size: int = SIZE, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def yolo():
    """Ultralytics' YOLOv8n (random weights, BN statistics made to look trained) and its import at 64x64."""
    detection = randomize(ultralytics_model("yolov8n.yaml", seed=0))
    spec, state = import_ultralytics("yolov8n.yaml", input_shape=(3, SIZE, SIZE), model=detection)
    model = SpecNet(spec)
    model.load_state_dict(state)
    return detection, spec, state, model.eval()


def _head_maps(detection: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The Detect head's raw maps computed from its own modules on the inputs Ultralytics' forward gives it."""
    seen: list = []
    head = detection.model[-1]
    hook = head.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        with torch.no_grad():
            detection.eval()(x)
            return tuple(torch.cat((head.cv2[i](f), head.cv3[i](f)), 1) for i, f in enumerate(seen[0]))
    finally:
        hook.remove()


def _close(actual, expected) -> None:
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        assert got.shape == want.shape
        assert float((got - want).abs().max()) <= 1e-5 * float(want.abs().max())


# -- the import -------------------------------------------------------------------------------------
def test_yolov8n_equals_the_detection_models_raw_outputs(yolo):
    detection, spec, _, model = yolo
    x = _x()
    with torch.no_grad():
        ours = model(x)
    head = detection.model[-1]
    channels = 4 * head.reg_max + head.nc
    assert [tuple(o.shape) for o in ours] == [(2, channels, SIZE // s, SIZE // s) for s in (8, 16, 32)]
    _close(ours, _head_maps(detection, x))
    _close(ours, raw_outputs(detection, x))  # Ultralytics' own forward, its flattened maps put back per level


def test_ultralytics_decode_of_the_spec_outputs_is_the_detection_models_prediction(yolo):
    detection, _, _, model = yolo
    head = detection.model[-1]
    if not hasattr(head, "forward_head"):
        pytest.skip("this Ultralytics' Detect has no forward_head/_inference split (before 8.4)")
    x = _x()
    with torch.no_grad():
        maps = model(x)
        predicted, _ = detection.eval()(x)
        head.shape = None  # anchors remade from the spec's maps
        n, box = x.shape[0], 4 * head.reg_max
        decoded = head._inference({"boxes": torch.cat([m[:, :box].reshape(n, box, -1) for m in maps], -1),
                                   "scores": torch.cat([m[:, box:].reshape(n, head.nc, -1) for m in maps], -1),
                                   "feats": list(maps)})
    _close([decoded], [predicted])


def test_params_are_ultralytics_count_less_the_dfl_conv_and_macs_are_its_convolutions(yolo):
    detection, spec, _, _ = yolo
    head = detection.model[-1]
    assert dfl_params(detection) == head.reg_max == head.dfl.conv.weight.numel()
    assert count_params(spec.ir) == sum(p.numel() for p in detection.parameters()) - head.reg_max
    macs, hooks = [], []
    for name, module in detection.named_modules():
        if isinstance(module, nn.Conv2d) and not name.startswith("model.22.dfl"):
            hooks.append(module.register_forward_hook(
                lambda m, args, out: macs.append(m.weight.numel() * out.shape[2] * out.shape[3])))
    with torch.no_grad():
        detection(_x(batch=1))
    for hook in hooks:
        hook.remove()
    assert count_macs(spec.ir) == sum(macs)


def test_the_spec_names_ultralytics_modules_and_keeps_its_weights(yolo):
    detection, spec, state, _ = yolo
    text = spec.text
    assert text.startswith("# Imported from Ultralytics' yolov8n.yaml")
    assert text.count(" model.0.act") == 1  # each Conv's activation named by its own path (Ultralytics shares one)
    own, compared = detection.state_dict(), set()
    for line in text.splitlines():  # '# i model.N.path' names the module whose tensors layer i holds
        found = re.search(r"# (\d+) (model\.\S+)$", line)
        for key in ("weight", "bias", "running_mean", "running_var") if found else ():
            index, path = found.groups()
            if f"{path}.{key}" in own:
                assert torch.equal(state[f"layers.{index}.{key}"], own[f"{path}.{key}"])
                compared.add(f"{path}.{key}")
    assert compared == {k for k in own if not k.endswith("num_batches_tracked") and ".dfl." not in k}
    layers = spec.data["layers"]
    assert all(next(iter(layers[i])) == "concat" for i in spec.data["outputs"])  # cat(cv2[i], cv3[i]) per level
    assert re.findall(r"# (P\d/\d+):", text) == ["P3/8", "P4/16", "P5/32"]


def test_c2f_imports_as_two_chunks_and_sppf_as_repeated_pools(yolo):
    detection, spec, _, _ = yolo
    layers = spec.data["layers"]
    c2f = [m for m in detection.model if type(m).__name__ == "C2f"]
    chunks = [layer["chunk"] for layer in layers if isinstance(layer, dict) and "chunk" in layer]
    assert len(chunks) == 2 * len(c2f) and all(c["parts"] == 2 for c in chunks)
    pools = [layer["maxpool"] for layer in layers if isinstance(layer, dict) and "maxpool" in layer]
    sppf = detection.model[9]
    assert pools == [{"kernel": sppf.m.kernel_size, "stride": 1, "padding": sppf.m.padding}] * sppf.n


def test_a_users_model_yaml_imports_by_its_path_with_its_classes(tmp_path):
    """A YAML of one's own (a narrower scale, 3 classes), by path: the same seed builds the same weights."""
    import ultralytics

    text = (Path(ultralytics.__file__).parent / "cfg" / "models" / "v8" / "yolov8.yaml").read_text(encoding="utf-8")
    text = re.sub(r"^nc: \d+", "nc: 3", text, flags=re.M)
    text = re.sub(r"^scales:.*?\n(?=\S)", "scales:\n  t: [0.33, 0.125, 1024]\n", text, flags=re.M | re.S)
    (tmp_path / "mine.yaml").write_text(text, encoding="utf-8")
    spec, state = import_ultralytics(tmp_path / "mine.yaml", input_shape=(3, 32, 32), seed=3)
    detection = ultralytics_model(tmp_path / "mine.yaml", seed=3)
    assert spec.name == "mine" and detection.model[-1].nc == 3
    model = SpecNet(spec)
    model.load_state_dict(state)
    x = _x(32)
    with torch.no_grad():
        _close(model.eval()(x), raw_outputs(detection, x))
    assert [int(model(x)[i].shape[1]) for i in range(3)] == [4 * 16 + 3] * 3
    assert count_params(spec.ir) == sum(p.numel() for p in detection.parameters()) - dfl_params(detection)


def test_c2f_forward_is_what_torch_fx_cannot_trace_and_the_replay_can():
    """Why the replay exists: ``list(proxy.chunk(2, 1))`` iterates an fx proxy; unpacked, the halves are chunks."""
    from torch import fx
    from ultralytics.nn.modules.block import C2f

    from slimspec.interop.ultralytics_models import REPLAYS

    class Own(nn.Module):
        def __init__(self, block: nn.Module, replay=None):
            super().__init__()
            self.block, self.replay = block, replay

        def forward(self, x):
            return self.block(x) if self.replay is None else self.replay(self.block, x)

    block = randomize(C2f(8, 8, n=1, shortcut=True)).eval()
    with pytest.raises(fx.proxy.TraceError, match="Proxy object cannot be iterated"):
        fx.symbolic_trace(Own(block))
    spec, model = slimspec.from_module(Own(block, REPLAYS["C2f"]).eval(), (8, 16, 16))
    x = torch.randn(2, 8, 16, 16)
    assert [layer for layer in spec.data["layers"] if isinstance(layer, dict) and "chunk" in layer] == \
        [{"chunk": {"parts": 2, "index": 0}}, {"chunk": {"parts": 2, "index": 1, "from": 2}}]
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(x), block(x), rtol=1e-5, atol=1e-6)


# -- the CLI, trained weights through an extracted state dict ---------------------------------------
def test_cli_imports_a_state_dict_extracted_as_the_readme_says(yolo, tmp_path, monkeypatch):
    from safetensors.torch import save_file

    detection, spec, state, _ = yolo
    # the README's one-liner on a checkpoint: {k: v.float().contiguous() for k, v in ckpt['model'].state_dict()}
    save_file({k: v.float().contiguous() for k, v in detection.state_dict().items()}, tmp_path / "yolov8n.safetensors")
    monkeypatch.chdir(tmp_path)
    result = cli_run("import", "ultralytics:yolov8n.yaml", "--state-dict", "yolov8n.safetensors",
                     "--input", f"3,{SIZE},{SIZE}", "--out", "y8n.yaml")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "y8n.yaml").read_text(encoding="utf-8") == spec.text
    loaded, _ = read_weights(tmp_path / "y8n.safetensors")
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)


@pytest.mark.parametrize("args,message", [
    (["ultralytics:nosuchmodel.yaml"], "Ultralytics ships no model YAML of that name"),
    (["ultralytics:yolov8n.yaml", "--input", "3,100,100"], "must be multiples of the model's largest stride 32"),
    (["ultralytics:yolov8n-cls.yaml", "--input", "3,64,64"], "its head is Classify"),
    (["ultralytics:yolov8n.yaml", "--weights", "x"], None),
    (["ultralytics:yolov8n.yaml", "--input", "3,64,64"], "yolov8n.yaml is a slimspec spec, not an Ultralytics model"),
])
def test_cli_refusals_are_one_line(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    if "slimspec spec" in (message or ""):  # an earlier import's --out yolov8n.yaml in this folder
        (tmp_path / "yolov8n.yaml").write_text("slimspec: 1\nname: s\narch: vgg\ninput: [3, 8, 8]\nnum_classes: 2\n"
                                               "cfg: [4]\n", encoding="utf-8")
    if message is None:  # --weights is darknet's
        (tmp_path / "x").write_bytes(b"")
        result = cli_run("import", *args, "--out", "o.yaml")
        assert result.exit_code == 2 and "only for darknet: sources" in result.output
    else:
        one_line_error(cli_run("import", *args, "--out", "o.yaml"), message)
    assert not (tmp_path / "o.yaml").exists()


# -- pruning ----------------------------------------------------------------------------------------
def _masked_original(spec, state, kept) -> nn.Module:
    masked = SpecNet(spec, "masked")
    masked.load_state_dict(state, strict=False)
    return apply_channel_masks(masked, spec.ir, kept).eval()


def _stream_modules(detection: nn.Module) -> set[str]:
    """C2f blocks whose bottlenecks add their input (shortcut=True): cv1's channels are a residual stream."""
    return {f"model.{i}.cv1.conv" for i, m in enumerate(detection.model)
            if type(m).__name__ == "C2f" and any(b.add for b in m.m)}


def _module_of(spec, slot: str) -> str:
    index = int(re.match(r"layers\[(\d+)\]", slot).group(1))
    line = next(line for line in spec.text.splitlines() if re.search(rf"# {index} model\.", line))
    return line.rsplit(" ", 1)[1]


def _only_widths_changed(before: dict, after: dict) -> None:
    assert after["outputs"] == before["outputs"] and len(after["layers"]) == len(before["layers"])
    for old, new in zip(before["layers"], after["layers"]):
        if isinstance(old, dict) and "conv" in old:
            assert {k: v for k, v in new["conv"].items() if k not in ("out", "groups")} == \
                   {k: v for k, v in old["conv"].items() if k not in ("out", "groups")}
        else:
            assert new == old


@pytest.mark.parametrize("method,options", [("l1", {"target": "macs=0.7"}),
                                            ("l1", {"target": "macs=0.7", "prune_stream": True}),
                                            ("slimming", {"ratio": 0.3})])
def test_pruned_yolov8n_equals_its_masked_original_with_equal_chunk_halves(yolo, method, options):
    detection, spec, state, model = yolo
    result = slimspec.prune(model, method, **options)
    kept, slots = result.decision.kept, spec.ir.slots
    streams = {path for path, slot in slots.items() if slot.kind == "stream"}
    assert {_module_of(spec, path) for path in streams} == _stream_modules(detection)
    if not options.get("prune_stream"):
        assert all(len(kept[path]) == slots[path].size for path in streams)
    assert any(len(kept[path]) < slots[path].size for path in streams) == bool(options.get("prune_stream"))
    views = [path for path, slot in slots.items() if slot.view is not None]
    assert views
    for path in views:  # each chunk keeps its part of the parent's kept channels: the halves stay equal
        parent, start, stop = slots[path].view
        assert stop - start == slots[parent].size // 2  # a C2f chunk: half of cv1's channels
        assert kept[path] == tuple(k - start for k in kept[parent] if start <= k < stop)
        assert len(kept[path]) * 2 == len(kept[parent])
    if "target" in options:
        assert abs(result.macs[1] / result.macs[0] - 0.7) < 0.02
    x = _x()
    with torch.no_grad():
        pruned, masked = result.model.eval()(x), _masked_original(spec, state, kept)(x)
    _close(pruned, masked)
    assert [o.shape[1] for o in pruned] == [o.shape[1] for o in model(x)]  # the heads' maps keep their channels
    _only_widths_changed(spec.data, result.spec.data)
    assert count_params(result.spec.ir) == result.params[1] < result.params[0] == count_params(spec.ir)


def test_cli_prune_writes_a_diffable_spec(yolo, tmp_path, monkeypatch):
    _, spec, state, _ = yolo
    save_weights(state, spec.text, tmp_path / "y8n.safetensors")
    monkeypatch.chdir(tmp_path)
    result = cli_run("prune", "y8n.safetensors", "-m", "l1", "--target", "macs=0.7", "--out", "y8n_l1.yaml")
    assert result.exit_code == 0, result.output
    assert "computes what the masked original computes" in result.output
    before = spec.text.splitlines()
    after = (tmp_path / "y8n_l1.yaml").read_text(encoding="utf-8").splitlines()
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert changed and all(re.sub(r"out: \d+", "", a) == re.sub(r"out: \d+", "", b) for a, b in changed)
    assert after[len(before):][0].startswith("pruned:")  # the provenance block comes after the unchanged rest
    pruned = yaml.safe_load("\n".join(after))
    assert abs(pruned["pruned"]["macs"]["after"] / pruned["pruned"]["macs"]["before"] - 0.7) < 0.02


# -- slow: the published size, YOLOv8s --------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("cfg", ["yolov8n.yaml", "yolov8s.yaml"])
def test_yolov8_at_640_equals_ultralytics(cfg):
    detection = randomize(ultralytics_model(cfg, seed=0))
    spec, state = import_ultralytics(cfg, model=detection)
    model = SpecNet(spec)
    model.load_state_dict(state)
    x = _x(640, batch=1)
    with torch.no_grad():
        _close(model.eval()(x), _head_maps(detection, x))
    assert count_params(spec.ir) == sum(p.numel() for p in detection.parameters()) - dfl_params(detection)
