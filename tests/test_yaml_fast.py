"""The manifest reader on libyaml (reconciler/yamlsource.py) reads what the ruamel.yaml reader read.

Every expected value, problem and position below was taken from the reader as it was on ruamel.yaml
(its round-trip loader, YAML 1.2), before the change to libyaml; the few deliberate differences say
so where they are. Each case runs twice: on libyaml (the C parser every file is read with), and on
PyYAML's pure-Python parser (what the reader falls back to when PyYAML has no libyaml, and what reads
a file libyaml refuses).
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler import yamlsource
from reconciler.schemas import KIND_SCHEMAS, quick_check, schema_issues, validator_for
from reconciler.variables import manifest_variables
from reconciler.yamlsource import MAX_DEPTH, MAX_NODES_PER_FILE, Document, read_documents
from tests.conftest import DATA, EXAMPLES

VARIABLES = manifest_variables(
    {
        "MCP_VAR_FUZZ_NAME": "svc",
        "MCP_VAR_FUZZ_NUM": "15",
        "MCP_VAR_FUZZ_BOOL": "true",
        "MCP_VAR_FUZZ_EMPTY": "",
    }
)
SIZE = f"file is too large or too deeply nested: more than {MAX_NODES_PER_FILE:,} values (after expanding aliases)"
CANNOT_READ = "a value cannot be read as YAML: "


@pytest.fixture(params=["libyaml", "pure-python"], autouse=True)
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test on libyaml, and again as if PyYAML had been built without it."""
    if request.param == "libyaml":
        assert yaml.__with_libyaml__, "PyYAML is installed without libyaml: the reader is slow"
    else:
        monkeypatch.setattr(yamlsource, "_LIBYAML", False)
    return str(request.param)


def read(tmp_path: Path, text: str | bytes) -> tuple[list[Document], list[str]]:
    """The documents of one file x.yaml holding ``text``, and its problems as ``x.yaml:L:C: ...``."""
    path = tmp_path / "x.yaml"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    docs, problems = read_documents(path, "x.yaml", VARIABLES)
    return docs, [str(problem) for problem in problems]


def value_of(tmp_path: Path, scalar: str) -> Any:
    docs, problems = read(tmp_path, f"v: {scalar}\n")
    assert problems == []
    return docs[0].data["v"]


# --- scalars: YAML 1.2's core types, as ruamel.yaml resolved them ------------------------------------

INF, NAN = math.inf, math.nan
SCALARS = [
    # booleans and null: YAML 1.2 (yes, no, on, off, y, n are text)
    *[("x", "x"), ("true", True), ("True", True), ("TRUE", True), ("tRue", "tRue"), ("false", False)],
    *[("yes", "yes"), ("no", "no"), ("on", "on"), ("off", "off"), ("y", "y"), ("n", "n"), ("Yes", "Yes")],
    *[("null", None), ("Null", None), ("NULL", None), ("~", None), ("", None), ("''", "")],
    # integers: 0o octal (not 012), 0x hex, 0b binary, underscores anywhere but first
    *[("12", 12), ("-7", -7), ("+7", 7), ("012", 12), ("0o17", 15), ("0O17", "0O17"), ("0x1F", 31)],
    *[("0X1F", "0X1F"), ("0xff", 255), ("0b101", 5), ("1_000", 1000), ("1__0", 10), ("_1", "_1")],
    *[("1_", 1), ("0_1", 1), ("00", 0), ("09", 9), ("12345678901234567890123", 12345678901234567890123)],
    # floats
    *[("1e3", 1000.0), ("1E3", 1000.0), ("1e+3", 1000.0), ("1.5e-3", 0.0015), ("3.14", 3.14), ("3.", 3.0)],
    *[(".5", 0.5), ("-.5", -0.5), ("+.5", 0.5), (".5e3", ".5e3"), (".5e+3", 500.0), ("1_0.5", 10.5)],
    *[("1.5_", 1.5), ("1:20", "1:20"), ("1:20.5", "1:20.5"), (".inf", INF), ("-.INF", -INF)],
    *[("+.inf", INF), (".Inf", INF), (".NaN", NAN), (".nan", NAN), ("-.nan", "-.nan"), ("nan", "nan")],
    ("inf", "inf"),
    # dates and timestamps: kept as the text of the date (normalised as ISO 8601)
    *[("2001-02-03", "2001-02-03"), ("2001-2-3", "2001-2-3"), ("2001-02-03T04:05:06", "2001-02-03T04:05:06")],
    *[
        ("2001-02-03T04:05:06Z", "2001-02-03T04:05:06+00:00"),
        ("2001-02-03t04:05:06z", "2001-02-03t04:05:06z"),
    ],
    ("2001-02-03 04:05:06.123456789 -05:00", "2001-02-03T04:05:06.123457-05:00"),
    ("2001-02-03 04:05:06.1 +5", "2001-02-03T04:05:06.100000+05:00"),
    *[
        ("2001-02-03T04:05:06.5+01:30", "2001-02-03T04:05:06.500000+01:30"),
        ("2001-2-3 4:05:06", "2001-02-03T04:05:06"),
    ],
    # quoted, block and tagged scalars
    *[
        ("'quoted'", "quoted"),
        ('"12"', "12"),
        ("'12'", "12"),
        ("|\n  a\n  b\n", "a\nb\n"),
        (">\n  a\n  b\n", "a b\n"),
    ],
    *[("a # c", "a"), ("!!str 12", "12"), ("!!str true", "true"), ("!!str", ""), ("!!int 12", 12)],
    *[
        ("!!int 0x1F", 31),
        ("!!float 1.5", 1.5),
        ("!!float 12", 12.0),
        ("!!bool true", True),
        ("!!bool yes", True),
    ],
    *[
        ("!!null ''", None),
        ("!!null x", None),
        ("!!timestamp 2001-01-01", "2001-01-01"),
        ("! x", "x"),
        ("! 12", 12),
    ],
    *[("!<tag:yaml.org,2002:str> verbatim", "verbatim"), ("!!map {a: 1}", {"a": 1}), ("!!seq [a]", ["a"])],
    ("!!omap [{a: 1}, {b: 2}]", {"a": 1, "b": 2}),
    *[("&a 12", 12), ("&a x", "x"), ("&a 1.5", 1.5), ("&a null", None)],
    # ${VAR}: an unquoted whole reference is typed as YAML would type its value; anything else is text
    *[("${FUZZ_NUM}", 15), ("${FUZZ_BOOL}", True), ("${FUZZ_NAME}", "svc"), ("${FUZZ_EMPTY}", "")],
    *[
        ("'${FUZZ_NUM}'", "15"),
        ('"${FUZZ_NUM}"', "15"),
        ("|-\n  ${FUZZ_NUM}", "15"),
        (">-\n  ${FUZZ_NUM}", "15"),
    ],
    *[("!!str ${FUZZ_NUM}", "15"), ("x${FUZZ_NUM}", "x15")],
    # Deliberately not as before: ruamel.yaml read an anchored true as 1 (its anchored boolean was an
    # int) and left an anchored ${VAR} untyped; an anchor no longer changes what a value is.
    *[("&a true", True), ("&a ${FUZZ_NUM}", 15)],
]


@pytest.mark.parametrize(("scalar", "expected"), SCALARS, ids=[repr(s) for s, _ in SCALARS])
def test_plain_scalars_resolve_as_the_ruamel_reader_resolved_them(
    tmp_path: Path, scalar: str, expected: Any
) -> None:
    found = value_of(tmp_path, scalar)
    if isinstance(expected, float) and math.isnan(expected):
        assert isinstance(found, float)
        assert math.isnan(found)
    else:
        assert found == expected
        assert type(found) is type(expected)


YAML_1_1 = [("yes", True), ("012", 10), ("1:20", 80), ("1e3", 1000.0), ("1_000", 1000), ("0o17", "0o17")]


@pytest.mark.parametrize(("scalar", "expected"), YAML_1_1)
def test_a_yaml_1_1_directive_reads_yaml_1_1_types_until_another_directive(
    tmp_path: Path, scalar: str, expected: Any
) -> None:
    docs, problems = read(
        tmp_path, f"%YAML 1.1\n---\nv: {scalar}\n---\nw: {scalar}\n...\n%YAML 1.2\n---\nz: yes\n"
    )
    assert problems == []
    assert [doc.data for doc in docs] == [{"v": expected}, {"w": expected}, {"z": "yes"}]


UNREADABLE = [
    *[
        ("-_", "string index out of range"),
        ("0x_", "string index out of range"),
        ("0o_", "string index out of range"),
    ],
    *[("2001-02-30", "day is out of range for month"), ("0000-01-01", "year 0 is out of range")],
    *[("2001-01-01 25:00:00", "hour must be in 0..23"), ("2001-13-01", "month must be in 1..12")],
    *[("!!int x", "invalid literal for int() with base 10: 'x'"), ("!!int ''", "string index out of range")],
    *[("!!float x", "could not convert string to float: 'x'"), ("!!float ''", "string index out of range")],
    *[("!!bool maybe", "'maybe'"), ("!!omap [{a: 1}, {a: 2}]", "")],
]


@pytest.mark.parametrize(("scalar", "reason"), UNREADABLE, ids=[s for s, _ in UNREADABLE])
def test_a_value_its_type_cannot_read_is_one_problem_where_it_is(
    tmp_path: Path, scalar: str, reason: str
) -> None:
    # The same message as ever; where ruamel.yaml said 1:1 (its constructors raised no position), the
    # problem is now where the value is.
    assert read(tmp_path, f"v: {scalar}\n") == ([], [f"x.yaml:1:4: {CANNOT_READ}{reason}"])


OTHER_PROBLEMS = [
    ("!!binary aGVsbG8=", "x.yaml:1:4: v: unsupported YAML value of type bytes"),
    ("!!set {a, b}", "x.yaml:1:4: v: unsupported YAML value of type CommentedSet"),
    ("!!pairs [{a: 1}]", "x.yaml:1:4: v: unsupported YAML value of type list"),
    ("!!timestamp nope", 'x.yaml:1:4: YAML syntax error: failed to construct timestamp from "nope"'),
    ("!!map [a]", "x.yaml:1:4: YAML syntax error: expected a mapping node, but found sequence"),
    ("!!seq {a: 1}", "x.yaml:1:4: YAML syntax error: expected a sequence node, but found mapping"),
    ("!!merge x", "x.yaml:1:4: v: YAML tag 'tag:yaml.org,2002:merge' is not allowed"),
    ("<<", "x.yaml:1:4: v: YAML tag 'tag:yaml.org,2002:merge' is not allowed"),
    ("=", "x.yaml:1:4: v: YAML tag 'tag:yaml.org,2002:value' is not allowed"),
    ("!custom x", "x.yaml:1:4: v: YAML tag '!custom' is not allowed"),
    ("!custom {a: 1}", "x.yaml:1:4: v: YAML tag '!custom' is not allowed"),
    ("!<!bang> [1]", "x.yaml:1:4: v: YAML tag '!bang' is not allowed"),
    ('"\\uD800"', "x.yaml:1:4: v: text with a lone surrogate (\\ud800-\\udfff) is not valid Unicode"),
    (
        "{<<: x}",
        "x.yaml:1:9: YAML syntax error: expected a mapping or list of mappings for merging, but found scalar (while constructing a mapping)",
    ),
    (
        "{<<: {a: 1}, <<: {b: 2}}",
        'x.yaml:1:17: YAML syntax error: found duplicate merge key "<<" (while constructing a mapping)',
    ),
]


@pytest.mark.parametrize(("scalar", "problem"), OTHER_PROBLEMS, ids=[s for s, _ in OTHER_PROBLEMS])
def test_other_values_are_refused_as_before(tmp_path: Path, scalar: str, problem: str) -> None:
    assert problem in read(tmp_path, f"v: {scalar}\n")[1]


KEYS = [
    ("1: x", "keys must be strings, not int"),
    ("null: x", "keys must be strings, not NoneType"),
    ("true: x", "keys must be strings, not bool"),
    ("2001-02-03: x", "keys must be strings, not date"),
    ("[a, b]: x", "keys must be strings, not a list"),
    # Not as before: ruamel.yaml named its own classes here (ScalarFloat, CommentedKeyMap, TaggedScalar)
    ("1.5: x", "keys must be strings, not float"),
    ("{a: 1}: x", "keys must be strings, not a mapping"),
    ("!custom k: x", "YAML tag '!custom' is not allowed"),
]


@pytest.mark.parametrize(("text", "message"), KEYS)
def test_a_key_that_is_not_text_is_a_problem_where_it_is(tmp_path: Path, text: str, message: str) -> None:
    assert read(tmp_path, f"a: 1\n{text}\n")[1] == [f"x.yaml:2:1: {message}"]


def test_merge_keys_read_as_before(tmp_path: Path) -> None:
    docs, problems = read(
        tmp_path, "base: &b {x: 1, y: 2}\nm:\n  z: 4\n  <<: *b\n  y: 3\nn: {<<: [{p: 1}, {p: 2, q: 3}]}\n"
    )
    assert problems == []
    assert docs[0].data == {"base": {"x": 1, "y": 2}, "m": {"z": 4, "y": 3, "x": 1}, "n": {"p": 1, "q": 3}}
    assert list(docs[0].data["m"]) == ["z", "y", "x"]  # own keys, then the merged ones
    # A merged key has no place of its own: it is where its mapping is.
    assert docs[0].key_positions[("m", "x")] == docs[0].value_positions[("m", "x")] == (3, 3)


# --- structure: duplicate keys, tags, size and depth ------------------------------------------------


def test_duplicate_keys_are_problems_and_nothing_is_read(tmp_path: Path) -> None:
    assert read(tmp_path, "a: 1\nb: {c: 1, c: 2}\na: 2\n") == (
        [],
        ["x.yaml:2:11: duplicate key 'c'", "x.yaml:3:1: duplicate key 'a'"],
    )
    # Keys are compared as written: '1' and 1 are the same key; a key "<<" is never counted.
    assert read(tmp_path, "'1': 1\n1: 2\n")[1] == ["x.yaml:2:1: duplicate key '1'"]
    docs, problems = read(tmp_path, "'<<': 1\n'<<': 2\n")
    assert (problems, docs[0].data) == ([], {"<<": 1})


def test_tags_construct_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*_args: object) -> None:
        raise AssertionError("a YAML constructor ran")

    monkeypatch.setattr(yaml.constructor.BaseConstructor, "construct_document", never)
    pwned = tmp_path / "pwned"
    text = f"kind: MCPServer\nname: !!python/object/apply:os.system ['touch {pwned}']\ntags: [!!python/name:os.system '']\n"
    docs, problems = read(tmp_path, text)
    assert not pwned.exists()
    assert problems == [
        "x.yaml:2:7: name: YAML tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed",
        "x.yaml:3:8: tags[0]: YAML tag 'tag:yaml.org,2002:python/name:os.system' is not allowed",
    ]
    assert docs[0].data == {"kind": "MCPServer", "name": None, "tags": [None]}


def _alias_bomb(levels: int, width: int) -> str:
    lines = ["l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_stopped_before_it_is_expanded(tmp_path: Path) -> None:
    started = time.monotonic()
    assert read(tmp_path, _alias_bomb(100, 10)) == ([], [f"x.yaml:1:1: {SIZE}"])  # 10^100 values
    assert read(tmp_path, "a: &a [*a]\n") == (
        [],
        ["x.yaml:1:1: file is too large or too deeply nested: an alias refers to itself"],
    )
    assert time.monotonic() - started < 5


def test_a_reused_anchor_names_the_last_node_defined(tmp_path: Path) -> None:
    # libyaml's own composer refuses a reused anchor; YAML 1.2 allows it, and the reader always did.
    docs, problems = read(tmp_path, "a: &x 1\nb: &x [2]\nc: *x\n")
    assert (problems, docs[0].data) == ([], {"a": 1, "b": [2], "c": [2]})


def test_the_depth_limit_is_exact_and_deeper_files_are_refused(tmp_path: Path) -> None:
    at_limit = "[" * MAX_DEPTH + "]" * MAX_DEPTH  # x is level 1, so the innermost list is level 64
    assert read(tmp_path, f"x: {at_limit}\n")[1] == []
    over = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    deep = f"file is too large or too deeply nested: nested more than {MAX_DEPTH} levels deep"
    assert read(tmp_path, f"x: {over}\n") == ([], [f"x.yaml:1:1: {deep}"])
    assert read(tmp_path, "x: " + "[" * 5000 + "]" * 5000 + "\n") == (
        [],
        ["x.yaml:1:1: file is nested too deeply to read"],
    )


def test_lists_longer_than_the_limit_are_refused(tmp_path: Path) -> None:
    items = ", ".join(["a"] * (yamlsource.MAX_LIST_ITEMS + 1))
    assert read(tmp_path, f"k: 1\nx: [{items}]\n") == ([], ["x.yaml:2:4: a list of more than 1,000 items"])


# --- positions -----------------------------------------------------------------------------------------

TWO_DOCUMENTS = (
    "# a comment\n"
    "kind: MCPServer\n"
    "name: svc\n"
    "tags: [a, 'b']\n"
    "approvedScopes:\n"
    "  - name: read\n"
    "    description: >-\n"
    "      Read it\n"
    "  - {name: write, optional: true}\n"
    "sessionSettings:\n"
    "  sessionTokenExpiration: 5\n"
    "  enabled:\n"
    "---\n"
    "kind: MCPServerClient\n"
    "server: svc\n"
    "name: bot\n"
    "scopes:\n"
    "- read\n"
    "- write\n"
    "secret: {key: 'svc/bot', sink: local}\n"
)
# (path, key position, value position), as the ruamel.yaml reader placed them: an empty value
# ("enabled:") where the next token starts.
FIRST = [
    (("kind",), (2, 1), (2, 7)),
    (("name",), (3, 1), (3, 7)),
    (("tags",), (4, 1), (4, 7)),
    (("tags", 0), None, (4, 8)),
    (("tags", 1), None, (4, 11)),
    (("approvedScopes",), (5, 1), (6, 3)),
    (("approvedScopes", 0), None, (6, 5)),
    (("approvedScopes", 0, "name"), (6, 5), (6, 11)),
    (("approvedScopes", 0, "description"), (7, 5), (7, 18)),
    (("approvedScopes", 1), None, (9, 5)),
    (("approvedScopes", 1, "name"), (9, 6), (9, 12)),
    (("approvedScopes", 1, "optional"), (9, 19), (9, 29)),
    (("sessionSettings",), (10, 1), (11, 3)),
    (("sessionSettings", "sessionTokenExpiration"), (11, 3), (11, 27)),
    (("sessionSettings", "enabled"), (12, 3), (13, 1)),
]
SECOND = [
    (("kind",), (14, 1), (14, 7)),
    (("server",), (15, 1), (15, 9)),
    (("name",), (16, 1), (16, 7)),
    (("scopes",), (17, 1), (18, 1)),
    (("scopes", 0), None, (18, 3)),
    (("scopes", 1), None, (19, 3)),
    (("secret",), (20, 1), (20, 9)),
    (("secret", "key"), (20, 10), (20, 15)),
    (("secret", "sink"), (20, 26), (20, 32)),
]


def _positions(doc: Document) -> list[tuple[Any, Any, Any]]:
    paths = sorted(set(doc.key_positions) | set(doc.value_positions), key=repr)
    return [(path, doc.key_positions.get(path), doc.value_positions.get(path)) for path in paths]


def test_keys_values_and_items_are_placed_as_before_in_every_document(tmp_path: Path) -> None:
    docs, problems = read(tmp_path, TWO_DOCUMENTS)
    assert problems == []
    assert [doc.start for doc in docs] == [(2, 1), (14, 1)]
    assert _positions(docs[0]) == sorted(FIRST, key=lambda entry: repr(entry[0]))
    assert _positions(docs[1]) == sorted(SECOND, key=lambda entry: repr(entry[0]))
    assert docs[0].position(("approvedScopes", 1, "optional")) == (9, 29)
    assert docs[0].position(("approvedScopes", 1, "optional"), key=True).column == 19


def test_a_bom_and_crlf_line_endings_change_no_value_and_no_position(tmp_path: Path) -> None:
    plain, _ = read(tmp_path, TWO_DOCUMENTS)
    crlf, problems = read(tmp_path, ("\ufeff" + TWO_DOCUMENTS).replace("\n", "\r\n").encode())
    assert problems == []
    assert [doc.data for doc in crlf] == [doc.data for doc in plain]
    assert [_positions(doc) for doc in crlf] == [_positions(doc) for doc in plain]
    assert crlf[0].data["approvedScopes"][0]["description"] == "Read it"


@pytest.mark.parametrize(
    ("text", "path", "where"),
    [
        ("a:\n  b:\n  c: 1\n", ("a", "b"), (3, 3)),  # a block mapping: where the next token starts
        ("a:\n  b:\n\n  # comment\n  c: 1\n", ("a", "b"), (5, 3)),
        ("a:\n  b:   # c\n  c: 1\n", ("a", "b"), (2, 5)),  # ... but a comment keeps it at the colon
        ("a: b\nc:\n", ("c",), (3, 1)),
        ("a: {b: , c: 1}\n", ("a", "b"), (1, 7)),  # a flow mapping: right after the colon
        ("a: [b: , c]\n", ("a", 0, "b"), (1, 7)),
    ],
)
def test_an_empty_value_is_placed_as_before(
    tmp_path: Path, text: str, path: tuple[Any, ...], where: tuple[int, int]
) -> None:
    docs, problems = read(tmp_path, text)
    assert problems == []
    assert docs[0].value_positions[path] == where


def test_a_document_may_follow_a_document_end_marker_without_a_start_marker(tmp_path: Path) -> None:
    docs, problems = read(tmp_path, "a: 1\n...\n# comment\nb: 2\n...\n")
    assert problems == []
    assert [(doc.data, doc.start) for doc in docs] == [({"a": 1}, (1, 1)), ({"b": 2}, (4, 1))]


# --- bytes and syntax errors ----------------------------------------------------------------------------


def test_invalid_utf8_is_reported_at_the_bad_byte(tmp_path: Path) -> None:
    assert read(tmp_path, b"kind: MCPServer\nname: caf\xe9\n") == (
        [],
        ["x.yaml:2:10: file is not valid UTF-8"],
    )
    assert read(tmp_path, b"kind: MCPServer\ndescription: \xc3\xa9\xc3\xa9\xff\n") == (
        [],
        ["x.yaml:2:16: file is not valid UTF-8"],
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "V_NAME: [unclosed\n",
            "x.yaml:2:1: YAML syntax error: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence)",
        ),
        (
            "kind: MCPServer\nname: x\n\tbad: tab\n",
            "x.yaml:3:1: YAML syntax error: found character '\\t' that cannot start any token (while scanning for the next token)",
        ),
        ("a: *nowhere\n", "x.yaml:1:4: YAML syntax error: found undefined alias 'nowhere'"),
        ("description: a\x1bb\n", "x.yaml:1:15: the character '\\x1b' is not allowed in YAML"),
        ('v: "\\U00110000"\n', f"x.yaml:1:1: {CANNOT_READ}chr() arg not in range(0x110000)"),
    ],
)
def test_syntax_errors_are_worded_and_placed_as_before(tmp_path: Path, text: str, problem: str) -> None:
    assert read(tmp_path, text) == ([], [problem])


# --- one read, one parse --------------------------------------------------------------------------------


def test_a_file_is_read_once_and_composed_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parser: str
) -> None:
    calls = {"read_bytes": 0, "libyaml": 0, "python": 0}
    read_bytes = Path.read_bytes

    def counted_read(self: Path) -> bytes:
        calls["read_bytes"] += 1
        return read_bytes(self)

    class CountedFast(yamlsource._FastLoader):
        def __init__(self, text: str) -> None:
            calls["libyaml"] += 1
            super().__init__(text)

    class CountedPure(yamlsource._PureLoader):
        def __init__(self, text: str) -> None:
            calls["python"] += 1
            super().__init__(text)

    monkeypatch.setattr(Path, "read_bytes", counted_read)
    monkeypatch.setattr(yamlsource, "_FastLoader", CountedFast)
    monkeypatch.setattr(yamlsource, "_PureLoader", CountedPure)
    docs, problems = read(tmp_path, TWO_DOCUMENTS)
    assert (len(docs), problems) == (2, [])
    if parser == "libyaml":
        assert calls == {"read_bytes": 1, "libyaml": 1, "python": 0}
    else:
        assert calls == {"read_bytes": 1, "libyaml": 0, "python": 1}


# --- schemas: compiled once, and a quick check that agrees with jsonschema ---------------------------


def test_each_schema_is_compiled_once_and_a_valid_document_never_reaches_jsonschema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for kind in KIND_SCHEMAS:
        assert validator_for(kind) is validator_for(kind)
        assert quick_check(kind) is quick_check(kind)
    ran: list[str] = []
    validator = validator_for("MCPServer")
    iter_errors = type(validator).iter_errors

    def counted(self: Any, instance: Any, _schema: Any = None) -> Iterator[Any]:
        ran.append("iter_errors")
        return iter_errors(self, instance)

    monkeypatch.setattr(type(validator), "iter_errors", counted)
    docs, _ = read(tmp_path, "kind: MCPServer\nname: svc\nclients: [{name: bot, scopes: [read]}]\n")
    assert schema_issues(docs[0], "MCPServer") == []
    assert ran == []
    docs, _ = read(tmp_path, "kind: MCPServer\nname: svc\nclients: [{name: bot, scope: [read]}]\n")
    issues = schema_issues(docs[0], "MCPServer")
    assert [str(issue.problem) for issue in issues] == [
        "x.yaml:3:23: clients[0].scope: unknown field 'scope' (did you mean 'scopes'?)"
    ]
    assert ran == ["iter_errors"]


def _seeds() -> list[dict[str, Any]]:
    documents = []
    for path in sorted([*EXAMPLES.rglob("*.yaml"), *DATA.rglob("*.yaml")]):
        docs, _ = read_documents(path, str(path), {"TEST_PROJECT_ID": "P2x"})
        documents += [doc.data for doc in docs if isinstance(doc.data, dict)]
    return documents


PALETTE: list[Any] = [
    *["", "x", " padded ", "https://a.example/cb", "https://a#f", "ftp://x", "not a url", "25%", "101%"],
    *[
        "Bad.Name",
        "ok-name",
        "a/b",
        "../x",
        "owner/repo",
        "managed-by:mcp-reconciler",
        "mcp-reconciler:protect",
    ],
    # Where regular expression dialects part: a final newline before $, Unicode digits and letters.
    *["ok-name\n", "\u0661\u0662", "caf\u00e9", "a\u200bb", "https://a.example/\u00e9", "x" * 300],
    *["minutes", "fortnights", "file", "vault", "github", "command", "dotenv", "categorized", "connections"],
    *[0, 1, -1, 1.5, 1.0, True, False, None, [], ["a", "a"], [1, 1.0], [True, 1], {}, {"name": "x"}],
]


def _places(node: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) in ``node``, at any depth."""
    if isinstance(node, dict):
        return [
            *((node, key) for key in node),
            *(place for value in node.values() for place in _places(value)),
        ]
    if isinstance(node, list):
        return [
            *((node, index) for index in range(len(node))),
            *(place for value in node for place in _places(value)),
        ]
    return []


def _mutated(rng: random.Random, document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with a few values replaced, removed or added, anywhere in it."""
    document = copy.deepcopy(document)
    for _ in range(rng.randint(1, 3)):
        places = _places(document)
        if not places:
            break
        container, key = rng.choice(places)
        choice = rng.random()
        if choice < 0.6:
            container[key] = copy.deepcopy(rng.choice(PALETTE))
        elif choice < 0.75:
            del container[key]
        elif isinstance(container, dict):
            container[rng.choice(["unknown", "scopes", "secret", "tags", "name"])] = copy.deepcopy(
                rng.choice(PALETTE)
            )
        else:
            container.append(copy.deepcopy(container[0] if container else rng.choice(PALETTE)))
    return document


def test_the_quick_check_agrees_with_jsonschema_on_valid_and_broken_documents() -> None:
    rng = random.Random(20261130)  # noqa: S311 - seeded: the same inputs on every run
    seeds = _seeds()
    checked = valid = parted = 0
    for _ in range(1500):
        document = _mutated(rng, rng.choice(seeds)) if rng.random() < 0.85 else rng.choice(seeds)
        for kind in KIND_SCHEMAS:
            expected = next(validator_for(kind).iter_errors(document), None) is None
            quick = quick_check(kind)(document)
            # Never valid where jsonschema finds a problem: a document the quick check passes skips it.
            assert expected or not quick, (kind, document)
            if quick is not expected:
                # jsonschema then decides (schema_issues asks it about whatever the quick check
                # refuses): Python's $ also matches before a final newline, Rust's does not.
                assert _ends_in_newline(document), (kind, document)
                parted += 1
            checked, valid = checked + 1, valid + expected
    assert valid > 200  # both answers were tried often
    assert 0 < parted < checked // 50


def _ends_in_newline(node: Any) -> bool:
    if isinstance(node, dict):
        return any(_ends_in_newline(key) or _ends_in_newline(value) for key, value in node.items())
    if isinstance(node, list):
        return any(_ends_in_newline(item) for item in node)
    return isinstance(node, str) and node.endswith("\n")


def test_the_quick_check_reads_the_uri_format_as_validate_does() -> None:
    server = quick_check("MCPServer")
    base = {"kind": "MCPServer", "name": "svc"}
    assert server(base)
    for url, valid in [
        ("https://a.example/cb", True),
        ("https://a.example/cb#frag", False),
        ("not a url", False),
        ("https:///no-host", False),
        ("urn:example:x", True),
    ]:
        document = {**base, "approvedCallbackUrls": [url]}
        assert server(document) is valid, url
        assert (next(validator_for("MCPServer").iter_errors(document), None) is None) is valid, url
