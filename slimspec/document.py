"""A validated spec: its text, its data and its resolved IR. Torch-free.

``load_spec`` accepts a file path, YAML text, or the name of a stock spec (``vgg19``); it
runs the JSON Schema, then the family's semantic checks while resolving the IR, and raises
one :class:`SpecError` listing every located problem.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from .families import get_family, schema_issues, to_ir
from .ir import IR
from .errors import SpecError, SpecIssue
from .specio.yamlio import format_spec, name_issue, parse_yaml, read_yaml_file
from .utils.fileio import atomic_write, sha256_bytes


@dataclass(frozen=True)
class Spec:
    """A spec as written (``text``), as data (``data``) and resolved (``ir``)."""

    data: dict
    text: str
    source: str | None = None
    ir: IR = field(repr=False, compare=False, default=None)  # type: ignore[assignment]

    @property
    def name(self) -> str:
        return str(self.data["name"])

    @property
    def arch(self) -> str:
        return str(self.data["arch"])

    @property
    def sha256(self) -> str:
        return sha256_bytes(self.text)

    @classmethod
    def from_data(cls, data: dict, source: str | None = None) -> "Spec":
        """Validate data written by code and give it a human-looking text."""
        return spec_from_text(format_spec(data), source)


def stock_specs() -> dict[str, Path]:
    """The specs shipped with the package, by name."""
    folder = resources.files("slimspec") / "specs"
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".yaml")}


def spec_from_text(text: str, source: str | None = None) -> Spec:
    """Parse (within :mod:`slimspec.specio.limits`), validate and resolve spec text."""
    data = parse_yaml(text, source or "<spec>")
    issues = schema_issues(data)
    if issues:
        raise SpecError(issues, source)
    ir = to_ir(get_family(data["arch"]), data, source)
    return Spec(data, text, source, ir)


def _is_yaml_text(text: str) -> bool:
    """A one-line argument such as ``{slimspec: 1, ...}`` rather than a file name."""
    if ":" not in text:
        return False
    if name_issue(text) is not None:
        return True
    try:
        return not Path(text).exists()
    except OSError:
        return True


def read_spec_text(source: str | os.PathLike) -> tuple[str, str]:
    """``(text, label)`` for a path, a stock spec name, or literal YAML text.

    Files are read within the size limit with their line endings kept; a problem with the
    file raises a one-line :class:`SpecError` naming it.
    """
    text_source = str(source)
    if "\n" in text_source or _is_yaml_text(text_source):
        return text_source, "<text>"
    stock = stock_specs()
    if name_issue(text_source) is None and text_source in stock and not Path(text_source).is_file():
        return stock[text_source].read_text(encoding="utf-8"), text_source
    try:
        exists = name_issue(text_source) is not None or Path(text_source).exists()
    except OSError:
        exists = True
    if not exists:
        hint = f" (stock specs: {', '.join(sorted(stock))})" if os.sep not in text_source and "." not in text_source else ""
        raise SpecError([SpecIssue("", f"no such spec file{hint}")], text_source)
    return read_yaml_file(text_source, "spec")


def load_spec(source: str | os.PathLike | Spec) -> Spec:
    """Load and validate a spec from a path, a stock name or YAML text."""
    if isinstance(source, Spec):
        return source
    text, label = read_spec_text(source)
    return spec_from_text(text, label)


def dump_spec(spec: Spec, path: str | os.PathLike, overwrite: bool = True) -> Path:
    """Write a spec's text atomically."""
    return atomic_write(path, spec.text, overwrite=overwrite)
