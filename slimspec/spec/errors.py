"""Located errors for specs and plans.

Every problem with user input is a :class:`SpecIssue` with a location (a spec path such as
``cfg[3]`` or ``stages[1].blocks[4][0]``, or ``line 3, column 5`` for YAML syntax) and a
one-line message. :class:`SpecError` carries all of them, sorted, so the CLI can print every
problem at once and exit 1 without a traceback.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

PathPart = str | int
Path = tuple[PathPart, ...]


def format_path(path: Iterable[PathPart]) -> str:
    """``("stages", 1, "blocks", 4, 0)`` -> ``"stages[1].blocks[4][0]"``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_path(text: str) -> Path:
    """Inverse of :func:`format_path`; ``[*]`` and ``*`` are kept as the string ``"*"``."""
    parts: list[PathPart] = []
    token = ""
    i = 0
    while i < len(text):
        char = text[i]
        if char == ".":
            if token:
                parts.append(token)
            token = ""
        elif char == "[":
            if token:
                parts.append(token)
            token = ""
            end = text.index("]", i)
            inner = text[i + 1 : end].strip()
            parts.append("*" if inner == "*" else int(inner))
            i = end
        else:
            token += char
        i += 1
    if token:
        parts.append(token)
    return tuple(parts)


def _sort_key(path: Sequence[PathPart]) -> tuple:
    return tuple((0, part, "") if isinstance(part, int) else (1, 0, part) for part in path)


@dataclass(frozen=True)
class SpecIssue:
    """One located problem: ``location: message``."""

    location: str
    message: str
    path: Path = ()

    @classmethod
    def at(cls, path: Iterable[PathPart], message: str) -> "SpecIssue":
        path = tuple(path)
        return cls(format_path(path), message, path)

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class SpecError(ValueError):
    """All problems found in one spec (or plan) file."""

    def __init__(self, issues: Iterable[SpecIssue], source: str | None = None):
        unique = {(issue.location, issue.message): issue for issue in issues}
        self.issues: list[SpecIssue] = sorted(unique.values(), key=lambda i: (_sort_key(i.path), i.location, i.message))
        self.source = source
        super().__init__(str(self))

    def lines(self) -> list[str]:
        prefix = f"{self.source}: " if self.source else ""
        return [f"{prefix}{issue}" for issue in self.issues]

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def with_source(self, source: str) -> "SpecError":
        return SpecError(self.issues, source)
