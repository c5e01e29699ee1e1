"""Darknet ``.cfg`` text: sections of ``key=value`` options, read and written (no torch, no slimspec types).

The format of Redmon's Darknet (``parser.c``: ``read_cfg``): a ``[section]`` line opens a section,
``key=value`` lines fill it, ``#`` and ``;`` start comment lines. Section names have aliases
(``[conv]``, ``[network]``, ``[max]``); they are read under their canonical name. Values are kept
as text (with the spaces inside them removed: ``anchors = 10,13,  16,30`` reads ``10,13,16,30``),
in the order written, so a section written back reads the same.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import ModelImportError

ALIASES = {"conv": "convolutional", "network": "net", "max": "maxpool", "avg": "avgpool"}


@dataclass
class Section:
    """One ``[kind]`` section: its options in file order, and the line it starts on (1-based; 0: made in code)."""

    kind: str
    options: dict[str, str] = field(default_factory=dict)
    line: int = 0

    def where(self, source: str, index: int | None = None) -> str:
        """``yolov3.cfg:12 [convolutional] (layer 3)``: how errors name a section."""
        at = f"{source}:{self.line}" if self.line else source
        layer = f" (layer {index})" if index is not None else ""
        return f"{at} [{self.kind}]{layer}"


def parse_cfg(text: str, source: str = "<cfg>") -> list[Section]:
    """The sections of a cfg text; a line that is neither a section, an option nor a comment is an error."""
    sections: list[Section] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise ModelImportError(f"{source}:{number}: expected a section name such as [convolutional], "
                                       f"got {line[:60]!r}")
            kind = line[1:-1].strip().lower()
            sections.append(Section(ALIASES.get(kind, kind), {}, number))
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ModelImportError(f"{source}:{number}: expected key=value, got {line[:60]!r}")
        if not sections:
            raise ModelImportError(f"{source}:{number}: option '{key}' before the first [section]")
        options = sections[-1].options
        if key in options:
            raise ModelImportError(f"{source}:{number}: '{key}' is given twice in this [{sections[-1].kind}]")
        options[key] = "".join(value.split())
    if not sections:
        raise ModelImportError(f"{source}: no [net] section and no layers (not a Darknet cfg)")
    return sections


def read_cfg(path: str | os.PathLike) -> list[Section]:
    """Parse a cfg file; unreadable or non-UTF-8 files are one-line errors."""
    try:
        text = open(path, encoding="utf-8").read()
    except FileNotFoundError:
        raise ModelImportError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise ModelImportError(f"{path}: not a text file (a Darknet cfg is UTF-8 text)") from None
    except OSError as exc:
        raise ModelImportError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_cfg(text, str(path))


def format_cfg(sections: list[Section]) -> str:
    """Cfg text of ``sections``: one ``key=value`` a line, a blank line between sections."""
    parts = []
    for section in sections:
        lines = [f"[{section.kind}]", *(f"{key}={value}" for key, value in section.options.items())]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def option_text(options: dict[str, str]) -> str:
    """``key=value key=value`` (values never hold spaces): how a section rides in a YAML comment."""
    return " ".join(f"{key}={value}" for key, value in options.items())


def parse_option_text(text: str, where: str) -> dict[str, str]:
    """Inverse of :func:`option_text`."""
    options: dict[str, str] = {}
    for item in text.split():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ModelImportError(f"{where}: expected key=value, got {item[:60]!r}")
        options[key] = value
    return options
