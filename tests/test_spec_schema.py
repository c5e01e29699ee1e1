"""The spec JSON Schema and its located one-line issues."""
from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from slimspec.families import families, schema_issues
from slimspec.families import spec_schema as schema
from slimspec.specio import SpecError, parse_yaml

ROOT = Path(__file__).resolve().parents[1]
ARCHS = sorted(families())  # the registry is the one list of archs

HEAD = """slimspec: 1
name: {name}
arch: {arch}
input: [3, 32, 32]
num_classes: 10
"""

VALID = {
    "vgg19": """# Network Slimming's VGG-19
slimspec: 1
name: vgg19
arch: vgg
input: [3, 32, 32]
num_classes: 10
batch_norm: true          # int = Conv3x3(pad 1, no bias) + BN + ReLU; M = MaxPool 2x2
cfg: [64, 64, M, 128, 128, M, 256, 256, 256, 256, M, 512, 512, 512, 512, M, 512, 512, 512, 512]
head: avg                 # avg: global average pool; flatten: Linear over C*H*W
classifier: []            # hidden Linear widths before the final Linear(num_classes)
""",
    "vgg16_li": HEAD.format(name="vgg16_li", arch="vgg") + """batch_norm: true
cfg: [64, 64, M, 128, 128, M, 256, 256, 256, M, 512, 512, 512, M, 512, 512, 512]
classifier: [512]
classifier_bn: true
dropout: 0.5
init: {bn_gamma: 0.5, conv: kaiming_normal, linear: normal}
""",
    "convnet_mnist": """slimspec: 1
name: convnet_mnist
arch: vgg
input: [1, 28, 28]
num_classes: 10
batch_norm: false
cfg: [8, M, 16, M, 32]
kernel: 5
padding: 2
bias: true
head: flatten
""",
    "mlp": HEAD.format(name="mlp", arch="mlp") + "cfg: [200, 200]\nbatch_norm: false\ndropout: 0.0\nbias: true\n",
    "mlp_linear": HEAD.format(name="logreg", arch="mlp") + "cfg: []\n",
    "resnet56": HEAD.format(name="resnet56", arch="resnet") + """block: basic
stem: 16
shortcut: A
stages:
  - {width: 16, blocks: 9}
  - {width: 32, blocks: 9, stride: 2}
  - {width: 64, blocks: 9, stride: 2}
""",
    "resnet56_b": HEAD.format(name="resnet56_b", arch="resnet") + """block: basic
stem: 16
stages:
  - {width: 16, blocks: [6, 6, 16]}
  - {width: 32, blocks: [6, 6, 6, 6, 6, 6, 6, 16, 16], stride: 2}
  - {width: 64, blocks: 9, stride: 2}
""",
    "resnet50": HEAD.format(name="resnet50", arch="resnet") + """block: bottleneck
stem: 64
shortcut: B
stages:
  - {width: 256, blocks: [[64, 64], [32, 48], [64, 64]]}
  - {width: 512, blocks: 4, stride: 2}
""",
    "preresnet164": HEAD.format(name="preresnet164", arch="preresnet") + """stem: 16
stages:
  - {width: 64, blocks: 18}
  - {width: 128, blocks: 18, stride: 2}
  - {width: 256, blocks: 18, stride: 2}
init: {bn_gamma: 0.5}
""",
    "preresnet_pruned": HEAD.format(name="preresnet_p", arch="preresnet") + """block: bottleneck
stem: 16
stages:
  - width: 64
    blocks:
      - {select: "0-5,9,12-63", inner: [12, 14]}
      - {inner: [16, 16]}
      - [16, 16]
      - 16
  - {width: 128, blocks: 2, stride: 2}
head_select: "0-100,200-255"
""",
    "densenet40": HEAD.format(name="densenet40", arch="densenet") + """growth: 12
stem: 24
blocks: [12, 12, 12]
compression: 1.0
""",
    "densenet_pruned": HEAD.format(name="densenet_p", arch="densenet") + """growth: 12
stem: 24
blocks:
  - ["0-23", "0-20,22-35", all]
  - 3
compression: 0.5
transitions: ["0-47,50"]
head_select: "all"
""",
    "lenet5": (ROOT / "specs" / "lenet5.yaml").read_text(),
    "sequential_all_kinds": HEAD.format(name="seq", arch="sequential") + """layers:
  - conv: 16
  - conv: {out: 8, kernel: 3, stride: 2, padding: 1, bias: false}
  - bn
  - bn: {}
  - relu
  - maxpool: {kernel: 2, stride: 2}
  - avgpool: 2
  - avgpool: {kernel: 2}
  - flatten
  - dropout: 0.25
  - linear: {out: 32, bias: false}
""",
    "with_provenance": HEAD.format(name="vgg19_p70", arch="vgg") + """cfg: [49, 64, M, 128]
pruned:
  parent: vgg19
  parent_sha256: 0f3a
  weights_sha256: null
  method: slimming
  scope: global
  ratio: 0.7
  target: null
  threshold: 0.0123
  min_channels: 1
  round_to: 1
  seed: 0
  calibration: null
  clamped: ["cfg[3]"]
  params: {before: 20035018, after: 2305438}
  macs: {before: 398136320, after: 190000000}
  options: {anything: [1, 2], goes: here}
""",
    "target_provenance": HEAD.format(name="m", arch="mlp") + """cfg: [10]
pruned: {parent: m, weights_sha256: abc, ratio: null, target: {macs: 0.5}, calibration: digits}
""",
}


def issues(data: object) -> list[str]:
    return [str(issue) for issue in schema_issues(data)]


def spec(arch: str, body: str) -> dict:
    data = parse_yaml(HEAD.format(name="t", arch=arch) + body)
    assert isinstance(data, dict)
    return data


# ---- the schema itself ---------------------------------------------------------------------

def test_schema_is_valid_draft_2020_12() -> None:
    document = schema()
    jsonschema.Draft202012Validator.check_schema(document)
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["properties"]["arch"]["enum"] == ARCHS
    assert document["unevaluatedProperties"] is False
    for arch in ARCHS:
        assert arch in document["$defs"]


def test_schema_returns_a_fresh_copy() -> None:
    schema()["properties"].clear()
    assert "arch" in schema()["properties"]


def test_every_family_has_a_valid_stock_spec() -> None:
    from slimspec.document import stock_specs

    stock = {parse_yaml(path.read_text(encoding="utf-8"))["arch"] for path in stock_specs().values()}
    assert stock == set(ARCHS)
    assert {parse_yaml(text)["arch"] for text in VALID.values()} <= set(ARCHS)  # type: ignore[index]


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_examples(name: str) -> None:
    data = parse_yaml(VALID[name])
    assert issues(data) == []
    # the raw schema (as an editor would use it) agrees
    assert list(jsonschema.Draft202012Validator(schema()).iter_errors(data)) == []


@pytest.mark.parametrize("arch", sorted({parse_yaml(t)["arch"] for t in VALID.values()}))  # type: ignore[index]
def test_raw_schema_rejects_unknown_keys(arch: str) -> None:
    data = next(parse_yaml(t) for t in VALID.values() if parse_yaml(t)["arch"] == arch)  # type: ignore[index]
    data = dict(data, bogus=1)
    assert not jsonschema.Draft202012Validator(schema()).is_valid(data)


# ---- located issues ------------------------------------------------------------------------

def test_top_level_must_be_a_mapping() -> None:
    assert issues([1, 2]) == ["a spec must be a YAML mapping, got list"]
    assert issues("vgg") == ["a spec must be a YAML mapping, got string"]
    assert issues(None) == ["a spec must be a YAML mapping, got an empty document"]
    assert schema_issues([1])[0].location == ""


def test_missing_required_keys_are_all_reported_at_the_parent() -> None:
    found = schema_issues({"arch": "vgg"})
    assert [(i.location, i.message) for i in found] == [
        ("", "missing required key 'cfg'"),
        ("", "missing required key 'input'"),
        ("", "missing required key 'name'"),
        ("", "missing required key 'num_classes'"),
        ("", "missing required key 'slimspec'"),
    ]


def test_vgg_issues_all_reported() -> None:
    data = parse_yaml("""slimspec: 2
name: ''
arch: vgg
input: [3, 32]
num_classes: 0
cfg: [64, 64, M, -5, m, 1.0, true, x]
kernel: 4
head: average
classifer: []
growth: 12
dropout: 1.0
init: {bn_gamma: a, conv: kaiming, extra: 1}
""")
    assert issues(data) == [
        "unknown key 'classifer' (did you mean 'classifier'?)",
        "unknown key 'growth' for arch 'vgg' (a key of: densenet)",
        "cfg[3]: expected a positive integer or 'M', got -5",
        "cfg[4]: expected a positive integer or 'M', got 'm' (did you mean 'M'?)",
        "cfg[5]: expected a positive integer or 'M', got 1.0",
        "cfg[6]: expected a positive integer or 'M', got true",
        "cfg[7]: expected a positive integer or 'M', got 'x'",
        "dropout: expected a number in [0, 1), got 1.0",
        "head: expected one of 'avg', 'flatten', got 'average' (did you mean 'avg'?)",
        "init: unknown key 'extra'",
        "init.bn_gamma: expected a number, got 'a'",
        "init.conv: expected one of 'kaiming_normal', 'kaiming_uniform', 'default', got 'kaiming'"
        " (did you mean 'kaiming_normal'?)",
        "input: expected a list [C, H, W] of 3 positive integers, got a list of 2 items",
        "kernel: expected a positive odd integer, got 4",
        "name: expected a non-empty string, got ''",
        "num_classes: expected a positive integer, got 0",
        "slimspec: expected 1 (the spec format version), got 2",
    ]


@pytest.mark.parametrize(
    ("arch", "body", "expected"),
    [
        ("vgg", "cfg: []\n", ["cfg: expected a non-empty list of widths and 'M', got an empty list"]),
        ("vgg", "cfg: 64\n", ["cfg: expected a non-empty list of widths and 'M', got 64"]),
        ("vgg", "cfg: [64, 0]\n", ["cfg[1]: expected a positive integer or 'M', got 0"]),
        ("vgg", "cfg: [8]\nbatch_norm: 'yes'\n", ["batch_norm: expected true or false, got 'yes'"]),
        ("vgg", "cfg: [8]\nclassifier: [0, 16, -1]\n", ["classifier[0]: expected a positive integer, got 0",
                                                        "classifier[2]: expected a positive integer, got -1"]),
        ("vgg", "cfg: [8]\npadding: -1\n", ["padding: expected a non-negative integer, got -1"]),
        ("vgg", "cfg: [8]\ndropout: -0.1\n", ["dropout: expected a number in [0, 1), got -0.1"]),
        ("mlp", "cfg: [200, -200]\n", ["cfg[1]: expected a positive integer, got -200"]),
        ("mlp", "cfg: [10]\nstages: []\n", ["unknown key 'stages' for arch 'mlp' (a key of: mobilenetv2, preresnet, resnet)"]),
        ("mlp", "cfg: [10]\ndropout: .nan\n", ["dropout: expected a finite number, got nan"]),
        ("resnet", "stem: 16\nstages: [{width: 16, blocks: 3}]\n", ["missing required key 'block'"]),
        ("resnet", "block: basic\nstem: 0\nstages: []\n", ["stages: expected a non-empty list of stages, got an empty list",
                                                           "stem: expected a positive integer, got 0"]),
        ("resnet", "block: basic\nshortcut: C\nstem: 16\nstages: [{width: 16, blocks: 3}]\n",
         ["shortcut: expected one of 'A', 'B', got 'C'"]),
        ("resnet", "block: basik\nstem: 16\nstages: [{width: 16, blocks: 3}]\n",
         ["block: expected one of 'basic', 'bottleneck', got 'basik' (did you mean 'basic'?)"]),
        ("sequential", "layers: []\n", ["layers: expected a non-empty list of layers, got an empty list"]),
        ("densenet", "growth: 12\nstem: 24\nblocks: [3, 3]\ncompression: 0\n",
         ["compression: expected a number in (0, 1], got 0"]),
        ("densenet", "growth: 0\nstem: 24\nblocks: []\n",
         ["blocks: expected a non-empty list of dense blocks, got an empty list",
          "growth: expected a positive integer, got 0"]),
    ],
)
def test_simple_issues(arch: str, body: str, expected: list[str]) -> None:
    assert issues(spec(arch, body)) == expected


def test_resnet_stage_issues() -> None:
    data = spec("resnet", """block: basic
stem: 16
stages:
  - {widht: 16, blocks: 9}
  - {width: 32, blocks: [6, -1, [3, 4], x], stride: 3}
  - {width: 64, blocks: 0}
  - {width: 64, blocks: []}
  - 5
""")
    assert issues(data) == [
        "stages[0]: missing required key 'width'",
        "stages[0]: unknown key 'widht' (did you mean 'width'?)",
        "stages[1].blocks[1]: expected a positive integer (a basic block's conv1 width), got -1",
        "stages[1].blocks[2]: expected a positive integer (a basic block's conv1 width), got a list of 2 items",
        "stages[1].blocks[3]: expected a positive integer (a basic block's conv1 width), got 'x'",
        "stages[1].stride: expected 1 or 2, got 3",
        "stages[2].blocks: expected a block count or a list of basic block widths, got 0",
        "stages[3].blocks: expected a non-empty list of basic block widths, got an empty list",
        "stages[4]: expected a stage mapping {width, blocks, stride}, got 5",
    ]
    assert [i.location for i in schema_issues(data)][2] == "stages[1].blocks[1]"
    assert schema_issues(data)[2].path == ("stages", 1, "blocks", 1)


def test_bottleneck_block_issues() -> None:
    data = spec("resnet", "block: bottleneck\nstem: 16\nstages:\n  - {width: 64, blocks: [[16, 16], [3], 16, [0, 2]]}\n")
    assert issues(data) == [
        "stages[0].blocks[1]: expected a pair [c1, c2] of positive integers (a bottleneck block's inner widths),"
        " got a list of 1 item",
        "stages[0].blocks[2]: expected a pair [c1, c2] of positive integers (a bottleneck block's inner widths),"
        " got 16",
        "stages[0].blocks[3][0]: expected a positive integer, got 0",
    ]


def test_preresnet_issues() -> None:
    data = spec("preresnet", """stem: 16
head_select: "0-5,3"
block: basic
stages:
  - width: 64
    blocks:
      - {select: "0-5,9,12-63", inner: [12, 14]}
      - {select: "5-3", inner: [1, 2]}
      - {select: 7, inner: [1]}
      - {inner: [1, 2], extra: 1}
      - {select: "0-3"}
      - [1, 2, 3]
      - -4
""")
    assert issues(data) == [
        "block: expected 'bottleneck', got 'basic'",
        "head_select: channel 3 appears twice in channel set '0-5,3' ('0-5' and '3')",
        "stages[0].blocks[1].select: descending range '5-3' in channel set '5-3'",
        "stages[0].blocks[2].inner: expected a pair [c1, c2] of positive integers, got a list of 1 item",
        "stages[0].blocks[2].select: expected a quoted channel set such as \"0-5,9,12-63\", got 7",
        "stages[0].blocks[3]: unknown key 'extra'",
        "stages[0].blocks[4]: missing required key 'inner'",
        "stages[0].blocks[5]: expected a pair [c1, c2] of positive integers, got a list of 3 items",
        "stages[0].blocks[6]: expected a positive integer, a pair [c1, c2] or a mapping"
        " {select: \"0-5,9\", inner: [c1, c2]}, got -4",
    ]


def test_densenet_issues() -> None:
    data = spec("densenet", """growth: 12
stem: 24
blocks: [["0-23", "0-35", "x"], 12, [], ["a-b"]]
transitions: ["all", "1,,2", 3]
head_select: ""
""")
    assert issues(data) == [
        "blocks[0][2]: bad channel set item 'x' in 'x': expected N or N-M",
        "blocks[2]: expected a non-empty list of channel sets, one per layer, got an empty list",
        "blocks[3][0]: bad channel set item 'a-b' in 'a-b': expected N or N-M",
        "head_select: empty channel set",
        "transitions[1]: empty item in channel set '1,,2' (stray comma)",
        "transitions[2]: expected a quoted channel set such as \"0-5,9,12-63\", got 3",
    ]


def test_densenet_transition_count() -> None:
    """A family semantic check (the family owns it): located, with the count it expects."""
    from slimspec.document import Spec

    data = spec("densenet", "growth: 12\nstem: 24\nblocks: [3, 3, 3]\ntransitions: [all]\n")
    assert issues(data) == []
    with pytest.raises(SpecError) as caught:
        Spec.from_data(data)
    assert [str(i) for i in caught.value.issues] == [
        "transitions: expected 2 channel sets (one per transition between 3 dense blocks), got 1"]


def test_sequential_issues() -> None:
    data = spec("sequential", """layers:
  - conv: {out: 6, kernel: 5, pad: 1}
  - rleu
  - maxpool: 2
  - {conv: 3, relu: 1}
  - linear: {bias: true}
  - linaer: 3
  - dropout: 1.5
  - bn: {}
  - bn: {x: 1}
  - maxpool: {stride: 2}
  - conv: 0
  - 12
""")
    assert issues(data) == [
        "layers[0].conv: unknown key 'pad' (did you mean 'padding'?)",
        "layers[1]: expected a layer name such as 'relu' or a one-key mapping such as {conv: 16}, got 'rleu' "
        "(did you mean 'relu'?)",
        "layers[3]: expected a one-key mapping such as {conv: 16}, got a mapping with 2 keys (conv, relu)",
        "layers[3].relu: expected an empty mapping {}, got 1",
        "layers[4].linear: missing required key 'out'",
        "layers[5]: unknown key 'linaer' (did you mean 'linear'?)",
        "layers[6].dropout: expected a number in [0, 1) or a mapping {p}, got 1.5",
        "layers[8].bn: unknown key 'x'",
        "layers[9].maxpool: missing required key 'kernel'",
        "layers[10].conv: expected a positive width or a mapping {out, kernel, stride, padding, dilation, groups, bias}, "
        "got 0",
        "layers[11]: expected a layer name such as 'relu' or a one-key mapping such as {conv: 16}, got 12",
    ]


def test_provenance_issues() -> None:
    data = spec("mlp", """cfg: [4]
pruned:
  parent: a
  ratio: x
  params: {before: 1}
  macs: {before: 1, after: -1}
  when: today
  target: {macs: a}
  clamped: [1]
""")
    assert issues(data) == [
        "pruned: unknown key 'when'",
        "pruned.clamped[0]: expected a string, got 1",
        "pruned.macs.after: expected a non-negative integer, got -1",
        "pruned.params: missing required key 'after'",
        "pruned.ratio: expected a number or null, got 'x'",
        "pruned.target.macs: expected a number, got 'a'",
    ]


def test_unknown_arch_reports_arch_and_truly_unknown_keys() -> None:
    data = spec("resnt", "cfg: [1]\nfoo: 2\n")
    assert issues(data) == [
        "unknown key 'foo'",
        f"arch: expected one of {', '.join(repr(a) for a in ARCHS)}, got 'resnt' (did you mean 'resnet'?)",
    ]


def test_wrong_types_at_top() -> None:
    data = {"slimspec": "1", "name": 5, "arch": "mlp", "input": "3x32x32", "num_classes": 10.0, "cfg": {}}
    assert issues(data) == [
        "cfg: expected a list of positive integers, got an empty mapping",
        "input: expected a list [C, H, W] of 3 positive integers, got '3x32x32'",
        "name: expected a non-empty string, got 5",
        "num_classes: expected a positive integer, got 10.0",
        "slimspec: expected 1 (the spec format version), got '1'",
    ]


def test_non_string_keys() -> None:
    data = spec("mlp", "cfg: [1]\n1: 2\n")
    assert issues(data) == ["keys must be strings, got 1", "unknown key '1'"]


def test_issues_are_one_line_and_fit_a_spec_error() -> None:
    data = spec("preresnet", "stem: x\nstages: [{width: 1, blocks: [{select: '9-1'}]}]\nhead_select: 3\n")
    found = schema_issues(data)
    assert found and all("\n" not in str(issue) for issue in found)
    error = SpecError(found, "p.yaml")
    assert error.lines()[0].startswith("p.yaml: ")
    assert len(error.issues) == len(found)


def test_valid_data_is_not_modified() -> None:
    data = parse_yaml(VALID["preresnet_pruned"])
    before = copy.deepcopy(data)
    schema_issues(data)
    assert data == before


def test_spec_layer_does_not_import_torch() -> None:
    code = "import sys, slimspec.specio, slimspec.specio.validate, slimspec.specio.yamlio; " \
           "assert 'torch' not in sys.modules, 'torch was imported'"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_issues_for_another_schema() -> None:
    """Other schemas (the pruning plan's) get the same located messages, with their own $refs."""
    from slimspec.specio.validate import issues_for_schema

    other = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "patternProperties": {"^x-": {}},
        "properties": {
            "method": {"enum": ["l1", "slimming"]},
            "ratio": {"$ref": "#/$defs/fraction"},
            "layers": {"type": "object", "unevaluatedProperties": False, "properties": {"keep": {"type": "integer"}}},
            "share": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "min_channels": {"type": "integer", "minimum": 1},
        },
        "$defs": {"fraction": {"type": "number", "minimum": 0, "exclusiveMaximum": 1, "title": "a fraction in [0, 1)"}},
    }
    data = {"method": "slimmin", "ratio": 1.5, "layers": {"keep": 2.0, "drop": 1}, "x-note": 1, "mehtod": 1,
            "share": 0, "min_channels": 0}
    assert [str(i) for i in issues_for_schema(other, data)] == [
        "unknown key 'mehtod' (did you mean 'method'?)",
        "layers: unknown key 'drop'",
        "layers.keep: expected an integer, got 2.0",
        "method: expected one of 'l1', 'slimming', got 'slimmin' (did you mean 'slimming'?)",
        "min_channels: expected a positive integer, got 0",
        "ratio: expected a fraction in [0, 1), got 1.5",
        "share: expected a number in (0, 1], got 0",
    ]
    assert issues_for_schema(other, {"method": "l1", "ratio": 0.5}) == []
