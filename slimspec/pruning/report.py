"""Per-slot prune reports (before, after, kept %) as rows and as a text table."""
from __future__ import annotations

from dataclasses import dataclass

from ..ir import IR
from ..utils.tables import format_table


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
