"""Reads manifest YAML into plain JSON-like documents that remember where every value came from.

ruamel.yaml's round-trip loader keeps line and column of each key, value and item; this module copies
them into a flat index (path → position) while converting to plain dicts, lists and scalars, and
substitutes ``${VAR}`` references on the way. It also keeps hostile input bounded: file size, node
count (alias bombs expand here, so they are counted as expanded) and nesting depth are capped, and
YAML tags other than ``!!str`` are refused rather than constructed.
"""

from __future__ import annotations

import re
import stat
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError

from reconciler.errors import Problem
from reconciler.variables import VariableError, substitute

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_NODES_PER_FILE = 200_000
MAX_DEPTH = 64
MAX_LIST_ITEMS = 1000  # jsonschema's uniqueItems is quadratic on items it cannot sort
_STR_TAG = "tag:yaml.org,2002:str"
_PLAIN_TAGS = {None, "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}

PathPart = str | int
DocPath = tuple[PathPart, ...]


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


@dataclass(frozen=True)
class Position:
    line: int  # 1-based
    column: int  # 1-based


@dataclass
class Document:
    """One YAML document as plain data, with the position of every key and value in it."""

    file: str
    index: int
    data: Any
    start: Position
    key_positions: dict[DocPath, Position] = field(default_factory=dict)
    value_positions: dict[DocPath, Position] = field(default_factory=dict)

    def position(self, path: DocPath, *, key: bool = False) -> Position:
        """Where ``path`` is written; falls back to the nearest enclosing value that is known."""
        table = self.key_positions if key else self.value_positions
        for cut in range(len(path), -1, -1):
            found = table.get(path[:cut]) or self.value_positions.get(path[:cut])
            if found:
                return found
        return self.start

    def problem(self, path: DocPath, message: str, *, key: bool = False) -> Problem:
        pos = self.position(path, key=key)
        return Problem(self.file, pos.line, pos.column, render_path(path), message)


class _Budget:
    """Counts nodes so that an alias bomb fails fast instead of filling memory."""

    def __init__(self) -> None:
        self.nodes = 0

    def spend(self) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES_PER_FILE:
            raise _TooLargeError(f"more than {MAX_NODES_PER_FILE:,} values (after expanding aliases)")


class _TooLargeError(Exception):
    pass


class _Converter:
    """Turns one ruamel document into plain data, collecting positions and problems."""

    def __init__(self, doc: Document, variables: Mapping[str, str], budget: _Budget) -> None:
        self.doc = doc
        self.variables = variables
        self.budget = budget
        self.problems: list[Problem] = []

    def convert(self, node: Any, path: DocPath) -> Any:
        self.budget.spend()
        if len(path) > MAX_DEPTH:
            raise _TooLargeError(f"nested more than {MAX_DEPTH} levels deep")
        tag = getattr(getattr(node, "tag", None), "value", None)
        if isinstance(node, TaggedScalar):
            return self._tagged_scalar(node, path)
        if isinstance(node, CommentedMap | CommentedSeq) and tag not in _PLAIN_TAGS:
            self.problems.append(self.doc.problem(path, f"YAML tag '{tag}' is not allowed"))
            return None
        if isinstance(node, CommentedMap):
            return self._mapping(node, path)
        if isinstance(node, CommentedSeq):
            return self._sequence(node, path)
        return self._scalar(node, path)

    def _mapping(self, node: CommentedMap, path: DocPath) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key in node:
            line, col = _key_position(node, key)
            if not isinstance(key, str):
                kind = "a list" if isinstance(key, tuple | list) else type(key).__name__
                message = f"keys must be strings, not {kind}"
                self.problems.append(Problem(self.doc.file, line + 1, col + 1, render_path(path), message))
                continue
            child = (*path, key)
            if max(key, default="") >= "\ud800" and _not_unicode(key):
                self.problems.append(Problem(self.doc.file, line + 1, col + 1, render_path(path), _SURROGATE))
                continue
            self.doc.key_positions[child] = Position(line + 1, col + 1)
            vline, vcol = _value_position(node, key, (line, col))
            self.doc.value_positions[child] = Position(vline + 1, vcol + 1)
            result[key] = self.convert(node[key], child)
        return result

    def _sequence(self, node: CommentedSeq, path: DocPath) -> list[Any]:
        items: list[Any] = []
        for index, item in enumerate(node):
            child = (*path, index)
            line, col = node.lc.item(index)
            self.doc.value_positions[child] = Position(line + 1, col + 1)
            items.append(self.convert(item, child))
        return items

    def _tagged_scalar(self, node: TaggedScalar, path: DocPath) -> Any:
        tag = node.tag.value
        if tag == _STR_TAG:
            return self._string(str(node.value), path, plain=False)
        self.problems.append(self.doc.problem(path, f"YAML tag '{tag}' is not allowed"))
        return None

    def _scalar(self, node: Any, path: DocPath) -> Any:
        if node is None or isinstance(node, bool):
            return node
        if isinstance(node, int):
            return int(node)
        if isinstance(node, float):
            return float(node)
        if isinstance(node, datetime | date):
            return node.isoformat()  # an unquoted date is still the text the author wrote
        if isinstance(node, str):
            return self._string(str(node), path, plain=type(node) is str)
        self.problems.append(self.doc.problem(path, f"unsupported YAML value of type {type(node).__name__}"))
        return None

    def _string(self, text: str, path: DocPath, *, plain: bool) -> Any:
        if _not_unicode(text):
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


_SURROGATE = "text with a lone surrogate (\\ud800-\\udfff) is not valid Unicode"


def _not_unicode(text: str) -> bool:
    """Whether ``text`` holds a lone surrogate (YAML escapes allow one; no output can print it)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _key_position(node: CommentedMap, key: Any) -> tuple[int, int]:
    # Keys a merge key (<<) brought in have no position of their own: use the mapping's.
    try:
        line, col = node.lc.key(key)
        return int(line), int(col)
    except (KeyError, TypeError):
        return _node_position(node)


def _value_position(node: CommentedMap, key: Any, fallback: tuple[int, int]) -> tuple[int, int]:
    try:
        line, col = node.lc.value(key)
        return int(line), int(col)
    except (KeyError, TypeError):
        return fallback


def _node_position(node: Any) -> tuple[int, int]:
    lc = getattr(node, "lc", None)
    line, col = getattr(lc, "line", None), getattr(lc, "col", None)
    return (line, col) if isinstance(line, int) and isinstance(col, int) else (0, 0)


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


def _yaml_error(file: str, exc: YAMLError, text: str = "") -> Problem:
    if isinstance(exc, ReaderError):
        before = text[: exc.position]
        line, column = before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1
        character = exc.character if isinstance(exc.character, str) else chr(exc.character)
        return Problem(file, line, column, "", f"the character {character!r} is not allowed in YAML")
    if isinstance(exc, MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        problem = exc.problem or "invalid YAML"
        duplicate = re.match(r'found duplicate key "(.*?)" with value', problem, re.DOTALL)
        if duplicate:
            message = f"duplicate key '{_short(duplicate.group(1))}'"
        else:
            context = f" ({exc.context})" if exc.context else ""
            message = f"YAML syntax error: {_short(problem)}{context}{_flow_hint(exc)}"
        return Problem(file, mark.line + 1, mark.column + 1, "", message)
    return Problem(file, 1, 1, "", f"YAML error: {_short(_one_line(str(exc)))}")


def _flow_hint(exc: MarkedYAMLError) -> str:
    # "${" inside [...] or {...} reads as a flow mapping: the usual cause, so name the fix.
    if "flow" in (exc.context or "") and "${" in str(exc.problem_mark.buffer or ""):
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ruamel's warnings would print library source among the problems
        try:
            problems.extend(_check_structure(decoded, display=display))
            if not problems:
                _construct(
                    decoded, display=display, variables=variables, documents=documents, problems=problems
                )
        except YAMLError as exc:
            problems.append(_yaml_error(display, exc, decoded))
        except _TooLargeError as exc:
            problems.append(Problem(display, 1, 1, "", f"file is too large or too deeply nested: {exc}"))
        except RecursionError:
            problems.append(Problem(display, 1, 1, "", "file is nested too deeply to read"))
        except (ValueError, ArithmeticError, LookupError, TypeError, AttributeError, AssertionError) as exc:
            # ruamel's constructors raise plain exceptions on some values (2001-02-30, !!int x, ...);
            # the same exception from our own code is a bug, for the crash log, not a YAML problem.
            if not _raised_by_ruamel(exc):
                raise
            problems.append(
                Problem(display, 1, 1, "", f"a value cannot be read as YAML: {_one_line(str(exc))}")
            )
    return documents, problems


def _raised_by_ruamel(exc: BaseException) -> bool:
    """Whether the innermost Python frame that raised ``exc`` is ruamel.yaml's."""
    trace = exc.__traceback__
    if trace is None:
        return False
    while trace.tb_next is not None:
        trace = trace.tb_next
    return str(trace.tb_frame.f_globals.get("__name__", "")).startswith("ruamel.")


def _construct(
    text: str,
    *,
    display: str,
    variables: Mapping[str, str],
    documents: list[Document],
    problems: list[Problem],
) -> None:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.allow_duplicate_keys = True  # reported by _check_structure, without formatting huge values
    budget = _Budget()
    for index, node in enumerate(yaml.load_all(text)):
        line, col = _node_position(node)
        doc = Document(display, index, None, Position(line + 1, col + 1))
        converter = _Converter(doc, variables, budget)
        doc.data = converter.convert(node, ())
        problems.extend(converter.problems)
        documents.append(doc)


def _check_structure(text: str, *, display: str) -> list[Problem]:
    """Duplicate keys, over-long lists and the expanded size, from the node graph: before anything is
    constructed, so an alias bomb costs nothing but this walk (sizes are memoized per node)."""
    problems: list[Problem] = []
    sizes: dict[int, int] = {}
    total = 0
    for root in YAML(typ="rt").compose_all(text):
        if root is not None:
            total += _walk(root, display, sizes, set(), problems)
        if total > MAX_NODES_PER_FILE:
            raise _TooLargeError(f"more than {MAX_NODES_PER_FILE:,} values (after expanding aliases)")
    return problems


def _walk(node: Node, display: str, sizes: dict[int, int], active: set[int], problems: list[Problem]) -> int:
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in active:
        raise _TooLargeError("an alias refers to itself")
    active.add(id(node))
    size = 1
    if isinstance(node, MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, ScalarNode) and key.value != "<<":
                if key.value in seen:
                    problems.append(
                        _at(key, display, message=f"duplicate key '{_short(_one_line(key.value))}'")
                    )
                seen.add(key.value)
            size += _walk(key, display, sizes, active, problems) + _walk(
                value, display, sizes, active, problems
            )
    elif isinstance(node, SequenceNode):
        if len(node.value) > MAX_LIST_ITEMS:
            problems.append(_at(node, display, message=f"a list of more than {MAX_LIST_ITEMS:,} items"))
        size += sum(_walk(item, display, sizes, active, problems) for item in node.value)
    active.discard(id(node))
    sizes[id(node)] = size
    if size > MAX_NODES_PER_FILE:
        raise _TooLargeError(f"more than {MAX_NODES_PER_FILE:,} values (after expanding aliases)")
    return size


def _at(node: Node, display: str, *, message: str) -> Problem:
    """A problem located where ``node`` starts."""
    return Problem(display, node.start_mark.line + 1, node.start_mark.column + 1, "", message)
