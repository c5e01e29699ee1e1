"""One layer vocabulary: the op table drives schema, IR, modules and importer; ``sequential`` is the
``graph`` family without ``from``.

* Every layer-list spec the suite, the stock specs and the examples used before the change (161 of
  them, ``tests/data/layer_lists.json``, written by the code that had two front ends) counts and
  computes what it did then, and old gate names load.
* An op registered at run time is usable end to end: validate, info, build, import, prune.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

import slimspec
from slimspec.document import spec_from_text
from slimspec.families import get_family
from slimspec.interop.fx_trace import from_module
from slimspec.ir.ops import OPS, Imports, LayerForm, OpKind, register_op, unregister_op
from slimspec.pruning.masking import apply_channel_masks

from .conftest import cli_run, randomize
from .layer_list_fingerprint import GATE, fingerprint

CORPUS = json.loads((Path(__file__).parent / "data" / "layer_lists.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("key", sorted(CORPUS))
def test_layer_lists_count_and_compute_what_they_did(key):
    entry = CORPUS[key]
    before, now = entry["fp"], fingerprint(entry["data"])
    if "error" in before:
        assert now == before
        return
    spec = spec_from_text(yaml.safe_dump(entry["data"], sort_keys=False))
    # grouped convs are pruned by groups since the every-CNN change: a gate now stands in front of them too
    grouped = any(n.op == "conv" and n.attr("groups") > 1 and n.in_axis != n.axis for n in spec.ir.nodes)
    for field in ("params", "macs", "plain_keys", "masked_keys", "gated_keys", "plain_out", "masked_out", "gated_out"):
        if not (grouped and field in ("masked_keys", "gated_keys", "gated_out")):  # new gates: new random values
            assert now[field] == before[field], field
    renames = get_family(spec.arch).legacy_names(spec.ir)
    for mode in ("masked", "gated"):  # the gates stand where they stood; old names map onto today's
        old = sorted(renames.get(g, g) for g in before[f"{mode}_gates"])
        if grouped:
            assert set(old) < set(now[f"{mode}_gates"])  # and more: around the grouped convs' now prunable slots
        else:
            assert old == now[f"{mode}_gates"]


def test_sequential_weights_saved_with_old_gate_names_load(tmp_path):
    """A gated sequential model saved before gates were named ``gates.<i>`` (``slots.<i>.gate``) loads."""
    model = randomize(slimspec.build("digits_lenet", "gated", seed=0))
    state = model.state_dict()
    new_gates = [n.name for n in model.spec.ir.nodes_of("gate")]
    old = next(v["fp"]["gated_gates"] for v in CORPUS.values()
               if v["data"].get("name") == "digits_lenet" and "gated_gates" in v["fp"])
    old = sorted(old, key=lambda name: int(name.split(".")[1]))  # network order, as the new names
    assert len(old) == len(new_gates)
    renamed = {}
    for key, tensor in state.items():
        prefix = key.rsplit(".", 1)[0]
        if prefix in new_gates:
            key = f"{old[new_gates.index(prefix)]}.{key.rsplit('.', 1)[1]}"
        renamed[key] = tensor
    assert any(k.startswith("slots.") for k in renamed)
    path = tmp_path / "old.safetensors"
    from slimspec.weights import save_weights
    save_weights(renamed, model.spec.text, path)
    loaded, _ = slimspec.load_model(path)
    x = torch.randn(3, *model.spec.ir.input_shape)
    assert loaded.mode == "gated"
    torch.testing.assert_close(loaded.eval()(x), model.eval()(x))


def test_sequential_has_no_from_and_no_joins():
    spec = "slimspec: 1\nname: s\narch: sequential\ninput: [1, 8, 8]\nnum_classes: 3\nlayers:\n{}"
    with pytest.raises(slimspec.SpecError, match=r"layers\[1\]\.conv: unknown key 'from'"):
        spec_from_text(spec.format("  - conv: 4\n  - conv: {out: 4, from: -2}\n"))
    with pytest.raises(slimspec.SpecError, match=r"layers\[1\]: unknown key 'add'"):
        spec_from_text(spec.format("  - conv: 4\n  - add: {from: [-1, -2]}\n"))


# -- an op registered at run time, end to end --------------------------------------------------------
SPEC = """slimspec: 1
name: runtime-ops
arch: {arch}
input: [3, 16, 16]
num_classes: 5
layers:
  - conv: {{out: 8, kernel: 3, padding: 1}}
  - bn
  - softsign
  - lppool: {{kernel: 2, stride: 2, norm: 2.0}}
  - conv: {{out: 12, kernel: 3, padding: 1}}
  - bn
  - softsign
  - adaptive_avgpool: 1
  - flatten
"""


class SoftsignNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.pool = nn.LPPool2d(2.0, 2, stride=2)
        self.c2, self.b2 = nn.Conv2d(8, 12, 3, padding=1), nn.BatchNorm2d(12)
        self.head = nn.Linear(12, 5)

    def forward(self, x):
        x = self.pool(nn.functional.softsign(self.b1(self.c1(x))))
        x = nn.functional.softsign(self.b2(self.c2(x)))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


@pytest.fixture
def runtime_ops():
    """Two kinds that slimspec does not ship: an activation (one entry) and a pool with an option of its own."""
    pool = LayerForm({"kernel": {"$ref": "#/$defs/posint"}, "stride": {"$ref": "#/$defs/posint"},
                      "norm": {"type": "number", "exclusiveMinimum": 0, "default": 2.0}}, ("kernel",), spatial=True,
                     emit=lambda b, op, name, xs, o, at, out: b.pool(name, xs[0], op, o["kernel"], o.get("stride"),
                                                                     at=at, norm=o["norm"]))
    kinds = [
        OpKind("softsign", identity=True, layer=LayerForm(bare=True), module="torch.nn.Softsign",
               imports=Imports(("torch.nn.Softsign",), ("torch.nn.functional.softsign",), ("softsign",))),
        OpKind("lppool", layer=pool, module="torch.nn.LPPool2d",
               module_args={"norm": "norm_type", "kernel": "kernel_size", "stride": "stride"},
               imports=Imports(("torch.nn.LPPool2d",))),
    ]
    for kind in kinds:
        register_op(kind)
    yield kinds
    for kind in kinds:
        unregister_op(kind.name)


@pytest.mark.parametrize("arch", ["sequential", "graph"])
def test_an_op_registered_at_run_time_works_end_to_end(runtime_ops, arch, tmp_path):
    text = SPEC.format(arch=arch)
    path = tmp_path / "net.yaml"
    path.write_text(text, encoding="utf-8")
    assert cli_run("validate", path).exit_code == 0  # the schema knows it
    info = slimspec.info(spec_from_text(text))
    assert any(row["op"] == "lppool" for row in info["layers"])  # info counts it (a row, shapes, MACs)
    assert info["params"] == (3 * 8 * 9 + 8) + 16 + (8 * 12 * 9 + 12) + 24 + (12 * 5 + 5)
    model = randomize(slimspec.build(text, seed=0))  # build runs it
    pool = model.get_submodule("layers.3")
    assert isinstance(pool, nn.LPPool2d) and pool.norm_type == 2.0
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 5)

    result = slimspec.prune(model, method="l1", ratio=0.5, scope="layer")  # pruning: outputs equal the masked original
    masked = slimspec.build(text, "masked")
    masked.load_state_dict(model.state_dict(), strict=False)
    masked = apply_channel_masks(masked, model.spec.ir, result.decision.kept).eval()
    x = torch.randn(4, 3, 16, 16)
    torch.testing.assert_close(result.model.eval()(x), masked(x), atol=1e-5, rtol=1e-5)
    assert result.spec.data["layers"][0]["conv"]["out"] == 4


def test_an_op_registered_at_run_time_imports(runtime_ops):
    module = randomize(SoftsignNet())
    spec, model = from_module(module, (3, 16, 16))
    kinds = [next(iter(layer)) if isinstance(layer, dict) else layer for layer in spec.data["layers"]]
    assert kinds == ["conv", "bn", "softsign", "lppool", "conv", "bn", "softsign", "adaptive_avgpool", "flatten"]
    assert spec.arch == "sequential"
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(model.eval()(x), module.eval()(x))


def test_an_unregistered_op_is_gone_everywhere(runtime_ops):
    unregister_op("softsign")
    try:
        with pytest.raises(slimspec.SpecError, match="softsign"):
            spec_from_text(SPEC.format(arch="graph"))
        with pytest.raises(slimspec.errors.ModelImportError, match="softsign"):
            from_module(randomize(SoftsignNet()), (3, 16, 16))
    finally:
        register_op(runtime_ops[0])


def test_the_table_refuses_a_second_entry_of_a_name():
    with pytest.raises(ValueError, match="already in the op table"):
        register_op(OPS["relu"])


ACTIVATIONS = sorted(name for name, op in OPS.items()
                     if op.identity and op.layer is not None and op.layer.bare and op.module and not op.transparent)


@pytest.mark.parametrize("kind", ACTIVATIONS)
def test_every_activation_builds_imports_and_prunes_exactly(kind):
    """Each element-wise kind of the table: its module is the torch class, it imports back from that class,
    and an l1 prune of a net using it equals the masked original."""
    text = f"""slimspec: 1
name: act
arch: graph
input: [3, 8, 8]
num_classes: 4
layers:
  - conv: {{out: 8, kernel: 3, padding: 1}}
  - bn
  - {kind}
  - conv: {{out: 6, kernel: 3, padding: 1}}
  - {kind}
  - adaptive_avgpool: 1
  - flatten
"""
    model = randomize(slimspec.build(text, seed=0))
    assert type(model.get_submodule("layers.2")).__name__ == OPS[kind].module.rsplit(".", 1)[1]
    result = slimspec.prune(model, method="l1", ratio=0.5, scope="layer")
    masked = slimspec.build(text, "masked")
    masked.load_state_dict(model.state_dict(), strict=False)
    masked = apply_channel_masks(masked, model.spec.ir, result.decision.kept).eval()
    x = torch.randn(4, 3, 8, 8)
    torch.testing.assert_close(result.model.eval()(x), masked(x), atol=1e-5, rtol=1e-5)
    spec, imported = from_module(model, (3, 8, 8))  # back from the torch modules
    assert spec.data["layers"][2] == kind
    torch.testing.assert_close(imported.eval()(x), model(x))
