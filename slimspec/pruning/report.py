"""Per-slot prune reports (before, after, kept %) as rows and as a text table."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..ir import IR
from ..utils.tables import format_table
from ..utils.text import listing

if TYPE_CHECKING:
    import torch

    from .policy import Decision


@dataclass(frozen=True)
class SlotRow:
    slot: str
    kind: str
    before: int
    after: int

    @property
    def kept_percent(self) -> float:
        return 100.0 * self.after / self.before if self.before else 100.0

    def as_dict(self) -> dict:
        return {"slot": self.slot, "kind": self.kind, "before": self.before, "after": self.after,
                "kept_percent": round(self.kept_percent, 2)}


def slot_rows(ir: IR, kept: dict[str, tuple[int, ...]]) -> list[SlotRow]:
    return [SlotRow(path, slot.kind, slot.size, len(kept.get(path, range(slot.size))))
            for path, slot in ir.slots.items() if slot.prunable]


def prune_table(rows: list[SlotRow], changed_only: bool = False) -> str:
    shown = [r for r in rows if r.after != r.before] if changed_only else rows
    return format_table(["slot", "kind", "before", "after", "kept %"],
                        [[r.slot, r.kind, r.before, r.after, f"{r.kept_percent:.1f}"] for r in shown])


def degenerate_notes(ir: IR, scores: Mapping[str, torch.Tensor], decision: Decision, min_channels: int) -> list[str]:
    """Notes for results that deserve a second look: tied scores, many clamped slots."""
    notes: list[str] = []
    scored = [values for path, values in scores.items() if ir.slots[path].prunable and values.numel() > 1]
    if scored and all(bool((v == v.flatten()[0]).all()) for v in scored) and \
            len({float(v.flatten()[0]) for v in scored}) == 1:
        notes.append("warning: every channel scored the same (untrained or tied weights?); "
                     "which channels were kept is arbitrary")
    if decision.clamped:
        prunable = sum(1 for slot in ir.slots.values() if slot.prunable and slot.kind != "block")
        head = "warning: " if 4 * len(decision.clamped) > prunable else ""
        notes.append(f"{head}min_channels={min_channels} kept channels in {len(decision.clamped)} of {prunable} "
                     f"slot(s) the policy would have emptied: {listing(list(decision.clamped), None)}")  # every one (README)
    return notes
