"""Counts in messages: ``plural(1, "epoch")`` is "1 epoch", ``plural(2, "epoch")`` is "2 epochs"."""
from __future__ import annotations


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """``count`` and ``noun``, the noun in the plural unless the count is exactly one."""
    return f"{count} {noun if count == 1 else plural_form or noun + 's'}"
