"""Hostile input for the manifest loader, driven through the real ``validate`` command in-process.

Whatever the bytes of a manifest or values file, ``validate`` must end in exit 0 or 1 with clear
problems: no traceback, no "internal error", every problem line ``FILE:LINE:COL: ...`` (or
``FILE: ...``) with a position inside the file, in bounded time and memory.

The fuzzers tolerate nothing: every product bug they found is fixed, and pinned by a targeted test
(section 3) with the exact problem the loader gives now. Where only a problem's position is still
wrong, that test says so and accepts today's position or the right one, nothing else.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from reconciler.cli import run
from reconciler.yamlsource import MAX_DEPTH, MAX_FILE_BYTES, MAX_LIST_ITEMS, MAX_NODES_PER_FILE

PROJECT = (
    "kind: Project\nprojectId: P2fuzz\ndefaultSink: local\nsinks:\n  local: {type: file, path: s.json}\n"
)
SERVER = (
    "kind: MCPServer\nname: svc\napprovedScopes:\n  - name: read\n  - name: write\n"
    "clients:\n  - name: bot\n    scopes: [read]\n"
)
# Bounds that tell a hang or a blow-up (minutes at these sizes) from a slow parse on a loaded 2-core
# machine; how fast validate is belongs to bench/ and BENCHMARKS.md, not to these tests.
TIME_LIMIT = 15.0  # seconds per run of validate
HARD_LIMIT = 20.0  # a run still going after this is stopped, so that a hang fails instead of hanging
MEMORY_LIMIT = 200 * 1024 * 1024  # bytes per run of validate
# Read by the manifests as ${FUZZ_NAME} and so on: environment variables reach them as MCP_VAR_*.
ENVIRONMENT = {
    "MCP_VAR_FUZZ_NAME": "svc",
    "MCP_VAR_FUZZ_NUM": "15",
    "MCP_VAR_FUZZ_BOOL": "true",
    "MCP_VAR_FUZZ_EMPTY": "",
}
SIZE_MESSAGE = f"file is too large or too deeply nested: more than {MAX_NODES_PER_FILE:,} values (after expanding aliases)"
DEPTH_MESSAGE = f"file is too large or too deeply nested: nested more than {MAX_DEPTH} levels deep"
SELF_MESSAGE = "file is too large or too deeply nested: an alias refers to itself"

FUZZ = settings(
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=False,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)


# --- running validate ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    code: int
    out: str
    err: str
    seconds: float
    memory: int  # bytes: growth of the peak resident set, or the tracemalloc peak when traced
    warnings: list[str] = field(default_factory=list)  # what Python would print on stderr


class _Overrun(BaseException):
    """Raised into a run that passed HARD_LIMIT (a BaseException, so run() cannot swallow it)."""


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise _Overrun


def _status_kib(name: str) -> int | None:
    try:
        found = re.search(rf"^{name}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(found.group(1)) if found else None


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


# Hypothesis raises the recursion limit while it runs a test; validate runs with Python's default
# (1000, less the few frames above run()), and how deep ruamel gets before RecursionError decides
# how long deeply nested input takes, so each run gets the limit a real run has.
CLI_RECURSION_LIMIT = 990


def _stack_depth() -> int:
    depth, frame = 0, sys._getframe()
    while frame.f_back is not None:
        depth, frame = depth + 1, frame.f_back
    return depth


_HIDDEN_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


def run_validate(args: Sequence[str], *, trace: bool = False, hard_limit: float = HARD_LIMIT) -> Outcome:
    """``mcp-reconciler validate ARGS`` in-process, with the output a real run would show.

    stdout is strict UTF-8 and stderr UTF-8 with backslashreplace, as Python sets them up; warnings
    that Python's default filters would print are collected (a real run prints them on stderr).
    Memory is the growth of the process's peak resident set during the run (tracemalloc slows
    ruamel's pure-Python scanner more than tenfold); ``trace=True`` measures the tracemalloc peak
    instead, and then the time is not meaningful.
    """
    out_bytes, err_bytes = io.BytesIO(), io.BytesIO()
    out = io.TextIOWrapper(out_bytes, encoding="utf-8", errors="strict", newline="\n")
    err = io.TextIOWrapper(err_bytes, encoding="utf-8", errors="backslashreplace", newline="\n")
    kept = {name: os.environ[name] for name in ("PATH", "HOME") if name in os.environ}
    recursion_limit = sys.getrecursionlimit()
    sys.setrecursionlimit(_stack_depth() + CLI_RECURSION_LIMIT)
    use_rss = not trace and _reset_peak_rss()
    rss_before = _status_kib("VmRSS") or 0
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    with (
        mock.patch.dict(os.environ, {**kept, **ENVIRONMENT}, clear=True),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        if not use_rss:
            tracemalloc.start()
        started = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, hard_limit, 1.0)
        try:
            code = run(["validate", *args])
        except _Overrun:
            code = -1
            err.write(f"(stopped after {hard_limit:g} s)\n")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            sys.setrecursionlimit(recursion_limit)
            seconds = time.perf_counter() - started
            if use_rss:
                memory = max(0, ((_status_kib("VmHWM") or 0) - rss_before) * 1024)
            else:
                memory = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
        shown = [
            warnings.formatwarning(w.message, w.category, w.filename, w.lineno)
            for w in caught
            if not issubclass(w.category, _HIDDEN_WARNINGS)
        ]
    out.flush()
    err.flush()
    return Outcome(code, out_bytes.getvalue().decode(), err_bytes.getvalue().decode(), seconds, memory, shown)


@dataclass(frozen=True)
class Case:
    """A manifest folder (a valid Project next to the hostile file) and, optionally, a values file."""

    folder: Path
    files: dict[str, bytes]  # display name (as validate prints it) -> content
    args: list[str]
    var_file: str | None


@contextlib.contextmanager
def case(manifest: bytes | None, var_file: bytes | None = None, *, project: str = PROJECT) -> Iterator[Case]:
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        folder = Path(tmp) / "m"
        folder.mkdir()
        files = {str(folder / "p.yaml"): project.encode()}
        if manifest is not None:
            files[str(folder / "x.yaml")] = manifest
        args = [str(folder)]
        values = None
        if var_file is not None:
            values = str(Path(tmp) / "vars.yaml")
            files[values] = var_file
            args += ["--var-file", values]
        for display, content in files.items():
            Path(display).write_bytes(content)
        yield Case(folder, files, args, values)


def validate(
    manifest: bytes | None,
    var_file: bytes | None = None,
    *,
    project: str = PROJECT,
) -> list[str]:
    """Run validate on one case, check the property, and return its problem lines."""
    with case(manifest, var_file, project=project) as made:
        outcome = run_validate(made.args)
        problems = check(outcome, made)
        if currently_in_test_context():  # for --hypothesis-show-statistics: what the inputs reached
            event(f"exit {outcome.code}")
            event("first problem: " + _kind_of(problems[0] if problems else ""))
        return problems


def _kind_of(problem: str) -> str:
    """A problem line without its file, position, path and quoted text, to count kinds of problems."""
    message = problem.rsplit(": ", 1)[-1] if problem else "none"
    return re.sub(r"'.*'|\d+", "_", message)[:60]


# --- the property ----------------------------------------------------------------------------------

_LOCATED = re.compile(r"(?P<line>\d+):(?P<col>\d+): \S")
_LINE_SPLITS = [re.compile("\n"), re.compile("\r\n|\r|\n"), re.compile("\r\n|[\r\n\x85\u2028\u2029]")]


def check(outcome: Outcome, made: Case) -> list[str]:
    """The property every run must have; returns the problem lines (without the final summary)."""
    for stream in (outcome.out, outcome.err):
        assert "Traceback" not in stream, stream[-3000:]
    internal = [line for line in outcome.err.split("\n") if line.startswith("internal error:")]
    assert not internal, internal
    assert outcome.code in (0, 1), f"exit {outcome.code}: {outcome.err[-500:]}"
    assert outcome.seconds < TIME_LIMIT, f"validate took {outcome.seconds:.1f} s"
    assert outcome.memory < MEMORY_LIMIT, f"validate used {outcome.memory / 2**20:.0f} MiB"
    assert outcome.warnings == []
    if outcome.code == 0:
        assert outcome.err == ""
        assert re.fullmatch(r"Manifests are valid: .*\n", outcome.out, re.DOTALL), outcome.out
        return []
    assert outcome.out == ""
    lines = outcome.err.split("\n")
    assert lines[-1] == "", "stderr must end with a newline"
    assert lines[-2].startswith("error: "), lines[-2]
    problems = lines[:-2]
    displays = sorted([*made.files, str(made.folder)], key=len, reverse=True)
    for line in problems:
        display = next((d for d in displays if line.startswith(d + ":")), None)
        assert display is not None, f"not a FILE:LINE:COL problem line: {line[:300]!r}"
        assert "\r" not in line, f"a carriage return in a problem line: {line[:300]!r}"
        _check_position(line, display, made)
    return problems


def _check_position(line: str, display: str, made: Case) -> None:
    rest = line[len(display) + 1 :]
    located = _LOCATED.match(rest)
    if not located:
        assert rest.startswith(" "), f"not a problem line: {line[:300]!r}"
        assert rest.strip(), f"a problem line without a message: {line[:300]!r}"
        return
    assert display in made.files, f"a position in a folder: {line[:300]!r}"
    row, col = int(located["line"]), int(located["col"])
    raw = made.files[display]
    text = raw.decode("utf-8-sig", errors="replace")
    fits = False
    for split in _LINE_SPLITS:
        lines = split.split(text)
        fits = fits or (1 <= row <= len(lines) and 1 <= col <= len(lines[row - 1]) + 1)
    assert fits, f"position {row}:{col} is outside {display}: {line[:300]!r}"


# --- 1. random text and bytes ----------------------------------------------------------------------

PREFIXES = ["", "kind: MCPServer\nname: svc\n", "kind: MCPServer\nname: ", "kind: Project\n", "- "]


@settings(FUZZ, max_examples=300)
@given(prefix=st.sampled_from(PREFIXES), text=st.text(max_size=400))
def test_random_text_is_refused_cleanly(prefix: str, text: str) -> None:
    validate((prefix + text).encode())


@settings(FUZZ, max_examples=300)
@given(prefix=st.sampled_from(PREFIXES), data=st.binary(max_size=400))
def test_random_bytes_are_refused_cleanly(prefix: str, data: bytes) -> None:
    validate(prefix.encode() + data)


@settings(FUZZ, max_examples=300)
@given(
    at=st.integers(min_value=0, max_value=len(SERVER)),
    cut=st.integers(min_value=0, max_value=8),
    insert=st.one_of(st.binary(max_size=8), st.text(max_size=8).map(str.encode)),
)
def test_a_valid_manifest_spliced_with_random_bytes_is_refused_cleanly(
    at: int, cut: int, insert: bytes
) -> None:
    raw = SERVER.encode()
    validate(raw[:at] + insert + raw[at + cut :])


# --- 2. structured YAML from a grammar of hostile pieces -------------------------------------------

PLAIN = st.sampled_from(
    [
        "x",
        "svc",
        "read",
        "true",
        "False",
        "yes",
        "null",
        "~",
        "12",
        "-7",
        "0x1F",
        "0o17",
        "0b101",
        "1_000",
        "1e3",
        "3.14",
        ".inf",
        "-.INF",
        ".NaN",
        "2001-02-03",
        "2001-02-03T04:05:06Z",
        "2001-02-03 04:05:06.123456789 -05:00",
        "https://example.com/cb",
        "https://example.com/cb#frag",
        "x.y",
        "ü",
        "😀",
        "a b",
        "=",
        "-",
        "--",
        "a#not-comment",
        "x # comment",
        # Values ruamel's constructors raise plain exceptions on (ValueError, IndexError, ...): once
        # crashes, now one clean problem each (test_scalars_ruamel_fails_on_are_problems_not_crashes).
        "2001-02-30",
        "0000-01-01",
        "2001-01-01 25:00:00",
        "-_",
        "0x_",
        "0b_",
    ]
)
QUOTED = st.sampled_from(
    [
        "''",
        '""',
        "'single ''quoted'''",
        '"double \\"quoted\\""',
        '"\\x00 nul"',
        '"\\e[31mred\\e[0m"',
        '"line\\nbreak"',
        '"carriage\\rreturn"',
        '"tab\\there"',
        '"\\u2028ls \\x85nel"',
        '"\\uD800 lone surrogate"',
        '"\\U0001F600"',
        '"\\uFFFE"',
        '"bad escape \\q"',
        '"unterminated',
        "'unterminated",
        '"multi\n  line"',
        '"\\U00110000"',  # beyond Unicode: ruamel's scanner raises ValueError
        '"\\UFFFFFFFF"',  # OverflowError
    ]
)
REFERENCES = st.sampled_from(
    [
        "${FUZZ_NAME}",
        "${FUZZ_NUM}",
        "${FUZZ_BOOL}",
        "${FUZZ_EMPTY}",
        "${UNDEFINED}",
        "${UNDEFINED:-fallback}",
        "${UNDEFINED:-}",
        "x${FUZZ_NAME}y${FUZZ_NUM}",
        "${",
        "${}",
        "${1bad}",
        "${a b}",
        "${FUZZ_NAME",
        "$${FUZZ_NAME}",
        "$$${FUZZ_NAME}",
        "${FUZZ_${FUZZ_NAME}}",
        "${FUZZ_NAME:-${UNDEFINED}}",
        "'${FUZZ_NUM}'",
        '"${UNDEFINED"',
        '"${\\n}"',
        "$",
        "$FUZZ_NAME",
    ]
)
TAGGED = st.sampled_from(
    [
        "!!str x",
        "!!str 12",
        "!!str",
        "!!int 12",
        "!!float 1.5",
        "!!bool true",
        "!!null ''",
        "!!binary aGVsbG8=",
        "!!binary '!!!'",
        "!!binary 'é'",
        "!!timestamp 2001-01-01",
        "!!timestamp nope",
        "!!set {a, b}",
        "!!set [a]",
        "!!omap [{a: 1}, {b: 2}]",
        "!!omap {a: 1}",
        "!!pairs [{a: 1}, {a: 2}]",
        "!!map {a: 1}",
        "!!map [a]",
        "!!seq [a]",
        "!!seq {a: 1}",
        "!!merge x",
        "!custom x",
        "!custom {a: 1}",
        "!custom [1]",
        "!!python/name:os.system ''",
        "!!python/object:os.system {}",
        '!!python/object/apply:os.system ["true"]',
        "!!python/object/new:os.system [true]",
        "!!python/module:os ''",
        "!<tag:yaml.org,2002:str> verbatim",
        "!<tag:yaml.org,2002:python/none> ''",
        "!<!bang> x",
        "! nonspecific",
        "!e!thing x",
        "!!str&a x",
        "!!int x",
        "!!int ''",
        "!!float x",
        "!!float ''",
        "!!bool maybe",
        "!!omap [{a: 1}, {a: 2}]",
    ]
)
KEYS = st.sampled_from(
    [
        "kind",
        "name",
        "description",
        "tags",
        "clients",
        "approvedScopes",
        "sessionSettings",
        "projectId",
        "sinks",
        "x.y",
        "ü",
        "'quoted key'",
        '"new\\nline"',
        "1",
        "1.5",
        "null",
        "~",
        "true",
        "2001-02-03",
        "'${FUZZ_NAME}'",
        "${UNDEFINED}",
        "[a, b]",
        "{a: 1}",
        "!custom k",
        "&k anchored",
        "*a",
    ]
)
ANCHORS = st.sampled_from(["a", "b", "a"])
# Aliases, and merge keys (<<) built from them: a merge of itself, of a list, of an undefined anchor.
ALIASES = st.sampled_from(
    [
        "*a",
        "*b",
        "*undefined",
        "&m {<<: *m}",
        "{<<: {merged: 1}, own: 2}",
        "{<<: [&p {p: 1}, *p]}",
        "{<<: *a}",
    ]
)


def flow_values() -> st.SearchStrategy[str]:
    leaves = [PLAIN, QUOTED, REFERENCES, TAGGED, ALIASES]

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.lists(inner, max_size=4).map(lambda items: "[" + ", ".join(items) + "]"),
            st.lists(st.tuples(KEYS, inner), max_size=4).map(
                lambda pairs: "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}"
            ),
            st.tuples(ANCHORS, inner).map(lambda pair: f"&{pair[0]} {pair[1]}"),
            st.tuples(st.sampled_from(["!!seq", "!!map", "!custom", "!!set", "!!omap"]), inner).map(" ".join),
        )

    return st.recursive(st.one_of(leaves), extend, max_leaves=10)


def _nested_flow(depth: int) -> str:
    return "[" * depth + "x" + "]" * depth


def _nested_flow_map(depth: int) -> str:
    return "{a: " * depth + "x" + "}" * depth


def _nested_block(depth: int) -> str:
    return "\n" + "\n".join(" " * (level + 1) + f"k{level}:" for level in range(depth)) + " x"


def _nested_block_seq(depth: int) -> str:
    return "\n  " + "- " * depth + "x"


def _alias_bomb(levels: int, width: int) -> str:
    lines = ["\n  l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    lines += [f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "\n".join(lines)


BOMBS = st.builds(_alias_bomb, st.sampled_from([2, 5, 9, 30]), st.sampled_from([2, 10]))


@st.composite
def bombs(draw: st.DrawFn, key: str) -> list[str]:
    """``key`` holding an alias bomb; sometimes ``key`` again, a duplicate holding the bomb's top list
    (once a hang: ruamel rendered both values into its duplicate-key message)."""
    bomb = draw(BOMBS)
    lines = [f"{key}: {bomb}"]
    if draw(st.booleans()):
        top = re.findall(r"&(l\d+)", bomb)[-1]
        lines.append(f"{key}: *{top}")
    return lines


def _mappings(count: int) -> str:
    return "[" + ", ".join(f"{{a: {i}}}" for i in range(count)) + "]"


DEPTHS = st.sampled_from([2, MAX_DEPTH - 2, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 200, 1000, 10_000])
# Deep flow sequences cost ruamel's scanner about 3 s at 1,000 levels and more (an open "[" could
# start a key, so it re-checks every open level for each token): the targeted test covers them.
FLOW_DEPTHS = st.sampled_from([2, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 300])
SPECIAL_VALUES = st.one_of(
    st.builds(_nested_flow, FLOW_DEPTHS),
    st.builds(_nested_flow_map, DEPTHS),
    st.builds(_nested_block, st.sampled_from([2, MAX_DEPTH - 2, MAX_DEPTH, MAX_DEPTH + 2, 300])),
    st.builds(_nested_block_seq, DEPTHS),
    st.sampled_from(
        [
            "&r [*r]",
            "&r {a: *r}",
            "&r [[*r, *r], *r]",
            "|\n  literal ${FUZZ_NAME}\n  ${UNDEFINED\n",
            ">-\n  folded\n  text\n",
            "|-2\n  bad indentation indicator\n",
            "|\n\tliteral tab\n",
            "'multi\n  line'",
            "\n  - a\n  - b: c\n    d: e",
            "\n  ? [a, b]\n  : complex key",
            "\n  ? {a: 1}\n  : complex key",
            "\n  1: int key\n  null: null key\n  true: bool key\n  [a]: list key",
            "\n  dup: 1\n  dup: 2",
        ]
    ),
    # Lists of mappings, which jsonschema's uniqueItems compares pairwise: a list longer than
    # MAX_LIST_ITEMS is refused before the schema runs. Not 1,000 items (the most allowed), which take
    # about 4 s today, too near TIME_LIMIT to draw at random, nor 20,000 (slow to parse at all): the
    # targeted test_unique_items_over_a_long_list_of_mappings_take_linear_time has those.
    st.builds(_mappings, st.sampled_from([300, MAX_LIST_ITEMS + 1])),
    st.builds(lambda n: "y" * n, st.sampled_from([1000, 100_000, 1_000_000])),
    st.builds(lambda n: "'" + "q" * n + "'", st.sampled_from([1000, 100_000])),
    st.builds(lambda n: "${" + "A" * n + "}", st.sampled_from([1000, 100_000])),
)


def sometimes(one_in: int) -> st.SearchStrategy[bool]:
    """True about once in ``one_in`` draws."""
    return st.sampled_from([False] * (one_in - 1) + [True])


@st.composite
def plausible(draw: st.DrawFn, benign: Sequence[str]) -> str:
    """Usually one of the ``benign`` values of a field, sometimes a hostile one."""
    if draw(sometimes(4)):
        return draw(st.one_of(flow_values(), SPECIAL_VALUES))
    return draw(st.sampled_from(list(benign)))


@st.composite
def servers(draw: st.DrawFn) -> str:
    """An MCPServer (or a standalone MCPServerClient) close to valid, with some hostile fields."""

    def field(*benign: str) -> str:
        return draw(plausible(benign))

    name = field("svc", "svc2", "${FUZZ_NAME}", "a" * 201, "' padded '")
    scope = field("read", "write", "read", "calendar:read", "${FUZZ_NAME}", "'x\ty'")
    client = (
        f"name: {field('bot', 'bot', 'agent', '${UNDEFINED:-bot}')}\n"
        f"    scopes: [{field('read', 'read, write', 'wrte', '')}]\n"
        f"    secret: {{sink: {field('local', 'nowhere', '${FUZZ_EMPTY}')}, key: {field('k', 'k', 'a/b')}}}\n"
        f"    approvedCallbackUrls: [{field('https://example.com/cb', 'ftp://x', 'https://a#f')}]"
    )
    if draw(sometimes(4)):
        return (
            f"kind: MCPServerClient\nserver: {field('svc', 'svc2', 'nosuch')}\n{client.replace('    ', '')}"
        )
    lines = [
        "kind: MCPServer",
        f"name: {name}",
        "description: " + field("text", "${FUZZ_NAME} server", "|\n  block\n  text"),
        f"approvedScopes:\n  - name: read\n  - name: {scope}",
        f"clients:\n  - {client}",
        f"sessionSettings:\n  sessionTokenExpiration: {field('5', '${FUZZ_NUM}', '-1', '1.5')}\n"
        f"  sessionTokenExpirationUnit: {field('minutes', 'fortnights', '${FUZZ_NAME}')}",
        f"audienceWhitelist: [{field('https://example.com/mcp', 'example.com', 'https://a#f')}]",
        f"tags: [{field('team:x', 'team:x, team:x', '', 'managed-by:mcp-reconciler', 'mcp-reconciler:protect')}]",
    ]
    return "\n".join(lines[: 2 + draw(st.integers(0, len(lines) - 2))])


@st.composite
def documents(draw: st.DrawFn) -> str:
    """One YAML document: a near-valid server, a mapping of hostile pieces, a scalar, a list..."""
    values = st.one_of(flow_values(), SPECIAL_VALUES)
    shape = draw(
        st.sampled_from(["server", "server", "mapping", "mapping", "scalar", "list", "empty", "flow"])
    )
    if shape == "server":
        return draw(servers())
    if shape == "scalar":
        return draw(st.one_of(PLAIN, QUOTED, REFERENCES, TAGGED))
    if shape == "list":
        return "\n".join(f"- {v}" for v in draw(st.lists(flow_values(), max_size=4)))
    if shape == "empty":
        return draw(st.sampled_from(["", "# only a comment", "~", "null"]))
    if shape == "flow":
        return draw(flow_values())
    kind = draw(
        st.sampled_from(["MCPServer", "MCPServerClient", "Project", "Bogus", "${FUZZ_NAME}", "[x]", None])
    )
    lines = [] if kind is None else [f"kind: {kind}"]
    if draw(st.booleans()):
        lines.append("name: " + draw(st.sampled_from(["svc", "bot", "${FUZZ_NAME}", "' padded '", "x\\ty"])))
    if kind == "MCPServerClient":
        lines.append("server: svc")
    for key, value in draw(st.lists(st.tuples(KEYS, values), max_size=5)):
        lines.append(f"{key}: {value}")
    if draw(st.booleans()):
        lines.insert(
            draw(st.integers(0, len(lines))), draw(st.sampled_from(["base: &a {name: x}", "b: &b [1]"]))
        )
    if draw(sometimes(5)):
        bomb, *duplicate = draw(bombs("bomb"))
        lines.insert(draw(st.integers(0, len(lines))), bomb)
        lines += duplicate
    return "\n".join(lines)


DIRECTIVES = st.sampled_from(
    [
        "",
        "",
        "%YAML 1.1\n---\n",
        "%YAML 1.2\n---\n",
        "%YAML 2.0\n---\n",
        "%YAML 1.1\n%YAML 1.1\n---\n",
        "%TAG !e! tag:example.com,2000:\n---\n",
        "%TAG !! tag:evil.example,2000:\n---\n",
        "%FOO bar\n---\n",
        "%YAML 1.2\n",
        "--- !!map\n",
        "--- &doc\n",
    ]
)
SEPARATORS = st.sampled_from(["\n---\n", "\n...\n---\n", "\n...\n", "\n--- |\n  literal\n---\n", "\n---"])
CONTROL_CHARACTERS = st.sampled_from(
    ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1b", "\x7f", "\x9f", "\ufffe", "\uffff"]
)
SPECIAL_CHARACTERS = st.sampled_from(
    [
        *["\t", "\x85", "\u2028", "\u2029", "\ufeff", "\U0001f600", "\r", " ", "  ", "\n", "#", ":", "- "],
        *["-", "[", "]", "{", "}", ",", "&", "*", "!", "|", ">", "%", "@", "`", "'", '"', "?", "${", "\\"],
    ]
)
BAD_BYTES = st.sampled_from(
    [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"\xe2\x82"]
)
# Files of exactly the size limit are parsed in full (seconds each): test_the_file_size_limit_is_exact_and_fast
# reads one; here only sizes that are cheap to read or to refuse, so the fuzzers' time goes to variety.
PADDING = st.sampled_from([0] * 12 + [64 * 1024, MAX_FILE_BYTES + 1])


@st.composite
def yaml_streams(draw: st.DrawFn) -> bytes:
    """A whole file: documents, separators, directives, line endings, stray characters and bytes."""
    docs = draw(st.lists(documents(), min_size=1, max_size=3))
    text = docs[0]
    for doc in docs[1:]:
        text += draw(SEPARATORS) + doc
    text = draw(DIRECTIVES) + text + draw(st.sampled_from(["\n", "", "\n...\n", "\n---\n"]))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 1, 3]))):
        at = draw(st.integers(0, len(text)))
        special = CONTROL_CHARACTERS if draw(sometimes(5)) else SPECIAL_CHARACTERS
        text = text[:at] + draw(special) + text[at:]
    text = text.replace("\n", draw(st.sampled_from(["\n", "\n", "\n", "\r\n", "\r"])))
    if draw(sometimes(4)):
        text = text.replace("  ", "\t", 1)
    raw = text.encode("utf-8", errors="surrogatepass")
    if draw(sometimes(8)):
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(BAD_BYTES) + raw[at:]
    raw = draw(st.sampled_from([b"", b"", b"", b"", b"\xef\xbb\xbf", b"\xef\xbb\xbf\xef\xbb\xbf"])) + raw
    pad = draw(PADDING)
    if pad > len(raw) + 16:
        filler = draw(st.sampled_from(["comment", "value"]))
        head = raw + b"\n# " if filler == "comment" else raw + b"\npad: "
        raw = head + b"z" * (pad - len(head) - 1) + b"\n"
    return raw


@settings(FUZZ, max_examples=250)
@given(raw=yaml_streams())
def test_hostile_yaml_is_refused_cleanly(raw: bytes) -> None:
    validate(raw)


# --- values files (--var-file) ---------------------------------------------------------------------

USES_VARIABLES = (
    "kind: MCPServer\nname: ${V_NAME:-svc}\ndescription: ${V_TEXT:-none}\n"
    "sessionSettings:\n  sessionTokenExpiration: ${V_NUM:-5}\n"
    "approvedScopes:\n  - name: read\nclients:\n  - name: bot\n    scopes: ['${V_SCOPE:-read}']\n"
)


VALUES = (
    *["svc", "bot", "7", "-1", "1e3", "read", "write", "true", "null", "''", "'x y'", '"a\\nb"'],
    *['"\\uD800"', "${FUZZ_NAME}", "$${X}", "${UNDEFINED}", "'https://example.com/cb'", "a" * 300],
)


@st.composite
def var_files(draw: st.DrawFn) -> bytes:
    """A values file: the manifest's variables with plausible or hostile values, or any hostile stream."""
    if draw(sometimes(4)):
        return draw(yaml_streams())
    names = st.sampled_from(
        ["V_NAME", "V_TEXT", "V_NUM", "V_SCOPE", "FUZZ_NAME", "1bad", "'x y'", "[k]", "~"]
    )
    lines = [f"{name}: {draw(plausible(VALUES))}" for name in draw(st.lists(names, max_size=5))]
    if draw(sometimes(5)):
        bomb, *duplicate = draw(bombs("V_BOMB"))
        lines.insert(draw(st.integers(0, len(lines))), bomb)
        lines += duplicate
    text = "\n".join(lines)
    return draw(DIRECTIVES).encode() + text.encode("utf-8", errors="surrogatepass") + b"\n"


@settings(FUZZ, max_examples=150)
@given(raw=var_files())
def test_hostile_values_files_are_refused_cleanly(raw: bytes) -> None:
    validate(USES_VARIABLES.encode(), var_file=raw)


# --- 3. targeted cases -----------------------------------------------------------------------------


def problems_of(
    manifest: str | bytes | None,
    var_file: str | bytes | None = None,
    *,
    project: str = PROJECT,
    hard_limit: float = HARD_LIMIT,
) -> list[str]:
    """Run validate, check the property strictly, and return the problem lines relative to the case."""
    with case(_bytes(manifest), _bytes(var_file), project=project) as made:
        outcome = run_validate(made.args, hard_limit=hard_limit)
        problems = check(outcome, made)
        root = str(made.folder.parent) + "/"
        return [line.replace(root, "") for line in problems]


def traced_peak(manifest: str | bytes | None, var_file: str | bytes | None = None) -> int:
    """The tracemalloc peak of one run of validate (tracing makes it too slow to time)."""
    with case(_bytes(manifest), _bytes(var_file)) as made:
        outcome = run_validate(made.args, trace=True)
        assert outcome.code == 1
        return outcome.memory


def _bytes(text: str | bytes | None) -> bytes | None:
    return text.encode() if isinstance(text, str) else text


def _server(extra: str) -> str:
    return "kind: MCPServer\nname: svc\n" + extra


@pytest.mark.parametrize(
    ("levels", "width"),
    [(9, 10), (30, 2), (200, 10)],
    ids=["billion-laughs", "two-to-the-30", "ten-to-the-200"],
)
def test_an_alias_bomb_is_stopped_quickly_in_bounded_memory(levels: int, width: int) -> None:
    bomb = _server("lol:" + _alias_bomb(levels, width) + "\n")
    assert problems_of(bomb) == [f"m/x.yaml:1:1: {SIZE_MESSAGE}"]  # also checks the time bound and peak RSS
    if levels == 9:  # the classic: also its tracemalloc peak (tracing is slow, so only this one)
        assert traced_peak(bomb) < MEMORY_LIMIT
    values = "V_NAME:" + _alias_bomb(levels, width) + "\n"
    assert problems_of(USES_VARIABLES, values) == [f"vars.yaml:1:1: {SIZE_MESSAGE}"]


def test_the_alias_budget_is_shared_by_the_documents_of_a_file() -> None:
    document = _server("lol:" + _alias_bomb(5, 10) + "\n")  # about 111,000 values each
    assert problems_of(document + "---\n" + document) == [
        f"m/x.yaml:1:1: {SIZE_MESSAGE}",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("&a [*a]\n", [f"m/x.yaml:1:1: {SELF_MESSAGE}"]),
        ("&a {a: *a}\n", [f"m/x.yaml:1:1: {SELF_MESSAGE}"]),
        ("- &a [*a, [*a]]\n", [f"m/x.yaml:1:1: {SELF_MESSAGE}"]),
        (_server("tags: &a [*a]\n"), [f"m/x.yaml:1:1: {SELF_MESSAGE}"]),
        (_server("sessionSettings: &a {x: *a}\n"), [f"m/x.yaml:1:1: {SELF_MESSAGE}"]),
    ],
)
def test_self_referencing_anchors_end_cleanly(text: str, expected: list[str]) -> None:
    assert problems_of(text) == expected


NESTED_TOO_DEEPLY = "file is nested too deeply to read"


TEN_THOUSAND_LEVELS = {
    "flow-sequences": "[" * 10_000 + "]" * 10_000,
    "flow-mappings": "{a: " * 10_000 + "x" + "}" * 10_000,
    "block-sequences": "\n  " + "- " * 10_000 + "x",
    "mixed": "[{a: " * 5_000 + "x" + "}]" * 5_000,
    "unclosed": "[" * 10_000,
}


@pytest.mark.parametrize("shape", TEN_THOUSAND_LEVELS)
def test_ten_thousand_levels_of_nesting_are_refused(shape: str) -> None:
    nested = TEN_THOUSAND_LEVELS[shape]
    assert problems_of(_server(f"x: {nested}\n")) == [f"m/x.yaml:1:1: {NESTED_TOO_DEEPLY}"]


@pytest.mark.parametrize("shape", ["flow-mappings", "block-sequences"])
def test_ten_thousand_levels_of_nesting_in_a_values_file_are_refused(shape: str) -> None:
    values = f"V_NAME: {TEN_THOUSAND_LEVELS[shape]}\n"
    assert problems_of(USES_VARIABLES, values) == [f"vars.yaml:1:1: {NESTED_TOO_DEEPLY}"]


def test_the_depth_limit_is_exact() -> None:
    at_limit = "[" * MAX_DEPTH + "]" * MAX_DEPTH  # x is level 1, so the innermost list is level 64
    assert problems_of(_server(f"x: {at_limit}\n")) == ["m/x.yaml:3:1: x: unknown field 'x'"]
    over = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    assert problems_of(_server(f"x: {over}\n")) == [f"m/x.yaml:1:1: {DEPTH_MESSAGE}"]


def _sized(size: int) -> bytes:
    head = b"kind: MCPServer\nname: big\ndescription: "
    return head + b"z" * (size - len(head) - 1) + b"\n"


def test_the_file_size_limit_is_exact_and_fast() -> None:
    assert len(_sized(MAX_FILE_BYTES)) == MAX_FILE_BYTES
    assert problems_of(_sized(MAX_FILE_BYTES)) == []  # valid: read in full, within the time limit
    refused = ["m/x.yaml:1:1: file is larger than 4 MiB"]
    assert problems_of(_sized(MAX_FILE_BYTES + 1)) == refused
    assert problems_of(_sized(5 * 1024 * 1024)) == refused
    assert problems_of(USES_VARIABLES, b"V_NAME: x\n" + b"#" * (5 * 1024 * 1024)) == [
        "vars.yaml:1:1: file is larger than 4 MiB"
    ]


@pytest.mark.parametrize(
    ("template", "tag"),
    [
        ('name: !!python/object/apply:os.system ["touch {pwned}"]\n', "python/object/apply:os.system"),
        ("name: !!python/object/apply:os.system\n  args: [touch {pwned}]\n", "python/object/apply:os.system"),
        ("name: !!python/object/new:os.system [touch {pwned}]\n", "python/object/new:os.system"),
        (
            "name: !!python/object/apply:subprocess.check_call [[touch, {pwned}]]\n",
            "python/object/apply:subprocess.check_call",
        ),
        ("name: !!python/object:os.system {{command: touch {pwned}}}\n", "python/object:os.system"),
        ("clients: [!!python/object/apply:os.system [touch {pwned}]]\n", "python/object/apply:os.system"),
    ],
)
def test_python_tags_construct_nothing(template: str, tag: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pwned = Path(tmp) / "pwned"
        text = template.format(pwned=pwned)
        problems = problems_of(_server(text) if not text.startswith("name:") else "kind: MCPServer\n" + text)
        assert not pwned.exists()
        assert any(f"YAML tag 'tag:yaml.org,2002:{tag}' is not allowed" in line for line in problems), (
            problems
        )
        values = "V_NAME: " + text.split(": ", 1)[1]
        problems = problems_of(USES_VARIABLES, values)
        assert not pwned.exists()
        assert any(line.startswith("vars.yaml:1:") and f"{tag}' is not allowed" in line for line in problems)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (b"", []),
        (b"\xef\xbb\xbfV_NAME: crlf\r\nV_NUM: 7\r\n", []),
        (b"- a\n", ["vars.yaml:1:1: a values file must be a mapping of NAME: value"]),
        (b"just text\n", ["vars.yaml:1:1: a values file must be a mapping of NAME: value"]),
        (b"V_NAME: {a: 1}\n", ["vars.yaml:1:9: V_NAME: values must be scalars, not lists or mappings"]),
        (
            b"1: x\n[a]: b\n",
            [
                "vars.yaml:1:1: keys must be strings, not int",
                "vars.yaml:2:1: keys must be strings, not a list",
            ],
        ),
        (b"V_NAME: a\nV_NAME: b\n", ["vars.yaml:2:1: duplicate key 'V_NAME'"]),
        (b"V_NAME: caf\xe9\n", ["vars.yaml:1:12: file is not valid UTF-8"]),
        (
            b"V_NAME: [unclosed\n",
            [
                "vars.yaml:2:1: YAML syntax error: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence)"
            ],
        ),
        (b"V_NAME: !custom x\n", ["vars.yaml:1:9: V_NAME: YAML tag '!custom' is not allowed"]),
    ],
)
def test_hostile_values_files_get_clear_problems(values: bytes, expected: list[str]) -> None:
    assert problems_of(USES_VARIABLES, values) == expected


# --- bugs the fuzzers found, fixed: each pinned by the exact problem the loader gives now -----------

# Known gap (position only): ruamel raises these as plain exceptions without a mark, and yamlsource
# reports them at 1:1, the start of the file, rather than at the value (3:14, after "description: ").
# The message is pinned exactly; the position may be today's or the right one, nothing else.
TODAY_AT, VALUE_AT = "1:1", "3:14"
CANNOT_READ = "a value cannot be read as YAML: "
UNREADABLE_SCALARS = [
    ("2001-02-30", CANNOT_READ + "day is out of range for month"),  # ValueError
    ("0000-01-01", CANNOT_READ + "year 0 is out of range"),  # ValueError
    ("2001-01-01 25:00:00", CANNOT_READ + "hour must be in 0..23"),  # ValueError
    ("-_", CANNOT_READ + "string index out of range"),  # IndexError: an int, nothing after the sign
    ("0x_", CANNOT_READ + "string index out of range"),  # IndexError
    ("0b_", CANNOT_READ + "string index out of range"),  # IndexError
    ("!!int x", CANNOT_READ + "invalid literal for int() with base 10: 'x'"),  # ValueError
    ("!!int ''", CANNOT_READ + "string index out of range"),  # IndexError
    ("!!float x", CANNOT_READ + "could not convert string to float: 'x'"),  # ValueError
    ("!!float ''", CANNOT_READ + "string index out of range"),  # IndexError
    ("!!bool maybe", CANNOT_READ + "'maybe'"),  # KeyError: its text is the key's repr
    ("!!omap [{a: 1}, {a: 2}]", CANNOT_READ),  # AssertionError, which has no text at all
    # An AttributeError once; now the node-graph check refuses it before anything is constructed.
    ("&m {<<: *m}", "file is too large or too deeply nested: an alias refers to itself"),
    ('"\\U00110000"', CANNOT_READ + "chr() arg not in range(0x110000)"),  # ValueError, from the scanner
    ('"\\UFFFFFFFF"', CANNOT_READ + "Python int too large to convert to C int"),  # OverflowError, scanner
]


@pytest.mark.parametrize(
    ("scalar", "message"), UNREADABLE_SCALARS, ids=[scalar for scalar, _ in UNREADABLE_SCALARS]
)
def test_scalars_ruamel_fails_on_are_problems_not_crashes(scalar: str, message: str) -> None:
    problems = problems_of(_server(f"description: {scalar}\n"))
    assert problems in ([f"m/x.yaml:{TODAY_AT}: {message}"], [f"m/x.yaml:{VALUE_AT}: {message}"])


@pytest.mark.parametrize(
    "text",
    [
        "sessionSettings:\n  <<: {enabled: true}\n  sessionTokenExpiration: 5\n",
        "sessionSettings: &s {enabled: true}\ndynamicRegistration:\n  <<: *s\n",
    ],
    ids=["merged-and-own-keys", "only-merged-keys"],
)
def test_merge_keys_are_read_or_refused_cleanly(text: str) -> None:
    problems_of(_server(text))


@pytest.mark.parametrize(
    ("manifest", "values"),
    [
        ("!!str x\n", None),
        ("!custom x\n", None),
        ("=\n", None),
        ("--- !!python/name:os.system ''\n", None),
        (USES_VARIABLES, "!!str V_NAME\n"),
    ],
)
def test_a_document_that_is_a_tagged_scalar_is_not_a_crash(manifest: str, values: str | None) -> None:
    problems = problems_of(manifest, values)
    assert any(":1:1: " in line for line in problems), problems


@pytest.mark.parametrize("kind", ["[MCPServer]", "{a: 1}"])
def test_a_kind_that_is_a_list_or_mapping_is_a_problem(kind: str) -> None:
    problems = problems_of(f"kind: {kind}\nname: x\n")
    assert any(line.startswith("m/x.yaml:1:7: kind: ") for line in problems), problems


@pytest.mark.parametrize(
    "text",
    [
        "approvedScopes: [{name: read}]\nclients:\n  - name: bot\n"
        '    scopes: ["x\\nm/p.yaml:1:1: forged problem"]\n',
        'approvedScopes: [{name: read}]\nclients:\n  - name: bot\n    scopes: ["x\\ry"]\n',
        '"unknown\\nkey": 1\n',
        "description: |\n  ${UNDEFINED\n  more\n",
    ],
    ids=["scope-newline", "scope-carriage-return", "key-newline", "reference-newline"],
)
def test_a_problem_message_is_one_line(text: str) -> None:
    assert len(problems_of(_server(text))) == 1


@pytest.mark.parametrize("char", ["\x00", "\x1b", "\x7f"])
def test_a_control_character_is_reported_where_it_is(char: str) -> None:
    problems = problems_of(_server(f"description: a{char}b\n"))
    assert len(problems) == 1, problems
    assert problems[0].startswith("m/x.yaml:3:15: "), problems


@pytest.mark.parametrize(
    "text",
    [_server("a: &a 1\nb: &a 2\n"), "%YAML 1.1\n---\n" + _server("description: 1e3\n")],
    ids=["reused-anchor", "yaml-1.1-mantissa"],
)
def test_yaml_warnings_do_not_leak_into_the_output(text: str) -> None:
    with case(text.encode()) as made:
        environ = {k: v for k, v in os.environ.items() if k not in ("GITHUB_ACTIONS", "MCP_RECONCILER_DEBUG")}
        result = subprocess.run(
            [sys.executable, "-m", "reconciler", "validate", *made.args],
            cwd=Path(__file__).resolve().parent.parent,
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 1
        lines = result.stderr.splitlines()
        assert lines, result.stderr
        assert all(line.startswith(str(made.folder) + "/") for line in lines[:-1]), result.stderr


def test_a_project_id_that_cannot_be_printed_is_not_an_internal_error() -> None:
    problems_of(None, project=PROJECT.replace("P2fuzz", '"\\uD800"'))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (_server("description: ééé").encode() + b"\xff\n", "m/x.yaml:3:17: file is not valid UTF-8"),
    ],
    ids=["multi-byte-characters"],
)
def test_the_column_of_a_bad_utf8_byte_counts_characters(raw: bytes, expected: str) -> None:
    assert problems_of(raw) == [expected]


def test_a_zero_width_no_break_space_is_a_column() -> None:
    # Known gap (position only): ruamel's reader does not count U+FEFF in columns (ruamel/yaml/reader.py
    # forward) and yamlsource passes its columns through, so each U+FEFF before a value moves the column
    # left by one: 3:11 today, where the 2 is at 3:13. Either is accepted; the message is pinned.
    problems = problems_of(_server("tags: [\ufeff\ufeff1, 2]\n"))
    message = "tags[1]: expected a string, got an integer"
    assert problems in ([f"m/x.yaml:3:11: {message}"], [f"m/x.yaml:3:13: {message}"])


def test_a_duplicate_key_holding_an_alias_bomb_is_stopped_quickly() -> None:
    text = _server("lol:" + _alias_bomb(7, 10) + "\ndup: *l6\ndup: *l6\n")  # 10^7 values
    with case(text.encode()) as made:
        outcome = run_validate(made.args, hard_limit=TIME_LIMIT + 1)
        check(outcome, made)
        assert outcome.memory < 100 * 1024 * 1024, f"{outcome.memory / 2**20:.0f} MiB for {len(text)} bytes"


def test_unique_items_over_a_long_list_of_mappings_take_linear_time() -> None:
    items = ", ".join(f"{{a: {i}}}" for i in range(20_000))
    problems_of(_server(f"tags: [{items}]\n"), hard_limit=TIME_LIMIT + 1)


def test_many_unknown_scopes_against_many_approved_scopes_take_reasonable_time() -> None:
    approved = "".join(f"  - name: s{i}\n" for i in range(10_000))
    requested = ", ".join(f"t{i}" for i in range(2_000))
    text = f"approvedScopes:\n{approved}clients:\n  - name: bot\n    scopes: [{requested}]\n"
    problems_of(_server(text), hard_limit=TIME_LIMIT + 1)
