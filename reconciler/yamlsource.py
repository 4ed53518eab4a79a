"""Reads manifest YAML into plain JSON-like documents that remember where every value came from.

Each file is read once and composed once into YAML nodes by libyaml (PyYAML's C parser), which keeps
the line and column of every node; this module resolves the scalars itself and copies the positions
into a flat index (path → position) while converting to plain dicts, lists and scalars, substituting
``${VAR}`` references on the way. Scalars resolve as YAML 1.2's core types, exactly as the loader
always has (``yes`` and ``on`` are text, ``0o17`` is octal, ``1_000`` is 1000, an unquoted date is
kept as the text of that date), or as YAML 1.1's under a ``%YAML 1.1`` directive; nothing is ever
constructed from a tag. Hostile input stays bounded: file size, node count (alias bombs expand here,
so they are counted as expanded), list length and nesting depth are capped, duplicate keys are
refused, and YAML tags other than the core types' are refused rather than constructed.

A file with a ``%YAML`` directive or a reused anchor is composed from libyaml's events by PyYAML's
composer (libyaml's own composer knows no YAML version and refuses a reused anchor). A file libyaml
refuses is read again by PyYAML's pure-Python parser, which accepts what the loader always accepted
and words its errors as the loader always did (both descend from PyYAML's); so is every file when
PyYAML was built without libyaml.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import contextlib
import gc
import itertools
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from yaml.composer import Composer, ComposerError
from yaml.error import MarkedYAMLError, YAMLError
from yaml.events import AliasEvent, ScalarEvent, SequenceStartEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader, ReaderError
from yaml.scanner import Scanner

from reconciler.errors import Problem
from reconciler.variables import VariableError, substitute

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_NODES_PER_FILE = 200_000
MAX_DEPTH = 64
MAX_LIST_ITEMS = 1000  # jsonschema's uniqueItems is quadratic on items it cannot sort

PathPart = str | int
DocPath = tuple[PathPart, ...]
Version = tuple[int, int]
YAML_1_2: Version = (1, 2)


def render_path(path: DocPath) -> str:
    """``("clients", 0, "scopes", 1)`` → ``clients[0].scopes[1]``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text


class Position(NamedTuple):
    line: int  # 1-based
    column: int  # 1-based


# A position as the index of a document keeps it: a plain pair, which the garbage collector stops
# tracking (it tracks every instance of a class); a document of 20 clients holds hundreds.
Place = tuple[int, int]


@dataclass
class Document:
    """One YAML document as plain data, with the position of every key and value in it."""

    file: str
    index: int
    data: Any
    start: Position
    key_positions: dict[DocPath, Place] = field(default_factory=dict)  # line and column, 1-based
    value_positions: dict[DocPath, Place] = field(default_factory=dict)

    def position(self, path: DocPath, *, key: bool = False) -> Position:
        """Where ``path`` is written; falls back to the nearest enclosing value that is known."""
        table = self.key_positions if key else self.value_positions
        for cut in range(len(path), -1, -1):
            found = table.get(path[:cut]) or self.value_positions.get(path[:cut])
            if found:
                return Position(*found)
        return self.start

    def problem(self, path: DocPath, message: str, *, key: bool = False) -> Problem:
        pos = self.position(path, key=key)
        return Problem(self.file, pos.line, pos.column, render_path(path), message)


# --- composing: text → nodes ------------------------------------------------------------------------

_TAG = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL, TIMESTAMP = (
    _TAG + n for n in ("str", "int", "float", "bool", "null", "timestamp")
)
MAP, SEQ, OMAP, PAIRS, SET, BINARY = (_TAG + n for n in ("map", "seq", "omap", "pairs", "set", "binary"))
MERGE, VALUE = _TAG + "merge", _TAG + "value"
# The tag this module gives a plain scalar written without a tag (or with the non-specific "!"), to
# resolve it itself; a space can't be written in a tag, so no YAML text can give a node this one.
PLAIN = " plain"


class _Unresolved:
    """The resolver half of a loader: plain scalars keep the PLAIN tag (resolved while converting, by
    the document's YAML version), quoted and block ones are strings, collections get the core tags."""

    def resolve(self, kind: type[Node], _value: str | None, implicit: Any) -> str:
        if kind is ScalarNode:
            return PLAIN if implicit[0] else STR
        return SEQ if kind is SequenceNode else MAP

    def descend_resolver(self, parent: Any, index: Any) -> None:
        pass

    def ascend_resolver(self) -> None:
        pass


class _Composer(Composer):
    """PyYAML's composer, as the loader has always composed: a reused anchor names the node defined
    last (YAML 1.2 allows it; libyaml's own composer refuses it), and a ``%YAML`` directive holds for
    the documents after it too."""

    def __init__(self) -> None:
        super().__init__()
        self.version: Version = YAML_1_2
        self.versions: list[Version] = []

    def compose_document(self) -> Node | None:
        start = self.get_event()  # type: ignore[attr-defined]
        if start.version is not None:
            self.version = (start.version[0], start.version[1])
        self.versions.append(self.version)
        node = self.compose_node(None, None)
        self.get_event()  # type: ignore[attr-defined]
        self.anchors = {}
        return node

    def compose_node(self, _parent: Node | None, _index: Any) -> Node | None:
        if self.check_event(AliasEvent):  # type: ignore[attr-defined]
            event = self.get_event()  # type: ignore[attr-defined]
            if event.anchor not in self.anchors:
                raise ComposerError(None, None, f"found undefined alias {event.anchor!r}", event.start_mark)
            return self.anchors[event.anchor]
        anchor = self.peek_event().anchor  # type: ignore[attr-defined]
        if self.check_event(ScalarEvent):  # type: ignore[attr-defined]
            return self.compose_scalar_node(anchor)
        if self.check_event(SequenceStartEvent):  # type: ignore[attr-defined]
            return self.compose_sequence_node(anchor)
        return self.compose_mapping_node(anchor)


class _PureLoader(Reader, Scanner, Parser, _Composer, _Unresolved):
    """PyYAML's pure-Python reader, scanner and parser, with the composer and resolver above."""

    def __init__(self, text: str) -> None:
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)
        _Composer.__init__(self)


_LIBYAML: bool = yaml.__with_libyaml__  # False: PyYAML was built without libyaml
if _LIBYAML:
    from yaml._yaml import CParser

    class _FastLoader(CParser, _Unresolved):
        """libyaml's parser and composer, both in C, with this module's resolver."""

    class _EventLoader(_Composer, _Unresolved):
        """libyaml's parser (C) with the composer above (Python), for the files libyaml's composer
        would refuse (a reused anchor) or compose with the wrong YAML version (a ``%YAML 1.1``)."""

        def __init__(self, text: str) -> None:
            self._parser = CParser(text)
            self.check_event = self._parser.check_event
            self.peek_event = self._parser.peek_event
            self.get_event = self._parser.get_event
            _Composer.__init__(self)

        def dispose(self) -> None:
            self._parser.dispose()


# A %YAML directive starts a line; only then can a document's YAML version differ from 1.2.
_DIRECTIVE = re.compile("(?:\\A|[\r\n\x85\u2028\u2029\ufeff])%YAML")


@dataclass
class _Composed:
    roots: list[Node]  # each document's root node
    versions: list[Version] | None  # each document's YAML version (None: all 1.2)
    by_libyaml: bool  # libyaml's parser read it (which refuses escapes of lone surrogates)


def _compose(text: str) -> _Composed:
    """Every document's root node, by the quickest parser that reads the file as the loader always
    has."""
    directive = _DIRECTIVE.search(text) is not None
    if not directive:
        text = _bare_documents(text)
    if _LIBYAML:  # else every file is composed by the pure-Python parser
        try:
            if not directive:
                try:
                    return _Composed(_roots(_FastLoader(text)), None, by_libyaml=True)
                except ComposerError:
                    pass  # a reused anchor, which the composer below accepts
            events = _EventLoader(text)
            return _Composed(_roots(events), events.versions, by_libyaml=True)
        except YAMLError:
            pass  # the parser below decides, and says why in the words the loader always used
    loader = _PureLoader(text)
    return _Composed(_roots(loader), loader.versions, by_libyaml=False)


def _roots(loader: Any) -> list[Node]:
    try:
        roots: list[Node] = []
        while loader.check_node():
            roots.append(loader.get_node())
        return roots
    finally:
        loader.dispose()


_LINES = re.compile("(\r\n|\r|\n)")
_DOCUMENT_END = re.compile("\\.\\.\\.[ \t]*(?:#.*)?")
_NOTHING = re.compile("[ \t]*(?:#.*)?")


def _bare_documents(text: str) -> str:
    """YAML 1.2 lets a document follow a document end marker (``...``) without a ``---``, as the
    loader always read them (not under a ``%YAML`` directive: ruamel.yaml read those stricter); libyaml
    and PyYAML (YAML 1.1) want the ``---``, so such a ``...`` is read as the ``---`` it stands for (of
    the same length: every position stays where it is)."""
    if "..." not in text:
        return text
    parts = _LINES.split(text)
    lines = parts[::2]
    significant = [number for number, line in enumerate(lines) if not _NOTHING.fullmatch(line)]
    changed = False
    for this, following in itertools.pairwise(significant):
        ends_a_document = this != significant[0]  # the loader refused a "..." before any content
        if (
            ends_a_document
            and _DOCUMENT_END.fullmatch(lines[this])
            and not lines[following].startswith(("---", "...", "%"))
        ):
            lines[this] = "---" + lines[this][3:]
            changed = True
    if not changed:
        return text
    parts[::2] = lines
    return "".join(parts)


# --- resolving plain scalars (as ruamel.yaml's round-trip loader did, for YAML 1.2 and 1.1) ----------

_FLOAT_1_2 = r"""[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN)"""
_FLOAT_1_1 = r"""[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN)"""
_INT_1_2 = r"[-+]?0b[0-1_]+ |[-+]?0o?[0-7_]+ |[-+]?[0-9_]+ |[-+]?0x[0-9a-fA-F_]+"
_INT_1_1 = r"""[-+]?0b[0-1_]+ |[-+]?0?[0-7_]+ |[-+]?(?:0|[1-9][0-9_]*) |[-+]?0x[0-9a-fA-F_]+
    |[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+"""
_BOOL_1_2 = r"true|True|TRUE|false|False|FALSE"
_BOOL_1_1 = r"y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF"
_TIMESTAMP = r"""[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
    |[0-9][0-9][0-9][0-9] -[0-9][0-9]? -[0-9][0-9]?
    (?:[Tt]|[ \t]+)[0-9][0-9]?
    :[0-9][0-9] :[0-9][0-9] (?:\.[0-9]*)?
    (?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?"""
_DIGITS = "0123456789"
# (versions, tag, pattern, first characters), in the order they are tried.
_IMPLICIT: list[tuple[tuple[Version, ...], str, str, str | tuple[str, ...]]] = [
    (((1, 2),), BOOL, _BOOL_1_2, "tTfF"),
    (((1, 1),), BOOL, _BOOL_1_1, "yYnNtTfFoO"),
    (((1, 2),), FLOAT, _FLOAT_1_2, "-+0123456789."),
    (((1, 1),), FLOAT, _FLOAT_1_1, "-+0123456789."),
    (((1, 2),), INT, _INT_1_2, "-+0123456789"),
    (((1, 1),), INT, _INT_1_1, "-+0123456789"),
    (((1, 2), (1, 1)), MERGE, "<<", "<"),
    (((1, 2), (1, 1)), NULL, r"~ |null|Null|NULL | ", ("~", "n", "N", "")),
    (((1, 2), (1, 1)), TIMESTAMP, _TIMESTAMP, _DIGITS),
    (((1, 2), (1, 1)), VALUE, "=", "="),
]
_RESOLVERS: dict[Version, dict[str, list[tuple[str, re.Pattern[str]]]]] = {}


def _resolvers(version: Version) -> dict[str, list[tuple[str, re.Pattern[str]]]]:
    table = _RESOLVERS.get(version)
    if table is None:
        table = {}
        for versions, tag, pattern, first in _IMPLICIT:
            if version in versions:
                regexp = re.compile(f"^(?:{pattern})$", re.VERBOSE)
                for char in first:
                    table.setdefault(char, []).append((tag, regexp))
        _RESOLVERS[version] = table
    return table


def resolve_plain(value: str, version: Version = YAML_1_2) -> str:
    """The tag of a plain scalar: YAML 1.2's core schema, or 1.1's types under ``%YAML 1.1``."""
    for tag, regexp in _resolvers(version).get(value[:1], ()):
        if regexp.match(value):
            return tag
    return STR


# --- constructing scalars (the values, and the errors, ruamel.yaml's constructors gave) -------------


class _Malformed(Exception):
    """A value that breaks a rule of YAML's types, reported as a syntax error where it is written."""

    def __init__(self, problem: str, context: str | None, node: Node) -> None:
        super().__init__(problem)
        self.problem, self.context, self.node = problem, context, node


class _Unreadable(Exception):
    """A scalar its type cannot read (2001-02-30, ``!!int x``): the reason, where it is written."""

    def __init__(self, reason: BaseException, node: Node) -> None:
        super().__init__(str(reason))
        self.node = node


_BOOL_VALUES = {"yes": True, "no": False, "y": True, "n": False, "true": True, "false": False}
_BOOL_VALUES |= {"on": True, "off": False}


def _int(text: str, version: Version) -> int:
    value = text.replace("_", "")
    sign = 1
    if value[0] in "+-":
        sign = -1 if value[0] == "-" else 1
        value = value[1:]
    for prefix, base in (("0b", 2), ("0x", 16), ("0o", 8)):
        if value.startswith(prefix):
            if version > (1, 1):
                value[2]  # ruamel.yaml read a digit here: "0x" alone failed, and still does
            return sign * int(value[2:], base)
    if version != YAML_1_2 and len(value) > 1 and value[0] == "0":
        return sign * int(value, 8)
    if version != YAML_1_2 and ":" in value:  # YAML 1.1's base 60: 1:20 is 80
        whole = 0
        for part in value.split(":"):
            whole = whole * 60 + int(part)
        return sign * whole
    if version > (1, 1):
        value[0]  # ditto: nothing after the sign failed
    return sign * int(value)


def _float(text: str, version: Version) -> float:
    value = text.replace("_", "").lower()
    sign = -1 if value[0] == "-" else 1
    if value[0] in "+-":
        value = value[1:]
    if value == ".inf":
        return sign * float("inf")
    if value == ".nan":
        return float("nan")
    if version != YAML_1_2 and ":" in value:
        total = 0.0
        for part in value.split(":"):
            total = total * 60 + float(part)
        return sign * total
    if "e" in value:
        try:
            _mantissa, exponent = text.split("e")
        except ValueError:
            _mantissa, exponent = text.split("E")
        exponent[0]  # ruamel.yaml read the exponent's sign: "1e" failed, and still does
    return sign * float(value)


_TIMESTAMP_PARTS = re.compile(
    r"""^(?P<year>[0-9][0-9][0-9][0-9])
       -(?P<month>[0-9][0-9]?)
       -(?P<day>[0-9][0-9]?)
       (?:((?P<t>[Tt])|[ \t]+)
       (?P<hour>[0-9][0-9]?)
       :(?P<minute>[0-9][0-9])
       :(?P<second>[0-9][0-9])
       (?:\.(?P<fraction>[0-9]*))?
        (?:[ \t]*(?P<tz>Z|(?P<tz_sign>[-+])(?P<tz_hour>[0-9][0-9]?)
       (?::(?P<tz_minute>[0-9][0-9]))?))?)?$""",
    re.VERBOSE,
)


def _timestamp(node: ScalarNode) -> date | datetime:
    found = _TIMESTAMP_PARTS.match(node.value)
    if found is None:
        raise _Malformed(f'failed to construct timestamp from "{node.value}"', None, node)
    parts = found.groupdict()
    year, month, day = int(parts["year"]), int(parts["month"]), int(parts["day"])
    if parts["hour"] is None:
        return date(year, month, day)
    fraction = parts["fraction"] or ""
    micro = int(fraction[:6].ljust(6, "0")) if fraction else 0
    if len(fraction) > 6 and int(fraction[6]) > 4:
        micro += 1
    overflow = micro > 999_999  # .9999995 and up: ruamel.yaml rounded into the next second
    zone = None
    if parts["tz_sign"]:
        offset = timedelta(hours=int(parts["tz_hour"]), minutes=int(parts["tz_minute"] or 0))
        zone = timezone(-offset if parts["tz_sign"] == "-" else offset, name=parts["tz"])
    elif parts["tz"] == "Z":
        zone = timezone(timedelta(hours=0), name="Z")
    stamp = datetime(
        year, month, day, int(parts["hour"]), int(parts["minute"]), int(parts["second"]),
        0 if overflow else micro, zone,
    )  # fmt: skip
    return stamp + timedelta(seconds=1) if overflow else stamp


def _binary(node: ScalarNode) -> bytes:
    try:
        data = node.value.encode("ascii")
    except UnicodeEncodeError as exc:
        raise _Malformed(f"failed to convert base64 data into ascii: {exc!s}", None, node) from None
    try:
        return base64.decodebytes(data)
    except binascii.Error as exc:
        raise _Malformed(f"failed to decode base64 data: {exc!s}", None, node) from None


_SCALAR_TAGS = {NULL, BOOL, INT, FLOAT, TIMESTAMP, BINARY}
_KNOWN_TAGS = {PLAIN, STR, MAP, SEQ, OMAP, PAIRS, SET, *_SCALAR_TAGS}
_KIND_NAMES = {ScalarNode: "scalar", SequenceNode: "sequence", MappingNode: "mapping"}


def _kind(node: Node) -> str:
    return _KIND_NAMES.get(type(node), "node")


def _wrong_node(node: Node, tag: str) -> _Malformed:
    """What reading ``node`` as ``tag`` says when the node is not of that tag's kind."""
    found = _kind(node)
    if tag in (MAP, SET):
        return _Malformed(f"expected a mapping node, but found {found}", None, node)
    if tag == SEQ:
        return _Malformed(f"expected a sequence node, but found {found}", None, node)
    if tag in (OMAP, PAIRS):
        context = "while constructing an ordered map" if tag == OMAP else "while constructing pairs"
        return _Malformed(f"expected a sequence, but found {found}", context, node)
    return _Malformed(f"expected a scalar node, but found {found}", None, node)


def _typed_scalar(node: ScalarNode, tag: str, version: Version) -> Any:
    """The value of a scalar of one of the core scalar types (the types a manifest may use)."""
    if tag == NULL:
        return None
    if tag == TIMESTAMP:
        try:
            return _timestamp(node)
        except (ValueError, OverflowError) as exc:
            raise _Unreadable(exc, node) from None
    if tag == BINARY:
        return _binary(node)
    try:
        if tag == BOOL:
            return _BOOL_VALUES[node.value.lower()]
        if tag == INT:
            return _int(node.value, version)
        return _float(node.value, version)
    except (ValueError, ArithmeticError, LookupError) as exc:
        raise _Unreadable(exc, node) from None


# --- converting: nodes → plain data with positions ---------------------------------------------------


class _Budget:
    """Counts nodes so that an alias bomb fails fast instead of filling memory."""

    def __init__(self) -> None:
        self.nodes = 0


_TOO_MANY = f"more than {MAX_NODES_PER_FILE:,} values (after expanding aliases)"
_TOO_DEEP = f"nested more than {MAX_DEPTH} levels deep"


class _TooLargeError(Exception):
    pass


@dataclass(frozen=True)
class _NotAString:
    """A key that is a list or a mapping: equal to another of the same content, as ruamel.yaml's keys
    were, so that a repeated one is reported once."""

    kind: str
    content: tuple[Any, ...]


@dataclass(frozen=True)
class _RefusedTag:
    """A key whose tag is refused."""

    tag: str


# A key's position is that of its mapping when a merge key (<<) brought it in, as ruamel.yaml had it.
_Entry = tuple[Any, Node, tuple[int, int], tuple[int, int]]  # key, value node, key at, value at


class _Converter:
    """Turns one document's nodes into plain data, collecting positions and problems."""

    def __init__(
        self,
        doc: Document,
        variables: Mapping[str, str],
        budget: _Budget,
        version: Version = YAML_1_2,
        text: _Text | None = None,
        *,
        unicode_checked: bool = False,
    ) -> None:
        self.doc = doc
        self.variables = variables
        self.budget = budget
        self.version = version
        self.resolvers = _resolvers(version)
        self.text = text
        # libyaml refuses escapes of lone surrogates, so text it composed needs no check for one.
        self.unicode_checked = unicode_checked
        self.problems: list[Problem] = []

    def convert(self, node: Node, path: DocPath) -> Any:
        budget = self.budget
        budget.nodes += 1
        if budget.nodes > MAX_NODES_PER_FILE:
            raise _TooLargeError(_TOO_MANY)
        if len(path) > MAX_DEPTH:
            raise _TooLargeError(_TOO_DEEP)
        tag = node.tag
        if tag == PLAIN and type(node) is ScalarNode and node.value[:1] not in self.resolvers:
            return self._string(node.value, path, plain=not node.style)  # text: the usual case, quickly
        if tag not in _KNOWN_TAGS:
            return self._refuse(tag, path, node)
        if type(node) is ScalarNode:
            return self._scalar(node, tag, path)
        if tag == MAP and type(node) is MappingNode:
            return self._mapping(path, self._entries(node))
        if tag == SEQ and type(node) is SequenceNode:
            return self._sequence(node, path)
        return self._other_collection(node, tag, path)

    def _scalar(self, node: ScalarNode, tag: str, path: DocPath) -> Any:
        if tag == PLAIN:
            return self._plain(node, path)
        if tag == STR:
            return self._string(node.value, path, plain=False)
        if tag in _SCALAR_TAGS:
            return self._typed(node, tag, path)
        raise _wrong_node(node, tag)

    def _other_collection(self, node: Node, tag: str, path: DocPath) -> Any:
        """A collection tagged otherwise than as a plain mapping or list."""
        if (type(node) is MappingNode and tag == SET) or (type(node) is SequenceNode and tag == PAIRS):
            self.check(node)
            return self._unsupported("CommentedSet" if tag == SET else "list", path)
        if type(node) is SequenceNode and tag == OMAP:
            return self._mapping(path, self._ordered_map(node))
        if tag == STR:
            return self._refuse(tag, path, node)
        raise _wrong_node(node, tag)

    def check(self, node: Node, depth: int = 0) -> None:
        """Raise what converting ``node`` would raise (a value its type cannot read, a malformed
        collection), without converting it: ruamel.yaml read every value of a document, those the
        manifest cannot use too (under a key that is not a string, under a refused tag)."""
        if depth > MAX_DEPTH:
            return
        tag = node.tag
        if type(node) is ScalarNode:
            if tag == PLAIN:
                tag = self._resolve(node.value)
            if tag in _SCALAR_TAGS:
                _typed_scalar(node, tag, self.version)
            elif tag in (MAP, SEQ, OMAP, PAIRS, SET):
                raise _wrong_node(node, tag)
            return
        if tag not in _KNOWN_TAGS or tag == STR:
            try:
                for child in _children(node):
                    self.check(child, depth + 1)
            except (_Malformed, _Unreadable):
                raise _Malformed(
                    f"could not determine a constructor for the tag {tag!r}", None, node
                ) from None
            return
        for child in self._read_children(node, tag):
            self.check(child, depth + 1)

    def _read_children(self, node: Node, tag: str) -> list[Node]:
        """The values of a collection of a core tag, once its keys and its shape are read."""
        if type(node) is MappingNode and tag in (MAP, SET):
            return [value for _key, value, _key_at, _value_at in self._entries(node)]
        if type(node) is SequenceNode and tag == OMAP:
            return [value for _key, value, _key_at, _value_at in self._ordered_map(node)]
        if type(node) is SequenceNode and tag in (SEQ, PAIRS):
            if tag == PAIRS:
                self._pairs(node)
            return list(node.value)
        raise _wrong_node(node, tag)

    def _plain(self, node: ScalarNode, path: DocPath) -> Any:
        tag = self._resolve(node.value)
        if tag == STR:
            return self._string(node.value, path, plain=not node.style)  # C gives plain style as ""
        if tag in (MERGE, VALUE):
            return self._refuse(tag, path)
        return self._typed(node, tag, path)

    def _typed(self, node: ScalarNode, tag: str, path: DocPath) -> Any:
        value = _typed_scalar(node, tag, self.version)
        if isinstance(value, date):
            return value.isoformat()  # an unquoted date is still the text the author wrote
        if isinstance(value, bytes):
            return self._unsupported("bytes", path)
        return value

    def _refuse(self, tag: str, path: DocPath, node: Node | None = None) -> None:
        if node is not None and type(node) is not ScalarNode:
            self.check(node)  # its values are read all the same
        self.problems.append(self.doc.problem(path, f"YAML tag '{tag}' is not allowed"))

    def _unsupported(self, kind: str, path: DocPath) -> None:
        self.problems.append(self.doc.problem(path, f"unsupported YAML value of type {kind}"))

    def _key(self, node: Node) -> Any:
        """A key's value: text, another scalar type, or what it is when it is neither."""
        if type(node) is SequenceNode:
            return _NotAString("a list", tuple(self._key(item) for item in node.value))
        if type(node) is MappingNode:
            pairs = tuple((self._key(key), self._key(value)) for key, value in node.value)
            return _NotAString("a mapping", pairs)
        tag = node.tag
        if tag == PLAIN:
            tag = self._resolve(node.value)
        if tag in (STR, VALUE):
            return node.value
        if tag in _SCALAR_TAGS:
            return _typed_scalar(node, tag, self.version)  # type: ignore[arg-type]
        if tag in (MAP, SEQ, OMAP, PAIRS, SET):
            raise _wrong_node(node, tag)
        return _RefusedTag(tag)

    def _resolve(self, value: str) -> str:
        for tag, regexp in self.resolvers.get(value[:1], ()):
            if regexp.match(value):
                return tag
        return STR

    def _is_merge(self, key: Node) -> bool:
        if key.tag == MERGE:
            return True
        return key.value == "<<" and key.tag == PLAIN and self._resolve("<<") == MERGE

    def _entries(self, node: MappingNode) -> list[_Entry]:
        """The mapping's own keys, then those its merge keys (<<) bring in that it lacks."""
        at = (node.start_mark.line, node.start_mark.column)
        merged: list[MappingNode] = []
        merges = [
            pair
            for pair in node.value
            if (pair[0].tag == MERGE or pair[0].value == "<<") and self._is_merge(pair[0])
        ]
        if merges:
            if len(merges) > 1:
                raise _Malformed(
                    'found duplicate merge key "<<"', "while constructing a mapping", merges[1][0]
                )
            merged = _merge_sources(merges[0][1])
        entries: list[_Entry] = []
        seen: set[Any] = set()
        block = node.flow_style is False
        for key_node, value_node in node.value:
            if merges and self._is_merge(key_node):
                continue
            key = self._key(key_node)
            if _seen(key, seen):
                continue  # a second key "<<" that is not a merge: the first is kept, as ever
            key_at = (key_node.start_mark.line, key_node.start_mark.column)
            mark = value_node.start_mark
            value_at = (mark.line, mark.column)
            if value_node.value == "" and self.text is not None and value_node.end_mark.index == mark.index:
                value_at = self.text.empty_value(mark.line, mark.column, block=block)  # "key:", no value
            entries.append((key, value_node, key_at, value_at))
        for source in merged:
            for key, value_node, _key_at, _value_at in self._entries(source):
                if not _seen(key, seen):
                    entries.append((key, value_node, at, at))
        return entries

    def _ordered_map(self, node: SequenceNode) -> list[_Entry]:
        """``!!omap``: a list of one-key mappings, read as one mapping (positioned at the list)."""
        at = (node.start_mark.line, node.start_mark.column)
        entries: list[_Entry] = []
        seen: set[Any] = set()
        for item in node.value:
            if type(item) is not MappingNode:
                raise _Malformed(
                    f"expected a mapping of length 1, but found {_kind(item)}",
                    "while constructing an ordered map",
                    item,
                )
            if len(item.value) != 1:
                raise _Malformed(
                    f"expected a single mapping item, but found {len(item.value):d} items",
                    "while constructing an ordered map",
                    item,
                )
            key_node, value_node = item.value[0]
            key = self._key(key_node)
            if _seen(key, seen):
                raise _Unreadable(AssertionError(), node)  # ruamel.yaml asserted unique keys
            entries.append((key, value_node, at, at))
        return entries

    def _pairs(self, node: SequenceNode) -> None:
        for item in node.value:
            if type(item) is not MappingNode:
                found = _kind(item)
                raise _Malformed(
                    f"expected a mapping of length 1, but found {found}", "while constructing pairs", item
                )
            if len(item.value) != 1:
                raise _Malformed(
                    f"expected a single mapping item, but found {len(item.value):d} items",
                    "while constructing pairs",
                    item,
                )

    def _mapping(self, path: DocPath, entries: list[_Entry]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        key_positions, value_positions = self.doc.key_positions, self.doc.value_positions
        for key, value_node, (line, col), (vline, vcol) in entries:
            if type(key) is not str:
                if isinstance(key, _RefusedTag):
                    message = f"YAML tag '{key.tag}' is not allowed"
                else:
                    message = f"keys must be strings, not {_key_kind(key)}"
                self.problems.append(Problem(self.doc.file, line + 1, col + 1, render_path(path), message))
                self.check(value_node)
                continue
            if not self.unicode_checked and max(key, default="") >= "\ud800" and _not_unicode(key):
                self.problems.append(Problem(self.doc.file, line + 1, col + 1, render_path(path), _SURROGATE))
                self.check(value_node)
                continue
            child = (*path, key)
            key_positions[child] = (line + 1, col + 1)
            value_positions[child] = (vline + 1, vcol + 1)
            result[key] = self.convert(value_node, child)
        return result

    def _sequence(self, node: SequenceNode, path: DocPath) -> list[Any]:
        items: list[Any] = []
        value_positions = self.doc.value_positions
        for index, item in enumerate(node.value):
            child = (*path, index)
            mark = item.start_mark
            value_positions[child] = (mark.line + 1, mark.column + 1)
            items.append(self.convert(item, child))
        return items

    def _string(self, text: str, path: DocPath, *, plain: bool) -> Any:
        if not self.unicode_checked and _not_unicode(text):
            self.problems.append(self.doc.problem(path, _SURROGATE))
            return None
        if "${" not in text:
            return text
        try:
            result = substitute(text, self.variables)
        except VariableError as exc:
            self.problems.append(self.doc.problem(path, str(exc)))
            return text
        if _not_unicode(result.text):  # a variable's value from undecodable bytes in the environment
            self.problems.append(self.doc.problem(path, f"the value of a variable: {_SURROGATE}"))
            return None
        if plain and result.whole:
            return _retype(result.text)
        return result.text


class _Text:
    """A file's text, to place an empty value (``key:`` and nothing after it) where the loader always
    placed one, so that a problem with it is reported where it always was: in a block mapping, where
    the next token starts (libyaml: right after the colon); in a flow mapping, right after the colon
    (libyaml: where the next token starts)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._starts: list[int] = []

    def empty_value(self, line: int, column: int, *, block: bool) -> tuple[int, int]:
        """Where the empty value that libyaml (or PyYAML) places at ``line``, ``column`` (0-based) is."""
        if not self._starts:
            self._starts = [0, *(m.end() for m in _BREAK.finditer(self.text))]
        if line >= len(self._starts):
            return line, column
        at = self._starts[line] + column
        if block:
            return self._next_token(at, line, column)
        before = at
        while before > 0 and self.text[before - 1] in _BLANKS:
            before -= 1
        if before in (at, 0) or self.text[before - 1] != ":":
            return line, column
        found = bisect.bisect_right(self._starts, before) - 1
        return found, before - self._starts[found]

    def _next_token(self, at: int, line: int, column: int) -> tuple[int, int]:
        """The first character after blanks, comments and line breaks; but a comment right after the
        colon kept the value at the colon, as ruamel.yaml had it."""
        text, colon = self.text, (line, column)
        while at < len(text) and text[at] in " \t":
            at, column = at + 1, column + 1
        if at < len(text) and text[at] == "#":
            return colon
        while at < len(text):
            if text[at] in " \t":
                at, column = at + 1, column + 1
            elif text[at] == "#":
                found = _BREAK.search(text, at)
                at = found.start() if found else len(text)
            elif found := _BREAK.match(text, at):
                at, line, column = found.end(), line + 1, 0
            else:
                break
        return line, column


_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
_BLANKS = " \t\r\n\x85\u2028\u2029"


def _children(node: Node) -> list[Node]:
    if type(node) is MappingNode:
        return [child for pair in node.value for child in pair]
    return list(node.value) if type(node) is SequenceNode else []


def _merge_sources(value: Node) -> list[MappingNode]:
    """The mappings a merge key's value names: one mapping, or a list of them (the first wins)."""
    if type(value) is MappingNode:
        return [value]
    if type(value) is SequenceNode:
        for item in value.value:
            if type(item) is not MappingNode:
                raise _Malformed(
                    f"expected a mapping for merging, but found {_kind(item)}",
                    "while constructing a mapping",
                    item,
                )
        return list(value.value)
    raise _Malformed(
        f"expected a mapping or list of mappings for merging, but found {_kind(value)}",
        "while constructing a mapping",
        value,
    )


def _seen(key: Any, seen: set[Any]) -> bool:
    """Whether ``key`` is already in ``seen`` (adding it): keys compare as a dict's keys do."""
    if isinstance(key, _RefusedTag):
        return False  # ruamel.yaml's tagged keys were never equal
    if key in seen:
        return True
    seen.add(key)
    return False


_KEY_KINDS = {
    type(None): "NoneType",
    bool: "bool",
    int: "int",
    float: "float",
    date: "date",
    datetime: "datetime",
}


def _key_kind(key: Any) -> str:
    if isinstance(key, _NotAString):
        return key.kind
    return _KEY_KINDS.get(type(key), type(key).__name__)


_SURROGATE = "text with a lone surrogate (\\ud800-\\udfff) is not valid Unicode"


def _not_unicode(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (YAML escapes allow one; no output can print it)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


_INT = re.compile(r"[-+]?[0-9]+")
_FLOAT = re.compile(r"[-+]?([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")


MAX_INT_DIGITS = 100  # Python refuses int() of over 4,300 digits; no manifest number comes near


def _retype(text: str) -> Any:
    """Type an unquoted ``${VAR}`` value as YAML would have typed the same text, scalars only."""
    if text in ("true", "True", "TRUE"):
        return True
    if text in ("false", "False", "FALSE"):
        return False
    if _INT.fullmatch(text) and len(text) <= MAX_INT_DIGITS:  # longer: kept as text, as no field takes it
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text


# --- reading a file ------------------------------------------------------------------------------------


def _yaml_error(file: str, exc: YAMLError, text: str = "") -> Problem:
    if isinstance(exc, ReaderError):
        before = text[: exc.position]
        line, column = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
        character = exc.character if isinstance(exc.character, str) else chr(exc.character)
        return Problem(file, line, column, "", f"the character {character!r} is not allowed in YAML")
    if isinstance(exc, MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        context = f" ({exc.context})" if exc.context else ""
        message = f"YAML syntax error: {_short(exc.problem or 'invalid YAML')}{context}{_flow_hint(exc)}"
        return Problem(file, mark.line + 1, mark.column + 1, "", message)
    return Problem(file, 1, 1, "", f"YAML error: {_short(_one_line(str(exc)))}")


def _flow_hint(exc: MarkedYAMLError) -> str:
    # "${" inside [...] or {...} reads as a flow mapping: the usual cause, so name the fix.
    if "flow" in (exc.context or "") and "${" in str(getattr(exc.problem_mark, "buffer", "") or ""):
        return "; quote values that contain ${...} inside [ ] or { }"
    return ""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _decode(file: str, raw: bytes) -> str | Problem:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        column = len(before[before.rfind(b"\n") + 1 :].decode("utf-8", errors="replace")) + 1
        return Problem(file, line, column, "", "file is not valid UTF-8")


def _at(node: Node, display: str, *, message: str) -> Problem:
    """A problem located where ``node`` starts."""
    return Problem(display, node.start_mark.line + 1, node.start_mark.column + 1, "", message)


def read_documents(
    path: Path, display: str, variables: Mapping[str, str]
) -> tuple[list[Document], list[Problem]]:
    """Parse every document of one file; never raises for bad content, returns problems instead."""
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO or a device would block the read, or never end
            return [], [Problem(display, 1, 1, "", "not a regular file")]
        size = info.st_size
        if size > MAX_FILE_BYTES:
            return [], [
                Problem(display, 1, 1, "", f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
            ]
        decoded = _decode(display, path.read_bytes())
    except OSError as exc:
        return [], [Problem(display, 1, 1, "", f"cannot read file: {exc.strerror or exc}")]
    if isinstance(decoded, Problem):
        return [], [decoded]
    documents: list[Document] = []
    problems: list[Problem] = []
    with _collector_paused():
        _read(decoded, display, variables, documents, problems)
    return documents, problems


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while one file is read: a file is many small objects, none of
    them garbage in a cycle, and collecting as they are made cost as much as making them. The node
    graph of a refused self-referencing alias is the one cycle; it is collected afterwards."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _read(
    decoded: str,
    display: str,
    variables: Mapping[str, str],
    documents: list[Document],
    problems: list[Problem],
) -> None:
    try:
        composed = _compose(decoded)
        problems.extend(_check_structure(composed.roots, display=display))
        if not problems:
            _convert(
                composed,
                source=decoded,
                display=display,
                variables=variables,
                documents=documents,
                problems=problems,
            )
    except YAMLError as exc:
        problems.append(_yaml_error(display, exc, decoded))
    except _Malformed as exc:
        context = f" ({exc.context})" if exc.context else ""
        problems.append(_at(exc.node, display, message=f"YAML syntax error: {_short(exc.problem)}{context}"))
    except _Unreadable as exc:
        problems.append(
            _at(exc.node, display, message=f"a value cannot be read as YAML: {_one_line(str(exc))}")
        )
    except _TooLargeError as exc:
        problems.append(Problem(display, 1, 1, "", f"file is too large or too deeply nested: {exc}"))
    except RecursionError:
        problems.append(Problem(display, 1, 1, "", "file is nested too deeply to read"))
    except (ValueError, ArithmeticError, LookupError, TypeError, AttributeError, AssertionError) as exc:
        # PyYAML's pure-Python scanner raises plain exceptions on some escapes ("\U00110000"); the same
        # exception from our own code is a bug, for the crash log, not a YAML problem.
        if not _raised_by_yaml(exc):
            raise
        problems.append(Problem(display, 1, 1, "", f"a value cannot be read as YAML: {_one_line(str(exc))}"))


def _raised_by_yaml(exc: BaseException) -> bool:
    """Whether the innermost Python frame that raised ``exc`` is PyYAML's."""
    trace = exc.__traceback__
    if trace is None:
        return False
    while trace.tb_next is not None:
        trace = trace.tb_next
    return str(trace.tb_frame.f_globals.get("__name__", "")).startswith("yaml.")


def _convert(
    composed: _Composed,
    *,
    source: str,
    display: str,
    variables: Mapping[str, str],
    documents: list[Document],
    problems: list[Problem],
) -> None:
    budget = _Budget()
    text = _Text(source)
    versions = composed.versions
    for index, node in enumerate(composed.roots):
        # A document's start is its top mapping's or list's; a scalar document has none of its own.
        collection = type(node) is not ScalarNode and node.tag != PAIRS
        start = (
            Position(node.start_mark.line + 1, node.start_mark.column + 1) if collection else Position(1, 1)
        )
        doc = Document(display, index, None, start)
        version = versions[index] if versions else YAML_1_2
        converter = _Converter(doc, variables, budget, version, text, unicode_checked=composed.by_libyaml)
        doc.data = converter.convert(node, ())
        problems.extend(converter.problems)
        documents.append(doc)


def _check_structure(roots: list[Node], *, display: str) -> list[Problem]:
    """Duplicate keys, over-long lists and the expanded size, from the node graph: before anything is
    converted, so an alias bomb costs nothing but this walk (sizes are memoized per node)."""
    problems: list[Problem] = []
    sizes: dict[int, int] = {}
    total = 0
    for root in roots:
        total += _walk(root, display, sizes, set(), problems)
        if total > MAX_NODES_PER_FILE:
            raise _TooLargeError(_TOO_MANY)
    return problems


def _walk(node: Node, display: str, sizes: dict[int, int], active: set[int], problems: list[Problem]) -> int:
    if type(node) is ScalarNode:
        return 1
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in active:
        raise _TooLargeError("an alias refers to itself")
    active.add(id(node))
    size = 1
    if type(node) is MappingNode:
        seen: set[str] = set()
        for key, value in node.value:
            if type(key) is ScalarNode:
                size += 1
                if key.value in seen and key.value != "<<":
                    problems.append(
                        _at(key, display, message=f"duplicate key '{_short(_one_line(key.value))}'")
                    )
                seen.add(key.value)
            else:
                size += _walk(key, display, sizes, active, problems)
            size += 1 if type(value) is ScalarNode else _walk(value, display, sizes, active, problems)
    else:
        if len(node.value) > MAX_LIST_ITEMS:
            problems.append(_at(node, display, message=f"a list of more than {MAX_LIST_ITEMS:,} items"))
        for item in node.value:
            size += 1 if type(item) is ScalarNode else _walk(item, display, sizes, active, problems)
    active.discard(id(node))
    sizes[id(node)] = size
    if size > MAX_NODES_PER_FILE:
        raise _TooLargeError(_TOO_MANY)
    return size
