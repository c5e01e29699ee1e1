"""JSON Schema validation of spec and plan data, with every error turned into a located one-liner.

The common part of the spec schema ships as package data (``schema.json``); each family adds
its own keys (``slimspec.families.schema`` assembles the whole). :func:`issues_for_schema`
runs a schema and rewrites jsonschema's errors as :class:`SpecIssue` s such as
``cfg[3]: expected a positive integer or 'M', got -5`` or
``stages[0]: unknown key 'widht' (did you mean 'width'?)``. Channel-set strings are also
checked for syntax (widths are checked later, by the families).
"""
from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable, Iterator
from functools import lru_cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker, validators
from jsonschema.exceptions import ValidationError

from .channels import check_channel_set
from ..errors import Path, SpecError, SpecIssue

# A schema with this (non-standard, ignored by validators) key reports unknown top-level keys itself.
TOP_KEYS_CHECKED_ELSEWHERE = "x-top-level-keys-checked-by"
# Keywords that constrain a value of the right type: inside an anyOf, report them with the
# anyOf's own phrase ("expected a positive integer or 'M', got -5").
_VALUE_KEYWORDS = {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "not",
                   "minLength", "maxLength"}
_MISMATCH_KEYWORDS = {"type", "const", "enum"}


@lru_cache(maxsize=1)
def _schema_text() -> str:
    return resources.files(__package__).joinpath("schema.json").read_text(encoding="utf-8")


def base_schema() -> dict:
    """The family-independent part of the spec JSON Schema (draft 2020-12), as a fresh dict."""
    return json.loads(_schema_text())


def _is_int(_checker: Any, value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _channel_set_ok(value: object) -> bool:
    if isinstance(value, str):
        check_channel_set(value)
    return True


@lru_cache(maxsize=1)
def _validator_class() -> Any:
    """Draft 2020-12 where YAML's ``1.0`` is not an integer (a width must be a real int)."""
    return validators.extend(
        Draft202012Validator,
        type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_int),
    )


def _format_checker() -> FormatChecker:
    formats = FormatChecker(formats=())
    formats.checks("channel-set", raises=ValueError)(_channel_set_ok)
    return formats


def make_validator(schema: dict) -> Draft202012Validator:
    """A validator for ``schema`` with slimspec's integer rule and channel-set format."""
    return _validator_class()(schema, format_checker=_format_checker())


# ---- describing values and schemas ---------------------------------------------------------

def kind_of(value: object) -> str:
    """The YAML kind of a value: list, mapping, string, integer, number, boolean, null."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def _describe(value: object) -> str:
    """A short description of a value for 'got ...'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:37] + "...")
    if isinstance(value, list):
        if not value:
            return "an empty list"
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, dict):
        keys = ", ".join(str(key) for key in value)
        return f"a mapping with {len(value)} key{'s' if len(value) != 1 else ''} ({keys})" if value else "an empty mapping"
    return f"a {type(value).__name__} ({value})"


def _literal(value: object) -> str:
    return repr(value) if isinstance(value, str) else json.dumps(value)


def resolve(node: dict, root: dict) -> dict:
    """Follow a local ``$ref`` (``#/$defs/name``) within the schema ``root``."""
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return resolve(target, root) if isinstance(target, dict) else {}
    return node


def _join(phrases: list[str]) -> str:
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " or " + phrases[-1]


_TYPE_PHRASES = {"integer": "an integer", "number": "a number", "string": "a string", "boolean": "true or false",
                 "array": "a list", "object": "a mapping", "null": "null"}


def _phrase(node: dict, root: dict) -> str:
    """What a schema expects, as a noun phrase ('a positive integer or 'M'')."""
    if "title" in node:
        return str(node["title"])
    if "$ref" in node:
        return _phrase(resolve(node, root), root)
    if "const" in node:
        return _literal(node["const"])
    if "enum" in node:
        return "one of " + ", ".join(_literal(value) for value in node["enum"])
    for key in ("anyOf", "oneOf"):
        if key in node:
            return _join([_phrase(branch, root) for branch in node[key]])
    kind = node.get("type")
    if isinstance(kind, list):
        return _join([_TYPE_PHRASES.get(k, k) for k in kind])
    if kind in ("integer", "number"):
        return _number_phrase(node)
    if kind == "string" and node.get("minLength") == 1:
        return "a non-empty string"
    if kind == "array" and node.get("minItems") == 1:
        return "a non-empty list"
    return _TYPE_PHRASES.get(kind, "a valid value") if isinstance(kind, str) else "a valid value"


def _number_phrase(node: dict) -> str:
    """'a positive integer', 'a number in (0, 1]', 'an integer >= 2', ..."""
    noun = _TYPE_PHRASES[node["type"]]
    low, high = node.get("minimum"), node.get("maximum")
    xlow, xhigh = node.get("exclusiveMinimum"), node.get("exclusiveMaximum")
    if node["type"] == "integer" and high is None and xhigh is None and xlow is None and low in (0, 1):
        return "a positive integer" if low == 1 else "a non-negative integer"
    lower = f"[{low}" if low is not None else f"({xlow}" if xlow is not None else None
    upper = f"{high}]" if high is not None else f"{xhigh})" if xhigh is not None else None
    if lower and upper:
        return f"{noun} in {lower}, {upper}"
    if lower:
        return f"{noun} {'>=' if low is not None else '>'} {lower[1:]}"
    if upper:
        return f"{noun} {'<=' if high is not None else '<'} {upper[:-1]}"
    return noun


def _choices(node: dict, root: dict) -> list[str]:
    """String constants a schema accepts (for 'did you mean')."""
    node = resolve(node, root)
    found = [v for v in node.get("enum", []) if isinstance(v, str)]
    if isinstance(node.get("const"), str):
        found.append(node["const"])
    for key in ("anyOf", "oneOf"):
        for branch in node.get(key, []):
            found.extend(_choices(branch, root))
    return found


def _suggest(word: object, choices: Iterable[str]) -> str:
    if not isinstance(word, str):
        return ""
    lowered = {choice.lower(): choice for choice in choices}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
    return f" (did you mean {lowered[close[0]]!r}?)" if close and lowered[close[0]] != word else ""


def _expected(path: Path, node: dict, value: object, root: dict) -> SpecIssue:
    hint = _suggest(value, _choices(node, root))
    return SpecIssue.at(path, f"expected {_phrase(node, root)}, got {_describe(value)}{hint}")


def unknown_key(path: Path, key: object, known: Iterable[str]) -> SpecIssue:
    return SpecIssue.at(path, f"unknown key {str(key)!r}{_suggest(str(key), known)}")


# ---- converting jsonschema errors ----------------------------------------------------------

def _type_ok(errors: list[ValidationError]) -> bool:
    """False when a union branch failed because the value has the wrong type altogether."""
    for error in errors:
        if error.relative_path:
            continue
        if error.validator in _MISMATCH_KEYWORDS:
            return False
        if error.validator in ("anyOf", "oneOf") and not any(_type_ok(b) for b in _branches(error).values()):
            return False
    return True


def _branches(error: ValidationError) -> dict[Any, list[ValidationError]]:
    groups: dict[Any, list[ValidationError]] = {}
    for sub in error.context or ():
        groups.setdefault(sub.relative_schema_path[0] if sub.relative_schema_path else None, []).append(sub)
    return groups


def _convert_union(error: ValidationError, root: dict) -> Iterator[SpecIssue]:
    """An anyOf failed: follow the one branch of the value's type, else say what was expected."""
    path = tuple(error.absolute_path)
    matching = [errs for errs in _branches(error).values() if _type_ok(errs)]
    if len(matching) != 1:
        yield _expected(path, error.schema, error.instance, root)
        return
    for sub in matching[0]:
        scalar = not isinstance(sub.instance, (list, dict))
        if tuple(sub.absolute_path) == path and sub.validator in _VALUE_KEYWORDS and scalar:
            yield _expected(path, error.schema, error.instance, root)
        else:
            yield from _convert(sub, root)


def _convert(error: ValidationError, root: dict) -> Iterator[SpecIssue]:
    """One jsonschema error (from the schema ``root``) -> located one-line issues."""
    path = tuple(error.absolute_path)
    keyword = error.validator
    value = error.instance
    node = error.schema if isinstance(error.schema, dict) else {}
    if keyword in ("anyOf", "oneOf"):
        yield from _convert_union(error, root)
    elif keyword == "required":
        for key in error.validator_value:
            if isinstance(value, dict) and key not in value:
                yield SpecIssue.at(path, f"missing required key {key!r}")
    elif keyword in ("additionalProperties", "unevaluatedProperties"):
        if keyword == "unevaluatedProperties" and not path and root.get(TOP_KEYS_CHECKED_ELSEWHERE):
            return  # the spec schema's top-level keys are checked by the family registry (it knows the arch)
        known = list(node.get("properties", {}))
        patterns = list(node.get("patternProperties", {}))
        for key in value:
            if key not in known and not any(re.search(pattern, key) for pattern in patterns):
                yield unknown_key(path, key, known)
    elif keyword in ("format", "pattern") and node.get("format") == "channel-set":
        try:
            check_channel_set(value)
        except ValueError as exc:
            yield SpecIssue.at(path, str(exc))
        else:
            yield _expected(path, node, value, root)
    elif keyword == "enum" and "title" not in node:
        choices = ", ".join(_literal(v) for v in error.validator_value)
        hint = _suggest(value, _choices(node, root))
        yield SpecIssue.at(path, f"expected one of {choices}, got {_describe(value)}{hint}")
    else:
        yield _expected(path, node, value, root)


# ---- checks outside the schema -------------------------------------------------------------

def _walk(value: object, path: Path = ()) -> Iterator[tuple[Path, object]]:
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, path + (str(key),))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, path + (index,))


def _plain_keys(value: object) -> object:
    """A copy with every mapping key made a string (jsonschema assumes JSON)."""
    if isinstance(value, dict):
        return {str(key): _plain_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain_keys(item) for item in value]
    return value


def _extra_issues(data: dict) -> Iterator[SpecIssue]:
    for path, value in _walk(data):
        if isinstance(value, float) and not math.isfinite(value):
            yield SpecIssue.at(path, f"expected a finite number, got {value!r}")
        if isinstance(value, dict):
            for key in value:
                if not isinstance(key, str):
                    yield SpecIssue.at(path, f"keys must be strings, got {_describe(key)}")


def validator_issues(validator: Draft202012Validator, data: object) -> list[SpecIssue]:
    """Every problem ``validator`` finds in ``data`` (plus non-finite numbers), located and sorted."""
    plain = _plain_keys(data)
    issues: list[SpecIssue] = list(_extra_issues(data)) if isinstance(data, dict) else []
    for error in validator.iter_errors(plain):
        issues.extend(_convert(error, validator.schema))
    return SpecError(issues).issues


def issues_for_schema(schema: dict, data: object) -> list[SpecIssue]:
    """Validate ``data`` against a JSON Schema (e.g. the plan schema) with located messages."""
    return validator_issues(make_validator(schema), data)
