"""The family interface and registry.

A family turns one spec form (``arch: vgg``, ``arch: resnet`` ...) into the IR and writes a
pruned IR back in the same form. Families are registered by name; adding one is one file.
"""
from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from ..ir import IR, IRBuilder
from ..errors import SpecError, SpecIssue
from ..utils.registry import Registry

# Top-level spec keys that hold layer widths, channel selections or block lists: the keys a
# prune rewrites, shown per slot (not as raw values) by diff and textconv.
WIDTH_KEYS = ("cfg", "stages", "blocks", "layers", "classifier", "transitions", "head_select", "stem",
              "last_channel")

_FAMILIES: Registry["Family"] = Registry("arch", lambda message: SpecError([SpecIssue.at(("arch",), message)]))


class Family(ABC):
    """Spec <-> IR for one ``arch``.

    ``schema`` is the JSON Schema of the arch's own keys (with their ``default`` values);
    ``schema_defs`` are named definitions it refers to as ``#/$defs/NAME`` (prefix them with
    the arch). ``emit`` receives the data with every default filled in.
    """

    arch: ClassVar[str]
    schema: ClassVar[dict]
    schema_defs: ClassVar[dict] = {}
    requires_num_classes: ClassVar[bool] = True  # False: the family's schema says when (a graph with outputs)

    @abstractmethod
    def emit(self, b: IRBuilder, data: dict) -> None:
        """Append the network's nodes to ``b`` (``data`` is schema-valid)."""

    @abstractmethod
    def write(self, data: dict, ir: IR, sizes: Mapping[str, int], selects: Mapping[str, tuple[int, ...]]) -> dict:
        """Return new spec data in this family's form with the given slot widths and selections (``selects``:
        a select slot's kept positions of the selected axis; a view slot's, its parent's kept positions)."""

    def renames(self, data: dict, ir: IR, sizes: Mapping[str, int]) -> dict[str, str]:
        """New module-name prefix -> old prefix, where pruning removed whole blocks (default: none)."""
        return {}

    def legacy_names(self, ir: IR) -> dict[str, str]:
        """Module names an earlier release gave this network -> today's (old weights files load through it)."""
        return {}


def register_family(cls: type[Family]) -> type[Family]:
    """Class decorator: make a family available under its ``arch`` name."""
    _FAMILIES.add(cls.arch, cls())
    return cls


def get_family(arch: str) -> Family:
    return _FAMILIES.get(arch)


def families() -> dict[str, Family]:
    return _FAMILIES.items()


def copy_data(data: Mapping[str, Any]) -> dict:
    return copy.deepcopy(dict(data))

