"""Fault injection on writes: ENOSPC, EACCES, an interrupt, a kill between the two renames.

Each case runs a real ``slimspec prune`` and asserts the exit code, a one-line message,
that nothing new is left behind (no orphan weights, temporaries or lock files) and that an
earlier pair of outputs is still byte-for-byte intact.
"""
from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

import slimspec
from slimspec.cli.main import cli
from slimspec.utils import fileio
from slimspec.weights import embedded_spec_text, read_weights

from .conftest import randomize


def listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def setup(tmp_path):
    """Input weights in in/, an earlier pair of outputs in out/ (x.yaml + x.safetensors)."""
    model = randomize(slimspec.build("lenet5", seed=0))
    weights = tmp_path / "in" / "w.safetensors"
    weights.parent.mkdir()
    slimspec.save_weights(model, model.spec, weights)
    out = tmp_path / "out" / "x.yaml"
    result = CliRunner().invoke(cli, ["prune", str(weights), "-m", "l1", "--ratio", "0.3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return weights, out


def prune(weights: Path, out: Path, *extra: str):
    args = ["prune", str(weights), "-m", "l1", "--ratio", "0.6", "--out", str(out), "--force", *extra]
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def assert_one_line(result, fragment: str) -> None:
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and fragment in errors[0] and "Traceback" not in result.output, result.output


def fail_on_call(monkeypatch, target, name: str, n: int, exc: BaseException) -> list[int]:
    """Make ``target.name`` raise ``exc`` on its ``n``-th call (counting from 1)."""
    original, calls = getattr(target, name), [0]

    def patched(*args, **kwargs):
        calls[0] += 1
        if calls[0] == n:
            raise exc
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, patched)
    return calls


def test_enospc_while_writing_the_second_file_keeps_the_old_pair(setup, monkeypatch):
    weights, out = setup
    before = listing(out.parent)
    original = fileio.OutputTransaction.write

    def write(self, path, data):  # the weights are complete; the spec's temporary fills the disk
        if Path(path).suffix == ".yaml":
            tmp = self.temporary(path)
            tmp.write_bytes(b"slimspec: 1\nna")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp))
        return original(self, path, data)

    monkeypatch.setattr(fileio.OutputTransaction, "write", write)
    assert_one_line(prune(weights, out), "No space left on device")
    assert listing(out.parent) == before


def test_enospc_inside_the_weights_writer_names_the_file(setup, monkeypatch):
    weights, out = setup
    before = listing(out.parent)

    class FullDisk:  # the header fits, the tensor data does not; write() names no file on ENOSPC
        def __init__(self, path, mode):
            self.handle = open(path, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            if self.handle.tell():
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.handle.write(data)

    def opened(path, mode="r", *args, **kwargs):  # reading the input works; writing fills the disk
        return FullDisk(path, mode) if set(mode) & set("wxa") else open(path, mode, *args, **kwargs)

    monkeypatch.setattr(slimspec.weights, "open", opened, raising=False)
    assert_one_line(prune(weights, out), f"error: {out.with_suffix('.safetensors')}: No space left on device")
    assert listing(out.parent) == before


def test_enospc_in_the_first_rename_writes_nothing_new(setup, tmp_path, monkeypatch):
    weights, _ = setup
    fail_on_call(monkeypatch, os, "replace", 1, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    assert_one_line(prune(weights, tmp_path / "new" / "y.yaml"), "No space left on device")
    assert not (tmp_path / "new").exists()  # the folder this run created is gone again


def test_unwritable_spec_folder_leaves_no_weights_elsewhere(setup, tmp_path, monkeypatch):
    """EACCES on the spec's folder (simulated: the tests run as root, so chmod would not stop us)."""
    weights, _ = setup
    locked, weights_dir = tmp_path / "readonly", tmp_path / "elsewhere"
    locked.mkdir()
    weights_dir.mkdir()
    original_open = os.open

    def guarded_open(path, *args, **kwargs):
        if Path(path).parent == locked:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return original_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded_open)
    result = prune(weights, locked / "x.yaml", "--weights-out", str(weights_dir / "x.safetensors"))
    assert_one_line(result, "Permission denied")
    assert listing(weights_dir) == {} and listing(locked) == {}


def test_kill_between_the_two_renames_is_rolled_back(setup, monkeypatch):
    """The second rename fails (as a kill at that moment would stop it): the first is undone."""
    weights, out = setup
    before = listing(out.parent)
    calls = fail_on_call(monkeypatch, os, "replace", 2, OSError(errno.EIO, os.strerror(errno.EIO)))
    assert_one_line(prune(weights, out), "Input/output error")
    assert calls[0] >= 3  # the failed rename, then the restore of the first file from its backup
    assert listing(out.parent) == before


def test_interrupt_during_the_weights_write_leaves_nothing(setup, tmp_path, monkeypatch):
    weights, out = setup
    before = listing(out.parent)
    fail_on_call(monkeypatch, fileio.OutputTransaction, "_seal", 1, KeyboardInterrupt())
    result = CliRunner().invoke(cli, ["prune", str(weights), "-m", "l1", "--ratio", "0.6", "--out", str(out), "--force"])
    assert result.exit_code != 0 and "wrote" not in result.output
    assert listing(out.parent) == before


KILL_SCRIPT = textwrap.dedent("""
    import os, sys
    from slimspec.cli.main import cli
    real, calls = os.replace, [0]
    def replace(src, dst):
        calls[0] += 1
        if calls[0] == 2:
            os._exit(137)  # killed right between the weights rename and the spec rename
        return real(src, dst)
    os.replace = replace
    cli(sys.argv[1:])
""")


def test_real_kill_between_the_renames_then_rerun(setup, tmp_path):
    weights, _ = setup
    out = tmp_path / "k" / "x.yaml"
    args = ["prune", str(weights), "-m", "l1", "--ratio", "0.6", "--out", str(out)]
    killed = subprocess.run([sys.executable, "-c", KILL_SCRIPT, *args], capture_output=True, text=True, timeout=120)
    assert killed.returncode == 137
    left = sorted(os.listdir(out.parent))
    assert "x.safetensors" in left and "x.yaml" not in left  # at worst the first final file
    # without --force the rerun names the leftover (and only it); stale temporaries do not count
    result = CliRunner().invoke(cli, args)
    assert_one_line(result, "x.safetensors: already exists")
    # with --force it completes, and nothing of the killed run is left
    assert CliRunner().invoke(cli, [*args, "--force"]).exit_code == 0
    assert sorted(os.listdir(out.parent)) == ["x.safetensors", "x.yaml"]
    assert embedded_spec_text(read_weights(out.with_suffix(".safetensors"))[1]) == out.read_text()
