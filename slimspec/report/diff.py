"""Spec diffs for review: per-slot widths before/after and the params/MACs deltas. Torch-free."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..document import Spec
from ..families import WIDTH_KEYS
from ..ir import count_macs, count_params
from ..utils.tables import format_table


@dataclass(frozen=True)
class SlotChange:
    slot: str
    before: int | None
    after: int | None

    @property
    def kept_percent(self) -> float | None:
        if not self.before or self.after is None:
            return None
        return 100.0 * self.after / self.before


def _comparable(spec: Spec) -> dict:
    return {k: v for k, v in spec.data.items() if k != "pruned"}


def spec_diff(a: Spec, b: Spec) -> dict[str, Any]:
    """What changed from ``a`` to ``b``: slot widths, selections, counts, other keys."""
    slots_a = {p: s for p, s in a.ir.slots.items() if s.prunable}
    slots_b = {p: s for p, s in b.ir.slots.items() if s.prunable}
    order = list(slots_a) + [p for p in slots_b if p not in slots_a]
    changes = []
    for path in order:
        sa, sb = slots_a.get(path), slots_b.get(path)
        before, after = (sa.size if sa else None), (sb.size if sb else None)
        same_select = (sa.index if sa else None) == (sb.index if sb else None)
        if before != after or not same_select:
            changes.append(SlotChange(path, before, after))
    other = sorted(k for k in set(_comparable(a)) | set(_comparable(b))
                   if _comparable(a).get(k) != _comparable(b).get(k))
    params = (count_params(a.ir), count_params(b.ir))
    macs = (count_macs(a.ir), count_macs(b.ir))
    return {
        "a": a.source, "b": b.source,
        "equal": _comparable(a) == _comparable(b),
        "slots": [{"slot": c.slot, "before": c.before, "after": c.after,
                   "kept_percent": None if c.kept_percent is None else round(c.kept_percent, 2)} for c in changes],
        "changed_keys": other,
        "params": {"before": params[0], "after": params[1], "delta": params[1] - params[0]},
        "macs": {"before": macs[0], "after": macs[1], "delta": macs[1] - macs[0]},
        "flops": {"before": 2 * macs[0], "after": 2 * macs[1], "delta": 2 * (macs[1] - macs[0])},
    }


def _pct(after: int, before: int) -> str:
    return f"{100.0 * after / before:.1f}%" if before else "-"


def format_diff(diff: dict[str, Any]) -> str:
    lines = [f"--- {diff['a']}", f"+++ {diff['b']}"]
    if diff["slots"]:
        rows = [[c["slot"], "-" if c["before"] is None else c["before"], "-" if c["after"] is None else c["after"],
                 "-" if c["kept_percent"] is None else f"{c['kept_percent']:.1f}"] for c in diff["slots"]]
        lines.append(format_table(["slot", "before", "after", "kept %"], rows))
    other = [k for k in diff["changed_keys"] if k not in WIDTH_KEYS]
    if other:
        lines.append("other changed keys: " + ", ".join(other))
    for key in ("params", "macs", "flops"):
        d = diff[key]
        lines.append(f"{key:6s} {d['before']:>15,} -> {d['after']:>15,}  ({d['delta']:+,}, {_pct(d['after'], d['before'])} kept)")
    lines.append("specs are equal" if diff["equal"] else "specs differ")
    return "\n".join(lines)
