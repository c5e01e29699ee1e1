"""The git textconv driver never fails, and `git-setup` registers one that works outside the venv."""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from slimspec.cli.main import cli
from slimspec.cli.spec_cmds import driver_command
from slimspec.specio import limits

from .conftest import SPECS
from .test_hardening_spec import BOMB

DIGITS = (SPECS / "digits_vgg.yaml").read_text(encoding="utf-8")
NOT_SPECS = {
    "ci.yaml": b"arch: [amd64, arm64]\non: push\njobs:\n  build: {runs-on: ubuntu-latest}\n",
    "bomb.yaml": BOMB.encode(),
    "binary.yaml": bytes(range(256)) * 4,
    "crlf_other.yaml": b"a: 1\r\nb: [x, y]\r\n",
    "empty.yaml": b"",
    "deep.yaml": b"cfg: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "huge.yaml": b"# " + b"x" * limits.MAX_FILE_BYTES + b"\nslimspec: 1\n",
    "spec_with_error.yaml": DIGITS.replace("cfg: [32", "cfg: [-32").encode(),
}
needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def textconv(path) -> tuple[int, bytes, str]:
    result = CliRunner().invoke(cli, ["textconv", str(path)], catch_exceptions=False)
    return result.exit_code, result.stdout_bytes, result.stderr


@pytest.mark.parametrize("name", sorted(NOT_SPECS))
def test_textconv_passes_anything_else_through_unchanged(tmp_path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(NOT_SPECS[name])
    assert textconv(path) == (0, NOT_SPECS[name], "")


def test_textconv_of_a_spec_and_of_a_missing_file(tmp_path) -> None:
    code, out, _ = textconv(SPECS / "digits_vgg.yaml")
    assert code == 0 and b"\ncfg[1]" in out and b"params: 140,458\n" in out
    code, out, err = textconv(tmp_path / "gone.yaml")
    assert (code, out) == (0, b"") and err.strip() == f"slimspec textconv: error: {tmp_path / 'gone.yaml'}: No such file or directory"


def test_driver_command_is_this_python_quoted(monkeypatch) -> None:
    assert driver_command() == f"{shlex.quote(sys.executable)} -m slimspec textconv"
    monkeypatch.setattr(sys, "executable", "/opt/my env/bin/python3")
    assert driver_command() == "'/opt/my env/bin/python3' -m slimspec textconv"


def git(repo, *args: str, env: dict | None = None) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True, env=env).stdout


@needs_git
def test_git_setup_refuses_bad_patterns_and_non_repositories(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["git-setup"])
    assert result.exit_code == 1 and result.stderr.strip() == "Error: not inside a git repository"
    git(tmp_path, "init", "-q")
    for pattern in ("*.yaml\n*.py diff=evil", "a b.yaml", ""):
        result = CliRunner().invoke(cli, ["git-setup", "--pattern", pattern])
        assert result.exit_code == 2 and "a .gitattributes pattern must be non-empty" in result.stderr
    assert not (tmp_path / ".gitattributes").exists()


@needs_git
def test_git_diff_works_outside_the_venv_on_specs_and_other_yaml(tmp_path, monkeypatch) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "t@example.com")
    git(repo, "config", "user.name", "t")
    monkeypatch.chdir(repo)
    result = CliRunner().invoke(cli, ["git-setup"], catch_exceptions=False)
    assert result.exit_code == 0
    assert git(repo, "config", "diff.slimspec.textconv").strip() == driver_command()
    assert (repo / ".gitattributes").read_text() == "*.yaml diff=slimspec\n"
    assert CliRunner().invoke(cli, ["git-setup"]).exit_code == 0  # idempotent
    assert (repo / ".gitattributes").read_text() == "*.yaml diff=slimspec\n"
    (repo / "net.yaml").write_text(DIGITS)
    for name in ("ci.yaml", "bomb.yaml"):
        (repo / name).write_bytes(NOT_SPECS[name])
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "base")
    (repo / "net.yaml").write_text(DIGITS.replace("[32, 32, M", "[32, 20, M"))
    (repo / "ci.yaml").write_bytes(NOT_SPECS["ci.yaml"].replace(b"arm64", b"riscv64"))
    (repo / "bomb.yaml").write_bytes(BOMB.replace("a0: &a0 [1,", "a0: &a0 [2,").encode())
    # no slimspec on PATH: only git and the shell's basics
    env = {"PATH": os.pathsep.join(p for p in ("/usr/bin", "/bin") if os.path.isdir(p)), "HOME": str(tmp_path)}
    diff = git(repo, "diff", env=env)
    assert "-cfg[1]     32\n+cfg[1]     20\n" in diff
    assert "-arch: [amd64, arm64]\n+arch: [amd64, riscv64]\n" in diff
    assert "-a0: &a0 [1,1,1,1,1,1,1,1,1]\n+a0: &a0 [2,1,1,1,1,1,1,1,1]\n" in diff
