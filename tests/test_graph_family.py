"""``arch: graph``: from-inputs, add/concat coupling, depthwise and grouped convs, located errors, write-back."""
from __future__ import annotations

import difflib
import subprocess
import sys
import textwrap

import pytest
import torch

import slimspec
from slimspec.ir import count_macs, count_params
from slimspec.pruning.api import prune
from slimspec.errors import SpecError

from .conftest import randomize
from .test_prune_exact import assert_equivalent

HEAD = "slimspec: 1\nname: g\narch: graph\ninput: [3, 8, 8]\nnum_classes: 5\nlayers:\n"


def spec_of(layers: str) -> slimspec.Spec:
    return slimspec.load_spec(HEAD + textwrap.indent(textwrap.dedent(layers).strip() + "\n", "  "))


def messages(layers: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        spec_of(layers)
    return [str(issue) for issue in info.value.issues]


def test_digits_graph_slots_follow_adds_depthwise_and_concat():
    ir = slimspec.load_spec("digits_graph").ir
    kinds = {path: slot.kind for path, slot in ir.slots.items() if not path.startswith("#")}
    # layer 3 is depthwise (layer 0's channels), layer 5 adds it to layer 2: still one channel slot;
    # layers 7 and 9 meet at an add: one stream slot; the concat composes two slots
    assert kinds == {"layers[0].conv.out": "channel", "layers[7].conv.out": "stream", "layers[13].conv.out": "channel"}
    assert ir.node("layers.3").axis == ir.node("layers.2").axis
    assert ir.node("layers.9").axis == ir.node("layers.7").axis
    assert ir.node("layers.17").axis.segments == ("layers[13].conv.out", "layers[7].conv.out")
    # gates sit in front of the layers that mix channels (and the classifier), never after a depthwise conv
    assert [n.inputs[0] for n in ir.nodes_of("gate")] == ["layers.6", "layers.12", "layers.18"]


ALL_OPS = """
- conv: {out: 12, kernel: 3, padding: 2, dilation: 2}
- bn
- relu6
- conv: {kernel: 3, padding: 1, groups: 12}
- hardswish
- conv: {out: 8, kernel: 1, groups: 4, bias: false}
- silu
- conv: {out: 8, kernel: 3, padding: 1, from: 2}
- sigmoid
- add: {from: [-1, 6]}
- identity
- maxpool: {kernel: 3, stride: 2, padding: 1}
- avgpool: {kernel: 2, from: 9}
- avgpool: {kernel: 2, stride: 2, from: 10}
- concat: {from: [-1, -2, 11]}
- adaptive_avgpool: 2
- flatten
- dropout: 0.2
- linear: 16
- relu
"""


def test_every_op_builds_with_the_analytic_counts_and_shapes():
    spec = spec_of(ALL_OPS)
    model = slimspec.build(spec, seed=0).eval()
    assert count_params(spec.ir) == sum(p.numel() for p in model.parameters())
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [model.get_submodule(n.name).register_forward_hook(
        lambda m, i, o, name=n.name: shapes.__setitem__(name, tuple(o.shape[1:])))
        for n in spec.ir.nodes if n.op in ("conv", "maxpool", "avgpool", "adaptive_avgpool", "linear")]
    with torch.no_grad():
        assert model(torch.randn(2, 3, 8, 8)).shape == (2, 5)
    for hook in hooks:
        hook.remove()
    assert shapes == {name: spec.ir.node(name).shape for name in shapes}
    macs = sum(n.shape[0] * n.shape[1] * n.shape[2] * n.attr("kernel") ** 2 *
               spec.ir.axis_size(n.in_axis) // n.attr("groups") for n in spec.ir.nodes_of("conv"))
    assert count_macs(spec.ir) == macs + 24 * 2 * 2 * 16 + 16 * 5


def test_grouped_convs_make_the_slots_they_touch_their_groups():
    ir = spec_of(ALL_OPS).ir
    assert ir.slots["layers[5].conv.out"].parts == 4  # groups 4: grouped, not depthwise
    assert ir.slots["layers[0].conv.out"].parts == 4  # read by it (through the depthwise conv)
    assert ir.slots["layers[0].conv.out"].kind == ir.slots["layers[18].linear"].kind == "channel"


@pytest.mark.parametrize("layers, expected", [
    ("- conv: {out: 4, from: 1}\n- relu", "layers[0].conv.from: from 1 refers to layer 1, which does not come before layer 0"),
    ("- relu\n- add: {from: [-1, -3]}", "layers[1].add.from[1]: from -3 reaches before the network input"),
    ("- conv: {out: 4, padding: 1}\n- conv: {out: 6, padding: 1, from: 0}\n- add: {from: [0, 1]}",
     "layers[2].add.from: add: layers[0] has 4 channels, layers[1] has 6"),
    ("- conv: {out: 4, padding: 1}\n- conv: {out: 4, stride: 2, padding: 1, from: 0}\n- add: {from: [0, 1]}",
     "layers[2].add.from: residual shapes differ: (4, 8, 8) vs (4, 4, 4)"),
    ("- conv: {out: 4, padding: 1}\n- maxpool: 2\n- concat: {from: [0, 1]}",
     "layers[2].concat.from: concat of different spatial sizes: 8x8, 4x4"),
    ("- conv: {out: 4, groups: 2}", "layers[0].conv.groups: groups 2 does not divide the input width 3"),
    ("- conv: {kernel: 3}", "layers[0].conv: out is required (only a depthwise conv, groups = its input width 3, "
                            "may omit it)"),
    ("- flatten\n- conv: {out: 4}", "layers[1]: conv after flatten/linear: the input is no longer a feature map"),
    ("- conv: {out: 4, kernel: 11}", "layers[0].conv.out: a 11x11 convolution does not fit its 8x8 input"),
])
def test_semantic_errors_name_the_layer(layers, expected):
    assert any(m.startswith(expected) for m in messages(layers)), messages(layers)


def test_every_problem_is_reported_at_once():
    found = messages("- conv: {out: 4, from: 3}\n- conv: {out: 4, groups: 3}\n- add: {from: [0, 9]}")
    assert sorted({m.split(":")[0] for m in found}) == ["layers[0].conv.from", "layers[1].conv.groups",
                                                         "layers[2].add.from[1]"]


def test_schema_errors_are_located():
    found = messages("- conv: {out: 4, strid: 2}\n- erf\n- add: {from: 1}")
    assert any(m.startswith("layers[0].conv: unknown key 'strid' (did you mean 'stride'?)") for m in found), found
    assert any(m.startswith("layers[1]:") and "erf" in m for m in found), found
    assert any(m.startswith("layers[2].add.from:") for m in found), found


def test_pruned_spec_diff_shows_only_widths_and_provenance(trained_weights):
    weights = trained_weights("digits_graph")
    result = prune(weights, "l1", ratio=0.5)
    parent = slimspec.load_spec("digits_graph").text.splitlines()
    changed = [line for line in difflib.unified_diff(parent, result.spec.text.splitlines(), lineterm="", n=0)
               if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    before = [line for line in changed if line.startswith("-")]
    assert [line.split("#")[1].split(":")[0].strip() for line in before] == ["0", "3", "13"]
    after = [line for line in changed if line.startswith("+")]
    after = after[:after.index("+pruned:")]
    assert after == ["+  - conv: {out: 8, kernel: 3, padding: 1, bias: false}      # 0",
                     "+  - conv: {out: 8, kernel: 3, padding: 1, groups: 8, bias: false}     # 3: depthwise, layer 0's channels",
                     "+  - conv: {out: 16, kernel: 3, stride: 2, padding: 1, bias: false}    # 13"]
    assert_equivalent(weights, result)


def test_stream_pruning_rewrites_every_coupled_producer(trained_weights):
    weights = trained_weights("digits_graph")
    result = prune(weights, "slimming", ratio=0.4, prune_stream=True)
    layers = result.spec.data["layers"]
    assert layers[7]["conv"]["out"] == layers[9]["conv"]["out"] < 24
    assert_equivalent(weights, result)


def test_gated_graph_folds_gates_into_the_readers(tmp_path):
    model = randomize(slimspec.build("digits_graph", "gated", seed=0))
    weights = tmp_path / "g.safetensors"
    slimspec.save_weights(model, model.spec, weights)
    result = prune(weights, "gate", prune_stream=True)
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(result.model.eval()(x), model.eval()(x), atol=1e-5, rtol=1e-4)


def test_graph_family_is_torch_free():
    code = ("import sys; import slimspec; s = slimspec.load_spec('digits_graph'); "
            "from slimspec.ir import count_macs; count_macs(s.ir); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("arch", ["graph", "sequential"])
def test_layer_list_work_grows_linearly_with_layers(arch, monkeypatch):
    """Operation counts, not timings: resolving slot identity for twice the layers takes about twice the work
    (it was quadratic: a 10,000-layer graph took 8.5 s to validate)."""
    from slimspec.document import spec_from_text
    from slimspec.families import graph as graph_module

    calls = {"find": 0}
    find = graph_module.Plan.find

    def counted(self, key):
        calls["find"] += 1
        return find(self, key)

    monkeypatch.setattr(graph_module.Plan, "find", counted)

    def work(n: int) -> int:
        calls["find"] = 0
        layers = "".join("  - relu\n" if i % 2 else "  - conv: {out: 4, kernel: 1}\n" for i in range(n))
        spec_from_text(f"slimspec: 1\nname: deep\narch: {arch}\ninput: [3, 4, 4]\nnum_classes: 2\nlayers:\n{layers}")
        return calls["find"]

    small, large = work(400), work(800)
    assert large < 2.5 * small, (small, large)
