"""The scripts in examples/ run as the README says."""
from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import ROOT


@pytest.mark.slow
def test_pipeline_example_runs(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "pipeline.py"), str(tmp_path)],
                            capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("gated training: ") and "of gates at zero" in lines[0]
    assert any(line.startswith("params ") and "MACs" in line for line in lines)
    assert lines[-1].startswith("fine-tuned: ") and "Scratch-B (" in lines[-1]
    assert (tmp_path / "digits_resnet_sss.yaml").is_file()
