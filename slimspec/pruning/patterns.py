"""Spec-path patterns for plan excludes and overrides: ``cfg[0]``, ``stages[*].blocks[*]``.

``[*]`` matches any index, ``*`` any run of characters within one key. A pattern matches a
slot if it matches the slot's whole path or a prefix ending at a ``.`` or ``[`` boundary, so
``stages[1]`` covers every slot of stage 1.
"""
from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("[*]", i):
            out += r"\[\d+\]"
            i += 3
        elif pattern[i] == "*":
            out += r"[^.\[\]]*"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"(?=$|[.\[])")


def matches(pattern: str, path: str) -> bool:
    return compile_pattern(pattern.strip()).match(path) is not None
