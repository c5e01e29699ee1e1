"""Reading and writing spec YAML.

* :func:`parse_yaml` reads with PyYAML's safe loader only, within the limits of :mod:`.limits`
  (size, nodes after alias expansion, depth, integer size; no duplicate keys) and
  turns syntax errors into a located :class:`SpecError`.
* :func:`update_spec_text` rewrites a parent spec's text with new data, keeping comments,
  key order, quoting and flow/block style of everything that did not change (ruamel.yaml
  round-trip mode, which builds only plain data containers). ruamel only ever reads text that
  :func:`parse_yaml` has already accepted, so every document slimspec reads is bounded by
  the same limits and read by one parser's rules.
* :func:`read_yaml_file` reads a spec or plan file within the size limit, keeping its line
  endings, with one-line errors for missing, unreadable, non-UTF-8 or too-long names.
* :func:`format_spec` writes data from scratch the way a person would.

Values are compared as PyYAML reads them (YAML 1.1: ``yes`` is true), since that is how
specs are loaded. New strings that could read as something else (``"0-5,9"``, ``"7"``,
``"yes"``) are double-quoted.
"""
from __future__ import annotations

import io
import math
import os
import re
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark
from ruamel.yaml.nodes import ScalarNode as RtScalarNode
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.resolver import VersionedResolver
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, ScalarString, SingleQuotedScalarString
from ruamel.yaml.tokens import CommentToken

from .channels import is_channel_set_text
from . import limits
from ..errors import SpecError, SpecIssue
from ..utils.fileio import note_input

_STR_TAG = "tag:yaml.org,2002:str"
_NULL_TAG = "tag:yaml.org,2002:null"
_FLOW_MAP_MAX = 100  # a new mapping of scalars is written inline when about this short


# ---- reading -------------------------------------------------------------------------------

# What YAML allows in a stream (PyYAML's Reader refuses anything else with a bare traceback).
_NOT_PRINTABLE = re.compile("[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010FFFF]")
_INT_SIGNS = str.maketrans("", "", "_+-")


class _LimitError(yaml.YAMLError):
    """A document over one of the limits in :mod:`slimspec.specio.limits`."""

    def __init__(self, problem: str, mark: yaml.Mark | None):
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


try:  # libyaml's event parser (the same YAML 1.1 events, about 4x faster) under the Python composer below
    from yaml._yaml import CParser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    _SafeBase: type = yaml.SafeLoader
else:
    class _SafeBase(yaml.composer.Composer, CParser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
        """``yaml.CSafeLoader`` with PyYAML's Python composer, so that nodes can be counted as composed."""

        def __init__(self, stream: str):
            CParser.__init__(self, stream)
            yaml.composer.Composer.__init__(self)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)


class _BoundedLoader(_SafeBase):
    """PyYAML's SafeLoader with the limits of :mod:`.limits` and no duplicate mapping keys.

    Nodes are counted while the document is composed, before any Python object is built:
    each finished node knows how many nodes it stands for with its aliases expanded, and
    every open sequence or mapping keeps a running total, so an alias bomb is refused after
    a few thousand events. Depth is limited the same way (the composer is recursive, so
    this also keeps it far from Python's recursion limit).
    """

    def __init__(self, stream: str):
        super().__init__(stream)
        self._expanded: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes with aliases expanded, height)
        self._open: list[list[int]] = []  # per open container: [nodes so far, height so far]

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        container = isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent))
        if container:
            if len(self._open) >= limits.MAX_DEPTH:
                raise _LimitError(f"more than {limits.MAX_DEPTH} nested levels (limit MAX_DEPTH)", event.start_mark)
            self._open.append([1, 1])
        node = super().compose_node(parent, index)
        if isinstance(event, yaml.AliasEvent):
            size = self._expanded.get(id(node))
            if size is None:
                raise _LimitError(f"alias *{event.anchor} refers to a node that contains it (recursive alias)",
                                  event.start_mark)
        elif container:
            count, height = self._open.pop()
            size = (count, height)
        else:
            size = (1, 0)
        self._expanded[id(node)] = size
        if self._open:
            total = self._open[-1]
            total[0] += size[0]
            total[1] = max(total[1], size[1] + 1)
            if total[0] > limits.MAX_NODES:
                raise _LimitError(f"more than {limits.MAX_NODES:,} YAML nodes with aliases expanded "
                                  f"(limit MAX_NODES)", event.start_mark)
            if total[1] + len(self._open) - 1 > limits.MAX_DEPTH:
                raise _LimitError(f"more than {limits.MAX_DEPTH} nested levels with aliases expanded "
                                  f"(limit MAX_DEPTH)", event.start_mark)
        return node

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        text = str(node.value)
        if len(text.translate(_INT_SIGNS)) > limits.MAX_INT_DIGITS:
            value = None
        else:
            value = super().construct_yaml_int(node)
        if value is None or abs(value) > limits.MAX_INT:
            shown = text if len(text) <= 24 else f"{text[:12]}...{text[-6:]} ({len(text)} characters)"
            raise _LimitError(f"integer {shown} is too large (limit MAX_INT: at most {limits.MAX_INT:,} = 2**63 - 1)",
                              node.start_mark)
        return value

    def construct_mapping(self, node: yaml.Node, deep: bool = False) -> dict:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Mark] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:
                    continue  # unhashable; the base class reports it
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first defined on line {first.line + 1})",
                        key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, OverflowError) as exc:  # e.g. 2020-13-45, !!float x
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {node.tag.rsplit(':', 1)[-1]} value ({exc})", node.start_mark) from None


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


def _yaml_issue(exc: yaml.YAMLError) -> SpecIssue:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if problem.startswith("exceeded maximum nesting depth"):  # libyaml's own guard (PyYAML >= 6.0.4) can fire first
        problem, exc.context = f"more than {limits.MAX_DEPTH} nested levels (limit MAX_DEPTH)", None  # type: ignore[attr-defined]
    context = getattr(exc, "context", None)
    context_mark = getattr(exc, "context_mark", None)
    if context and context_mark is not None and (mark is None or context_mark.line != mark.line):
        problem = f"{problem} ({context} started on line {context_mark.line + 1})"
    elif context:
        problem = f"{problem} ({context})"
    location = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return SpecIssue(location, problem)


def _text_issue(text: str) -> SpecIssue | None:
    """The first thing that makes ``text`` unreadable before parsing: its size or a control character."""
    if len(text) > limits.MAX_FILE_BYTES or len(text.encode("utf-8", "surrogatepass")) > limits.MAX_FILE_BYTES:
        return SpecIssue("", f"larger than {limits.MAX_FILE_BYTES:,} bytes (limit MAX_FILE_BYTES)")
    bad = _NOT_PRINTABLE.search(text)
    if bad is None:
        return None
    before = text[: bad.start()]
    line = len(_LINE_BREAK.findall(before)) + 1
    column = bad.start() - max(before.rfind("\n"), before.rfind("\r"))
    return SpecIssue(f"line {line}, column {column}",
                     f"control character U+{ord(bad.group()):04X} is not allowed in YAML")


def parse_yaml(text: str, source: str = "<spec>") -> object:
    """Parse YAML text safely and within :mod:`.limits`; every problem raises a located SpecError.

    Like ``yaml.safe_load`` (YAML 1.1, plain Python data only), but duplicate keys, control
    characters, recursive aliases and documents over the size, node-count (aliases expanded),
    depth or integer limits are refused before any object is built from them.
    """
    issue = _text_issue(text)
    if issue is not None:
        raise SpecError([issue], source)
    try:
        loader = _BoundedLoader(text)
    except yaml.YAMLError as exc:  # pragma: no cover - _text_issue found it first
        raise SpecError([_yaml_issue(exc)], source) from None
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise SpecError([_yaml_issue(exc)], source) from None
    finally:
        loader.dispose()


def _shorten(name: str, keep: int = 60) -> str:
    return name if len(name) <= keep else f"{name[: keep - 20]}...{name[-16:]}"


def name_issue(path: str) -> SpecIssue | None:
    """A located issue when a component of ``path`` is longer than the file system allows."""
    for part in str(path).replace(os.sep, "/").split("/"):
        size = len(part.encode("utf-8", "surrogateescape"))
        if size > limits.MAX_NAME_BYTES:
            return SpecIssue("", f"file name of {size} bytes is too long (limit MAX_NAME_BYTES: "
                                 f"{limits.MAX_NAME_BYTES})")
    return None


def read_yaml_file(path: str | os.PathLike, what: str = "spec") -> tuple[str, str]:
    """``(text, label)`` of a YAML file, read within :data:`.limits.MAX_FILE_BYTES`.

    Line endings are kept as they are in the file (a CRLF spec stays CRLF when rewritten).
    Every problem (missing, a folder, unreadable, too large, not UTF-8, a name too long)
    raises a one-line :class:`SpecError` naming the file.
    """
    label = str(path)
    issue = name_issue(label)
    if issue is not None:
        raise SpecError([issue], _shorten(label))
    file = Path(label)
    note_input(file)  # an input of the command: no output of it may replace this file
    try:
        if file.is_dir():
            raise SpecError([SpecIssue("", f"is a directory, not a {what} file")], label)
        if not file.is_file():
            raise SpecError([SpecIssue("", f"no such {what} file")], label)
        with open(file, "rb") as handle:
            data = handle.read(limits.MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SpecError([SpecIssue("", f"cannot read file ({exc.strerror or exc})")], label) from None
    if len(data) > limits.MAX_FILE_BYTES:
        raise SpecError([SpecIssue("", f"larger than {limits.MAX_FILE_BYTES:,} bytes (limit MAX_FILE_BYTES)")], label)
    try:
        return data.decode("utf-8"), label
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - data.rfind(b"\n", 0, exc.start)
        raise SpecError([SpecIssue(f"line {line}, column {column}",
                                   f"not UTF-8 text (byte 0x{data[exc.start]:02x})")], label) from None


# ---- writing: scalars ----------------------------------------------------------------------

class _Verbatim:
    """A loaded null, bool or number kept as spelled (``~``, ``True``, ``+5``, ``1.50``).

    ``value`` is what PyYAML reads from ``text``; ruamel would respell (and sometimes round)
    such scalars, so they are written back from ``text``.
    """

    __slots__ = ("value", "tag", "text")

    def __init__(self, value: Any, tag: str, text: str):
        self.value = value
        self.tag = tag
        self.text = text


def _float_text(value: float) -> str:
    """A float spelled so that YAML 1.1 (PyYAML) and 1.2 both read it back as that float."""
    if math.isnan(value):
        return ".nan"
    if math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    text = repr(value)
    mantissa, _, exponent = text.partition("e")
    if exponent:
        if "." not in mantissa:
            mantissa += ".0"
        if exponent[0] not in "+-":
            exponent = "+" + exponent
        return f"{mantissa}e{exponent}"
    return text


class _Representer(RoundTripRepresenter):
    """Round-trip representer: explicit ``null`` for new nulls, PyYAML-safe floats, and no
    ``&id001`` aliases for values that merely share a Python object."""

    def ignore_aliases(self, data: Any) -> bool:
        anchor = getattr(data, "anchor", None)
        return getattr(anchor, "value", None) is None


def _represent_none(rep: RoundTripRepresenter, _data: None) -> Any:
    return rep.represent_scalar(_NULL_TAG, "null")


def _represent_verbatim(rep: RoundTripRepresenter, data: _Verbatim) -> Any:
    return rep.represent_scalar(data.tag, data.text)


def _represent_float(rep: RoundTripRepresenter, data: float) -> Any:
    return rep.represent_scalar("tag:yaml.org,2002:float", _float_text(data))


_Representer.add_representer(type(None), _represent_none)
_Representer.add_representer(_Verbatim, _represent_verbatim)
_Representer.add_representer(float, _represent_float)

_PY_RESOLVER = yaml.resolver.Resolver()  # YAML 1.1, how specs are read
_RT_RESOLVER = VersionedResolver()  # YAML 1.2, how ruamel reads and writes
_SAFE_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-/]*")


def _needs_quotes(text: str) -> bool:
    """True unless the string is a plain word that every YAML reader takes as that string."""
    if is_channel_set_text(text) or not _SAFE_PLAIN.fullmatch(text):
        return True
    implicit = (True, False)
    return (_PY_RESOLVER.resolve(yaml.ScalarNode, text, implicit) != _STR_TAG
            or _RT_RESOLVER.resolve(RtScalarNode, text, implicit) != _STR_TAG)


def _new_scalar(value: Any, like: Any = None) -> Any:
    """A new scalar for the document; strings get quotes when needed (or like the old value)."""
    if isinstance(value, str):
        if isinstance(like, (SingleQuotedScalarString, DoubleQuotedScalarString)):
            return type(like)(value)
        return DoubleQuotedScalarString(value) if _needs_quotes(value) else str(value)
    return value


# ---- writing: building and comparing -------------------------------------------------------

def _is_scalar(value: Any) -> bool:
    return not isinstance(value, (dict, list, tuple))


def _flat(value: dict) -> bool:
    """All values scalars or lists of scalars, and short enough to read on one line."""
    size = 2
    for key, item in value.items():
        if isinstance(item, (list, tuple)):
            if not all(_is_scalar(x) for x in item):
                return False
            size += sum(len(str(x)) + 2 for x in item) + 2
        elif not _is_scalar(item):
            return False
        else:
            size += len(str(item)) + 2
        size += len(str(key)) + 2
    return size <= _FLOW_MAP_MAX


def _build(value: Any, depth: int, in_flow: bool = False, seq_item: bool = False, like: Any = None) -> Any:
    """A new document node for ``value`` in the house style (see format_spec)."""
    if isinstance(value, dict):
        node = CommentedMap()
        flow = in_flow or not value or (depth >= 2 and _flat(value) and not (seq_item and len(value) == 1))
        node.fa.set_flow_style() if flow else node.fa.set_block_style()
        for key, item in value.items():
            node[_new_scalar(key)] = _build(item, depth + 1, flow)
        return node
    if isinstance(value, (list, tuple)):
        seq = CommentedSeq()
        flow = in_flow or all(_is_scalar(x) for x in value)
        if isinstance(like, CommentedSeq) and not in_flow:
            flow = bool(like.fa.flow_style())
        seq.fa.set_flow_style() if flow else seq.fa.set_block_style()
        for item in value:
            seq.append(_build(item, depth + 1, flow, seq_item=True))
        return seq
    return _new_scalar(value, like)


def _same(a: Any, b: Any) -> bool:
    """Strict equality of plain data: bool, int and float are different types."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    return type(a) is type(b) and a == b


def _as_read(old: Any) -> Any:
    """What PyYAML reads from the text ruamel writes for a loaded scalar."""
    if isinstance(old, _Verbatim):
        return old.value
    if old is None:
        return None
    if isinstance(old, ScalarString):
        return str(old)
    if type(old) in (bool, int):
        return old
    if type(old) is str:
        if _PY_RESOLVER.resolve(yaml.ScalarNode, old, (True, False)) == _STR_TAG:
            return old
        try:
            return parse_yaml(old)
        except (yaml.YAMLError, ValueError):
            return old
    stream = io.StringIO()
    _yaml(2, 4, 2).dump([old], stream)
    return parse_yaml(stream.getvalue())[0]


def _plain(node: Any) -> Any:
    """A loaded document node as PyYAML would read it."""
    if isinstance(node, CommentedMap):
        return {_as_read(key): _plain(value) for key, value in node.items()}
    if isinstance(node, CommentedSeq):
        return [_plain(item) for item in node]
    return _as_read(node)


class _Updater:
    """Applies new data onto a ruamel document in place, tracking whether anything changed."""

    def __init__(self) -> None:
        self.changed = False

    def value(self, old: Any, new: Any, depth: int, in_flow: bool) -> Any:
        if isinstance(new, dict) and isinstance(old, CommentedMap):
            self.mapping(old, new, depth, in_flow)
            return old
        if isinstance(new, (list, tuple)) and isinstance(old, CommentedSeq):
            self.sequence(old, new, depth, in_flow)
            return old
        if _is_scalar(new) and _is_scalar(old) and not isinstance(old, (CommentedMap, CommentedSeq)):
            if _same(_as_read(old), new):
                return old
        self.changed = True
        return _build(new, depth, in_flow, like=old)

    def mapping(self, node: CommentedMap, new: dict, depth: int, in_flow: bool) -> None:
        flow = in_flow or bool(node.fa.flow_style())
        if flow and not in_flow and depth > 0 and not _flat(new) and not _same(_plain(node), new):
            # e.g. a stage {width: 64, blocks: 18} whose blocks become a list of mappings:
            # one long line would be unreadable, so the stage turns into a block mapping.
            node.fa.set_block_style()
            flow = False
        for key in [k for k in node if k not in new]:
            _delete_key(node, key)
            self.changed = True
        for key, item in new.items():
            if key in node:
                updated = self.value(node[key], item, depth + 1, flow)
                if updated is not node[key]:
                    node[key] = updated
            else:
                node[_new_scalar(key)] = _build(item, depth + 1, flow)
                self.changed = True

    def sequence(self, seq: CommentedSeq, new: list | tuple, depth: int, in_flow: bool) -> None:
        flow = in_flow or bool(seq.fa.flow_style())
        if flow and not in_flow and not all(_is_scalar(x) for x in new) and not _same(_plain(seq), new):
            # e.g. densenet blocks [12, 12, 12] becoming lists of channel sets: one item a line
            seq.fa.set_block_style()
            flow = False
        for index, item in enumerate(new[: len(seq)]):
            was_flow = isinstance(seq[index], CommentedMap) and bool(seq[index].fa.flow_style())
            updated = self.value(seq[index], item, depth + 1, flow)
            if updated is not seq[index]:
                seq[index] = updated
            elif was_flow and not updated.fa.flow_style():
                _move_item_comment(seq, index)
        if len(new) != len(seq):
            self.changed = True
            while len(seq) > len(new):
                _delete_last(seq)
            for item in new[len(seq):]:
                seq.append(_build(item, depth + 1, flow, seq_item=True))


def _split_comment(token: Any) -> tuple[str, str]:
    """A ruamel end-of-line comment token's value -> (its own line, the comment lines after it)."""
    text = token.value if token is not None else ""
    first, newline, rest = text.partition("\n")
    return first + newline, rest


def _block(node: Any) -> bool:
    return isinstance(node, (CommentedMap, CommentedSeq)) and len(node) > 0 and not node.fa.flow_style()


def _attach_after(node: Any, lines: str, last: Any = None) -> bool:
    """Put comment lines after the last line a block node prints (or its entry ``last``)."""
    if not _block(node):
        return False
    if last is None:
        last = list(node)[-1] if isinstance(node, CommentedMap) else len(node) - 1
    if _attach_after(node[last], lines):
        return True
    slot = 2 if isinstance(node, CommentedMap) else 0
    entry = node.ca.items.setdefault(last, [None, None, None, None])
    if entry[slot] is None:
        entry[slot] = CommentToken("\n" + lines, CommentMark(0), None)
    else:
        entry[slot].value += lines
    return True


def _delete_key(node: CommentedMap, key: Any) -> None:
    """Delete a key but keep the comment lines ruamel attached to it that belong to the next key."""
    keys = list(node)
    position = keys.index(key)
    _, following = _split_comment(node.ca.items.get(key, [None] * 4)[2])
    del node[key]
    node.ca.items.pop(key, None)
    if following.strip() and position > 0:
        _attach_after(node, following, keys[position - 1])


def _delete_last(seq: CommentedSeq) -> None:
    index = len(seq) - 1
    _, following = _split_comment(seq.ca.items.get(index, [None])[0])
    del seq[index]
    seq.ca.items.pop(index, None)
    if following.strip() and index > 0:
        _attach_after(seq, following)


def _move_item_comment(seq: CommentedSeq, index: int) -> None:
    """A flow mapping item turned block: its end-of-line comment goes to its first key's line."""
    entry = seq.ca.items.get(index)
    node = seq[index]
    if not entry or entry[0] is None or not isinstance(node, CommentedMap) or not node:
        return
    key = next(iter(node))
    if _block(node[key]) or (node.ca.items.get(key) or [None] * 4)[2] is not None:
        return  # the comment stays after the dash
    first, following = _split_comment(entry[0])
    column = entry[0].column
    seq.ca.items.pop(index)
    if first.strip():
        node.ca.items.setdefault(key, [None, None, None, None])[2] = CommentToken(first, CommentMark(column), None)
    if following.strip():
        _attach_after(node, following)


# ---- writing: layout -----------------------------------------------------------------------

def _yaml(mapping: int, sequence: int, offset: int, explicit_start: bool = False) -> YAML:
    out = YAML(typ="rt")
    out.Representer = _Representer
    out.preserve_quotes = True
    out.width = 1 << 16
    out.indent(mapping=mapping, sequence=sequence, offset=offset)
    out.explicit_start = explicit_start
    return out


_KEY_LINE = re.compile(r"^( *)(?!- )[^\s#][^#]*:[ \t]*(#.*)?$")


def _guess_indent(text: str) -> tuple[int, int, int]:
    """(mapping, sequence, offset) indents as ruamel understands them, guessed from block nesting."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    mapping = sequence = offset = None
    for prev, line in zip(lines, lines[1:]):
        match = _KEY_LINE.match(prev)
        if not match:
            continue
        base = len(match.group(1))
        indent = len(line) - len(line.lstrip(" "))
        body = line.lstrip(" ")
        nested = body[1:].lstrip(" ").startswith("- ")  # "-   - x": ruamel's own nested-list layout
        if body.startswith("- ") and sequence is None and indent >= base and not nested:
            offset = indent - base
            sequence = indent + 1 + len(body[1:]) - len(body[1:].lstrip(" ")) - base
        elif not body.startswith("-") and indent > base and mapping is None:
            mapping = indent - base
    mapping = mapping or 2
    if sequence is None:
        sequence, offset = mapping + 2, 2
    return mapping, max(sequence, (offset or 0) + 2), offset or 0


_TOKEN = re.compile(r"[^\s,\]\}#]+")
_LINE_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")


def _scalar_tag(value: Any) -> str:
    kind = "null" if value is None else "bool" if isinstance(value, bool) else \
        "int" if isinstance(value, int) else "float"
    return f"tag:yaml.org,2002:{kind}"


def _verbatim(value: Any, lines: list[str], position: tuple[int, int]) -> Any:
    """``value`` (a loaded null, bool or number) wrapped with its source spelling."""
    line, column = position
    # a value's token follows its ':' (or a sequence's '-', '[' or ','); an empty value's
    # position is the next token's, which must not be taken for it
    inside = 0 <= line < len(lines) and lines[line][:column].rstrip().endswith((":", "-", "[", ","))
    match = _TOKEN.match(lines[line], column) if inside else None
    text = match.group(0) if match else ""
    if value is None and text not in ("null", "Null", "NULL", "~"):
        return _Verbatim(None, _NULL_TAG, "")
    if not text:
        return value
    try:
        read = parse_yaml(text)
    except Exception:  # noqa: BLE001 - e.g. an explicit tag as the token; keep ruamel's value
        return value
    return _Verbatim(read, _scalar_tag(value), text)


def _keep_spelling(node: Any, lines: list[str]) -> None:
    """Wrap loaded nulls, bools and numbers so ruamel writes them as spelled (not ``True`` -> ``true``)."""
    if isinstance(node, CommentedMap):
        keys: list[Any] = list(node)
    elif isinstance(node, CommentedSeq):
        keys = list(range(len(node)))
    else:
        return
    for key in keys:
        value = node[key]
        if value is not None and not isinstance(value, (bool, int, float)):
            _keep_spelling(value, lines)
            continue
        try:
            position = node.lc.value(key) if isinstance(node, CommentedMap) else node.lc.item(key)
        except (KeyError, TypeError, AttributeError, IndexError):
            continue  # e.g. a key merged in with '<<'
        node[key] = _verbatim(value, lines, position)


def _dump(document: Any, out: YAML) -> str:
    stream = io.StringIO()
    out.dump(document, stream)
    text = stream.getvalue()
    return text if text.endswith("\n") else text + "\n"


def _newline(text: str) -> str:
    """The line ending a text uses (that of its first line): ``"\\r\\n"`` or ``"\\n"``."""
    first = text.find("\n")
    return "\r\n" if first > 0 and text[first - 1] == "\r" else "\n"


def update_spec_text(parent_text: str, new_data: dict) -> str:
    """The parent spec's text rewritten to hold ``new_data``, keeping its comments and layout.

    Mappings are updated key by key (new keys appended, missing keys removed), equal-length
    sequences element by element, other sequences resized keeping their style; values that
    did not change keep their exact text, and a CRLF parent gives a CRLF result. The result is checked by reading it back; in the
    rare layouts ruamel cannot write correctly it falls back to :func:`format_spec`.
    """
    newline = _newline(parent_text)
    if newline != "\n":  # ruamel writes "\n": work on LF text, then give the file its line endings back
        text = update_spec_text(parent_text.replace(newline, "\n"), new_data)
        return parent_text if text == parent_text.replace(newline, "\n") else text.replace("\n", newline)
    parsed = parse_yaml(parent_text)
    if not isinstance(parsed, dict):
        raise SpecError([SpecIssue("", "a spec must be a YAML mapping")], "<parent spec>")
    if not isinstance(new_data, dict):
        raise TypeError(f"new_data must be a dict, got {type(new_data).__name__}")
    lines = _LINE_BREAK.split(parent_text)  # lines as YAML (and ruamel's marks) count them
    content = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
    explicit_start = bool(content) and (content[0].rstrip() == "---" or content[0].startswith("--- "))
    out = _yaml(*_guess_indent(parent_text), explicit_start=explicit_start)
    document = out.load(parent_text)
    _keep_spelling(document, lines)
    updater = _Updater()
    updater.mapping(document, new_data, 0, False)
    if not updater.changed:
        return parent_text if parent_text.endswith("\n") else parent_text + "\n"
    text = _dump(document, out)
    if not _same(parse_yaml(text), new_data):
        return format_spec(new_data)  # a layout ruamel cannot keep; never write wrong data
    return text


def format_spec(data: dict) -> str:
    """Spec data as YAML a person would write: block mappings, cfg lists and small stage
    mappings inline (``{width: 16, blocks: 9, stride: 2}``), channel sets quoted."""
    if not isinstance(data, dict):
        raise TypeError(f"a spec must be a dict, got {type(data).__name__}")
    text = _dump(_build(data, 0), _yaml(2, 4, 2))
    if not _same(parse_yaml(text), data):
        raise ValueError("spec data holds values that cannot be written as YAML and read back unchanged")
    return text
