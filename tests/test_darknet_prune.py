"""Pruning Darknet detectors (issue 16) against Lam1360/YOLOv3-model-pruning's ``test_prune.py``, rewritten here
from its description on the test's reference Darknet (:mod:`tests.darknet_reference`):

* its prunable set: the BN convs not joined by a [shortcut] (neither the conv before one nor the one it
  reads) and not the last conv before a [yolo] (those have no BN); its file also skips the two convs before
  the upsamples (layers 84 and 96), which ``--exclude`` expresses;
* its threshold: the pooled |gamma| sorted, ``thre = sorted[int(N * percent)]``, channels with
  ``|gamma| >= thre`` kept;
* its ``prune_model_keep_size``: a removed channel's gamma is zeroed, its constant leaky(beta, 0.1)
  folded into the next conv's BN running mean (or bias), its beta zeroed.

And prune -> export darknet -> import darknet gives the same pruned network and weights; for YOLOv4-tiny
(grouped ``[route]``s: ``chunk`` layers) the pruned pair is also read by the reference Darknet.
"""
from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import slimspec
from slimspec.interop.darknet import import_darknet
from slimspec.pruning.api import prune
from slimspec.weights import read_weights

from .conftest import cli_run
from .darknet_reference import Darknet, random_weights_file
from .test_darknet import CFGS, SMALL, rel_diff, shortcut_convs

PERCENT = 0.6


def conv_slots(spec) -> dict[int, str]:
    """Darknet layer number -> the slot its conv writes (convs joined by shortcuts share one), found through the
    spec's ``# N convolutional`` comments."""
    slots, g = {}, -1
    in_layers = False
    for line in spec.text.splitlines():
        if line.startswith("layers:"):
            in_layers = True
            continue
        if in_layers and not line.startswith("  - "):
            break
        if in_layers:
            g += 1
            match = re.search(r"# (\d+) convolutional$", line)
            if match:
                slots[int(match.group(1))] = spec.ir.node(f"layers.{g}").axis.segments[0]
    return slots


def lam1360_prunable(defs: list[dict], skip: tuple[int, ...] = ()) -> list[int]:
    bn_convs = [i for i, d in enumerate(defs) if d["type"] == "convolutional" and d["batch_normalize"] == "1"]
    last_before_yolo = {i - 1 for i, d in enumerate(defs) if d["type"] == "yolo"}
    ignored = shortcut_convs(defs) | last_before_yolo | set(skip)
    return [i for i in bn_convs if i not in ignored]


def lam1360_threshold(reference: Darknet, prunable: list[int]) -> tuple[float, float]:
    """``(thre, the largest pooled |gamma| below it)`` at ``PERCENT``."""
    gammas = torch.cat([reference.module_list[i].batch_norm.weight.detach().abs() for i in prunable])
    ordered = torch.sort(gammas)[0]
    index = int(len(ordered) * PERCENT)
    return float(ordered[index]), float(ordered[index - 1])


def lam1360_masks(reference: Darknet, prunable: list[int], thre: float) -> dict[int, torch.Tensor]:
    return {i: reference.module_list[i].batch_norm.weight.detach().abs().ge(thre).float() for i in prunable}


@pytest.fixture(scope="module")
def yolov3(tmp_path_factory):
    """YOLOv3 at 64x64 with random weights: ``(reference, weights file, spec)``."""
    folder = tmp_path_factory.mktemp("yolov3")
    reference = Darknet(str(CFGS["yolov3"])).eval()
    random_weights_file(reference, str(folder / "y.weights"), seed=11)
    reference.load_darknet_weights(str(folder / "y.weights"))
    spec, state, meta = import_darknet(CFGS["yolov3"], weights=folder / "y.weights", input_shape=SMALL)
    path = folder / "y.safetensors"
    slimspec.weights.save_weights(state, spec.text, path, metadata=meta)
    return reference, path, spec


def test_slots_shortcut_streams_and_fixed_heads(yolov3):
    reference, _, spec = yolov3
    defs = reference.module_defs
    slots = conv_slots(spec)
    assert len(slots) == 75
    kinds = {i: spec.ir.slots[slot].kind for i, slot in slots.items()}
    assert {i for i, k in kinds.items() if k == "fixed"} == {i - 1 for i, d in enumerate(defs) if d["type"] == "yolo"}
    assert {i for i, k in kinds.items() if k == "stream"} == shortcut_convs(defs)
    assert sorted(i for i, k in kinds.items() if k == "channel") == lam1360_prunable(defs)
    streams = {slots[i] for i in shortcut_convs(defs)}  # one slot per stage's residual stream
    assert sorted(spec.ir.slots[s].size for s in streams) == [64, 128, 256, 512, 1024]


@pytest.mark.parametrize("skip", [(), (84, 96)], ids=["rule", "rule-and-file-skips"])
def test_slimming_keeps_the_channels_lam1360_keeps(yolov3, skip):
    reference, path, spec = yolov3
    prunable = lam1360_prunable(reference.module_defs, skip)
    thre, below = lam1360_threshold(reference, prunable)
    masks = lam1360_masks(reference, prunable, thre)
    slots = conv_slots(spec)
    exclude = [slots[i] for i in skip]
    # its rule, as a threshold: slimspec removes scores <= the largest one below thre, it keeps >= thre
    kept = prune(path, "slimming", threshold=below, exclude=exclude).decision.kept
    for i in prunable:
        assert kept[slots[i]] == tuple(torch.nonzero(masks[i]).flatten().tolist()), i
    untouched = [s for i, s in slots.items() if i not in prunable]
    assert all(len(kept[s]) == spec.ir.slots[s].size for s in untouched)
    # --percent: the same pool and sort; Network Slimming's comparison (keep > thre) also removes the
    # channel at the threshold itself, Lam1360's (keep >= thre, percent_rule darknet) keeps it
    by_percent = prune(path, "slimming", percent=PERCENT, exclude=exclude).decision.kept
    differ = {i: set(kept[slots[i]]) - set(by_percent[slots[i]]) for i in prunable}
    assert all(set(by_percent[slots[i]]) <= set(kept[slots[i]]) for i in prunable)
    assert sum(len(d) for d in differ.values()) == 1
    (layer, (channel,)), = ((i, d) for i, d in differ.items() if d)
    assert float(reference.module_list[layer].batch_norm.weight.detach()[channel].abs()) == thre
    as_darknet = prune(path, "slimming", percent=PERCENT, percent_rule="darknet", exclude=exclude).decision.kept
    for i in prunable:
        assert as_darknet[slots[i]] == tuple(torch.nonzero(masks[i]).flatten().tolist()), i


def prune_model_keep_size(reference: Darknet, masks: dict[int, torch.Tensor]) -> Darknet:
    """Lam1360's ``prune_model_keep_size`` (YOLOv3: the convs 79 and 91 are also read by 84 and 96 via a route)."""
    pruned = copy.deepcopy(reference)
    defs = pruned.module_defs
    for idx, mask in masks.items():
        bn = pruned.module_list[idx].batch_norm
        bn.weight.data.mul_(mask)
        activation = F.leaky_relu((1 - mask) * bn.bias.data, 0.1)
        next_idx_list = [idx + 1] + ([84] if idx == 79 else [96] if idx == 91 else [])
        for next_idx in next_idx_list:
            next_conv = pruned.module_list[next_idx].conv
            offset = next_conv.weight.data.sum(dim=(2, 3)).matmul(activation.reshape(-1, 1)).reshape(-1)
            if defs[next_idx]["batch_normalize"] == "1":
                pruned.module_list[next_idx].batch_norm.running_mean.data.sub_(offset)
            else:
                next_conv.bias.data.add_(offset)
        bn.bias.data.mul_(mask)
    return pruned


def test_fold_bias_is_prune_model_keep_size(yolov3):
    reference, path, spec = yolov3
    prunable = lam1360_prunable(reference.module_defs, (84, 96))
    thre, below = lam1360_threshold(reference, prunable)
    masks = lam1360_masks(reference, prunable, thre)
    removed_betas = torch.cat([reference.module_list[i].batch_norm.bias.detach()[m == 0] for i, m in masks.items()])
    assert (removed_betas < 0).sum() > 100  # leaky(beta) and relu(beta) differ on these
    slots = conv_slots(spec)
    result = prune(path, "slimming", threshold=below, fold_bias=True, exclude=[slots[84], slots[96]])
    keep_size = prune_model_keep_size(reference, masks).eval()
    x = torch.randn(2, *SMALL, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        got, expected = result.model.eval()(x), keep_size(x)
    assert rel_diff(got, expected) <= 1e-5  # with relu(beta) folded instead, the negative betas would differ


def same_weights(a, b) -> bool:
    sa, sb = read_weights(a)[0], read_weights(b)[0]
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_prune_export_import_gives_the_same_pruned_network(yolov3, tmp_path):
    _, path, spec = yolov3
    result = prune(path, "slimming", percent=0.5, prune_stream=True)
    assert any(row.kind == "stream" and row.after < row.before for row in result.report)
    result.save(tmp_path / "p.yaml")
    assert cli_run("export", tmp_path / "p.safetensors", "--out", tmp_path / "p.cfg").exit_code == 0
    cfg = (tmp_path / "p.cfg").read_text()
    widths = [spec_layer["conv"]["out"] for spec_layer in result.spec.data["layers"]
              if isinstance(spec_layer, dict) and "conv" in spec_layer]
    assert [int(v) for v in re.findall(r"^filters=(\d+)$", cfg, re.M)] == widths
    assert cli_run("import", f"darknet:{tmp_path / 'p.cfg'}", "--weights", tmp_path / "p.weights",
                   "-o", tmp_path / "back.yaml").exit_code == 0
    back = slimspec.load_spec(tmp_path / "back.yaml")
    assert back.data["layers"] == result.spec.data["layers"] and back.data["outputs"] == result.spec.data["outputs"]
    assert same_weights(tmp_path / "p.safetensors", tmp_path / "back.safetensors")


def test_tiny_halved_macs_round_trips_through_darknet(tmp_path):
    reference = Darknet(str(CFGS["yolov3-tiny"])).eval()
    random_weights_file(reference, str(tmp_path / "t.weights"), seed=2,
                        gammas={k: np.random.default_rng(k).uniform(0, 1, n) for k, n in
                                enumerate(conv.out_channels for conv, _ in reference.conv_layers())})
    assert cli_run("import", f"darknet:{CFGS['yolov3-tiny']}", "--weights", tmp_path / "t.weights", "--input", "3,64,64",
                   "-o", tmp_path / "t.yaml").exit_code == 0
    assert cli_run("prune", tmp_path / "t.safetensors", "--method", "slimming", "--target", "macs=0.5",
                   "--out", tmp_path / "h.yaml").exit_code == 0
    half = slimspec.load_spec(tmp_path / "h.yaml")
    macs = slimspec.info(half)["macs"] / slimspec.info(tmp_path / "t.yaml")["macs"]
    assert 0.49 <= macs <= 0.5
    assert cli_run("export", tmp_path / "h.safetensors", "--out", tmp_path / "h.cfg").exit_code == 0
    assert cli_run("import", f"darknet:{tmp_path / 'h.cfg'}", "--weights", tmp_path / "h.weights",
                   "-o", tmp_path / "back.yaml").exit_code == 0
    assert same_weights(tmp_path / "h.safetensors", tmp_path / "back.safetensors")
    compact = Darknet(str(tmp_path / "h.cfg")).eval()  # the reference reads the pruned pair too
    compact.load_darknet_weights(str(tmp_path / "h.weights"))
    model = slimspec.load_model(tmp_path / "h.safetensors")[0].eval()
    x = torch.randn(2, *SMALL)
    with torch.no_grad():
        assert rel_diff(model(x), compact(x)) <= 1e-5


@pytest.fixture(scope="module")
def yolov4_tiny(tmp_path_factory):
    """YOLOv4-tiny at 64x64 with random weights (spread BN scales): ``(folder, imported .safetensors, spec)``."""
    folder = tmp_path_factory.mktemp("yolov4-tiny")
    reference = Darknet(str(CFGS["yolov4-tiny"]))
    random_weights_file(reference, str(folder / "t.weights"), seed=4,
                        gammas={k: np.random.default_rng(k).uniform(0, 1, n) for k, n in
                                enumerate(conv.out_channels for conv, _ in reference.conv_layers())})
    assert cli_run("import", f"darknet:{CFGS['yolov4-tiny']}", "--weights", folder / "t.weights",
                   "--input", "3,64,64", "-o", folder / "t.yaml").exit_code == 0
    return folder, folder / "t.safetensors", slimspec.load_spec(folder / "t.yaml")


def test_yolov4_tiny_grouped_routes_split_their_conv_into_two_equal_parts(yolov4_tiny):
    _, _, spec = yolov4_tiny
    slots = conv_slots(spec)
    assert len(slots) == 21
    halved = {i: spec.ir.slots[slots[i]] for i in (2, 10, 18)}  # the convs the routes 3, 11 and 19 read
    assert [(s.kind, s.size, s.parts) for s in halved.values()] == [("channel", 64, 2), ("channel", 128, 2),
                                                                   ("channel", 256, 2)]
    views = [s for s in spec.ir.slots.values() if s.kind == "view"]
    assert [(s.view[0], s.view[1:]) for s in views] == [(slots[2], (32, 64)), (slots[10], (64, 128)),
                                                        (slots[18], (128, 256))]
    assert sorted(i for i, s in slots.items() if spec.ir.slots[s].kind == "fixed") == [29, 36]  # before the heads
    assert sum(spec.ir.slots[s].prunable for s in slots.values()) == 19


@pytest.mark.parametrize("method", [["--method", "slimming", "--percent", "0.5"], ["--method", "l1", "--ratio", "0.3"]],
                         ids=["slimming", "l1"])
def test_yolov4_tiny_prunes_checks_and_exports_a_pair_the_reference_runs(yolov4_tiny, tmp_path, method):
    folder, path, spec = yolov4_tiny
    result = cli_run("prune", path, *method, "--check", "--out", tmp_path / "p.yaml")
    assert result.exit_code == 0, result.output
    assert "check: the pruned network computes what the masked original computes" in result.output
    options = {"percent": 0.5} if "slimming" in method else {"ratio": 0.3}
    kept = prune(path, method[1], **options).decision.kept
    slots = conv_slots(spec)
    for i in (2, 10, 18):  # as many channels kept in each half: the groups=2 routes stay valid
        n = spec.ir.slots[slots[i]].size
        assert 0 < sum(c < n // 2 for c in kept[slots[i]]) == sum(c >= n // 2 for c in kept[slots[i]]) < n // 2, i
    pruned = slimspec.load_spec(tmp_path / "p.yaml")
    assert [layer for layer in pruned.data["layers"] if "chunk" in layer] == [
        {"chunk": {"from": -1, "parts": 2, "index": 1}}] * 3
    result = cli_run("export", tmp_path / "p.safetensors", "--out", tmp_path / "p.cfg")
    assert result.exit_code == 0, result.output
    assert "max abs diff to PyTorch: 0 " in result.output
    cfg = (tmp_path / "p.cfg").read_text()
    assert cfg.count("[route]\nlayers=-1\ngroups=2\ngroup_id=1\n") == 3
    compact = Darknet(str(tmp_path / "p.cfg")).eval()  # the reference reads the pruned pair
    compact.load_darknet_weights(str(tmp_path / "p.weights"))
    assert sum(p.numel() for p in compact.parameters()) == slimspec.info(pruned)["params"] < 6_056_606
    model = slimspec.load_model(tmp_path / "p.safetensors")[0].eval()
    x = torch.randn(2, *SMALL, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert rel_diff(model(x), compact(x)) <= 1e-5
    assert cli_run("import", f"darknet:{tmp_path / 'p.cfg'}", "--weights", tmp_path / "p.weights",
                   "-o", tmp_path / "back.yaml").exit_code == 0
    back = slimspec.load_spec(tmp_path / "back.yaml")
    assert back.data["layers"] == pruned.data["layers"] and back.data["outputs"] == pruned.data["outputs"]
    assert same_weights(tmp_path / "p.safetensors", tmp_path / "back.safetensors")
