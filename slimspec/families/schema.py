"""The spec JSON Schema, assembled from the family registry; validation and defaults.

``spec/schema.json`` holds what every spec shares (``slimspec``, ``name``, ``input``,
``num_classes``, ``init``, ``pruned`` and the common ``$defs``). Each family contributes
its own keys (``Family.schema``) and named definitions (``Family.schema_defs``); the arch
enum and the per-arch ``allOf`` branches are generated here, so a new family is one file
plus its registration. :func:`normalize` fills every schema ``default`` once, so family code
reads ``data["kernel"]`` instead of repeating defaults.
"""
from __future__ import annotations

import copy
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from ..errors import SpecError, SpecIssue
from ..specio.validate import (TOP_KEYS_CHECKED_ELSEWHERE, base_schema, kind_of, make_validator, resolve,
                             unknown_key, validator_issues)
from ..ir import IR, IRBuilder
from ..ir.ops import table_version
from .base import Family, families


def spec_schema() -> dict:
    """The full spec schema (draft 2020-12) for the families registered now, as a fresh dict."""
    return copy.deepcopy(_assembled(tuple(sorted(families())), table_version())[0])


@lru_cache(maxsize=8)
def _assembled(archs: tuple[str, ...], ops_version: int) -> tuple[dict, Any]:
    """The schema and its validator for these families and this version of the op table."""
    registry = families()
    root = base_schema()
    root[TOP_KEYS_CHECKED_ELSEWHERE] = "slimspec.families.schema"
    root["properties"]["arch"] = {**root["properties"]["arch"], "enum": list(archs)}
    branches = []
    for arch in archs:
        family = registry[arch]
        for name, definition in family.schema_defs.items():
            if name in root["$defs"]:
                raise ValueError(f"family {arch}: schema definition {name!r} is already defined")
            root["$defs"][name] = definition
        root["$defs"][arch] = family.schema
        then: dict = {"$ref": f"#/$defs/{arch}"}
        if family.requires_num_classes:
            then["required"] = ["num_classes"]
        branches.append({"if": {"properties": {"arch": {"const": arch}}, "required": ["arch"]}, "then": then})
    root["allOf"] = branches
    # top-level keys are checked by _unknown_top_keys: the validator skips the published schema's
    # unevaluatedProperties, which would walk the whole document a second time
    return root, make_validator({key: value for key, value in root.items() if key != "unevaluatedProperties"})


def _unknown_top_keys(root: dict, data: dict) -> Iterator[SpecIssue]:
    common = list(root["properties"])
    archs = root["properties"]["arch"]["enum"]
    owned = {arch: list(root["$defs"][arch].get("properties", {})) for arch in archs}
    arch = data.get("arch")
    if arch in owned:
        known = common + owned[arch]
        for key in data:
            if str(key) in known:
                continue
            owners = [name for name, keys in owned.items() if str(key) in keys]
            if owners:
                yield SpecIssue.at((), f"unknown key {str(key)!r} for arch {arch!r} (a key of: {', '.join(owners)})")
            else:
                yield unknown_key((), key, known)
    else:
        known = common + sorted({key for keys in owned.values() for key in keys})
        for key in data:
            if str(key) not in known:
                yield unknown_key((), key, known)


def schema_issues(data: object) -> list[SpecIssue]:
    """Every schema problem of parsed spec data, located and sorted; ``[]`` when valid."""
    if not isinstance(data, dict):
        got = "an empty document" if data is None else kind_of(data)
        return [SpecIssue.at((), f"a spec must be a YAML mapping, got {got}")]
    if "arch" in data and not isinstance(data["arch"], str):  # a name, before anything looks it up
        got = {"list": "a list", "mapping": "a mapping", "null": "null", "boolean": "a boolean"}.get(
            kind_of(data["arch"]), f"a {type(data['arch']).__name__}")
        return [SpecIssue.at(("arch",), f"expected a family name, got {got}")]
    root, validator = _assembled(tuple(sorted(families())), table_version())
    issues = validator_issues(validator, data)
    issues.extend(_unknown_top_keys(root, {str(key): value for key, value in data.items()}))
    return SpecError(issues).issues


_MISSING = object()


def _fill(value: Any, node: dict, root: dict) -> Any:
    """``value`` with the defaults of ``node`` (and of the sub-schemas its items match) filled in."""
    node = resolve(node, root)
    if isinstance(value, dict):
        props = node.get("properties", {})
        out = {key: _fill(item, props.get(key, {}), root) for key, item in value.items()}
        for key, sub in props.items():
            if key not in out:
                default = sub.get("default", resolve(sub, root).get("default", _MISSING))
                if default is not _MISSING:
                    out[key] = copy.deepcopy(default)
        for branch in node.get("anyOf", []):
            if resolve(branch, root).get("type") == "object":
                return _fill(out, branch, root)
        return out
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [_fill(item, node["items"], root) for item in value]
    return value


def normalize(family: Family, data: dict) -> dict:
    """A copy of schema-valid spec ``data`` with every default of the family's schema filled in."""
    root = _assembled(tuple(sorted(families())), table_version())[0]
    return _fill(_fill(data, root, root), root["$defs"][family.arch], root)  # the assembled, cached copy


def to_ir(family: Family, data: dict, source: str | None = None) -> IR:
    """The IR of schema-valid spec ``data`` of ``family`` (defaults filled in first)."""
    b = IRBuilder(family.arch, str(data.get("name", family.arch)), data["input"], data.get("num_classes"), data)
    try:
        family.emit(b, normalize(family, data))
    except SpecError as exc:
        raise SpecError(list(exc.issues) + b.issues, source) from None
    return b.finish(source)
