"""A training run folder: the one place its files are named, read and written. Torch-free.

    spec.yaml           the architecture trained (``run.json`` points at it)
    run.json            data, options and provenance: enough to resume the run
    best.safetensors    weights of the best test accuracy so far (spec embedded)
    last.safetensors    weights after the last completed epoch (spec embedded)
    state.pt            exact resume state, the per-epoch commit point (written by the loop)
    metrics.jsonl       one JSON object per completed epoch, always valid JSON
    tensorboard/        events, with ``--tensorboard``
    .slimspec-run.lock  held while a run uses the folder (:func:`~slimspec.utils.fileio.claim_run_dir`)

The training API, the loop, the plots, the demo and the CLI reach these files only through
:class:`RunFolder`.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ..document import Spec, spec_from_text
from ..errors import TrainingError
from ..utils.fileio import RunDirClaim, atomic_write, claim_run_dir, note_input


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by ``None`` (JSON has no NaN or Infinity)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


@dataclass(frozen=True)
class RunFolder:
    """The files of one training run, by role; ``RunFolder("runs/d").last`` is its last weights."""

    path: Path

    SPEC: ClassVar[str] = "spec.yaml"
    RECORD: ClassVar[str] = "run.json"
    BEST: ClassVar[str] = "best.safetensors"
    LAST: ClassVar[str] = "last.safetensors"
    STATE: ClassVar[str] = "state.pt"
    METRICS: ClassVar[str] = "metrics.jsonl"
    TENSORBOARD: ClassVar[str] = "tensorboard"
    FILES: ClassVar[tuple[str, ...]] = (RECORD, SPEC, STATE, LAST, BEST, METRICS)  # what a forced restart deletes

    def __init__(self, path: str | os.PathLike) -> None:
        object.__setattr__(self, "path", Path(path))

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __str__(self) -> str:
        return str(self.path)

    @property
    def spec(self) -> Path:
        return self.path / self.SPEC

    @property
    def record(self) -> Path:
        return self.path / self.RECORD

    @property
    def best(self) -> Path:
        return self.path / self.BEST

    @property
    def last(self) -> Path:
        return self.path / self.LAST

    @property
    def state(self) -> Path:
        return self.path / self.STATE

    @property
    def metrics(self) -> Path:
        return self.path / self.METRICS

    @property
    def tensorboard(self) -> Path:
        return self.path / self.TENSORBOARD

    def claim(self, *, force: bool = False, resume: bool = False) -> RunDirClaim:
        """Lock the folder for one run; ``force`` deletes exactly :attr:`FILES` of an earlier run."""
        return claim_run_dir(self.path, force=force, resume=resume, run_files=self.FILES)

    def weights(self) -> Path:
        """``last.safetensors``, else ``best.safetensors``; neither is a one-line error naming the folder."""
        for path in (self.last, self.best):
            if path.is_file():
                return path
        raise TrainingError(f"{self.path}: no {self.LAST} or {self.BEST} (not a run folder, or no epoch finished)")

    # -- spec.yaml and run.json
    def write_run(self, spec_text: str, record: dict[str, Any]) -> None:
        """``spec.yaml`` and ``run.json`` (valid JSON always: non-finite numbers become null)."""
        atomic_write(self.spec, spec_text)
        record = {"spec": self.SPEC, **{key: value for key, value in record.items() if key != "spec"}}
        atomic_write(self.record, json.dumps(json_safe(record), indent=2, allow_nan=False) + "\n")

    def read_run(self) -> tuple[dict[str, Any], Spec]:
        """``run.json`` and the spec it names; a missing, damaged or foreign file is a one-line error naming it."""
        path = self.record
        if not path.is_file():
            raise TrainingError(f"{self.path}: not a slimspec run folder (no {self.RECORD})")
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise TrainingError(f"{path}: not readable as JSON ({exc})") from None
        if not isinstance(record, dict) or not isinstance(record.get("config"), dict) or "data" not in record:
            raise TrainingError(f"{path}: not a slimspec run record (no 'config' and 'data')")
        spec_path = self.path / str(record.get("spec") or self.SPEC)
        try:
            text = spec_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise TrainingError(f"{spec_path}: cannot read the run's spec ({exc.__class__.__name__})") from None
        return record, spec_from_text(text, str(spec_path))

    def discard_run(self) -> None:
        """Remove ``run.json`` and ``spec.yaml`` (a run that failed before its first checkpoint)."""
        for path in (self.record, self.spec):
            path.unlink(missing_ok=True)

    # -- metrics.jsonl
    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        """Rewrite ``metrics.jsonl`` from the history: one JSON object per completed epoch."""
        lines = (json.dumps(json_safe(record), sort_keys=True, allow_nan=False) + "\n" for record in history)
        atomic_write(self.metrics, "".join(lines))

    def read_metrics(self) -> list[dict[str, Any]]:
        """The per-epoch records of ``metrics.jsonl`` (at least one); see :func:`read_metrics`."""
        return read_metrics(self.metrics)


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (at least one); each problem is one line naming file and line."""
    path = Path(path)
    note_input(path)  # read by plots: no output of the command may replace it
    if not path.is_file():
        raise TrainingError(f"{path}: no such file (not a run folder with {RunFolder.METRICS})")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TrainingError(f"{path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(record, dict) or "epoch" not in record:
            raise TrainingError(f"{path}:{number}: expected an object with an 'epoch' key")
        records.append(record)
    if not records:
        raise TrainingError(f"{path}: empty, no epoch recorded yet")
    return records
