"""The layer kinds the CNNs people prune are made of: each computes what torch computes, counts its
parameters analytically, couples channels as its math says, and prunes to a model equal to its masked
original (squeeze-excitation, grouped convolutions pruned by groups, layer scale, norms, shuffle,
ceil-mode and non-square pools, upsampling, several outputs)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
import yaml
from torch import nn

import slimspec
from slimspec.document import spec_from_text
from slimspec.ir.counts import count_params
from slimspec.nn.net import SpecNet
from slimspec.pruning.masking import apply_channel_masks
from slimspec.pruning.transplant import fold_gates

from .conftest import randomize


def _spec(layers: str, input_shape=(3, 16, 16), extra: str = "num_classes: 5\n"):
    return spec_from_text(f"slimspec: 1\nname: t\narch: graph\ninput: {list(input_shape)}\n{extra}layers:\n{layers}", "t")


def _model(spec, mode: str = "plain", seed: int = 0) -> nn.Module:
    return randomize(SpecNet(spec, mode), seed).eval()


def _masked_original(spec, state, kept) -> nn.Module:
    masked = SpecNet(spec, "masked")
    masked.load_state_dict(state, strict=False)
    return apply_channel_masks(masked, spec.ir, kept).eval()


def _x(spec, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, *spec.ir.input_shape, generator=torch.Generator().manual_seed(1))


SE = """\
  - conv: {out: 16, padding: 1}   # 0
  - bn
  - relu
  - adaptive_avgpool: 1          # 3
  - conv: {out: 4, kernel: 1}
  - relu
  - conv: {out: 16, kernel: 1}   # 6 the expand conv: coupled to layer 0's channels
  - sigmoid
  - mul: {from: [2, 7]}          # 8
  - conv: {out: 12, padding: 1}
  - bn
  - relu
  - adaptive_avgpool: 1
  - flatten
"""


def test_squeeze_excitation_computes_x_times_its_sigmoid_scale():
    spec = _spec(SE)
    model, x = _model(spec), _x(spec)
    m = dict(model.named_modules())
    y = F.relu(m["layers.1"](m["layers.0"](x)))
    s = torch.sigmoid(m["layers.6"](F.relu(m["layers.4"](y.mean((2, 3), keepdim=True)))))
    z = F.relu(m["layers.10"](m["layers.9"](y * s))).mean((2, 3))
    torch.testing.assert_close(model(x), m["fc"](z))
    assert count_params(spec.ir) == sum(p.numel() for p in model.parameters())


def test_squeeze_excitation_couples_the_scale_to_the_map_without_making_a_stream():
    slots = _spec(SE).ir.slots
    assert slots["layers[0].conv.out"].kind == "channel"  # prunable without --prune-stream
    assert "layers[6].conv.out" not in slots  # the expand conv writes layer 0's channels
    assert slots["layers[4].conv.out"].kind == "channel"


@pytest.mark.parametrize("method", ["l1", "slimming"])
def test_pruned_squeeze_excitation_equals_its_masked_original(method):
    spec = _spec(SE)
    model = _model(spec)
    result = slimspec.prune(model, method, ratio=0.5, scope="layer")
    new = result.spec.data["layers"]
    assert new[0]["conv"]["out"] == new[6]["conv"]["out"] == 8
    assert new[4]["conv"]["out"] == (2 if method == "l1" else 4)  # slimming scores BN channels only
    x = _x(spec)
    torch.testing.assert_close(result.model.eval()(x), _masked_original(spec, model.state_dict(),
                                                                         result.decision.kept)(x))


RESNEXT = """\
  - conv: {out: 16, padding: 1}             # 0 stem
  - bn
  - relu                                    # 2
  - conv: {out: 32, kernel: 1, bias: false} # 3
  - bn
  - relu
  - conv: {out: 32, groups: 8, padding: 1, bias: false}  # 6 grouped: 8 groups of 4
  - bn
  - relu
  - conv: {out: 16, kernel: 1, bias: false} # 9
  - bn
  - add: {from: [2, -1]}
  - relu
  - adaptive_avgpool: 1
  - flatten
"""


def test_a_grouped_conv_makes_its_slots_its_groups_parts():
    slots = _spec(RESNEXT).ir.slots
    assert slots["layers[3].conv.out"].parts == slots["layers[6].conv.out"].parts == 8
    assert slots["layers[3].conv.out"].kind == slots["layers[6].conv.out"].kind == "channel"


@pytest.mark.parametrize("method,ratio", [("l1", 0.5), ("slimming", 0.3), ("random", 0.6)])
def test_grouped_convs_prune_by_groups_to_their_masked_original(method, ratio):
    spec = _spec(RESNEXT)
    model = _model(spec)
    result = slimspec.prune(model, method, ratio=ratio, scope="layer")
    layers = result.spec.data["layers"]
    assert layers[6]["conv"]["groups"] == 8  # groups stay; each group keeps as many channels
    for path in ("layers[3].conv.out", "layers[6].conv.out"):
        kept = result.decision.kept[path]
        per_group = [sum(1 for k in kept if k // 4 == g) for g in range(8)]
        assert len(set(per_group)) == 1 and per_group[0] < 4, per_group
    assert layers[3]["conv"]["out"] < 32 and layers[6]["conv"]["out"] < 32
    x = _x(spec)
    torch.testing.assert_close(result.model.eval()(x), _masked_original(spec, model.state_dict(),
                                                                         result.decision.kept)(x))
    assert count_params(result.spec.ir) == sum(p.numel() for p in result.model.parameters())


def test_gates_fold_into_grouped_convs():
    spec = _spec(RESNEXT)
    gated = _model(spec, "gated")
    state = {k: (v.uniform_(0.2, 1.5) if k.startswith("gates.") else v) for k, v in gated.state_dict().items()}
    gated.load_state_dict(state)
    assert any(k.startswith("gates.5") for k in state)  # a gate stands in front of the grouped conv
    plain = SpecNet(spec, "plain").eval()
    plain.load_state_dict(fold_gates(spec.ir, state))
    x = _x(spec)
    torch.testing.assert_close(plain(x), gated(x))


def test_depthwise_convs_keep_following_their_input():
    spec = _spec("  - conv: {out: 8, kernel: 1}\n  - bn\n  - relu\n  - conv: {groups: 8, padding: 1}\n  - bn\n"
                 "  - relu\n  - conv: {out: 6, kernel: 1}\n  - adaptive_avgpool: 1\n")
    model = _model(spec)
    result = slimspec.prune(model, "l1", ratio=0.5, scope="layer")
    assert result.spec.data["layers"][3]["conv"]["groups"] == 4
    x = _x(spec)
    torch.testing.assert_close(result.model.eval()(x), _masked_original(spec, model.state_dict(),
                                                                         result.decision.kept)(x))


CONVNEXT = """\
  - conv: {out: 16, kernel: 4, stride: 4}   # 0 patchify stem
  - layernorm: {eps: 1.0e-6}                # 1
  - conv: {groups: 16, kernel: 7, padding: 3}  # 2 depthwise
  - layernorm: {eps: 1.0e-6}
  - conv: {out: 64, kernel: 1}              # 4 the inverted bottleneck: prunable
  - gelu
  - conv: {out: 16, kernel: 1}
  - scale                                   # 7 layer scale
  - droppath: 0.1
  - add: {from: [1, -1]}
  - groupnorm: 4
  - adaptive_avgpool: 1
  - flatten
"""


def test_convnext_block_kinds_compute_what_torch_computes():
    spec = _spec(CONVNEXT, (3, 32, 32))
    model, x = _model(spec), _x(spec)
    m = dict(model.named_modules())
    ln = torchvision.models.convnext.LayerNorm2d(16, eps=1e-6)
    ln.load_state_dict(m["layers.1"].state_dict())
    stem = ln(m["layers.0"](x))
    ln.load_state_dict(m["layers.3"].state_dict())
    y = m["layers.6"](F.gelu(m["layers.4"](ln(m["layers.2"](stem)))))
    y = stem + y * m["layers.7"].weight.view(-1, 1, 1)
    gn = m["layers.10"]
    z = F.group_norm(y, 4, gn.weight, gn.bias, gn.eps).mean((2, 3))
    torch.testing.assert_close(model(x), m["fc"](z))
    assert count_params(spec.ir) == sum(p.numel() for p in model.parameters())


def test_norms_over_channels_fix_them_and_the_bottleneck_prunes():
    spec = _spec(CONVNEXT, (3, 32, 32))
    slots = spec.ir.slots
    assert slots["layers[0].conv.out"].kind == "fixed"  # LayerNorm statistics span every channel
    assert slots["layers[4].conv.out"].kind == "channel"
    model = _model(spec)
    result = slimspec.prune(model, "l1", ratio=0.5)
    assert result.spec.data["layers"][4]["conv"]["out"] == 32
    x = _x(spec)
    torch.testing.assert_close(result.model.eval()(x), _masked_original(spec, model.state_dict(),
                                                                         result.decision.kept)(x))


def test_channel_shuffle_is_torchvisions_and_fixes_what_it_interleaves():
    spec = _spec("  - conv: {out: 12, kernel: 1}\n  - shuffle: 3\n  - conv: {out: 8, kernel: 1}\n"
                 "  - adaptive_avgpool: 1\n")
    model, x = _model(spec), _x(spec)
    m = dict(model.named_modules())
    expected = torchvision.models.shufflenetv2.channel_shuffle(m["layers.0"](x), 3)
    torch.testing.assert_close(m["layers.1"](m["layers.0"](x)), expected)
    assert spec.ir.slots["layers[0].conv.out"].kind == "fixed"
    assert spec.ir.slots["layers[2].conv.out"].kind == "channel"


@pytest.mark.parametrize("size", [7, 8, 13])
def test_ceil_mode_and_non_square_sizes_match_torch(size):
    spec = _spec("  - conv: {out: 4, kernel: [1, 7], padding: [0, 3]}\n  - conv: {out: 4, kernel: [3, 1], stride: [2, 1]}\n"
                 "  - maxpool: {kernel: 3, stride: 2, ceil: true}\n  - avgpool: {kernel: [2, 3], padding: [1, 1], ceil: true}\n"
                 "  - adaptive_avgpool: [2, 3]\n", (3, size, size))
    model, x = _model(spec), _x(spec)
    m = dict(model.named_modules())
    ref = nn.Sequential(m["layers.0"], m["layers.1"], nn.MaxPool2d(3, 2, ceil_mode=True),
                        nn.AvgPool2d((2, 3), padding=(1, 1), ceil_mode=True))
    feature = ref(x)
    assert tuple(feature.shape[1:]) == spec.ir.node("layers.3").shape
    torch.testing.assert_close(model(x), m["fc"](F.adaptive_avg_pool2d(feature, (2, 3)).flatten(1)))
    assert count_params(spec.ir) == sum(p.numel() for p in model.parameters())


def test_several_outputs_come_back_as_a_tuple_and_are_never_pruned():
    spec = _spec("  - conv: {out: 8, padding: 1}   # 0\n  - relu\n  - maxpool: 2\n  - conv: {out: 6, padding: 1}\n"
                 "  - upsample: 2\n  - zeropad: [0, 1, 0, 1]   # 5\n  - conv: {out: 5, kernel: 1, from: 1}  # 6\n",
                 extra="outputs: [5, 6]\n")
    assert spec.ir.num_classes is None and "fc" not in spec.ir
    model, x = _model(spec), _x(spec)
    big, small = model(x)
    m = dict(model.named_modules())
    y = torch.relu(m["layers.0"](x))
    torch.testing.assert_close(big, F.pad(F.interpolate(m["layers.3"](F.max_pool2d(y, 2)), scale_factor=2), (0, 1, 0, 1)))
    torch.testing.assert_close(small, m["layers.6"](y))
    assert spec.ir.slots["layers[3].conv.out"].kind == spec.ir.slots["layers[6].conv.out"].kind == "fixed"
    assert spec.ir.slots["layers[0].conv.out"].kind == "channel"
    result = slimspec.prune(model, "l1", ratio=0.5)
    assert result.spec.data["outputs"] == [5, 6]
    pruned = result.model.eval()(x)
    masked = _masked_original(spec, model.state_dict(), result.decision.kept)(x)
    for a, b in zip(pruned, masked):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("layers,extra,message", [
    ("  - conv: 4\n  - conv: 4\n", "outputs: [0]\n", r"layers\[1\]: computes nothing the outputs use"),
    ("  - conv: 4\n", "outputs: [3]\n", r"outputs\[0\]: 3 is not a layer: there are 1 layers"),
    ("  - conv: 4\n", "", r"num_classes"),
    ("  - conv: 4\n  - conv: 4\n  - conv: 4\n  - mul: {from: [0, 1, 2]}\n", "num_classes: 2\n",
     r"layers\[3\]\.mul\.from: mul takes exactly 2 inputs, got 3"),
    ("  - conv: 6\n  - groupnorm: 4\n", "num_classes: 2\n", r"layers\[1\]\.groupnorm: groups 4 does not divide the "
                                                            r"input width 6"),
    ("  - conv: 6\n  - conv: {out: 4, groups: 4}\n", "num_classes: 2\n", r"groups 4 does not divide the input width 6"),
    ("  - conv: 4\n  - conv: 3\n  - mul: {from: [0, 1]}\n", "num_classes: 2\n", r"mul: layers\[0\] has 4 channels"),
])
def test_misused_kinds_are_refused_where_they_are(layers, extra, message):
    with pytest.raises(slimspec.SpecError, match=message):
        _spec(layers, extra=extra).ir


def test_a_pruned_spec_changes_only_widths():
    spec = _spec(RESNEXT + "  - dropout: 0.1\n")
    result = slimspec.prune(_model(spec), "l1", ratio=0.5, scope="layer")
    before = yaml.safe_load(spec.text)["layers"]
    after = yaml.safe_load(result.spec.text)["layers"]
    changed = {(i, key) for i, (a, b) in enumerate(zip(before, after)) if a != b
               for key in (a[next(iter(a))] if isinstance(a, dict) and isinstance(a[next(iter(a))], dict) else {"out": 0})
               if isinstance(a, dict) and (not isinstance(a[next(iter(a))], dict) or a[next(iter(a))][key] != b[next(iter(b))][key])}
    assert changed and {key for _, key in changed} == {"out"}


DETECTOR = """\
slimspec: 1
name: det
arch: graph
input: [3, 16, 16]
layers:
  - conv: {out: 8, padding: 1}
  - bn
  - leaky_relu: {slope: 0.1}
  - conv: {out: 6, kernel: 1}    # 3 a head
  - upsample: {scale: 2, from: 2}
  - conv: {out: 6, kernel: 1}    # 5 a head
outputs: [3, 5]
"""


def test_a_spec_with_outputs_through_the_cli(tmp_path):
    from .conftest import cli_run, one_line_error

    path = tmp_path / "det.yaml"
    path.write_text(DETECTOR)
    info = cli_run("info", path)
    assert info.exit_code == 0 and "outputs layers.3 6x16x16, layers.5 6x32x32" in info.output
    built = cli_run("build", path, "--out", tmp_path / "det.safetensors")
    assert built.exit_code == 0 and "forward [1, 6, 16, 16], [1, 6, 32, 32] ok" in built.output
    refused = cli_run("train", path, "--data", "digits", "--epochs", "1", "--out", tmp_path / "run")
    assert refused.exit_code == 1 and not (tmp_path / "run").exists()
    one_line_error(refused, "returns its 'outputs' (layers.3, layers.5), not class scores")


@pytest.mark.parametrize("suffix", [".onnx", ".pt2"])
def test_several_outputs_export_and_run_back(tmp_path, suffix):
    if suffix == ".onnx":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnxscript")
    from slimspec.workflows.export import export

    spec = spec_from_text(DETECTOR, "det.yaml")
    weights = tmp_path / "det.safetensors"
    slimspec.save_weights(_model(spec), spec, weights)
    result = export(weights, tmp_path / f"det{suffix}")
    assert result.max_abs_diff < 1e-4


C2F = """\
  - conv: {out: 16, padding: 1}            # 0 cv1
  - bn
  - silu                                   # 2
  - chunk: {parts: 2, index: 0}            # 3
  - chunk: {parts: 2, index: 1, from: 2}   # 4
  - conv: {out: 6, padding: 1}             # 5 bottleneck
  - bn
  - silu
  - conv: {out: 8, padding: 1}             # 8 writes chunk 1's channels (the shortcut below)
  - bn
  - silu
  - add: {from: [4, -1]}                   # 11
  - concat: {from: [3, 4, 11]}             # 12
  - conv: {out: 12, kernel: 1}             # 13 cv2
  - bn
  - silu
  - adaptive_avgpool: 1
  - flatten
"""


def test_chunks_are_views_of_their_parent_slot():
    spec = _spec(C2F)
    slots = spec.ir.slots
    assert slots["layers[0].conv.out"].parts == 2 and slots["layers[0].conv.out"].kind == "stream"  # via the add
    assert slots["layers[3].chunk"].view == ("layers[0].conv.out", 0, 8)
    assert slots["layers[4].chunk"].view == ("layers[0].conv.out", 8, 16) and slots["layers[4].chunk"].kind == "view"
    assert "layers[8].conv.out" not in slots  # the bottleneck's last conv writes chunk 1's channels
    model, x = _model(spec), _x(spec)
    m = dict(model.named_modules())
    y = F.silu(m["layers.1"](m["layers.0"](x)))
    a, b = y.chunk(2, 1)
    z = b + F.silu(m["layers.9"](m["layers.8"](F.silu(m["layers.6"](m["layers.5"](b))))))
    out = F.silu(m["layers.14"](m["layers.13"](torch.cat([a, b, z], 1)))).mean((2, 3))
    torch.testing.assert_close(model(x), m["fc"](out))


@pytest.mark.parametrize("options", [{"ratio": 0.5, "prune_stream": True}, {"ratio": 0.4, "scope": "layer",
                                                                            "prune_stream": True}, {"ratio": 0.3}])
def test_pruned_chunks_stay_equal_and_equal_their_masked_original(options):
    spec = _spec(C2F)
    model = _model(spec)
    result = slimspec.prune(model, "l1", **options)
    kept = result.decision.kept
    parent = kept["layers[0].conv.out"]
    assert len(kept["layers[3].chunk"]) == len(kept["layers[4].chunk"]) == len(parent) // 2
    assert kept["layers[4].chunk"] == tuple(p - 8 for p in parent if p >= 8)
    layers = result.spec.data["layers"]
    assert layers[8]["conv"]["out"] == layers[0]["conv"]["out"] // 2
    x = _x(spec)
    torch.testing.assert_close(result.model.eval()(x), _masked_original(spec, model.state_dict(), kept)(x))


@pytest.mark.parametrize("layers,message", [
    ("  - conv: 6\n  - chunk: {parts: 2, index: 2}\n", r"layers\[1\]\.chunk\.index: part 2 of 2 does not exist"),
    ("  - conv: 6\n  - chunk: {parts: 4, index: 0}\n", r"layers\[1\]\.chunk\.parts: 4 parts do not divide the input "
                                                      r"width 6"),
])
def test_misused_chunks_are_refused(layers, message):
    with pytest.raises(slimspec.SpecError, match=message):
        _spec(layers, extra="num_classes: 2\n").ir


def test_a_chunk_of_a_concatenation_is_kept_whole():
    spec = _spec("  - conv: 4\n  - conv: {out: 4, from: -2}\n  - concat: {from: [0, 1]}\n"
                 "  - chunk: {parts: 2, index: 1}\n  - adaptive_avgpool: 1\n", extra="num_classes: 2\n")
    assert {s.kind for p, s in spec.ir.slots.items()} == {"fixed"}


REXNET = """\
  - conv: {out: 16, padding: 1}            # 0 the shortcut
  - bn
  - relu                                   # 2
  - conv: {out: 24, kernel: 1}             # 3 a wider map
  - bn
  - relu6                                  # 5
  - slice: {start: 0, stop: 16}            # 6
  - add: {from: [-1, 2]}                   # 7 the shortcut added to the first 16 channels
  - slice: {start: 16, stop: 24, from: 5}  # 8 the rest
  - concat: {from: [7, 8]}
  - conv: {out: 10, kernel: 1}
  - adaptive_avgpool: 1
  - flatten
"""


@pytest.mark.parametrize("options", [{"ratio": 0.5, "prune_stream": True}, {"ratio": 0.4, "scope": "layer"}])
def test_slices_move_with_their_parents_kept_channels(options):
    spec = _spec(REXNET)
    slots = spec.ir.slots
    assert slots["layers[0].conv.out"].view == ("layers[3].conv.out", 0, 16)  # the add: the shortcut's slot too
    assert slots["layers[8].slice"].view == ("layers[3].conv.out", 16, 24)
    model, x = _model(spec), _x(spec)
    m = dict(model.named_modules())
    y = F.relu6(m["layers.4"](m["layers.3"](torch.relu(m["layers.1"](m["layers.0"](x))))))
    z = torch.cat([y[:, :16] + torch.relu(m["layers.1"](m["layers.0"](x))), y[:, 16:]], 1)
    torch.testing.assert_close(model(x), m["fc"](m["layers.10"](z).mean((2, 3))))
    result = slimspec.prune(model, "l1", **options)
    kept, layers = result.decision.kept, result.spec.data["layers"]
    first = len(kept["layers[0].conv.out"])
    assert layers[6]["slice"] == {"start": 0, "stop": first}
    assert layers[8]["slice"] == {"start": first, "stop": first + len(kept["layers[8].slice"]), "from": 5}
    torch.testing.assert_close(result.model.eval()(x), _masked_original(spec, model.state_dict(), kept)(x))


def test_a_slice_out_of_range_is_refused():
    with pytest.raises(slimspec.SpecError, match=r"layers\[1\]\.slice: channels 2:9 are not a non-empty range of "
                                                 r"the input's 6"):
        _spec("  - conv: 6\n  - slice: {start: 2, stop: 9}\n", extra="num_classes: 2\n").ir
