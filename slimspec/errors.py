"""Every error slimspec raises for bad input, in one leaf module (it imports nothing of slimspec).

:class:`SlimspecError` is the base: the CLI prints any of them as one located line (or, for
specs and plans, one line per located problem) and exits 1. Anything else reaching the CLI
is a bug and keeps its traceback. Each subclass also derives from the builtin exception a
caller would expect (``ValueError``, ``FileExistsError``), so ``except ValueError`` code
keeps working.

Spec paths are formatted here too (``stages[1].blocks[4][0]``): errors carry them, and every
layer that locates a problem uses the same notation.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path as _FsPath

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


_LINE_BREAKING = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, 0x85)} | {0x2028: "\\u2028", 0x2029: "\\u2029"}


# ANSI/VT100 control sequences (CSI ``ESC [ ... final``, OSC ``ESC ] ... BEL/ST``, two-byte ``ESC x``),
# as a library's message may carry (torch.load's bold text): removed, not escaped, from error lines.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])|\x9b[0-?]*[ -/]*[@-~]")


def one_line(text: str) -> str:
    """``text`` without terminal escape sequences and with control and line-breaking characters
    escaped (user input echoed in a message): one line that cannot restyle the terminal."""
    return _ANSI.sub("", text).translate(_LINE_BREAKING)


class SlimspecError(Exception):
    """Base of every input error: printed by the CLI as one line, exit 1, no traceback."""

    def lines(self) -> list[str]:
        return [one_line(f"error: {line}") for line in str(self).split("\n")]


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

    @classmethod
    def located(cls, location: str, message: str) -> "SpecIssue":
        """An issue at a spec path written as text (``layers[3].conv.out``; ``""`` for the whole spec)."""
        return cls(location, message, parse_path(location) if location else ())

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.location else self.message


class SpecError(SlimspecError, ValueError):
    """All problems found in one spec (or plan) file, sorted by location."""

    def __init__(self, issues: Iterable[SpecIssue], source: str | None = None):
        unique = {(issue.location, issue.message): issue for issue in issues}
        self.issues: list[SpecIssue] = sorted(unique.values(), key=lambda i: (_sort_key(i.path), i.location, i.message))
        self.source = source
        super().__init__(str(self))

    def lines(self) -> list[str]:
        prefix = f"{self.source}: " if self.source else ""
        return [one_line(f"{prefix}{issue}") for issue in self.issues]

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def with_source(self, source: str) -> "SpecError":
        return SpecError(self.issues, source)


class WeightsError(SlimspecError, ValueError):
    """A weights or state file that cannot be read or does not fit the spec it is loaded into."""


class PruneError(SlimspecError, ValueError):
    """A pruning request that cannot be carried out (bad ratio, missing gates, no data...)."""


class DataError(SlimspecError, ValueError):
    """A dataset that cannot be found, read or fed to the model."""


class TrainingError(SlimspecError, ValueError):
    """Training options or state that cannot be used (bad hyperparameters, corrupt run folder...)."""


class ModelImportError(SlimspecError, ValueError):
    """A model that cannot be imported into a spec (unsupported layer, unknown name...)."""


class ExportError(SlimspecError, ValueError):
    """A model that cannot be exported, or a missing optional dependency for the format."""


class OutputExistsError(SlimspecError, FileExistsError):
    """An output file exists and overwriting was not requested."""

    def __init__(self, path: _FsPath | str, hint: str = "use --force to overwrite"):
        super().__init__(f"{path}: already exists ({hint})")
        self.path = _FsPath(path)


class OutputConflictError(SlimspecError, ValueError):
    """Two files of one command (an input and an output, or two outputs) are the same file."""


class MissingExtraError(SlimspecError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, feature: str, extra: str, module: str):
        super().__init__(f"{feature} needs the '{module}' package: pip install 'slimspec[{extra}]'")
