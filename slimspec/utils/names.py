"""Module-name prefixes: renaming state-dict keys when a layout changes (removed blocks, imports)."""
from __future__ import annotations

from collections.abc import Mapping


def rename_prefix(key: str, renames: Mapping[str, str]) -> str:
    """``key`` with its longest matching prefix in ``renames`` replaced (``layer1.3.`` -> ``layer1.4.``)."""
    for prefix in sorted(renames, key=len, reverse=True):
        if key.startswith(prefix):
            return renames[prefix] + key[len(prefix):]
    return key
