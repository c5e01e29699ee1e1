"""Concurrent writers: two processes on one output (or one run folder) -> exactly one proceeds."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import slimspec
from slimspec.cli.main import cli
from slimspec.errors import OutputExistsError
from slimspec.utils.fileio import RUN_LOCK_NAME, OutputBusyError, OutputTransaction, claim_run_dir
from slimspec.weights import embedded_spec_text, read_weights

from .conftest import randomize

HOLD_OUTPUTS = textwrap.dedent("""
    import sys
    from slimspec.utils.fileio import OutputTransaction
    with OutputTransaction() as tx:
        for path in sys.argv[1:]:
            tx.reserve(path)
        print("locked", flush=True)
        sys.stdin.readline()
        for path in sys.argv[1:]:
            tx.write(path, "written by the holder\\n")
""")

HOLD_RUN_DIR = textwrap.dedent("""
    import os, sys
    from slimspec.utils.fileio import claim_run_dir
    claim = claim_run_dir(sys.argv[1])
    (claim.path / "run.json").write_text("{}")
    print("claimed", flush=True)
    if sys.stdin.readline().strip() == "die":
        os._exit(9)  # killed: the lock file stays, the kernel drops the lock
    claim.release()
""")


def start(script: str, *args: object) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", script, *map(str, args)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout.readline().strip() in ("locked", "claimed")
    return process


def finish(process: subprocess.Popen, line: str = "\n") -> int:
    process.communicate(line, timeout=60)
    return process.returncode


@pytest.fixture
def weights(tmp_path) -> Path:
    model = randomize(slimspec.build("lenet5", seed=0))
    path = tmp_path / "w.safetensors"
    slimspec.save_weights(model, model.spec, path)
    return path


def test_a_second_writer_fails_at_once_while_the_first_holds_the_outputs(weights, tmp_path):
    out = tmp_path / "c" / "x.yaml"
    holder = start(HOLD_OUTPUTS, out.with_suffix(".safetensors"), out)
    try:
        result = CliRunner().invoke(cli, ["prune", str(weights), "-m", "l1", "--ratio", "0.5", "--out", str(out),
                                          "--force"])
        assert result.exit_code == 1
        assert result.output.strip() == (f"error: {out.with_suffix('.safetensors')}: in use by another slimspec "
                                         f"process (pid {holder.pid}); try again when it has finished")
        with pytest.raises(OutputBusyError):  # the API sees the same lock
            with OutputTransaction(force=True) as tx:
                tx.write(out, "mine")
    finally:
        assert finish(holder) == 0
    assert out.read_text() == "written by the holder\n"
    assert sorted(os.listdir(out.parent)) == ["x.safetensors", "x.yaml"]  # lock files removed


RACER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import slimspec.pruning.api  # import torch before the start line, so both racers start even
    from slimspec.cli.main import cli
    from slimspec.utils.fileio import OutputTransaction
    commit = OutputTransaction.commit
    def slow_commit(self):  # widen the window between taking the locks and renaming
        time.sleep(0.5)
        return commit(self)
    OutputTransaction.commit = slow_commit
    print("ready", flush=True)
    go = Path(sys.argv[1])
    while not go.exists():
        time.sleep(0.005)
    cli(sys.argv[2:])
""")


def test_two_prunes_racing_on_one_out_exactly_one_succeeds_and_the_pair_is_consistent(weights, tmp_path):
    out, go = tmp_path / "c" / "x.yaml", tmp_path / "go"
    racers = {ratio: subprocess.Popen([sys.executable, "-c", RACER, str(go), "prune", str(weights), "-m", "l1",
                                       "--ratio", ratio, "--out", str(out)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for ratio in ("0.25", "0.75")}
    for process in racers.values():
        assert process.stdout.readline().strip() == "ready"
    go.touch()  # both are past their imports: they start together
    streams = {ratio: p.communicate(timeout=120) for ratio, p in racers.items()}
    results = {ratio: (racers[ratio].returncode, *streams[ratio]) for ratio in racers}
    codes = sorted(code for code, _, _ in results.values())
    assert codes == [0, 1], results
    winner = next(ratio for ratio, (code, _, _) in results.items() if code == 0)
    _, _, loser_err = next(result for result in results.values() if result[0] == 1)
    assert len(loser_err.strip().splitlines()) == 1, loser_err
    assert "in use by another slimspec process" in loser_err or "already exists" in loser_err, loser_err
    spec_text = out.read_text()
    assert embedded_spec_text(read_weights(out.with_suffix(".safetensors"))[1]) == spec_text
    assert slimspec.load_spec(out).data["pruned"]["ratio"] == float(winner)
    assert sorted(os.listdir(out.parent)) == ["x.safetensors", "x.yaml"]


def test_a_run_folder_is_claimed_by_one_process_for_its_lifetime(tmp_path):
    folder = tmp_path / "runs" / "same"
    holder = start(HOLD_RUN_DIR, folder)
    try:
        with pytest.raises(OutputBusyError, match=rf"{folder}: in use by another slimspec process \(pid {holder.pid}\)"):
            claim_run_dir(folder, force=True)
    finally:
        assert finish(holder) == 0
    assert sorted(os.listdir(folder)) == ["run.json"]  # released: the lock file is gone
    with pytest.raises(OutputExistsError, match="already holds a run: use --resume .* or --force"):
        claim_run_dir(folder)
    with claim_run_dir(folder, resume=True) as claim:
        assert claim.had_run and (folder / "run.json").exists()
    (folder / "notes.txt").write_text("mine")
    with claim_run_dir(folder, force=True, run_files=["run.json", "state.pt"]) as claim:
        assert claim.had_run and sorted(os.listdir(folder)) == [RUN_LOCK_NAME, "notes.txt"]
    with claim_run_dir(tmp_path / "fresh", resume=True) as claim:
        assert not claim.had_run


def test_a_killed_run_leaves_its_lock_file_but_not_its_lock(tmp_path):
    folder = tmp_path / "run"
    holder = start(HOLD_RUN_DIR, folder)
    assert finish(holder, "die\n") == 9
    assert sorted(os.listdir(folder)) == [RUN_LOCK_NAME, "run.json"]
    with claim_run_dir(folder, resume=True) as claim:
        assert claim.had_run
    (folder / "run.json").unlink()
    with claim_run_dir(folder) as claim:  # only the lock file left: not a run
        assert not claim.had_run


def test_a_file_where_the_run_folder_should_be_is_refused(tmp_path):
    (tmp_path / "run").write_text("x")
    with pytest.raises(ValueError, match="run: exists and is not a folder"):
        claim_run_dir(tmp_path / "run")
