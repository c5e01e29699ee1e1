"""Channel-set notation: ``"0-5,9,12-63"`` <-> ``(0, 1, 2, 3, 4, 5, 9, 12, ..., 63)``.

Grammar: ``all`` or comma-separated items, each an index ``N`` or an inclusive range
``N-M`` (``N <= M``). Whitespace is allowed around items, commas and dashes. Items may
come in any order but must not repeat or overlap. ``all`` needs the set's ``size``.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

ALL = "all"
_ITEM = re.compile(r"^([0-9]+)(?:\s*-\s*([0-9]+))?$")
#: The syntax as a regular expression (the JSON Schema uses the same pattern).
PATTERN = r"^\s*(all|[0-9]+(\s*-\s*[0-9]+)?(\s*,\s*[0-9]+(\s*-\s*[0-9]+)?)*)\s*$"


def _intervals(text: str) -> list[tuple[int, int]] | None:
    """Syntax check; the sorted, non-overlapping ``(start, stop)`` ranges, or None for ``all``."""
    if not isinstance(text, str):
        raise ValueError(f"a channel set must be a string such as \"0-5,9\", got {text!r}")
    stripped = text.strip()
    if stripped == ALL:
        return None
    if not stripped:
        raise ValueError("empty channel set")
    ranges: list[tuple[int, int, str]] = []
    for raw in stripped.split(","):
        item = raw.strip()
        if not item:
            raise ValueError(f"empty item in channel set {text!r} (stray comma)")
        match = _ITEM.match(item)
        if match is None:
            raise ValueError(f"bad channel set item {item!r} in {text!r}: expected N or N-M")
        start = int(match.group(1))
        stop = int(match.group(2)) if match.group(2) is not None else start
        if stop < start:
            raise ValueError(f"descending range {item!r} in channel set {text!r}")
        ranges.append((start, stop, item))
    ranges.sort()
    for (_, prev_stop, prev_item), (start, _, item) in zip(ranges, ranges[1:]):
        if start <= prev_stop:
            raise ValueError(f"channel {start} appears twice in channel set {text!r} ({prev_item!r} and {item!r})")
    return [(start, stop) for start, stop, _ in ranges]


def check_channel_set(text: str) -> None:
    """Check the syntax only (``all`` is fine without a size); raise ValueError if bad."""
    _intervals(text)


def parse_channel_set(text: str, size: int | None = None) -> tuple[int, ...]:
    """Parse a channel set into sorted unique indices; raise ValueError with a one-line message.

    ``size`` (the number of channels the set selects from) is needed for ``all`` and, when
    given, every index must be below it.
    """
    ranges = _intervals(text)
    if ranges is None:
        if size is None:
            raise ValueError("channel set 'all' needs the number of channels")
        if size <= 0:
            raise ValueError("empty channel set ('all' of 0 channels)")
        return tuple(range(size))
    last = ranges[-1][1]
    if size is not None and last >= size:
        raise ValueError(f"channel {last} out of range in channel set {text!r}: only {size} channels (0-{size - 1})")
    return tuple(index for start, stop in ranges for index in range(start, stop + 1))


def format_channel_set(indices: Iterable[int]) -> str:
    """Write indices compactly: runs of 3 or more as ranges, ``(0..5, 7, 8, 9, 12..63)`` -> ``"0-5,7-9,12-63"``.

    A run of exactly two is written ``"7,8"``. Indices are sorted and must be unique and >= 0.
    """
    values = sorted(indices)
    if not values:
        raise ValueError("empty channel set")
    for index in values:
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError(f"channel indices must be non-negative integers, got {index!r}")
    parts: list[str] = []
    start = prev = values[0]
    for index in values[1:] + [None]:
        if index is not None and index == prev:
            raise ValueError(f"channel {index} appears twice")
        if index is not None and index == prev + 1:
            prev = index
            continue
        if prev - start >= 2:
            parts.append(f"{start}-{prev}")
        elif prev == start + 1:
            parts.extend((str(start), str(prev)))
        else:
            parts.append(str(start))
        if index is not None:
            start = prev = index
    return ",".join(parts)


def is_channel_set_text(value: object) -> bool:
    """True for strings that look like a channel set (digits, commas, dashes, spaces)."""
    return isinstance(value, str) and re.fullmatch(r"[0-9,\-\s]*[0-9][0-9,\-\s]*", value) is not None
