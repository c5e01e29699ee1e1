"""Names: state-dict key prefixes renamed when a layout changes (removed blocks, imports), and dotted
Python names resolved to the objects they name (the op table names torch classes without importing torch)."""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from functools import lru_cache
from typing import Any


def rename_prefix(key: str, renames: Mapping[str, str]) -> str:
    """``key`` with its longest matching prefix in ``renames`` replaced (``layer1.3.`` -> ``layer1.4.``)."""
    for prefix in sorted(renames, key=len, reverse=True):
        if key.startswith(prefix):
            return renames[prefix] + key[len(prefix):]
    return key


@lru_cache(maxsize=None)
def resolve_dotted(dotted: str, missing_ok: bool = False) -> Any:
    """``"torch.nn.GELU"`` -> the object it names; with ``missing_ok``, None where the module lacks the name."""
    module, _, name = dotted.rpartition(".")
    found = getattr(importlib.import_module(module), name, None)
    if found is None and not missing_ok:
        raise AttributeError(f"module '{module}' has no attribute '{name}'")
    return found
