"""slimspec bench: timing through torch.utils.benchmark, MACs beside latency, ratios of two models."""
from __future__ import annotations

import json

import pytest

import slimspec
from slimspec.ir import count_macs
from slimspec.latency import Timing, time_call
from slimspec.training import latency as training_latency
from slimspec.workflows.bench import bench

from .conftest import cli_run as invoke


def test_time_call_warms_up_then_measures_blocks():
    calls = []
    timing = time_call(lambda: calls.append(1), warmup=4, min_run_time=0.001, min_blocks=10, block_s=1e-4)
    assert isinstance(timing, Timing) and timing.runs >= 10
    assert 0 < timing.min_ms <= timing.median_ms and timing.iqr_ms >= 0
    assert len(calls) >= 4 + 2 + 10  # warm-up, two block-size probes, at least ten blocks


def test_bench_reports_macs_rows_and_ratios_of_two_models(trained_weights, tmp_path):
    weights = trained_weights("digits_vgg")
    _, pruned = slimspec.prune(weights, "slimming", target="macs=0.5").save(tmp_path / "p.yaml")
    report = bench([weights, pruned], batches=(1, 3), runtimes=("eager", "channels-last"), threads=1,
                   min_run_time=0.01, rounds=2)
    macs = [m["macs"] for m in report.models]
    assert macs == [count_macs(slimspec.load_spec("digits_vgg").ir), slimspec.load_model(pruned)[1].data["pruned"]["macs"]["after"]]
    assert [(r["model"], r["runtime"], r["batch"]) for r in report.rows][:4] == [
        (weights.stem, "eager", 1), ("p", "eager", 1), (weights.stem, "eager", 3), ("p", "eager", 3)]
    assert len(report.rows) == 8 and len(report.ratios) == 4
    rows = {(r["model"], r["runtime"], r["batch"]): r["median_ms"] for r in report.rows}
    for ratio in report.ratios:
        speedup = rows[(weights.stem, ratio["runtime"], ratio["batch"])] / rows[("p", ratio["runtime"], ratio["batch"])]
        assert ratio["speedup"] == pytest.approx(speedup)
        assert ratio["mac_ratio"] == pytest.approx(macs[0] / macs[1])
        assert ratio["fraction_of_mac_ratio"] == pytest.approx(speedup * macs[1] / macs[0])
        minima = {(r["model"], r["runtime"], r["batch"]): r["min_ms"] for r in report.rows}
        assert ratio["speedup_of_minima"] == pytest.approx(
            minima[(weights.stem, ratio["runtime"], ratio["batch"])] / minima[("p", ratio["runtime"], ratio["batch"])])
    text = report.table()
    assert f"{macs[0]:,}" in text and "of MAC ratio" in text


def test_bench_cli_json_labels_spec_names_apart():
    result = invoke("bench", "digits_mlp", "digits_mlp", "--batch", "2", "--threads", "1",
                    "--min-run-time", "0.01", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # stderr may warn of spread timings on a busy machine
    assert [m["label"] for m in data["models"]] == ["digits_mlp", "digits_mlp#2"]
    assert data["threads"] == 1 and {r["runtime"] for r in data["rows"]} == {"eager"}
    assert data["ratios"][0]["mac_ratio"] == 1.0


def test_bench_in_onnxruntime():
    report = bench(["digits_mlp"], batches=(2,), runtimes=("onnxruntime",), threads=1, min_run_time=0.01)
    assert [(r["runtime"], r["batch"]) for r in report.rows] == [("onnxruntime", 2)]
    assert report.rows[0]["median_ms"] > 0 and report.ratios == []


@pytest.mark.parametrize("args, message", [
    (("digits_mlp", "--runtime", "tvm"), "unknown runtime 'tvm' (choose from channels-last, eager, onnxruntime)"),
    (("digits_mlp", "--batch", "0"), "expected positive integers separated by commas, got '0'"),
    ((), "give one or more MODELS"),
])
def test_bench_cli_rejects_bad_options(args, message):
    result = invoke("bench", *args)
    assert result.exit_code == 2 and message in result.output


def test_bench_missing_weights_file_is_one_line(tmp_path):
    result = invoke("bench", tmp_path / "nope.safetensors")
    assert result.exit_code == 1 and "nope.safetensors: no such weights file" in result.output


def test_training_latency_is_measured_by_the_bench_timer(monkeypatch):
    seen = {}

    def fake(model, input_shape, **options):
        seen.update(options, input_shape=input_shape)
        return Timing(1.5, 0.1, 12)

    monkeypatch.setattr(training_latency, "measure_model", fake)
    model = slimspec.build("digits_mlp", seed=0)
    assert training_latency.measure_latency(model, (1, 8, 8), batch_size=4) == 1.5
    assert seen["batch_size"] == 4 and seen["runtime"] == "eager" and seen["input_shape"] == (1, 8, 8)


def test_gpu_train_benchmark_runs_both_loops_in_tiny_mode(capsys):
    import importlib.util
    from pathlib import Path

    import torch

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_train.py"
    spec = importlib.util.spec_from_file_location("gpu_train", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    report = module.main(["--tiny", "--json"])
    assert torch.get_num_threads() == threads  # tiny mode's single thread is not left behind
    assert json.loads(capsys.readouterr().out) == report
    assert report["spec"] == "tiny_vgg" and report["device"] == "cpu" and report["images"] == 64
    assert report["slimspec_img_per_s"] > 0 and report["reference_img_per_s"] > 0
    assert report["speedup"] == pytest.approx(report["slimspec_img_per_s"] / report["reference_img_per_s"])
