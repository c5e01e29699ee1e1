"""Latency tables (NetAdapt-style) and `--target latency=R`: estimates on synthetic tables, caching, CLI."""
from __future__ import annotations

import json

import pytest

import slimspec
from slimspec.errors import PruneError
from slimspec.latency import Timing
from slimspec.latency import table as table_mod
from slimspec.latency.table import architecture_sha, estimate, interpolate, layer_signatures, save_table

from .conftest import cli_run as invoke


def synthetic_ms(sig: dict, cin: int, cout: int) -> float:
    """A latency model that is bilinear in the widths (so bilinear interpolation is exact)."""
    pixels = sig["hw"][0] * sig["hw"][1] if sig["op"] == "conv" else 1
    return 1e-4 * cin * cout * pixels + 0.01


@pytest.fixture
def fake_timing(monkeypatch, tmp_path):
    """Profile with the synthetic model instead of a clock; cache in tmp; count layer timings."""
    calls = []

    def time_layer(sig, cin, cout, runtime, batch, threads, min_run_time):
        calls.append((cin, cout))
        return synthetic_ms(sig, cin, cout)

    monkeypatch.setenv("SLIMSPEC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(table_mod, "_time_layer", time_layer)
    monkeypatch.setattr(table_mod, "measure_model",  # the whole network: its layers + 25% overhead
                        lambda model, *a, **k: Timing(1.25 * expected(model.ir, 0.0), 0.0, 1, 1.25 * expected(model.ir, 0.0)))
    return calls


def expected(ir, overhead: float) -> float:
    return overhead + sum(synthetic_ms(l["sig"], l["cin"], l["cout"]) for l in layer_signatures(ir).values())


def test_interpolation_is_bilinear_and_extrapolates_linearly_never_below_zero():
    entry = {"cin": [4, 8], "cout": [2, 4, 8], "ms": [[1.0, 2.0, 4.0], [2.0, 4.0, 8.0]]}
    assert interpolate(entry, 8, 4) == 4.0
    assert interpolate(entry, 6, 3) == pytest.approx(2.25)  # (1.5 + 3) / 2
    assert interpolate(entry, 2, 4) == pytest.approx(1.0)  # 2 - 2 x 0.5, extrapolated along cin
    steep = {"cin": [4, 8], "cout": [4, 8], "ms": [[1.0, 3.0], [3.0, 5.0]]}
    assert interpolate(steep, 1, 1) == 0.0  # -2 extrapolated: clamped
    assert interpolate({"cin": [3], "cout": [2, 4], "ms": [[1.0, 3.0]]}, 3, 3) == pytest.approx(2.0)


def test_profile_shares_shapes_caches_and_estimates_pruned_networks(fake_timing):
    spec = slimspec.load_spec("digits_vgg")
    table, path = table_mod.table_for_spec(spec)
    assert path.parent == table_mod.cache_dir() and path.name.endswith("-eager-b1.json")
    # the first conv reads the fixed 1-channel input: only its output width is sampled
    first = table["entries"][table["layers"]["features.0.conv"]["entry"]]
    assert first["cin"] == [1] and first["cout"] == [4, 8, 16, 24, 32]
    sampled = len(fake_timing)
    assert table["scale"] == pytest.approx(1.25)
    assert estimate(table, spec.ir) == pytest.approx(table["total_ms"])
    # a pruned architecture (other widths, between grid points): the exact bilinear model
    pruned = slimspec.load_spec(spec.text.replace("cfg: [32, 32, M, 64, 64, M, 128]", "cfg: [11, 29, M, 40, 17, M, 100]"))
    assert estimate(table, pruned.ir) == pytest.approx(1.25 * expected(pruned.ir, 0.0))
    # cached: the same architecture under another name and comments is not profiled again
    renamed = slimspec.load_spec("# copy\n" + spec.text.replace("name: digits_vgg", "name: other"))
    assert architecture_sha(renamed.ir) == architecture_sha(spec.ir)
    again, again_path = table_mod.table_for_spec(renamed)
    assert again_path == path and len(fake_timing) == sampled and again == table


def test_prune_target_latency_meets_the_estimate_and_records_the_table(fake_timing, trained_weights, tmp_path):
    spec = slimspec.load_spec("digits_vgg")
    table_path = tmp_path / "t.json"
    save_table(table_mod.table_for_spec(spec)[0], table_path)
    weights = trained_weights("digits_vgg")
    result = slimspec.prune(weights, "slimming", target="latency=0.5", target_options={"latency_table": str(table_path)})
    table = json.loads(table_path.read_text())
    ratio = estimate(table, result.spec.ir) / estimate(table, spec.ir)
    assert 0.45 < ratio <= 0.5  # the smallest pruning ratio that reaches the target
    recorded = result.spec.data["pruned"]["measured"]["latency"]  # provenance: what the target was measured with
    assert recorded["runtime"] == table["runtime"] and recorded["machine"] == table["machine"]
    assert recorded["table_sha256"] == table_mod.table_sha(table)
    cli_result = invoke("prune", weights, "-m", "slimming", "--target", "latency=0.5", "--latency-table",
                        table_path, "--dry-run", "--json")
    assert cli_result.exit_code == 0
    assert json.loads(cli_result.output)["macs"]["after"] == result.macs[1]


def test_a_table_of_another_architecture_is_refused(fake_timing, trained_weights, tmp_path):
    table_path = tmp_path / "t.json"
    save_table(table_mod.table_for_spec(slimspec.load_spec("digits_resnet"))[0], table_path)
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
