"""Words in messages: counts (``plural(1, "epoch")`` is "1 epoch") and lists of names (``listing``)."""
from __future__ import annotations


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """``count`` and ``noun``, the noun in the plural unless the count is exactly one."""
    return f"{count} {noun if count == 1 else plural_form or noun + 's'}"


def listing(names: list[str], limit: int | None = 12) -> str:
    """``a, b, c ... and N more``: the first ``limit`` names, then how many were left out (``None``: all)."""
    if limit is None or len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f" ... and {len(names) - limit} more"
