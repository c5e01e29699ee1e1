"""What a prune produces: the new spec, the transplanted model, a per-slot report, and saving both files.

A prune from the file (:mod:`slimspec.pruning.filewise`) builds no model: ``result.model`` and
``result.source_model`` are built on first access, and ``save`` streams the weights from the
source file instead.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..document import Spec
from ..utils.fileio import OutputTransaction, Writer, weights_beside
from ..weights import save_weights
from .options import PruneOptions
from .policy import Decision
from .report import SlotRow, prune_table


class Deferred:
    """A value made on first use: ``Deferred(make)`` stands for ``make()`` in a :class:`LazyField`."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


class LazyField:
    """A dataclass field holding a value or a :class:`Deferred` one, made (once) when first read."""

    def __init__(self, default: Any = AttributeError) -> None:
        self.default = default

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = f"_{name}"

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:  # the dataclass asks for the default: none (raise) or the given one
            if self.default is AttributeError:
                raise AttributeError(self.slot)
            return self.default
        value = obj.__dict__.get(self.slot)
        if isinstance(value, Deferred):
            value = obj.__dict__[self.slot] = value.make()
        return value

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.slot] = value

    def made(self, obj: Any) -> bool:
        return not isinstance(obj.__dict__.get(self.slot), Deferred)


@dataclass(repr=False)
class PruneResult:
    """A pruned network: its new spec, the transplanted model and a per-slot report.

    ``model`` and ``source_model`` may be :class:`Deferred` (a prune from the file): built when
    first read. ``weights_writer``, when given, writes the weights file without the model.
    """

    spec: Spec
    model: torch.nn.Module = LazyField()  # type: ignore[assignment]
    parent: Spec
    report: list[SlotRow]
    decision: Decision
    options: PruneOptions
    params: tuple[int, int]
    macs: tuple[int, int]
    notes: list[str] = field(default_factory=list)
    source_model: torch.nn.Module | None = LazyField(None)  # type: ignore[assignment]
    variants: dict[str, torch.nn.Module] = field(default_factory=dict, repr=False)  # e.g. "bias dropped"
    weights_writer: Callable[[], Writer] | None = field(default=None, repr=False)

    @property
    def model_built(self) -> bool:
        """Whether ``model`` exists yet (a prune from the file builds it on first access)."""
        return type(self).__dict__["model"].made(self)

    def __repr__(self) -> str:  # never builds a deferred model
        return (f"PruneResult(spec={self.spec.name!r}, method={self.options.method!r}, params={self.params}, "
                f"macs={self.macs})")

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
        if self.weights_writer is not None and not self.model_built:  # streamed from the source file
            transaction.write(weights_path, self.weights_writer())
        else:
            save_weights(self.model, self.spec.text, weights_path, transaction=transaction)
        transaction.write(spec_path, self.spec.text)
        return spec_path, weights_path
