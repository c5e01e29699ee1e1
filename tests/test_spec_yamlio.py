"""Safe YAML parsing, the comment-preserving rewrite and format_spec."""
from __future__ import annotations

import copy
import difflib

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from slimspec.families import schema_issues
from slimspec.specio import SpecError, format_channel_set, format_spec, parse_yaml, update_spec_text

VGG19 = """# VGG-19 for CIFAR-10 (Network Slimming, Liu et al. 2017)
# 20,035,018 params

slimspec: 1
name: vgg19
arch: vgg
input: [3, 32, 32]
num_classes: 10
batch_norm: true          # int = Conv3x3(pad 1, no bias) + BN + ReLU; M = MaxPool 2x2
cfg: [64, 64, M, 128, 128, M, 256, 256, 256, 256, M, 512, 512, 512, 512, M, 512, 512, 512, 512]
head: avg                 # avg: global average pool; flatten: Linear over C*H*W
classifier: []            # hidden Linear widths before the final Linear(num_classes)
"""

RESNET56 = """slimspec: 1
name: resnet56
arch: resnet
input: [3, 32, 32]
num_classes: 10
block: basic              # basic | bottleneck (expansion 4)
stem: 16
shortcut: A               # parameter-free shortcut
stages:
  - {width: 16, blocks: 9}
  # the middle stage
  - {width: 32, blocks: 9, stride: 2}
  - {width: 64, blocks: 9, stride: 2}
init: {bn_gamma: 0.5}
"""

PRERESNET = """# pruned by hand
slimspec: 1
name: preresnet_p
arch: preresnet
input: [3, 32, 32]
num_classes: 10
stem: 16
stages:
  - width: 64
    blocks:
      - {select: "0-5,9,12-63", inner: [12, 14]}   # first block
      - {select: '7', inner: [16, 16]}
      - [16, 16]
  - {width: 128, blocks: 18, stride: 2}    # untouched
head_select: "0-100"
"""

DENSENET = """slimspec: 1
name: densenet_p
arch: densenet
input: [3, 32, 32]
num_classes: 10
growth: 12
stem: 24
blocks:
  - ["0-23", "0-20,22-35", all]
  - [all, all]
transitions: ["0-47,50"]
compression: 1.0
"""

LENET5 = """slimspec: 1
name: lenet5
arch: sequential
input: [1, 32, 32]
num_classes: 10
layers:
- conv: {out: 6, kernel: 5}     # padding 0, stride 1 unless given
- relu
- maxpool: 2
- conv: {out: 16, kernel: 5}
- relu
- maxpool: 2
- flatten
- linear: 120
- relu
- linear: 84
- relu                          # the final Linear(num_classes) is implied
"""

ODD = """---
# spellings ruamel would normalise if it were not told to keep them
slimspec: 1
name: odd
arch: mlp
input: [1, 8, 8]
num_classes: 10
cfg: [32, 16]
batch_norm: True
bias: yes
dropout: 0.50
pruned:
  parent: mlp
  weights_sha256: ~
  ratio:
  target: NULL
  threshold: 1e-4
  seed: +7
  options: {flag: no, when: 2020-01-01}
# a trailing comment"""

TEXTS = {"vgg19": VGG19, "resnet56": RESNET56, "preresnet": PRERESNET, "densenet": DENSENET, "lenet5": LENET5,
         "odd": ODD}


def changed(before: str, after: str) -> list[str]:
    """The changed lines, as a unified diff without context."""
    return [line for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("---", "+++"))]


# ---- parse_yaml ----------------------------------------------------------------------------

def test_parse_yaml_reads_yaml_1_1_like_safe_load() -> None:
    assert parse_yaml("a: [1, M]\nb: yes\nc: '7'\nd: 0-5,9\n") == {"a": [1, "M"], "b": True, "c": "7", "d": "0-5,9"}
    assert parse_yaml("") is None


@pytest.mark.parametrize(
    ("text", "location", "message"),
    [
        # (libyaml's wording, PyYAML's pure-Python wording): the parser is libyaml's when PyYAML has it
        ("a: [1, 2\nb: 3\n", "line 2, column 2",
         ("did not find expected ',' or ']' (while parsing a flow sequence started on line 1)",
          "expected ',' or ']', but got ':' (while parsing a flow sequence started on line 1)")),
        ("a: b: c\n", "line 1, column 5", ("mapping values are not allowed in this context",
                                           "mapping values are not allowed here")),
        ("a: 1\n\tb: 2\n", "line 2, column 1", ("found a tab character that violates indentation",
                                                "found character '\\t' that cannot start any token")),
        ("x: \"abc\n", "line 2, column 1", "found unexpected end of stream"),
        ("a: *nowhere\n", "line 1, column 4", "found undefined alias 'nowhere'"),
        ("name: x\nname: y\n", "line 2, column 1", "duplicate key 'name' (first defined on line 1)"),
        ("stages:\n  - {width: 1, width: 2}\n", "line 2, column 16", "duplicate key 'width' (first defined on line 2)"),
        ("a: !!python/object/apply:os.system [ls]\n", "line 1, column 4",
         "could not determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'"),
    ],
)
def test_parse_yaml_errors(text: str, location: str, message: str | tuple[str, ...]) -> None:
    with pytest.raises(SpecError) as info:
        parse_yaml(text, "bad.yaml")
    assert len(info.value.issues) == 1
    issue = info.value.issues[0]
    assert issue.location == location
    assert issue.message.startswith(message if isinstance(message, str) else message[0 if yaml.__with_libyaml__ else 1])
    assert "\n" not in issue.message
    assert info.value.lines() == [f"bad.yaml: {location}: {issue.message}"]


def test_parse_yaml_allows_merge_keys() -> None:
    assert parse_yaml("base: &b {x: 1}\nc:\n  <<: *b\n  x: 2\n") == {"base": {"x": 1}, "c": {"x": 2}}


# ---- update_spec_text ----------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(TEXTS))
def test_update_with_same_data_is_identity(name: str) -> None:
    text = TEXTS[name]
    expected = text if text.endswith("\n") else text + "\n"
    assert update_spec_text(text, parse_yaml(text)) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_one_change_changes_one_line(name: str) -> None:
    """Through ruamel: every other line (comments, quoting, spellings) stays byte-identical."""
    text = TEXTS[name]
    data = parse_yaml(text)
    data["num_classes"] = 100
    out = update_spec_text(text, data)
    assert changed(text, out) == ["-num_classes: 10", "+num_classes: 100"]
    assert out.endswith("\n")
    assert parse_yaml(out) == data
    assert update_spec_text(out, parse_yaml(out)) == out  # type: ignore[arg-type]


def test_pruned_vgg_keeps_layout_and_appends_provenance() -> None:
    data = parse_yaml(VGG19)
    data["cfg"] = [49, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 256, 160, 80, 40, "M", 40, 30, 30, 80]
    data["pruned"] = {
        "parent": "vgg19", "parent_sha256": "ab" * 4, "weights_sha256": None, "method": "slimming",
        "scope": "global", "ratio": 0.7, "target": None, "threshold": 1e-05, "min_channels": 1, "round_to": 1,
        "seed": 0, "calibration": None, "clamped": ["cfg[12]", "cfg[17]"],
        "params": {"before": 20035018, "after": 2305438}, "macs": {"before": 398136320, "after": 190000000},
        "options": {},
    }
    out = update_spec_text(VGG19, data)
    assert out == VGG19.replace(
        "cfg: [64, 64, M, 128, 128, M, 256, 256, 256, 256, M, 512, 512, 512, 512, M, 512, 512, 512, 512]",
        "cfg: [49, 64, M, 128, 128, M, 256, 256, 256, 256, M, 256, 160, 80, 40, M, 40, 30, 30, 80]",
    ) + """pruned:
  parent: vgg19
  parent_sha256: abababab
  weights_sha256: null
  method: slimming
  scope: global
  ratio: 0.7
  target: null
  threshold: 1.0e-05
  min_channels: 1
  round_to: 1
  seed: 0
  calibration: null
  clamped: ["cfg[12]", "cfg[17]"]
  params: {before: 20035018, after: 2305438}
  macs: {before: 398136320, after: 190000000}
  options: {}
"""
    assert parse_yaml(out) == data
    assert schema_issues(data) == []
    assert update_spec_text(VGG19, data) == out  # deterministic
    assert update_spec_text(out, parse_yaml(out)) == out  # type: ignore[arg-type]
    # pruning the pruned spec again replaces the provenance in place
    again = copy.deepcopy(data)
    again["pruned"]["parent"] = "vgg19_p70"
    again["pruned"]["ratio"] = 0.5
    assert changed(out, update_spec_text(out, again)) == [
        "-  parent: vgg19", "+  parent: vgg19_p70", "-  ratio: 0.7", "+  ratio: 0.5"]


def test_resnet_blocks_become_lists() -> None:
    data = parse_yaml(RESNET56)
    data["stages"][0]["blocks"] = [6, 6, 6, 6, 6, 6, 6, 16, 16]
    data["stages"][2]["blocks"] = 8  # SSS removed a block
    out = update_spec_text(RESNET56, data)
    assert changed(RESNET56, out) == [
        "-  - {width: 16, blocks: 9}", "+  - {width: 16, blocks: [6, 6, 6, 6, 6, 6, 6, 16, 16]}",
        "-  - {width: 64, blocks: 9, stride: 2}", "+  - {width: 64, blocks: 8, stride: 2}",
    ]
    assert parse_yaml(out) == data


def test_flow_stage_with_block_entries_turns_block_and_keeps_its_comment() -> None:
    data = parse_yaml(PRERESNET)
    data["stages"][1]["blocks"] = [{"select": "0-127", "inner": [32, 30]}, {"select": "3,4", "inner": [8, 8]}]
    out = update_spec_text(PRERESNET, data)
    assert changed(PRERESNET, out) == [
        "-  - {width: 128, blocks: 18, stride: 2}    # untouched",
        "+  - width: 128                             # untouched",
        "+    blocks:",
        '+      - {select: "0-127", inner: [32, 30]}',
        '+      - {select: "3,4", inner: [8, 8]}',
        "+    stride: 2",
    ]
    assert parse_yaml(out) == data


def test_channel_sets_are_quoted_and_quote_style_is_kept() -> None:
    data = parse_yaml(PRERESNET)
    data["stages"][0]["blocks"][0]["select"] = "0-5,9,12-62"
    data["stages"][0]["blocks"][1]["select"] = "8"
    data["head_select"] = "7"
    out = update_spec_text(PRERESNET, data)
    assert changed(PRERESNET, out) == [
        '-      - {select: "0-5,9,12-63", inner: [12, 14]}   # first block',
        "-      - {select: '7', inner: [16, 16]}",
        '+      - {select: "0-5,9,12-62", inner: [12, 14]}   # first block',
        "+      - {select: '8', inner: [16, 16]}",
        '-head_select: "0-100"',
        '+head_select: "7"',
    ]
    assert parse_yaml(out)["head_select"] == "7"  # type: ignore[index]


def test_new_strings_that_would_read_as_something_else_are_quoted() -> None:
    data = parse_yaml(LENET5)
    odd = ["7", "0-5,9", "yes", "null", "", "1e-4", "1.5", "cfg[3]", "a: b", "#x", " lead", "~", "on", "12:30"]
    data["pruned"] = {"clamped": odd, "options": {"plain": "slimming", "path": "runs/vgg19.yaml"}}
    out = update_spec_text(LENET5, data)
    assert parse_yaml(out) == data
    assert "plain: slimming" in out and "path: runs/vgg19.yaml" in out
    assert parse_yaml(format_spec(data)) == data


def test_key_removal_keeps_the_next_keys_comment() -> None:
    text = "slimspec: 1  # version\nname: x\n# about the dropout\ndropout: 0.5    # half\n# about bias\nbias: true\n"
    data = parse_yaml(text)
    del data["dropout"]
    out = update_spec_text(text, data)
    assert out == "slimspec: 1  # version\nname: x\n# about the dropout\n# about bias\nbias: true\n"


def test_sequences_shrink_and_grow_in_their_style() -> None:
    data = parse_yaml(LENET5)
    del data["layers"][-2:]  # drop "linear: 84" and the commented "relu"
    data["layers"][0]["conv"]["out"] = 4
    data["input"] = [1, 32, 32, 1]
    out = update_spec_text(LENET5, data)
    assert changed(LENET5, out) == [
        "-input: [1, 32, 32]", "+input: [1, 32, 32, 1]",
        "-- conv: {out: 6, kernel: 5}     # padding 0, stride 1 unless given",
        "+- conv: {out: 4, kernel: 5}     # padding 0, stride 1 unless given",
        "-- linear: 84", "-- relu                          # the final Linear(num_classes) is implied",
    ]
    data["layers"] += [{"dropout": 0.5}, {"linear": {"out": 3, "bias": False}}, "bn"]
    out2 = update_spec_text(out, data)
    assert changed(out, out2) == ["+- dropout: 0.5", "+- linear: {out: 3, bias: false}", "+- bn"]


def test_densenet_selections_update() -> None:
    data = parse_yaml(DENSENET)
    data["blocks"][1] = ["0-35", "0-40,45"]
    data["blocks"].append(["all"])
    data["transitions"].append("0-9")
    out = update_spec_text(DENSENET, data)
    assert changed(DENSENET, out) == [
        "-  - [all, all]", '-transitions: ["0-47,50"]',
        '+  - ["0-35", "0-40,45"]', "+  - [all]", '+transitions: ["0-47,50", "0-9"]',
    ]
    assert parse_yaml(out) == data


def test_type_changes_and_new_keys() -> None:
    data = parse_yaml(RESNET56)
    data["init"] = {"bn_gamma": 0.5, "conv": "kaiming_normal"}  # key added inside a flow mapping
    data["shortcut"] = "B"
    data["block"] = None
    out = update_spec_text(RESNET56, data)
    assert changed(RESNET56, out) == [
        "-block: basic              # basic | bottleneck (expansion 4)",
        "+block: null               # basic | bottleneck (expansion 4)",
        "-shortcut: A               # parameter-free shortcut",
        "+shortcut: B               # parameter-free shortcut",
        "-init: {bn_gamma: 0.5}", "+init: {bn_gamma: 0.5, conv: kaiming_normal}",
    ]


def test_update_keeps_odd_spellings_when_other_values_change() -> None:
    data = parse_yaml(ODD)
    data["cfg"] = [30, 16]
    data["pruned"]["seed"] = 8
    out = update_spec_text(ODD, data)
    assert changed(ODD, out) == ["-cfg: [32, 16]", "+cfg: [30, 16]", "-  seed: +7", "+  seed: 8"]
    assert out.startswith("---\n# spellings")
    assert parse_yaml(out) == data


def test_update_rejects_bad_parent_text() -> None:
    with pytest.raises(SpecError):
        update_spec_text("a: [1\n", {"a": 1})
    with pytest.raises(SpecError):
        update_spec_text("- 1\n", {"a": 1})


# ---- format_spec ---------------------------------------------------------------------------

def test_format_spec_looks_hand_written() -> None:
    data = {
        "slimspec": 1, "name": "resnet56_p", "arch": "resnet", "input": [3, 32, 32], "num_classes": 10,
        "block": "basic", "stem": 16,
        "stages": [{"width": 16, "blocks": [6, 6, 16]}, {"width": 32, "blocks": 9, "stride": 2}],
        "init": {"bn_gamma": 0.5},
        "pruned": {"parent": "resnet56", "ratio": None, "target": {"macs": 0.5}, "threshold": 0.25,
                   "params": {"before": 853018, "after": 500000}, "clamped": []},
    }
    assert format_spec(data) == """slimspec: 1
name: resnet56_p
arch: resnet
input: [3, 32, 32]
num_classes: 10
block: basic
stem: 16
stages:
  - {width: 16, blocks: [6, 6, 16]}
  - {width: 32, blocks: 9, stride: 2}
init:
  bn_gamma: 0.5
pruned:
  parent: resnet56
  ratio: null
  target: {macs: 0.5}
  threshold: 0.25
  params: {before: 853018, after: 500000}
  clamped: []
"""


def test_format_spec_sequential_and_selections() -> None:
    data = {
        "slimspec": 1, "name": "p", "arch": "preresnet", "input": [3, 32, 32], "num_classes": 10, "stem": 16,
        "stages": [{"width": 64, "blocks": [{"select": "0-5,9", "inner": [12, 14]}, [16, 16]]}],
        "head_select": "7",
    }
    assert format_spec(data) == """slimspec: 1
name: p
arch: preresnet
input: [3, 32, 32]
num_classes: 10
stem: 16
stages:
  - width: 64
    blocks:
      - {select: "0-5,9", inner: [12, 14]}
      - [16, 16]
head_select: "7"
"""
    lenet = parse_yaml(LENET5)
    assert format_spec(lenet) == LENET5.replace("\n- ", "\n  - ").replace(
        "     # padding 0, stride 1 unless given", "").replace(
        "                          # the final Linear(num_classes) is implied", "")


@pytest.mark.parametrize("name", sorted(TEXTS))
def test_format_spec_round_trips(name: str) -> None:
    data = parse_yaml(TEXTS[name])
    text = format_spec(data)  # type: ignore[arg-type]
    assert parse_yaml(text) == data
    assert update_spec_text(text, data) == text  # type: ignore[arg-type]
    assert format_spec(data) == text  # type: ignore[arg-type]


def test_format_spec_floats_read_back_as_floats() -> None:
    data = {"a": 1e-05, "b": 1e20, "c": 0.1, "d": float("inf"), "e": -2.5e-300, "f": 3.0}
    assert parse_yaml(format_spec(data)) == data
    assert "a: 1.0e-05" in format_spec(data)


def test_format_spec_rejects_non_mappings() -> None:
    with pytest.raises(TypeError):
        format_spec([1, 2])  # type: ignore[arg-type]


# ---- properties ----------------------------------------------------------------------------

widths = st.lists(st.one_of(st.integers(min_value=1, max_value=4096), st.just("M")), min_size=1, max_size=24)
channel_sets = st.sets(st.integers(min_value=0, max_value=255), min_size=1).map(format_channel_set)


@settings(max_examples=60, deadline=None)
@given(cfg=widths, classifier=st.lists(st.integers(min_value=1, max_value=999), max_size=3),
       ratio=st.one_of(st.none(), st.floats(min_value=0, max_value=1)), note=st.text(max_size=12))
def test_vgg_rewrite_round_trip(cfg: list, classifier: list, ratio: float | None, note: str) -> None:
    data = parse_yaml(VGG19)
    data.update(cfg=cfg, classifier=classifier)
    data["pruned"] = {"parent": "vgg19", "ratio": ratio, "options": {"note": note}}
    out = update_spec_text(VGG19, data)
    assert parse_yaml(out) == data
    assert out.startswith("# VGG-19 for CIFAR-10")
    assert "head: avg                 # avg: global average pool" in out
    assert update_spec_text(out, parse_yaml(out)) == out  # type: ignore[arg-type]
    assert parse_yaml(format_spec(data)) == data


@settings(max_examples=60, deadline=None)
@given(selects=st.lists(st.tuples(channel_sets, st.integers(1, 64), st.integers(1, 64)), min_size=1, max_size=5),
       head=channel_sets)
def test_preresnet_rewrite_round_trip(selects: list, head: str) -> None:
    data = parse_yaml(PRERESNET)
    data["stages"][0]["blocks"] = [{"select": s, "inner": [a, b]} for s, a, b in selects]
    data["head_select"] = head
    out = update_spec_text(PRERESNET, data)
    assert parse_yaml(out) == data
    assert schema_issues(data) == []
    assert "  - {width: 128, blocks: 18, stride: 2}    # untouched" in out
    assert parse_yaml(format_spec(data)) == data


def test_flow_counts_turning_into_selection_lists_become_block_lists() -> None:
    text = DENSENET.replace("blocks:\n  - [\"0-23\", \"0-20,22-35\", all]\n  - [all, all]\n",
                            "blocks: [12, 12]       # layers per dense block\n")
    data = parse_yaml(text)
    data["blocks"] = [["0-23", "0-35"], ["all"]]
    out = update_spec_text(text, data)
    assert changed(text, out) == [
        "-blocks: [12, 12]       # layers per dense block",
        "+blocks:                # layers per dense block",
        '+  - ["0-23", "0-35"]',
        "+  - [all]",
    ]


def test_plain_words_stay_plain() -> None:
    data = {"parent_sha256": "50bc34a4", "weights_sha256": "7c88d810", "method": "attention-weight",
            "n": "123", "hexlike": "0x1f", "exp": "12e4", "date": "2020-01-01", "word": "no"}
    text = format_spec(data)
    assert text == """parent_sha256: 50bc34a4
weights_sha256: 7c88d810
method: attention-weight
n: "123"
hexlike: "0x1f"
exp: "12e4"
date: "2020-01-01"
word: "no"
"""
    assert parse_yaml(text) == data
