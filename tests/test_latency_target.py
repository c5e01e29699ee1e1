"""Latency tables (NetAdapt-style) and `--target latency=R`: estimates on synthetic tables, caching, the
typed table and its checked file format, the runtimes' layer hook, CLI."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch

import slimspec
from slimspec.errors import PruneError
from slimspec.latency import runtimes as runtimes_mod
from slimspec.latency import table as table_mod
from slimspec.latency.layers import LayerShape
from slimspec.latency.table import Grid, LatencyTable, LatencyTableError, architecture_sha, network_layers
from slimspec.pruning.targets import TargetContext, get_target

from .conftest import cli_run as invoke

FORMAT_2 = Path(__file__).parent / "data" / "latency_table_format2.json"  # digits_lenet, written before the typed table


def synthetic_ms(shape: LayerShape, cin: int, cout: int) -> float:
    """A latency model that is bilinear in the widths (so bilinear interpolation is exact)."""
    pixels = shape.hw[0] * shape.hw[1] if shape.op == "conv" else 1
    return 1e-4 * cin * cout * pixels + 0.01


class FakeRunner:
    """A runner whose time is known in advance (``ms``): the profile's clock reads it instead of timing."""

    def __init__(self, ms: float, what: object = None):
        self.ms, self.what = ms, what

    def __call__(self) -> None:
        return None


@pytest.fixture
def fake_timing(monkeypatch, tmp_path):
    """Profile with the synthetic model instead of a clock; cache in tmp; count layer samples."""
    calls = []

    def layer_runner(shape, cin, cout, runtime, batch, threads):
        calls.append((cin, cout))
        return FakeRunner(synthetic_ms(shape, cin, cout), (cin, cout))

    monkeypatch.setenv("SLIMSPEC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(table_mod, "_layer_runner", layer_runner)
    monkeypatch.setattr(table_mod, "_network_runner",  # the whole network: its layers + 25% overhead
                        lambda model, ir, *a: FakeRunner(1.25 * expected(ir, 0.0), "network"))
    monkeypatch.setattr(table_mod, "_time_once", lambda run, min_run_time, threads: run.ms)
    return calls


def expected(ir, overhead: float) -> float:
    return overhead + sum(synthetic_ms(l.shape, l.cin, l.cout) for l in network_layers(ir).values())


LINEAR = LayerShape("linear", relu=False)


def test_interpolation_is_bilinear_and_extrapolates_linearly_never_below_zero():
    grid = Grid(LINEAR, (4, 8), (2, 4, 8), ((1.0, 2.0, 4.0), (2.0, 4.0, 8.0)))
    assert grid.interpolate(8, 4) == 4.0
    assert grid.interpolate(6, 3) == pytest.approx(2.25)  # (1.5 + 3) / 2
    assert grid.interpolate(2, 4) == pytest.approx(1.0)  # 2 - 2 x 0.5, extrapolated along cin
    steep = Grid(LINEAR, (4, 8), (4, 8), ((1.0, 3.0), (3.0, 5.0)))
    assert steep.interpolate(1, 1) == 0.0  # -2 extrapolated: clamped
    assert Grid(LINEAR, (3,), (2, 4), ((1.0, 3.0),)).interpolate(3, 3) == pytest.approx(2.0)


def test_profile_shares_shapes_caches_and_estimates_pruned_networks(fake_timing):
    spec = slimspec.load_spec("digits_vgg")
    table, path = table_mod.table_for_spec(spec)
    assert path.parent == table_mod.cache_dir() and path.name.endswith("-eager-b1.json")
    # the first conv reads the fixed 1-channel input: only its output width is sampled
    first = table.entries[table.layers["features.0.conv"].entry]
    assert first.cin == (1,) and first.cout == (4, 8, 16, 24, 32)
    sampled = len(fake_timing)
    assert table.scale == pytest.approx(1.25)
    assert table.estimate(spec.ir) == pytest.approx(table.total_ms)
    # a pruned architecture (other widths, between grid points): the exact bilinear model
    pruned = slimspec.load_spec(spec.text.replace("cfg: [32, 32, M, 64, 64, M, 128]", "cfg: [11, 29, M, 40, 17, M, 100]"))
    assert table.estimate(pruned.ir) == pytest.approx(1.25 * expected(pruned.ir, 0.0))
    # cached: the same architecture under another name and comments is not profiled again
    renamed = slimspec.load_spec("# copy\n" + spec.text.replace("name: digits_vgg", "name: other"))
    assert architecture_sha(renamed.ir) == architecture_sha(spec.ir)
    again, again_path = table_mod.table_for_spec(renamed)
    assert again_path == path and len(fake_timing) == sampled and again == table


def test_prune_target_latency_meets_the_estimate_and_records_the_table(fake_timing, trained_weights, tmp_path):
    spec = slimspec.load_spec("digits_vgg")
    table_path = tmp_path / "t.json"
    table_mod.table_for_spec(spec)[0].save(table_path)
    weights = trained_weights("digits_vgg")
    options = {"latency_table": str(table_path)}
    result = slimspec.prune(weights, "slimming", target="latency=0.5", target_options=options)
    assert options == {"latency_table": str(table_path)}  # the user's options are not a cache
    table = LatencyTable.load(table_path)
    ratio = table.estimate(result.spec.ir) / table.estimate(spec.ir)
    assert 0.45 < ratio <= 0.5  # the smallest pruning ratio that reaches the target
    recorded = result.spec.data["pruned"]["measured"]["latency"]  # provenance: what the target was measured with
    raw = json.loads(table_path.read_text())
    assert recorded["runtime"] == raw["runtime"] and recorded["machine"] == raw["machine"]
    assert recorded["table_sha256"] == table.sha256 == hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()
    cli_result = invoke("prune", weights, "-m", "slimming", "--target", "latency=0.5", "--latency-table",
                        table_path, "--dry-run", "--json")
    assert cli_result.exit_code == 0
    assert json.loads(cli_result.stdout)["macs"]["after"] == result.macs[1]


def test_a_table_of_another_architecture_is_refused(fake_timing, trained_weights, tmp_path):
    table_path = tmp_path / "t.json"
    table_mod.table_for_spec(slimspec.load_spec("digits_resnet"))[0].save(table_path)
    with pytest.raises(PruneError, match="latency table was made for 'digits_resnet'"):
        slimspec.prune(trained_weights("digits_vgg"), "slimming", target="latency=0.5",
                       target_options={"latency_table": str(table_path)})
    (tmp_path / "bad.json").write_text("{}")
    result = invoke("prune", trained_weights("digits_vgg"), "-m", "slimming", "--target", "latency=0.5",
                    "--latency-table", tmp_path / "bad.json", "--dry-run")
    assert result.exit_code == 1 and "bad.json: not a slimspec latency table" in result.output


def test_bench_profile_cli_writes_the_table_and_refuses_to_clobber(fake_timing, tmp_path):
    out = tmp_path / "table.json"
    result = invoke("bench", "--profile", "digits_mlp", "--batch", "1", "--out", out)
    assert result.exit_code == 0, result.output
    table = json.loads(out.read_text())
    assert table["spec"] == "digits_mlp" and table["runtime"] == "eager" and table["batch"] == 1
    assert set(table["machine"]) == {"cpu", "cores", "threads", "system", "torch"}
    result = invoke("bench", "--profile", "digits_mlp", "--batch", "1", "--out", out)
    assert result.exit_code == 1 and "already exists" in result.output
    result = invoke("bench", "--profile", "digits_mlp", "--batch", "1,32")
    assert result.exit_code == 2 and "one runtime at one batch size" in result.output


def test_a_format_2_table_written_before_the_typed_table_loads_unchanged():
    text = FORMAT_2.read_text(encoding="utf-8")
    table = LatencyTable.load(FORMAT_2)
    assert table.to_json() == text  # same file format: read and written back byte for byte
    assert table.sha256 == hashlib.sha256(json.dumps(json.loads(text), sort_keys=True).encode()).hexdigest()
    assert table.layers["layers.4"].cin == 16 and table.entries[table.layers["fc"].entry].shape == LINEAR
    assert table.estimate(slimspec.load_spec("digits_lenet").ir) == pytest.approx(table.total_ms)


def _bad(data: dict, key: str) -> None:
    """Break the first entry (or another part) of a format-2 table."""
    entry = next(iter(data["entries"].values()))
    if key == "negative time":
        entry["ms"][0][1] = -1.0
    elif key == "nan time":
        entry["ms"][0][0] = float("nan")
    elif key == "missing row":
        entry["ms"].pop()
    elif key == "short row":
        entry["ms"][0].pop()
    elif key == "unsorted widths":
        entry["cout"][0], entry["cout"][1] = entry["cout"][1], entry["cout"][0]
    elif key == "no scale":
        del data["scale"]
    elif key == "dangling entry":
        data["layers"]["fc"]["entry"] = "nope"
    elif key == "string total":
        data["total_ms"] = "fast"
    elif key == "no cpu":
        del data["machine"]["cpu"]
    elif key == "newer format":
        data["format"] = 3
    elif key == "unknown op":
        entry["sig"]["op"] = "attention"


@pytest.mark.parametrize("key, where, message", [
    ("negative time", r"entries\.\w+\.ms\[0\]\[1\]", "expected a time in ms (a finite number > 0), got -1.0"),
    ("nan time", r"entries\.\w+\.ms\[0\]\[0\]", "got NaN"),
    ("missing row", r"entries\.\w+\.ms", "expected 1 rows (one per cin) of 5 times (one per cout), got a list of 0"),
    ("short row", r"entries\.\w+\.ms\[0\]", "expected 5 times (one per cout), got a list of 4"),
    ("unsorted widths", r"entries\.\w+\.cout\[1\]", "widths must increase, got 2 after 4"),
    ("no scale", "scale", "missing"),
    ("dangling entry", r"layers\.fc\.entry", "no entry 'nope' in entries"),
    ("string total", "total_ms", "got 'fast'"),
    ("no cpu", r"machine\.cpu", "missing"),
    ("newer format", "", "a latency table of format 3 (a newer slimspec); this version reads format 2"),
    ("unknown op", r"entries\.\w+\.sig\.op", "expected one of conv, linear, got 'attention'"),
])
def test_a_bad_table_is_refused_with_one_located_line(tmp_path, key, where, message):
    data = json.loads(FORMAT_2.read_text(encoding="utf-8"))
    _bad(data, key)
    path = tmp_path / "t.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(LatencyTableError) as caught:
        LatencyTable.load(path)
    text = str(caught.value)
    assert "\n" not in text and text.startswith(f"{path}: ") and text.endswith(message), text
    assert re.match(rf"{re.escape(str(path))}: {where}", text), text


def test_a_table_that_is_not_json_or_not_there_is_one_line(tmp_path):
    (tmp_path / "t.json").write_text("{", encoding="utf-8")
    with pytest.raises(LatencyTableError, match=r"t\.json: not a latency table \(JSON: "):
        LatencyTable.load(tmp_path / "t.json")
    with pytest.raises(LatencyTableError, match=r"none\.json: no such latency table"):
        LatencyTable.load(tmp_path / "none.json")


def test_the_latency_metric_keeps_its_table_in_the_prune_context(fake_timing):
    spec = slimspec.load_spec("digits_lenet")
    options = {"latency_table": str(FORMAT_2), "allow_foreign_table": True}  # measured elsewhere (2 threads)
    metric, context = get_target("latency"), TargetContext(options=dict(options))
    metric.prepare(spec.ir, context)
    assert context.options == options
    assert context.cache["latency"] == LatencyTable.load(FORMAT_2)
    assert metric.measure(spec.ir, context) == pytest.approx(2.5)
    assert context.provenance["latency"]["table_sha256"] == LatencyTable.load(FORMAT_2).sha256


@pytest.fixture
def runtime_registry(monkeypatch):
    monkeypatch.setattr(runtimes_mod._RUNTIMES, "_items", dict(runtimes_mod._RUNTIMES._items))


def test_layer_timing_goes_through_the_runtimes_layer_hook(runtime_registry):
    seen = []

    def hook(module, shape, x, threads):
        seen.append(("layer", module, shape, tuple(x.shape), threads))
        return lambda: module(x)

    def prepare(module, x, threads):
        seen.append(("prepare", module, None, tuple(x.shape), threads))
        return lambda: module(x)

    runtimes_mod.register_runtime("hooked", "a runtime with its own way to run table layers", layer=hook)(prepare)
    runtimes_mod.register_runtime("plain", "a runtime without one")(prepare)
    shape = LayerShape("conv", True, 3, 1, 1, (6, 6), 2)
    for runtime in ("hooked", "plain"):
        run = table_mod._layer_runner(shape, 4, 8, runtime, 2, 1)
        assert table_mod._time_once(run, 0.001, 1) > 0
    (kind, module, got, x_shape, threads), = [s for s in seen if s[0] == "layer"][:1]
    assert got == shape and x_shape == (2, 4, 6, 6) and threads == 1
    assert module[0].in_channels == 4 and module[0].out_channels == 8 and module[0].groups == 2
    assert isinstance(module[1], torch.nn.ReLU)
    assert [s[0] for s in seen] == ["layer", "prepare"]  # "plain" ran the layer as its own prepare does


@pytest.mark.parametrize("shape, cin, cout", [(LayerShape("conv", True, 3, 2, 1, (9, 9), 4), 8, 12),
                                               (LayerShape("linear", False), 16, 5)])
def test_the_onnxruntime_layer_hook_runs_the_same_layer(shape, cin, cout):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    module = shape.module(cin, cout).eval()
    x = torch.randn(3, *shape.input_shape(cin))
    runtime = runtimes_mod.get_runtime("onnxruntime")
    assert runtime.layer is not None
    (out,) = runtime.prepare_layer(module, shape, x, 1)()
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(out), module(x), atol=1e-5)


@pytest.mark.parametrize("shape", [LayerShape("conv", True, (1, 3), 2, (0, 1), (9, 8), 1),
                                   LayerShape("conv", False, (3, 1), (1, 2), (1, 0), (7, 6), 1)])
def test_the_onnxruntime_layer_hook_takes_non_square_kernels_strides_and_pads(shape):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    module = shape.module(4, 7).eval()
    x = torch.randn(2, *shape.input_shape(4))
    (out,) = runtimes_mod.get_runtime("onnxruntime").prepare_layer(module, shape, x, 1)()
    with torch.no_grad():
        expected = module(x)
    assert out.shape == tuple(expected.shape) and torch.allclose(torch.from_numpy(out), expected, atol=1e-5)
