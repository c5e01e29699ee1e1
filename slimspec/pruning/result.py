"""What a prune produces: the new spec, the transplanted model, a per-slot report, and saving both files."""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..document import Spec
from ..utils.fileio import OutputTransaction, weights_beside
from ..weights import save_weights
from .options import PruneOptions
from .policy import Decision
from .report import SlotRow, prune_table


@dataclass
class PruneResult:
    """A pruned network: its new spec, the transplanted model and a per-slot report."""

    spec: Spec
    model: torch.nn.Module
    parent: Spec
    report: list[SlotRow]
    decision: Decision
    options: PruneOptions
    params: tuple[int, int]
    macs: tuple[int, int]
    notes: list[str] = field(default_factory=list)
    source_model: torch.nn.Module | None = field(default=None, repr=False)
    variants: dict[str, torch.nn.Module] = field(default_factory=dict, repr=False)  # e.g. "bias dropped"

    def table(self, changed_only: bool = False) -> str:
        return prune_table(self.report, changed_only)

    def summary(self) -> dict[str, Any]:
        return {
            "method": self.options.method,
            "params": {"before": self.params[0], "after": self.params[1]},
            "macs": {"before": self.macs[0], "after": self.macs[1]},
            "flops": {"before": 2 * self.macs[0], "after": 2 * self.macs[1]},
            "threshold": self.decision.threshold,
            "clamped": self.decision.clamped,
            "slots": [row.as_dict() for row in self.report],
            "notes": self.notes,
        }

    def save(self, spec_path: str | os.PathLike, weights_path: str | os.PathLike | None = None,
             overwrite: bool = False, *, inputs: Iterable[str | os.PathLike | None] = (),
             transaction: OutputTransaction | None = None) -> tuple[Path, Path]:
        """Write the spec and its weights (default: next to the spec, ``.safetensors``) as one unit.

        Both files appear together or not at all (an :class:`OutputTransaction`: locked,
        fsynced temporaries, renamed weights first); an output naming one of ``inputs``
        (or the other output) raises ``OutputConflictError``. With ``transaction`` the
        files join it and are renamed when the caller's transaction commits.
        """
        spec_path = Path(spec_path)
        weights_path = Path(weights_path) if weights_path else weights_beside(spec_path)
        if transaction is None:
            with OutputTransaction(force=overwrite) as tx:
                return self.save(spec_path, weights_path, inputs=inputs, transaction=tx)
        transaction.check_inputs(*inputs)
        save_weights(self.model, self.spec.text, weights_path, transaction=transaction)
        transaction.write(spec_path, self.spec.text)
        return spec_path, weights_path
