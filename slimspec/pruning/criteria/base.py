"""The criterion interface and registry.

A criterion scores the channels of every slot it can judge (higher = more important). It
sees the IR, the trained tensors, the model (for data-driven criteria) and optional
calibration batches; it does not decide how many channels go — that is the policy's job.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from ...errors import PruneError
from ...ir import IR
from ...utils.registry import Registry
from ..sources import Source, slot_sources


@dataclass
class ScoreContext:
    ir: IR
    state: Mapping[str, torch.Tensor]
    model: torch.nn.Module | None  # None when pruning from the file (criteria with ``needs_model`` False)
    calibration: Iterable[torch.Tensor] | None = None
    seed: int = 0
    sources: dict[str, list[Source]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.sources:
            self.sources = slot_sources(self.ir)

    def of_kind(self, slot: str, kind: str) -> list[Source]:
        return [s for s in self.sources.get(slot, []) if s.kind == kind]


Scores = dict[str, torch.Tensor]


class Criterion(ABC):
    """Scores channels per slot."""

    name: ClassVar[str]
    default_scope: ClassVar[str] = "layer"
    structured: ClassVar[bool] = True
    default_threshold: ClassVar[float | None] = None
    prunes_blocks: ClassVar[bool] = False  # also scores whole residual blocks (SSS block gates)
    needs_gates: ClassVar[bool] = False  # needs weights trained in gated mode
    reads_calibration: ClassVar[bool] = False  # scores from calibration batches (--data); others never load them
    uses_seed: ClassVar[bool] = False  # draws its scores from the seed (others read it only for calibration order)
    needs_model: ClassVar[bool] = False  # runs the model (others read ``ctx.state`` alone: prunable from the file)

    @abstractmethod
    def score(self, ctx: ScoreContext) -> Scores:
        """Return slot path -> 1-D float tensor of channel scores (slots it cannot judge are omitted)."""


_CRITERIA: Registry[Criterion] = Registry("method", PruneError)


def register_criterion(cls: type[Criterion]) -> type[Criterion]:
    """Class decorator: make a criterion available as ``--method NAME``."""
    _CRITERIA.add(cls.name, cls())
    return cls


def get_criterion(name: str) -> Criterion:
    return _CRITERIA.get(name)


def criteria() -> dict[str, Criterion]:
    return _CRITERIA.items()


def mean_over_sources(ctx: ScoreContext, kind: str, per_source, slots: Iterable[str] | None = None) -> Scores:
    """Score each slot (of ``slots``, default all) by averaging ``per_source(tensor_positions)`` over its
    sources of ``kind``."""
    out: Scores = {}
    for slot in ctx.ir.slots if slots is None else slots:
        found = ctx.of_kind(slot, kind)
        if not found:
            continue
        parts = [per_source(src) for src in found]
        parts = [p for p in parts if p is not None]
        if parts:
            out[slot] = torch.stack(parts).mean(0)
    return out


def weight_row_scores(ctx: ScoreContext, row_score) -> Scores:
    """Data-free scores from |W|: ``row_score(rows)`` maps a [channels, features] matrix to [channels].

    A slot is scored on the filters that produce it (rows = output channels); a slot no filter
    produces (a channel selection) on the weights that read it (rows = input channels). Each
    weight is read and scored once per direction, whatever the number of slots it touches.
    """
    cache: dict[tuple[str, bool], torch.Tensor] = {}

    def rows(src: Source, outputs: bool) -> torch.Tensor:
        if (src.node, outputs) not in cache:
            weight = ctx.state[f"{src.node}.weight"].float().abs()
            matrix = weight.flatten(1) if outputs else weight.transpose(0, 1).flatten(1)
            cache[src.node, outputs] = row_score(matrix)
        return cache[src.node, outputs][list(src.positions)]

    unproduced = [slot for slot in ctx.ir.slots if not ctx.of_kind(slot, "producer")]
    scores = mean_over_sources(ctx, "consumer", lambda src: rows(src, outputs=False), unproduced)
    scores.update(mean_over_sources(ctx, "producer", lambda src: rows(src, outputs=True)))
    return {slot: scores[slot] for slot in ctx.ir.slots if slot in scores}
