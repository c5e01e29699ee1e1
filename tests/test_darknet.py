"""``import darknet:`` and ``export --format darknet`` (issue 16): YOLOv3, YOLOv3-tiny and YOLOv4-tiny (its
grouped ``[route]``s) against a straightforward PyTorch Darknet written for the tests
(:mod:`tests.darknet_reference`), the published parameter counts, and exact round trips of the cfg and of the
``.weights`` bytes.

The default suite runs the networks at 64x64 (the spec's input, ``--input 3,64,64``); the full
416x416 comparison is marked slow.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import slimspec
from slimspec.interop.darknet import cfg_spec_text, import_darknet
from slimspec.interop.darknet_cfg import parse_cfg, read_cfg
from slimspec.model import build_from_state, load_model

from .conftest import ROOT, cli_run, one_line_error
from .darknet_reference import Darknet, random_weights_file

DATA = ROOT / "tests" / "data"
CFGS = {"yolov3-tiny": DATA / "yolov3-tiny.cfg", "yolov3": DATA / "yolov3.cfg", "yolov4-tiny": DATA / "yolov4-tiny.cfg"}
SMALL = (3, 64, 64)


def rel_diff(got, expected) -> float:
    assert len(got) == len(expected)
    return max(float((g - e).abs().max() / e.abs().max()) for g, e in zip(got, expected))


def pruned_filters_cfg(text: str, new: dict[int, int]) -> str:
    """The cfg text with ``filters=`` of layer ``i`` (0 = the first section after [net]) set to ``new[i]``."""
    out, layer = [], -2
    for line in text.splitlines():
        if line.strip().startswith("["):
            layer += 1
        if layer in new and line.replace(" ", "").startswith("filters="):
            line = f"filters={new[layer]}"
        out.append(line)
    return "\n".join(out) + "\n"


def shortcut_convs(defs: list[dict]) -> set[int]:
    """The convs a [shortcut] joins (Lam1360's ``parse_module_defs``: the one before it and the one it reads)."""
    joined = set()
    for i, d in enumerate(defs):
        if d["type"] == "shortcut":
            joined.add(i - 1)
            source = i + int(d["from"])
            joined.add(source if defs[source]["type"] == "convolutional" else source - 1)
    return joined


def yolov3_pruned_cfg(tmp_path: Path) -> Path:
    """YOLOv3 with pruned ``filters=`` on every conv outside a shortcut and not before a [yolo] (2/3, odd sizes)."""
    defs = Darknet(str(CFGS["yolov3"])).module_defs
    joined = shortcut_convs(defs)
    new = {i: int(d["filters"]) * 2 // 3 + 1 for i, d in enumerate(defs)
           if d["type"] == "convolutional" and i not in joined and defs[i + 1]["type"] != "yolo"}
    assert len(new) == 44  # 72 BN convs, 28 of them joined by shortcuts
    path = tmp_path / "yolov3-pruned.cfg"
    path.write_text(pruned_filters_cfg(CFGS["yolov3"].read_text(), new))
    return path


V4 = CFGS["yolov4-tiny"].read_text()
GROUPED = "layers=-1\ngroups=2\ngroup_id=1\n"  # YOLOv4-tiny's layers 3, 11 and 19


def grouped_route_cfgs(folder: Path) -> dict[str, Path]:
    """YOLOv4-tiny variants: layer 3 a grouped route of two layers (part 0 of layers 2 and 1, concatenated), and
    the same network as three routes (a grouped route of each, then a plain one joining them; later layer
    references shifted by the two added layers)."""
    multi = V4.replace(GROUPED, "layers=-1,-2\ngroups=2\ngroup_id=0\n", 1)
    split = V4.replace(GROUPED, "layers=-1\ngroups=2\ngroup_id=0\n\n[route]\nlayers=-3\ngroups=2\ngroup_id=0\n\n"
                                "[route]\nlayers=-2,-1\n", 1)
    split = split.replace("layers = -6,-1", "layers = -8,-1", 1).replace("layers = -1, 23", "layers = -1, 25")
    paths = {f"yolov4-tiny-{kind}": folder / f"yolov4-tiny-{kind}.cfg" for kind in ("multi", "split")}
    paths["yolov4-tiny-multi"].write_text(multi)
    paths["yolov4-tiny-split"].write_text(split)
    return paths


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """``{name: (cfg, .weights, reference Darknet with the weights loaded)}``, random weights written once."""
    folder = tmp_path_factory.mktemp("darknet")
    made = {}

    def get(name: str):
        if name not in made:
            cfg = (yolov3_pruned_cfg(folder) if name == "yolov3-pruned" else
                   grouped_route_cfgs(folder)[name] if name.endswith(("-multi", "-split")) else CFGS[name])
            reference = Darknet(str(cfg)).eval()
            weights = folder / f"{name}.weights"
            random_weights_file(reference, str(weights), seed=len(made))
            reference.load_darknet_weights(str(weights))
            made[name] = cfg, weights, reference
        return made[name]

    return get


@pytest.mark.parametrize("name", ["yolov3-tiny", "yolov3", "yolov3-pruned", "yolov4-tiny", "yolov4-tiny-multi",
                                  "yolov4-tiny-split"])
def test_import_computes_what_the_reference_darknet_computes(nets, tmp_path, name):
    cfg, weights, reference = nets(name)
    result = cli_run("import", f"darknet:{cfg}", "--weights", weights, "--input", "3,64,64", "-o", tmp_path / "m.yaml")
    assert result.exit_code == 0, result.output
    model, spec = load_model(tmp_path / "m.safetensors")
    x = torch.randn(2, *SMALL, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got, expected = model.eval()(x), reference(x)
    assert [tuple(g.shape) for g in got] == [tuple(e.shape) for e in expected]
    assert len(got) == (2 if "tiny" in name else 3)
    assert rel_diff(got, expected) <= 1e-5
    reference_params = sum(p.numel() for p in reference.parameters())
    assert slimspec.info(spec)["params"] == reference_params


@pytest.mark.slow
@pytest.mark.parametrize("name", ["yolov3-tiny", "yolov3", "yolov4-tiny"])
def test_import_at_416_computes_what_the_reference_computes(nets, name):
    cfg, weights, reference = nets(name)
    spec, state, _ = import_darknet(cfg, weights=weights, input_shape=(3, 416, 416))
    x = torch.randn(1, 3, 416, 416, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert rel_diff(build_from_state(spec, state).eval()(x), reference(x)) <= 1e-5


@pytest.mark.parametrize("name, params", [("yolov3", 61_949_149), ("yolov3_tiny", 8_852_366)])
def test_stock_specs_have_the_published_parameter_counts(name, params):
    result = cli_run("info", name, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["params"] == params
    spec = slimspec.load_spec(name)
    assert spec.ir.input_shape == (3, 416, 416)
    heads = [spec.ir.node(n).shape for n in spec.ir.outputs]
    assert heads == ([(255, 13, 13), (255, 26, 26), (255, 52, 52)] if name == "yolov3" else [(255, 13, 13), (255, 26, 26)])


def test_yolov4_tiny_imports_with_its_published_parameter_count_and_grouped_routes_as_chunks():
    spec, _, _ = import_darknet(CFGS["yolov4-tiny"])
    reference = Darknet(str(CFGS["yolov4-tiny"]))
    params = slimspec.info(spec)["params"]
    assert params == sum(p.numel() for p in reference.parameters()) == 6_056_606  # 6.06M
    assert spec.ir.input_shape == (3, 416, 416)
    assert [spec.ir.node(n).shape for n in spec.ir.outputs] == [(255, 13, 13), (255, 26, 26)]
    chunks = re.findall(r"^  - chunk: \{from: -1, parts: 2, index: 1\} +# (\d+) route$", spec.text, re.M)
    assert chunks == ["3", "11", "19"]
    numbers = [int(m.group(1)) for m in re.finditer(r"# (\d+) (?:convolutional|route|upsample|maxpool)$", spec.text,
                                                    re.M)]
    yolo = [int(m.group(1)) for m in re.finditer(r"# (\d+) \[yolo\] mask=", spec.text)]
    assert sorted(numbers + yolo) == list(range(38)) and yolo == [30, 37]
    assert "anchors=10,14,23,27,37,58,81,82,135,169,344,319 classes=80 num=6" in spec.text


@pytest.mark.parametrize("stem, name", [("yolov3", "yolov3"), ("yolov3-tiny", "yolov3_tiny")])
def test_stock_specs_are_the_import_of_the_canonical_cfgs(stem, name):
    text = cfg_spec_text(read_cfg(CFGS[stem]), name, str(CFGS[stem]), (3, 416, 416))
    assert (ROOT / "specs" / f"{name}.yaml").read_text() == text


def test_spec_keeps_layer_numbers_and_yolo_heads_as_comments():
    text = (ROOT / "specs" / "yolov3.yaml").read_text()
    numbers = [int(m.group(1)) for m in re.finditer(r"# (\d+) (?:convolutional|shortcut|route|upsample|maxpool)$",
                                                    text, re.M)]
    yolo = [int(m.group(1)) for m in re.finditer(r"# (\d+) \[yolo\] mask=", text)]
    assert sorted(numbers + yolo) == list(range(107))  # every cfg layer, once
    assert yolo == [82, 94, 106]
    assert "anchors=10,13,16,30,33,23,30,61,62,45,59,119,116,90,156,198,373,326 classes=80 num=9" in text


@pytest.mark.parametrize("name, header", [("yolov3-tiny", (0, 2, 0, 32013312)), ("yolov3", (0, 2, 0, 32013312)),
                                          ("yolov3-tiny", (0, 1, 0, 7)),  # seen as int64, then as int32
                                          ("yolov4-tiny", (0, 2, 0, 32013312)), ("yolov4-tiny-multi", (0, 2, 5, 0)),
                                          ("yolov4-tiny-split", (0, 2, 5, 0))])
def test_unpruned_round_trip_gives_the_same_cfg_and_weights_bytes(nets, tmp_path, name, header):
    cfg, _, reference = nets(name)
    weights = tmp_path / "in.weights"
    random_weights_file(reference, str(weights), seed=5, header=header)
    small = name != "yolov3-tiny"  # at 416x416 (608x608) the export's check run is slow: 64x64, the [net] says so
    assert cli_run("import", f"darknet:{cfg}", "--weights", weights, "-o", tmp_path / "m.yaml",
                   *(["--input", "3,64,64"] if small else [])).exit_code == 0
    result = cli_run("export", tmp_path / "m.safetensors", "--format", "darknet", "--out", tmp_path / "back.cfg")
    assert result.exit_code == 0, result.output
    assert "max abs diff to PyTorch: 0 " in result.output
    assert (tmp_path / "back.weights").read_bytes() == weights.read_bytes()
    original, back = read_cfg(cfg), read_cfg(tmp_path / "back.cfg")
    if small:
        assert (back[0].options["width"], back[0].options["height"]) == ("64", "64")
        back[0].options.update(width=original[0].options["width"], height=original[0].options["height"])
    assert [(s.kind, s.options) for s in back] == [(s.kind, s.options) for s in original]


def test_export_suffix_cfg_picks_darknet_and_refuses_to_overwrite(nets, tmp_path):
    cfg, weights, _ = nets("yolov3-tiny")
    assert cli_run("import", f"darknet:{cfg}", "--weights", weights, "-o", tmp_path / "m.yaml").exit_code == 0
    assert cli_run("export", tmp_path / "m.safetensors", "--out", tmp_path / "x.cfg").exit_code == 0
    assert (tmp_path / "x.weights").read_bytes() == weights.read_bytes()
    one_line_error(cli_run("export", tmp_path / "m.safetensors", "--out", tmp_path / "x.cfg"), "already exists")


def test_import_without_weights_is_seeded(tmp_path):
    for seed, out in ((3, "a"), (3, "b"), (4, "c")):
        assert cli_run("import", f"darknet:{CFGS['yolov3-tiny']}", "--seed", seed, "--input", "3,64,64",
                       "-o", tmp_path / f"{out}.yaml").exit_code == 0
    a, b, c = ((tmp_path / f"{n}.safetensors").read_bytes() for n in "abc")
    assert a == b != c


def test_a_graph_spec_that_is_no_detector_has_no_darknet_form(tmp_path):
    one_line_error(cli_run("export", "digits_vgg", "--format", "darknet", "--out", tmp_path / "x.cfg"),
                   "Darknet form")
    assert not (tmp_path / "x.cfg").exists() and not (tmp_path / "x.weights").exists()


TINY = CFGS["yolov3-tiny"].read_text()


@pytest.mark.parametrize("text, fragments", [
    (TINY.replace("[upsample]", "[crop]"), ["yolov3-tiny.cfg:", "[crop]", "(layer 19)", "not supported"]),
    (TINY.replace("activation=leaky", "activation=elu", 1), ["(layer 0)", "activation=elu"]),
    (TINY.replace("layers = -1, 8", "layers = -1, 16"), ["(layer 20)", "a [yolo] head"]),
    (TINY.replace("filters=255", "filters=254", 1), ["(layer 16)", "filters=254", "3 * (5 + 80) = 255"]),
    (TINY.replace("stride=1\npad=1\nactivation=leaky", "stride=1\npad=1\ndilation=2\nactivation=leaky", 1),
     ["(layer 0)", "option 'dilation'"]),
    ("width=4\n", ["option 'width' before the first [section]"]),
])
def test_cfg_problems_are_one_located_line(tmp_path, text, fragments):
    cfg = tmp_path / "yolov3-tiny.cfg"
    cfg.write_text(text)
    one_line_error(cli_run("import", f"darknet:{cfg}", "-o", tmp_path / "m.yaml"), *fragments)
    assert not (tmp_path / "m.yaml").exists()


def test_weights_of_the_wrong_size_are_refused(nets, tmp_path):
    cfg, weights, _ = nets("yolov3-tiny")
    data = weights.read_bytes()
    (tmp_path / "short.weights").write_bytes(data[:-4000])
    one_line_error(cli_run("import", f"darknet:{cfg}", "--weights", tmp_path / "short.weights", "-o", tmp_path / "m.yaml"),
                   "too short", "it stops inside layers.44.weight")
    (tmp_path / "long.weights").write_bytes(data + b"\0" * 8)
    one_line_error(cli_run("import", f"darknet:{cfg}", "--weights", tmp_path / "long.weights", "-o", tmp_path / "m.yaml"),
                   "too long")
    assert not (tmp_path / "m.yaml").exists()


def test_import_options_that_do_not_apply_are_refused(nets, tmp_path):
    cfg, weights, _ = nets("yolov3-tiny")
    for extra, hint in ((["--num-classes", "3"], "--num-classes"), (["--seed", "1", "--weights", weights], "--seed")):
        result = cli_run("import", f"darknet:{cfg}", *extra, "-o", tmp_path / "m.yaml")
        assert result.exit_code == 2 and hint in result.output
    result = cli_run("import", "torchvision:resnet18", "--weights", weights, "-o", tmp_path / "m.yaml")
    assert result.exit_code == 2 and "only for darknet" in result.output


def test_parse_cfg_reads_aliases_and_strips_spaces_inside_values():
    sections = parse_cfg("[network]\nwidth=8\n# comment\n; another\n[conv]\nfilters = 4\n[max]\nsize=2\n"
                         "[yolo]\nanchors = 1,2,  3,4\n")
    assert [s.kind for s in sections] == ["net", "convolutional", "maxpool", "yolo"]
    assert sections[3].options == {"anchors": "1,2,3,4"} and sections[1].line == 5


def test_reference_weights_reader_reads_what_the_header_says():
    """The test's own writer/reader pair agrees with the header layout slimspec reads (guards the reference)."""
    reference = Darknet(str(CFGS["yolov3-tiny"]))
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/w.weights"
        random_weights_file(reference, path, seed=0, header=(0, 1, 0, 9))
        raw = open(path, "rb").read()
        assert np.frombuffer(raw[:16], "<i4").tolist() == [0, 1, 0, 9]
        assert len(raw) == 16 + 4 * sum(p.numel() for p in reference.parameters()) + 4 * 2 * sum(
            bn.num_features for _, bn in reference.conv_layers() if bn is not None)
        assert reference.load_darknet_weights(path) == (0, 1, 0, 9)


def route_line(text: str, layer: int) -> int:
    """The cfg line number of layer ``layer``'s section."""
    starts = [n for n, line in enumerate(text.splitlines(), start=1) if line.startswith("[")]
    return starts[layer + 1]


@pytest.mark.parametrize("route, fragments", [
    ("layers=-1\ngroups=0\ngroup_id=0\n", ["groups=0: expected a positive integer"]),
    ("layers=-1\ngroups=two\ngroup_id=1\n", ["groups=two: expected an integer"]),
    ("layers=-1\ngroups=2\ngroup_id=2\n", ["group_id=2: expected 0..1 (one of groups=2 parts)"]),
    ("layers=-1\ngroups=2\ngroup_id=-1\n", ["group_id=-1: expected 0..1"]),
    ("layers=-1\ngroup_id=1\n", ["group_id= without groups="]),
    ("layers=-1\ngroups=3\ngroup_id=1\n", ["groups=3 does not divide the 64 channels of layer 2"]),
    ("layers=-1\ngroups=2\ngroup=1\n", ["option 'group' is not supported (supported: layers, groups, group_id)"]),
])
def test_grouped_route_problems_are_one_located_line(tmp_path, route, fragments):
    text = V4.replace(GROUPED, route, 1)
    cfg = tmp_path / "yolov4-tiny.cfg"
    cfg.write_text(text)
    one_line_error(cli_run("import", f"darknet:{cfg}", "-o", tmp_path / "m.yaml"),
                   f"yolov4-tiny.cfg:{route_line(text, 3)} [route] (layer 3): ", *fragments)
    assert not (tmp_path / "m.yaml").exists()


def test_a_grouped_route_of_an_odd_width_input_is_refused(tmp_path):
    text = pruned_filters_cfg(V4, {10: 127})  # layer 11 halves layer 10's output
    cfg = tmp_path / "yolov4-tiny.cfg"
    cfg.write_text(text)
    one_line_error(cli_run("import", f"darknet:{cfg}", "-o", tmp_path / "m.yaml"),
                   f"yolov4-tiny.cfg:{route_line(text, 11)} [route] (layer 11): groups=2 does not divide the 127 "
                   "channels of layer 10")
