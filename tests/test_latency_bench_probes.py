"""Issue 15, latency / bench / threads: tables keyed by machine, threads, runtime and batch; profiles
robust to a loaded machine (interleaved repeats, one thread, spread and sum checks, nothing cached
when refused); one --threads option everywhere; prune prints the latency it reached; bench refuses
what it cannot compare or honour. No test asserts a timing: clocks are replaced where it matters."""
from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
import torch

import slimspec
import slimspec.pruning.api as prune_api
from slimspec.cli.main import cli
from slimspec.cli.options import THREADS
from slimspec.errors import PruneError
from slimspec.latency import Timing
from slimspec.latency import measure as measure_mod
from slimspec.latency import table as table_mod
from slimspec.latency.table import LatencyTable, LatencyTableError, Machine, ProfileError
from slimspec.latency.timing import LatencyError, threads_problem, torch_threads
from slimspec.workflows import bench as bench_mod
from slimspec.workflows.bench import bench
from slimspec.workflows.sensitivity import sensitivity

from .conftest import cli_run as invoke
from .test_latency_target import FORMAT_2, FakeRunner, expected, fake_timing, synthetic_ms  # noqa: F401

GiB = 1024 ** 3


def one_line_error(result, code: int = 1) -> str:
    """The error line of a failed command: one ``error:`` line, the last on stderr, no traceback, exit ``code``
    (progress lines may come before it)."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    return errors[0]


# ---------------------------------------------------------------- --threads: one option, one rule
THREAD_COMMANDS = ("train", "finetune", "eval", "demo", "bench", "prune", "sensitivity", "export")


@pytest.mark.parametrize("name", THREAD_COMMANDS)
def test_every_command_takes_the_one_threads_option(name):
    (param,) = [p for p in cli.commands[name].params if p.name == "threads"]
    assert param.type is THREADS and param.opts == ["--threads"]


@pytest.mark.parametrize("value", ["-1", "0", "two", "1.5"])
@pytest.mark.parametrize("command", [("bench", "digits_mlp"), ("prune", "w.safetensors", "--dry-run"),
                                     ("sensitivity", "w.safetensors", "--data", "digits"),
                                     ("export", "digits_mlp", "-o", "x.onnx"), ("eval", "w.safetensors")])
def test_a_bad_thread_count_is_the_same_usage_error_everywhere(command, value):
    result = invoke(*command, "--threads", value)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"threads must be an integer >= 1, got {value if value in ('two', '1.5') else int(value)!r}" in result.output


def test_the_library_applies_the_same_rule():
    assert threads_problem(None) is None and threads_problem(3) is None
    assert threads_problem(-1) == "threads must be an integer >= 1, got -1"
    assert threads_problem(True) == "threads must be an integer >= 1, got True"
    with pytest.raises(LatencyError, match="threads must be an integer >= 1, got -1"):
        with torch_threads(-1):
            pass
    with pytest.raises(LatencyError, match="got 0"):  # 0 is no longer 'the default'
        with torch_threads(0):
            pass
    with pytest.raises(LatencyError, match="threads must be an integer >= 1, got -1"):
        bench(["digits_mlp"], batches=(1,), threads=-1, min_run_time=0.01)
    from slimspec.training.config import threads_problem as training_rule

    assert training_rule is threads_problem  # training, evaluate and the demo share it


def test_sensitivity_runs_on_its_threads_and_refuses_bad_ones(trained_weights, monkeypatch):
    weights = trained_weights("digits_vgg")
    with pytest.raises(LatencyError, match="threads must be an integer >= 1, got 0"):
        sensitivity(weights, "digits", ratios=[0.5], threads=0)
    seen = []
    real = sensitivity.__globals__["evaluate_model"]

    def evaluate(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr("slimspec.workflows.sensitivity.evaluate_model", evaluate)
    before = torch.get_num_threads()
    result = invoke("sensitivity", weights, "--data", "digits", "--ratios", "0.5", "--slot", "cfg[0]",
                    "--limit", "20", "--threads", "1", "--json")
    assert result.exit_code == 0, result.output
    assert seen and set(seen) == {1} and torch.get_num_threads() == before


def test_prune_and_export_run_on_their_threads(trained_weights, tmp_path, monkeypatch):
    seen = []
    real = prune_api.prune

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr("slimspec.pruning.api.prune", spy)
    before = torch.get_num_threads()
    result = invoke("prune", trained_weights("digits_vgg"), "-m", "l1", "--ratio", "0.5", "--dry-run",
                    "--threads", "1")
    assert result.exit_code == 0, result.output
    assert seen == [1] and torch.get_num_threads() == before
    out = tmp_path / "m.pt"
    result = invoke("export", "digits_mlp", "-o", out, "--threads", "1")
    assert result.exit_code == 0, result.output
    assert out.is_file() and torch.get_num_threads() == before


# ---------------------------------------------------------------- tables: keys, foreign tables
def _foreign_table(tmp_path: Path, **changes) -> Path:
    """The digits_lenet table, re-keyed as if measured on this machine and then changed."""
    table = LatencyTable.load(FORMAT_2)
    machine = Machine.current(1)
    for key in ("cpu", "cores", "threads", "system", "torch"):
        if key in changes:
            machine = Machine(**{**machine.as_dict(), key: changes.pop(key)})
    data = {**table.as_dict(), "machine": machine.as_dict(), **changes}
    path = tmp_path / "lenet_table.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_a_table_keyed_as_this_prune_is_used(trained_weights, tmp_path):
    path = _foreign_table(tmp_path)
    result = slimspec.prune(trained_weights("digits_lenet"), "l1", target="latency=0.6",
                            target_options={"latency_table": str(path)})
    measured = result.spec.data["pruned"]["measured"]["latency"]
    assert "foreign" not in measured and measured["machine"]["threads"] == 1


@pytest.mark.parametrize("changes, listed", [
    ({"threads": 4}, "threads 4 (this prune: 1)"),
    ({"cpu": "Some Other CPU"}, "cpu 'Some Other CPU' (this prune: "),
    ({"torch": "1.0.0"}, "torch '1.0.0' (this prune: "),
    ({"runtime": "onnxruntime"}, "runtime 'onnxruntime' (this prune: 'eager')"),
    ({"batch": 8}, "batch 8 (this prune: 1)"),
])
def test_a_table_measured_otherwise_is_refused_in_one_line(trained_weights, tmp_path, changes, listed):
    path = _foreign_table(tmp_path, **changes)
    weights = trained_weights("digits_lenet")
    with pytest.raises(PruneError, match="measured otherwise than this prune runs") as caught:
        slimspec.prune(weights, "l1", target="latency=0.6", target_options={"latency_table": str(path)})
    assert listed in str(caught.value) and "--allow-foreign-table" in str(caught.value)
    line = one_line_error(invoke("prune", weights, "-m", "l1", "--target", "latency=0.6", "--latency-table", path,
                                 "--dry-run"))
    assert line.startswith(f"error: {path}: the latency table was measured otherwise") and listed in line


def test_the_run_says_its_runtime_batch_and_threads(trained_weights, tmp_path):
    path = _foreign_table(tmp_path, threads=4, runtime="onnxruntime", batch=8)
    result = invoke("prune", trained_weights("digits_lenet"), "-m", "l1", "--target", "latency=0.6",
                    "--latency-table", path, "--threads", "4", "--latency-runtime", "onnxruntime",
                    "--latency-batch", "8", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "warning" not in result.stderr


def test_a_foreign_table_is_accepted_when_asked_warned_and_recorded(trained_weights, tmp_path):
    path = _foreign_table(tmp_path, threads=4)
    weights = trained_weights("digits_lenet")
    out = tmp_path / "p.yaml"
    result = invoke("prune", weights, "-m", "l1", "--target", "latency=0.6", "--latency-table", path,
                    "--allow-foreign-table", "-o", out)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: latency table")]
    assert len(warnings) == 1 and "threads 4 (this prune: 1)" in warnings[0]
    recorded = slimspec.load_spec(out).data["pruned"]["measured"]["latency"]
    assert recorded["foreign"] == {"threads": {"table": 4, "run": 1}}


def test_table_differences_list_every_part_of_the_key():
    table = LatencyTable.load(FORMAT_2)
    here = Machine(**{**table.machine.as_dict(), "threads": 3, "cpu": "x"})
    assert table.differences(table.machine, table.runtime, table.batch) == {}
    assert table.differences(here, "onnxruntime", 4) == {
        "cpu": {"table": table.machine.cpu, "run": "x"}, "threads": {"table": table.machine.threads, "run": 3},
        "runtime": {"table": "eager", "run": "onnxruntime"}, "batch": {"table": 1, "run": 4}}


# ---------------------------------------------------------------- bad table files
def _broken(tmp_path: Path, key: str) -> Path:
    data = json.loads(FORMAT_2.read_text(encoding="utf-8"))
    entry = next(iter(data["entries"].values()))
    if key == "scale 0":
        data["scale"] = 0
    elif key == "empty entries":
        data["entries"] = {}
    elif key == "empty layers and entries":
        data["entries"], data["layers"] = {}, {}
    elif key == "ragged grid":
        entry["ms"][0] = entry["ms"][0][:2]
    elif key == "negative ms":
        entry["ms"][0][0] = -0.5
    elif key == "nan ms":
        entry["ms"][0][0] = float("nan")
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.mark.parametrize("key, message", [
    ("scale 0", "scale: expected a factor (a finite number > 0), got 0"),
    ("empty entries", "entries: expected at least one entry, got an empty mapping"),
    ("empty layers and entries", "entries: expected at least one entry, got an empty mapping"),
    ("ragged grid", "expected 5 times (one per cout), got a list of 2"),
    ("negative ms", "expected a time in ms (a finite number > 0), got -0.5"),
    ("nan ms", "expected a time in ms (a finite number > 0), got NaN"),
])
def test_a_broken_table_is_one_line_in_prune(trained_weights, tmp_path, key, message):
    path = _broken(tmp_path, key)
    with pytest.raises(LatencyTableError, match=message.replace("(", r"\(").replace(")", r"\)")):
        LatencyTable.load(path)
    line = one_line_error(invoke("prune", trained_weights("digits_lenet"), "-m", "l1", "--target", "latency=0.5",
                                 "--latency-table", path, "--dry-run"))
    assert line.startswith(f"error: {path}: ") and line.endswith(message)


# ---------------------------------------------------------------- profiling on a loaded machine
def cached() -> list[Path]:
    folder = table_mod.cache_dir()
    return sorted(folder.glob("*.json")) if folder.exists() else []


def test_profiling_interleaves_repeats_keeps_minima_and_runs_on_one_thread(fake_timing, monkeypatch):
    order, threads = [], []
    noise = iter([3.0, 1.0, 1.2] * 1000)  # each sample: a slow repeat, the quiet one, a near one

    def clock(run, min_run_time, n):
        order.append(run.what)
        threads.append((n, torch.get_num_threads()))
        return run.ms * next(noise)

    monkeypatch.setattr(table_mod, "_time_once", clock)
    table, _ = table_mod.table_for_spec("digits_mlp")
    assert table.machine.threads == 1 and set(threads) == {(1, 1)}
    first = [w for w in order if w != "network"][:10]
    assert first == [(64, 16), (64, 32), (64, 64), (64, 96), (64, 128)] * 2  # round robin over the grid
    assert order.count("network") == table_mod.REPEATS and order[0] == "network" and order[-1] == "network"
    spec = slimspec.load_spec("digits_mlp")
    layer = table.entries[table.layers["layers.1.linear"].entry]
    # each sample keeps the quietest of its repeats (x 1.0 of the true time)
    assert layer.ms[2][3] == pytest.approx(synthetic_ms(layer.shape, layer.cin[2], layer.cout[3]))
    assert table.scale == pytest.approx(1.25) and table.estimate(spec.ir) == pytest.approx(table.total_ms)


def test_a_profile_whose_fastest_times_do_not_recur_is_refused_and_not_cached(fake_timing, monkeypatch):
    runners: list[FakeRunner] = []  # kept alive, each counting its own timings

    def clock(run, *args):  # each sample's first repeat is quiet, every later one hit by a busy spell
        if not hasattr(run, "count"):
            run.count = 0
            runners.append(run)
        run.count += 1
        return run.ms * (1.0 if run.count == 1 else 40.0)

    monkeypatch.setattr(table_mod, "_time_once", clock)
    with pytest.raises(ProfileError, match=r"^digits_mlp: profile refused, the machine is too busy: layers\.0\.linear "
                                           r"at 64x16 channels took .* ms over 9 repeats and its fastest time did not "
                                           r"recur \(the next fastest 40x it; at most 2x\); nothing cached"):
        table_mod.table_for_spec("digits_mlp")
    assert cached() == []
    line = one_line_error(invoke("bench", "--profile", "digits_mlp", "--batch", "1"))
    assert "profile refused, the machine is too busy" in line


def test_a_disturbed_sample_is_timed_again_until_its_fastest_time_recurs(fake_timing, monkeypatch):
    runners: list[FakeRunner] = []  # kept alive, each counting its own timings
    slow = {(64, 128): [30.0, 1.0, 25.0, 1.1]}  # one sample: its quiet time stands alone until the fourth repeat

    def clock(run, *args):
        if not hasattr(run, "count"):
            run.count = 0
            runners.append(run)
        run.count += 1
        return run.ms * slow.get(run.what, [1.0] * 9)[run.count - 1]

    monkeypatch.setattr(table_mod, "_time_once", clock)
    table, _ = table_mod.table_for_spec("digits_mlp")
    counts = [(run.what, run.count) for run in runners]
    assert [c for what, c in counts if what == (64, 128)] == [4] and dict(counts)["network"] == 3
    assert sorted(c for _, c in counts)[:-1] == [3] * (len(counts) - 1)  # only it was timed again
    first = table.entries[table.layers["layers.0.linear"].entry]
    assert first.ms[0][4] == pytest.approx(synthetic_ms(first.shape, 64, 128))  # the minimum, once it recurred


def test_a_profile_whose_layers_do_not_add_up_to_the_network_is_refused(fake_timing, monkeypatch):
    # the layers as measured, the network 50x slower than they add up to (a loaded machine's 58 ms network)
    monkeypatch.setattr(table_mod, "_network_runner", lambda model, ir, *a: FakeRunner(50 * expected(ir, 0.0)))
    with pytest.raises(ProfileError, match=r"the network measured .* ms but its layers add up to .* ms "
                                           r"\(50x; at most 8x either way\)"):
        table_mod.table_for_spec("digits_mlp")
    assert cached() == []
    monkeypatch.setattr(table_mod, "_network_runner", lambda model, ir, *a: FakeRunner(0.01 * expected(ir, 0.0)))
    with pytest.raises(ProfileError, match=r"\(0\.01x; at most 8x either way\)"):
        table_mod.table_for_spec("digits_mlp")


def test_a_cached_table_keyed_otherwise_is_profiled_again(fake_timing):
    table, path = table_mod.table_for_spec("digits_mlp")
    samples = len(fake_timing)
    broken = {**table.as_dict(), "machine": {**table.machine.as_dict(), "threads": 7}}
    path.write_text(json.dumps(broken), encoding="utf-8")
    again, again_path = table_mod.table_for_spec("digits_mlp")
    assert again_path == path and len(fake_timing) == 2 * samples and again.machine.threads == 1
    path.write_text("{", encoding="utf-8")  # unreadable: profiled again, not an error forever
    assert table_mod.table_for_spec("digits_mlp")[0].machine.threads == 1 and len(fake_timing) == 3 * samples


def test_bench_profile_takes_threads_and_min_run_time(fake_timing, monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(table_mod, "_time_once", lambda run, min_run_time, threads: seen.append(
        (min_run_time, threads)) or run.ms)
    result = invoke("bench", "--profile", "digits_mlp", "--batch", "1", "--threads", "2", "--min-run-time", "0.3",
                    "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["threads"] == 2 and data["machine"]["threads"] == 2
    # 0.3 s a sample (layers and network alike), in three repeats
    assert seen and {threads for _, threads in seen} == {2} and all(t == pytest.approx(0.1) for t, _ in seen)


# ---------------------------------------------------------------- prune --target latency=R
def test_prune_prints_the_latency_estimate_it_reached(trained_weights, tmp_path):
    path = _foreign_table(tmp_path)
    weights = trained_weights("digits_lenet")
    table = LatencyTable.load(path)
    result = invoke("prune", weights, "-m", "l1", "--target", "latency=0.6", "--latency-table", path, "--dry-run")
    assert result.exit_code == 0, result.output
    (line,) = [line for line in result.stdout.splitlines() if line.startswith("latency ")]
    pruned = slimspec.prune(weights, "l1", target="latency=0.6", target_options={"latency_table": str(path)})
    before, after = table.estimate(slimspec.load_spec("digits_lenet").ir), table.estimate(pruned.spec.ir)
    assert line.startswith(f"latency {before:.4g} ms -> {after:.4g} ms  (estimated from the latency table, "
                           f"ratio {after / before:.3f}")
    assert line.endswith("; eager, batch 1, 1 thread)") and after / before <= 0.6
    recorded = pruned.spec.data["pruned"]["measured"]["latency"]["estimate_ms"]
    assert recorded == {"before": pytest.approx(before), "after": pytest.approx(after)}
    data = json.loads(invoke("prune", weights, "-m", "l1", "--target", "latency=0.6", "--latency-table", path,
                             "--dry-run", "--json").stdout)
    assert data["latency"]["ratio"] == pytest.approx(after / before, rel=1e-4)
    assert data["latency"]["estimate_ms"]["after"] == pytest.approx(after) and data["latency"]["threads"] == 1


@pytest.mark.parametrize("flags, message", [
    (("--target", "macs=0.5", "--latency-table", "t.json"),
     "--latency-table is read by --target latency=R only (this prune's target is macs): leave it out"),
    (("--ratio", "0.5", "--latency-table", "t.json"),
     "--latency-table is read by --target latency=R only (this prune has no target): leave it out"),
    (("--ratio", "0.5", "--allow-foreign-table"), "--allow-foreign-table is read by --target latency=R only"),
    (("--target", "params=0.5", "--latency-runtime", "onnxruntime"), "--latency-runtime is read by --target latency=R"),
    (("--target", "macs=0.5", "--latency-batch", "4"), "--latency-batch is read by --target latency=R"),
])
def test_latency_options_without_a_latency_target_are_refused(trained_weights, flags, message):
    line = one_line_error(invoke("prune", trained_weights("digits_lenet"), "-m", "l1", *flags, "--dry-run"))
    assert line.startswith(f"error: {message}") and line.endswith(": leave it out")


def test_a_target_option_no_target_reads_is_refused():
    with pytest.raises(PruneError, match="target option 'latency_tabel' is read by no target"):
        slimspec.prune("unused.safetensors", "l1", target="latency=0.5", target_options={"latency_tabel": "t.json"})


# ---------------------------------------------------------------- bench
@pytest.fixture
def steady_clock(monkeypatch):
    """bench's interleaved timer replaced: 2 ms for the first model, 1 ms for the others, small spread."""
    calls = []

    def timer(runners, rounds, min_run_time, threads):
        calls.append(len(runners))
        return [Timing(2.0 if i == 0 else 1.0, 0.1, 3, 1.9 if i == 0 else 0.9) for i in range(len(runners))]

    monkeypatch.setattr(bench_mod, "time_interleaved", timer)
    return calls


@pytest.fixture
def wide_vgg(tmp_path):
    """digits_vgg on 1x16x16 inputs (its global average pool takes any size)."""
    path = tmp_path / "wide_vgg.yaml"
    path.write_text(slimspec.load_spec("digits_vgg").text.replace("input: [1, 8, 8]", "input: [1, 16, 16]"))
    return path


def test_bench_refuses_models_with_different_inputs(steady_clock, wide_vgg):
    with pytest.raises(LatencyError, match=r"the models take different inputs \(digits_vgg 1x8x8, wide_vgg 1x16x16\)"):
        bench(["digits_vgg", wide_vgg], batches=(1,))
    line = one_line_error(invoke("bench", "digits_mlp", "resnet20", "--batch", "1"))
    assert line == ("error: the models take different inputs (digits_mlp 1x8x8, resnet20 3x32x32): their latencies "
                    "do not compare; give --input C,H,W to time them all on one input")
    assert steady_clock == []


def test_bench_times_every_model_on_the_given_input(steady_clock, wide_vgg):
    result = invoke("bench", "digits_vgg", wide_vgg, "--batch", "1", "--input", "1,16,16", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [m["input"] for m in data["models"]] == [[1, 16, 16], [1, 16, 16]]
    assert data["models"][0]["macs"] == data["models"][1]["macs"]  # counted at the input they ran on
    assert data["ratios"][0]["mac_ratio"] == 1.0


def test_bench_refuses_an_input_a_model_cannot_take(steady_clock):
    line = one_line_error(invoke("bench", "digits_mlp", "digits_vgg", "--batch", "1", "--input", "3,32,32"))
    assert line.startswith("error: digits_mlp: takes 1x8x8 inputs and cannot run on 3x32x32 (--input): ")


def test_bench_warns_when_timings_spread_more_than_their_median(monkeypatch):
    monkeypatch.setattr(bench_mod, "time_interleaved", lambda runners, **k: [Timing(1.0, 1.5, 3, 0.5), Timing(1.0, 0.2, 3, 0.9)])
    result = invoke("bench", "digits_mlp", "digits_mlp", "--batch", "1")
    assert result.exit_code == 0, result.output
    (warning,) = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warning.startswith("warning: digits_mlp (eager, batch 1): the timings spread more than their median "
                              "(IQR 1.500 ms > median 1.000 ms)")
    report = bench(["digits_mlp", "digits_mlp"], batches=(1,))
    assert report.warnings == [warning] and report.as_dict()["warnings"] == [warning]


def test_bench_refuses_a_batch_that_cannot_fit_before_allocating_it(monkeypatch, steady_clock):
    monkeypatch.setattr(measure_mod, "available_memory", lambda: 8 * GiB)
    line = one_line_error(invoke("bench", "digits_mlp", "--batch", "1000000000"))
    assert line.startswith("error: batch 1000000000: one forward pass of digits_mlp needs at least ")
    assert line.endswith("(input and activations), more than the 8.0 GiB of memory available")
    line = one_line_error(invoke("bench", "--profile", "digits_mlp", "--batch", "1000000000"))
    assert line.startswith("error: batch 1000000000: one forward pass of digits_mlp needs at least ")
    assert steady_clock == []


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "soon"])
def test_bench_refuses_a_run_time_that_is_not_a_positive_number_of_seconds(value):
    result = invoke("bench", "digits_mlp", "--min-run-time", value)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"expected a finite number of seconds > 0, got {value!r}" in result.output
    with pytest.raises(LatencyError, match="min_run_time must be a finite number of seconds > 0"):
        bench(["digits_mlp"], batches=(1,), min_run_time=float(value) if value != "soon" else -1.0)


@pytest.mark.parametrize("args, message", [
    (("digits_mlp", "-o", "t.json"), "--out is read by --profile only (it writes a latency table)"),
    (("digits_mlp", "--force"), "--force is read by --profile only"),
    (("--profile", "digits_mlp", "--batch", "1", "--no-fold-bn"), "--no-fold-bn is not read by --profile"),
    (("--profile", "digits_mlp", "--batch", "1", "--input", "1,8,8"), "--input is not read by --profile"),
])
def test_bench_refuses_options_it_would_ignore(tmp_path, args, message):
    result = invoke("bench", *args)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (Path.cwd() / "t.json").exists()


def test_bench_profile_defaults_to_batch_one_and_bench_to_one_and_32(fake_timing, steady_clock):
    result = invoke("bench", "--profile", "digits_mlp", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["batch"] == 1
    data = json.loads(invoke("bench", "digits_mlp", "--json").stdout)
    assert [r["batch"] for r in data["rows"]] == [1, 32]
