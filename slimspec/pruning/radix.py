"""The k smallest values of tensors read one at a time: a radix select on their float32 bit patterns.

:func:`slimspec.pruning.unstructured._masks` pools every score and sorts them (stable: among
equal values the one stored first goes first); a prune from the file must not hold them all.
Finite floats order as integers once their bits are read as int32 and, for negative values,
the 31 low bits are flipped (``-0.0`` is made ``0.0`` first; half and bfloat16 widen to float32
exactly). Two histogram passes over the tensors (``torch.bincount`` of the high 16 bits, then
of the low 16 bits within the chosen bucket) find the k-th smallest key ``t`` and how many
values lie below it; a third pass counts, per tensor, the values below ``t`` and equal to it,
so the first ``k - below`` ties in concatenated order are dropped, as the stable sort drops
them. Each pass holds one chunk of keys and two 65,536-bin histograms.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

CHUNK = 1 << 20  # values keyed at a time (4 MiB of int32 keys)
BINS = 1 << 16  # one 16-bit digit
_LOW31 = 0x7FFFFFFF
_FLOATS = (torch.float32, torch.float16, torch.bfloat16)


def order_keys(values: torch.Tensor) -> Iterator[torch.Tensor]:
    """Flat int32 keys of ``values`` (float32, float16 or bfloat16), ``CHUNK`` at a time, ordered as the values."""
    if values.dtype not in _FLOATS:
        raise TypeError(f"radix select: expected float32, float16 or bfloat16 values, got {values.dtype}")
    flat = values.reshape(-1)
    for start in range(0, flat.numel(), CHUNK):
        bits = (flat[start:start + CHUNK].float() + 0.0).view(torch.int32)  # a copy; + 0.0: -0.0 -> 0.0
        bits ^= (bits >> 31).bitwise_and_(_LOW31)  # negatives: the low 31 bits flipped
        yield bits


def _digit(histogram: torch.Tensor, rank: int) -> tuple[int, int]:
    """``(bin holding the rank-th smallest (1-based), values in the bins below it)``."""
    cumulative = histogram.cumsum(0)
    digit = int(torch.searchsorted(cumulative, torch.tensor([rank]))[0])
    return digit, int(cumulative[digit - 1]) if digit else 0


@dataclass(frozen=True)
class Cut:
    """The ``k`` smallest values of tensors ``0..n-1`` concatenated: every value whose key is below
    ``key``, and the first ``ties[i]`` values equal to it in tensor ``i``; ``dropped[i]`` counts tensor ``i``'s.
    ``key`` is None when nothing is dropped."""

    key: int | None
    ties: tuple[int, ...]
    dropped: tuple[int, ...]

    def keep(self, index: int, values: torch.Tensor) -> torch.Tensor:
        """0/1 float32 mask of tensor ``index`` (``values``, as read for the select): 0 where it is dropped."""
        out = torch.ones(values.numel(), dtype=torch.float32)
        if self.key is None or not self.dropped[index]:
            return out.view(values.shape)
        left, start = self.ties[index], 0
        for keys in order_keys(values):
            keep, equal = keys > self.key, keys == self.key
            if left:  # the first ``left`` ties still to go are dropped, later ones kept
                rank = equal.cumsum(0)
                equal &= rank > left
                left = max(0, left - int(rank[-1]))
            keep |= equal
            out[start:start + keys.numel()] = keep
            start += keys.numel()
        return out.view(values.shape)


def smallest(read: Callable[[int], torch.Tensor], count: int, k: int) -> Cut:
    """The cut dropping the ``k`` smallest values of ``read(0), ..., read(count - 1)`` concatenated, ties
    in that order (``torch.sort(..., stable=True)``'s first ``k``); each tensor is read three times."""
    if k <= 0:
        return Cut(None, (0,) * count, (0,) * count)
    high = torch.zeros(BINS, dtype=torch.int64)
    for i in range(count):
        for keys in order_keys(read(i)):
            high += torch.bincount((keys >> 16) + BINS // 2, minlength=BINS)
    digit, below = _digit(high, k)
    top = digit - BINS // 2  # the bucket's high 16 bits, signed
    low = torch.zeros(BINS, dtype=torch.int64)
    for i in range(count):
        for keys in order_keys(read(i)):
            low += torch.bincount(keys[(keys >> 16) == top] & 0xFFFF, minlength=BINS)
    digit, under = _digit(low, k - below)
    key = top * BINS + digit
    left = k - below - under  # ties to drop, the first in concatenated order
    ties, dropped = [], []
    for i in range(count):
        less = equal = 0
        for keys in order_keys(read(i)):
            less += int((keys < key).sum())
            equal += int((keys == key).sum())
        ties.append(min(equal, left))
        left -= ties[-1]
        dropped.append(less + ties[-1])
    return Cut(key, tuple(ties), tuple(dropped))
