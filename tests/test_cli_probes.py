"""Probes of issue 15 on exit codes, messages and ignored options, and a few import/export probes.

Exit codes: 0 ok, 1 bad input (one line), 2 usage (click's convention), 70 a bug (EX_SOFTWARE,
traceback + a line asking to report it), 141 stdout closed by its reader. Each test here failed
on the behaviour before the fix.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import slimspec
from slimspec.cli.errors import BUG_HINT, EXIT_BUG, EXIT_PIPE

from .conftest import ROOT

ESC = "\x1b"


def _one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: "), (result.exit_code, result.output)
    assert ESC not in result.output and "\\x1b" not in result.output and "Traceback" not in result.output
    return lines[0]


# ---- exit codes -----------------------------------------------------------------------------

def test_a_bug_exits_with_its_own_code_not_usages(run, monkeypatch) -> None:
    import slimspec.report.info

    # usage errors keep click's 2, bad input 1, a bug 70: three distinct codes
    assert run("info", "digits_vgg", "--no-such-option").exit_code == 2
    assert run("info").exit_code == 2
    assert run("info", "no_such_spec_anywhere").exit_code == 1
    def broken(_spec):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(slimspec.report.info, "info", broken)
    result = run("info", "digits_vgg")
    assert result.exit_code == EXIT_BUG == 70
    assert "Traceback" in result.stderr and "ZeroDivisionError: a bug" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == BUG_HINT


def test_bugs_in_commands_without_their_own_handler_exit_70(run, monkeypatch) -> None:
    import slimspec.families

    monkeypatch.setattr(slimspec.families, "spec_schema", lambda: 1 / 0)
    result = run("schema")
    assert result.exit_code == EXIT_BUG and BUG_HINT in result.stderr and "ZeroDivisionError" in result.stderr

    def broken(_source):
        raise KeyError("a bug")

    monkeypatch.setattr("slimspec.cli.spec_cmds.load_spec", broken)
    result = run("validate", "digits_vgg", "digits_mlp")
    assert result.exit_code == EXIT_BUG and result.stderr.count(BUG_HINT) == 2  # every file still checked


def _closed_stdout(*args: str) -> subprocess.CompletedProcess:
    """Run ``slimspec ARGS`` with its stdout's reader gone before it writes (``| head -0``)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([sys.executable, "-m", "slimspec", *args], stdout=write, stderr=subprocess.PIPE,
                              text=True, env=env, cwd=ROOT, timeout=120)
    finally:
        os.close(write)


@pytest.mark.parametrize("args", [("info", "digits_vgg"), ("validate", "digits_vgg"), ("info", "--help")])
def test_a_closed_pipe_is_quiet(args) -> None:
    done = _closed_stdout(*args)
    assert done.returncode == EXIT_PIPE == 141, done.stderr
    assert done.stderr == ""  # no "error: Broken pipe", no "Exception ignored"
