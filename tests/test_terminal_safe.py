"""Names and values from manifests and from the live API reach the terminal with their control and
bidi characters escaped: plan and drift (text, markdown), apply's progress, secrets check, export,
validate, errors and logs. JSON output stays exact data."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import run
from reconciler.cli.apply import ProgressLine
from reconciler.cli.main import VisibleFormatter
from reconciler.drift import DriftReport, Unmanaged
from reconciler.emulator import RunningEmulator
from reconciler.manifest import control_character_warnings, load_manifest
from reconciler.plan import Action, Change, FieldChange, Kind, Plan, Withheld
from reconciler.render.markdown import render_plan_markdown
from reconciler.render.text import render_drift_text, render_plan_text
from reconciler.textsafe import json_visible, visible
from tests.conftest import EXAMPLES, serving

KEY = "K2-terminal-safe-key-77d0"
PROJECT = "P2TERMINALSAFE"
OWNER = "managed-by:mcp-reconciler"

TITLE = "\x1b]0;pwned\x07"  # sets the terminal's window title
FORGED = '\x1b[2K\r+ server "fake" will be created'  # erases the line and prints a plan line of its own
RLO = "\u202e"  # shows what follows right to left
CSI = "\x9b"  # the 8-bit control sequence introducer

# What may never reach a terminal from data: every control character but tab and newline (which
# our own layout uses), C1 controls, bidi controls and the line and paragraph separators.
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
OUR_COLOURS = re.compile(r"\x1b\[\d+m")

SERVER = f"cal{TITLE}"
CLIENT = f"bot{FORGED}"
SCOPE = f"read{CSI}"
TAG = f"team:{RLO}gold"


def assert_safe(text: str, *, colour: bool = False) -> None:
    """No raw control character in ``text`` (with ``colour``, none but our own colour codes)."""
    shown = OUR_COLOURS.sub("", text) if colour else text
    assert RAW.findall(shown) == [], shown


def assert_escaped(text: str, *values: str) -> None:
    for value in values:
        assert visible(value) in text, (visible(value), text)


# ---- visible -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (TITLE, "\\x1b]0;pwned\\x07"),
        (FORGED, '\\x1b[2K\\r+ server "fake" will be created'),
        ("a\nb\tc\x00\x7f", "a\\nb\\tc\\x00\\x7f"),
        (CSI + "\x80\x85\x9f", "\\x9b\\x80\\x85\\x9f"),
        ("\u202a\u202b\u202c\u202d\u202e", "\\u202a\\u202b\\u202c\\u202d\\u202e"),
        ("\u2066\u2067\u2068\u2069\u200e\u200f\u061c", "\\u2066\\u2067\\u2068\\u2069\\u200e\\u200f\\u061c"),
        ("\u2028\u2029", "\\u2028\\u2029"),
        ("lone \ud800", "lone \\ud800"),
    ],
)
def test_visible_escapes_controls_bidi_and_separators(raw: str, shown: str) -> None:
    assert visible(raw) == shown
    assert visible(shown) == shown  # made visible twice, the same


@pytest.mark.parametrize(
    "text",
    ["calendar", "café ☕ 日本語 עברית", "👨\u200d👩\u200d👧 \u00a0nbsp", "C:\\path \\x1b literally", ""],
)
def test_visible_leaves_other_text_as_it_is(text: str) -> None:
    assert visible(text) == text


def test_addresses_are_escaped_for_display_and_json_keeps_exact_names() -> None:
    change = Change(Kind.CLIENT, Action.CREATE, CLIENT, server=SERVER)
    assert change.address == f'client "{visible(SERVER)}/{visible(CLIENT)}"'
    assert change.to_json()["name"] == CLIENT
    assert Change(Kind.SERVER, Action.DELETE, RLO, id="S1").address == 'server "\\u202e"'


# ---- renderers -------------------------------------------------------------------------------------


def hostile_plan() -> Plan:
    fields = (
        FieldChange("description", f"old{RLO}", f"new{TITLE}"),
        FieldChange(f'policies["{CSI}.example.com"]', None, {"enabled": True}),
        FieldChange("tags", [TAG], ["a\u2028b"]),
    )
    changes = (
        Change(Kind.SERVER, Action.UPDATE, SERVER, id=f"S{CSI}", fields=fields, notes=(f"note{FORGED}",)),
        Change(
            Kind.CLIENT, Action.CREATE, CLIENT, server=SERVER, fields=(FieldChange("name", None, CLIENT),)
        ),
        Change(Kind.SERVER, Action.DELETE, f"old{RLO}", id="S2"),
    )
    withheld = (Withheld(f'client "{SERVER}/{CLIENT}"', SERVER, f"protected{TITLE}"),)
    return Plan(f"P{CSI}", OWNER, changes, withheld=withheld, partial=True, targets=(f"server:{SERVER}",))


@pytest.mark.parametrize("colour", [False, True])
def test_plan_text_escapes_every_value_and_keeps_its_colours(colour: bool) -> None:
    text = render_plan_text(hostile_plan(), colour=colour)
    assert_safe(text, colour=colour)
    assert_escaped(text, SERVER, CLIENT, TITLE, RLO, CSI, f"note{FORGED}", f"protected{TITLE}", "\u2028")
    assert ("\x1b[33m" in text) is colour
    # One line per thing: nothing in the data starts a line of its own.
    assert not any(line.startswith('+ server "fake"') for line in text.splitlines())


def test_drift_text_escapes_every_value() -> None:
    plan = hostile_plan()
    report = DriftReport(
        project_id=f"P{TITLE}",
        changed=(plan.changes[0],),
        missing=(plan.changes[1],),
        orphaned=(f'server "old{RLO}"',),
        unmanaged=(Unmanaged(f'server "{FORGED}"', f"S{CSI}", f"note{TITLE}"),),
        dynamic_clients=0,
    )
    for colour in (False, True):
        text = render_drift_text(report, colour=colour)
        assert_safe(text, colour=colour)
        assert_escaped(text, TITLE, FORGED, RLO, CSI)


def test_plan_markdown_escapes_control_characters_visibly_and_keeps_its_structure() -> None:
    markdown = render_plan_markdown(hostile_plan())
    assert_safe(markdown)
    assert_escaped(markdown, TITLE, RLO, CSI)
    summaries = re.findall(r"^<summary>(.*)</summary>$", markdown, re.M)
    assert len(summaries) == 3
    assert summaries[0] == '~ update server "cal\\x1b]0;pwned\\x07"'
    assert '| `description` | `"old\\u202e"` | `"new\\u001b]0;pwned\\u0007"` |' in markdown
    # No line of the data became a line of the comment.
    assert re.search(r'(?<!\\r)\+ server "fake"', markdown) is None  # only ever after an escaped \r


# ---- end to end, against the emulator ------------------------------------------------------------


def _manifests(folder: Path, secrets: Path) -> Path:
    """Manifests written as JSON (which is YAML), so every character arrives as a \\u escape."""
    project = {
        "kind": "Project",
        "projectId": PROJECT,
        "ownershipTag": OWNER,
        "prune": True,
        "maxDeletes": 10,
        "defaultSink": "local",
        "sinks": {"local": {"type": "file", "path": str(secrets)}},
    }
    server = {
        "kind": "MCPServer",
        "name": SERVER,
        "description": f"d{FORGED}",
        "tags": [TAG],
        "approvedScopes": [{"name": SCOPE, "description": f"r{RLO}"}],
        "clients": [{"name": CLIENT, "scopes": [SCOPE], "tags": [f"t{CSI}"]}],
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "project.yaml").write_text(json.dumps(project), encoding="utf-8")
    (folder / "server.yaml").write_text(json.dumps(server, indent=2), encoding="utf-8")
    return folder


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RunningEmulator]:
    with serving(monkeypatch, PROJECT, KEY) as handle:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("MCP_RECONCILER_LOCK_DIR", str(tmp_path / "locks"))
        yield handle


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    return _manifests(tmp_path / "manifests", tmp_path / "secrets" / "clients.json")


HOSTILE_LIVE = {
    "servers": [
        {"name": SERVER, "description": f"by hand{RLO}", "tags": [OWNER]},  # managed: an update
        {"name": f"manual{TITLE}", "description": FORGED},  # unmanaged
        {"name": f"legacy{CSI}", "tags": [OWNER]},  # orphaned: a delete
    ]
}


def _output(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    return captured.out + captured.err


def test_plan_and_drift_show_hostile_live_and_manifest_names_escaped(
    emulator: RunningEmulator, manifests: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.seed(HOSTILE_LIVE)
    for command in ("plan", "drift"):
        for output_format in ("text", "markdown"):
            code = run([command, str(manifests), "--format", output_format, "--detailed-exitcode"])
            out = _output(capsys)
            assert code == 2, out
            assert_safe(out)
            assert_escaped(out, SERVER, RLO)
    run(["plan", str(manifests)])
    text = _output(capsys)
    assert f'~ server "{visible(SERVER)}" will be updated in place' in text
    assert f'+ client "{visible(SERVER)}/{visible(CLIENT)}" will be created' in text
    assert f'- server "{visible("legacy" + CSI)}" will be deleted' in text
    assert not any(line.lstrip().startswith('+ server "fake"') for line in text.splitlines())
    run(["drift", str(manifests)])
    assert f'? server "{visible("manual" + TITLE)}"' in _output(capsys)


def test_json_output_keeps_the_exact_names(
    emulator: RunningEmulator, manifests: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.seed(HOSTILE_LIVE)
    assert run(["plan", str(manifests), "--format", "json"]) == 0
    out = capsys.readouterr().out
    assert re.search("[\x00-\x1f]", out.replace("\n", "")) is None  # JSON escapes C0 controls
    changes = json.loads(out)["changes"]
    assert {(c["server"], c["name"]) for c in changes} >= {
        (None, SERVER),
        (SERVER, CLIENT),
        (None, f"legacy{CSI}"),
    }
    assert run(["drift", str(manifests), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["orphaned"] == [f'server "legacy{CSI}"']
    assert f'server "manual{TITLE}"' in [u["address"] for u in report["unmanaged"]]


def test_apply_progress_and_secrets_check_lines_are_escaped(
    emulator: RunningEmulator, manifests: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert not sys.stderr.isatty()  # one progress line per change
    assert run(["apply", str(manifests), "--auto-approve"]) == 0
    captured = capsys.readouterr()
    assert_safe(captured.out + captured.err)
    assert f'create server "{visible(SERVER)}": done' in captured.err
    assert f'create client "{visible(SERVER)}/{visible(CLIENT)}": done' in captured.err
    stored = json.loads((manifests.parent / "secrets" / "clients.json").read_text())
    assert list(stored) == [f"{SERVER}/{CLIENT}"]  # the sink gets the exact key

    assert run(["secrets", "check", str(manifests)]) == 0
    out = _output(capsys)
    assert_safe(out)
    assert f'match  client "{visible(SERVER)}/{visible(CLIENT)}" -> sink local' in out


def test_a_failed_change_is_shown_escaped_in_its_progress_line(capsys: pytest.CaptureFixture[str]) -> None:
    progress = ProgressLine()
    progress.start(1)
    progress.done(Change(Kind.SERVER, Action.CREATE, SERVER), f"refused: {FORGED}")
    progress.finish()
    err = capsys.readouterr().err
    assert_safe(err)
    assert err == f'[1/1] create server "{visible(SERVER)}": FAILED (refused: {visible(FORGED)})\n'


def test_plan_errors_and_drift_duplicates_quoting_hostile_names_are_escaped(
    emulator: RunningEmulator, manifests: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.seed({"servers": [{"name": SERVER, "tags": [OWNER]}, {"name": SERVER, "description": FORGED}]})
    assert run(["plan", str(manifests)]) == 1
    err = capsys.readouterr().err
    assert_safe(err)
    assert f'server "{visible(SERVER)}" matches 2 live servers' in err
    assert err.splitlines()[-1] == "error: cannot plan: 1 problem"
    assert run(["drift", str(manifests), "--detailed-exitcode"]) == 2
    out = _output(capsys)
    assert_safe(out)
    assert f'! server "{visible(SERVER)}" matches 2 live servers' in out


def test_manifest_problems_quoting_hostile_names_are_escaped(
    manifests: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    document = json.loads((manifests / "server.yaml").read_text())
    document["clients"][0]["scopes"] = [f"write{TITLE}"]
    (manifests / "server.yaml").write_text(json.dumps(document))
    assert run(["validate", str(manifests)]) == 1
    err = capsys.readouterr().err
    assert_safe(err)
    assert f"'write{visible(TITLE)}' is not an approved scope of server '{visible(SERVER)}'" in err


def test_export_messages_and_files_are_free_of_control_characters(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.seed(
        {
            "servers": [
                {"name": f"twice{TITLE}"},
                {"name": f"twice{TITLE}"},
                {
                    "name": SERVER,
                    "description": f"d{FORGED}\n{RLO}",
                    "tags": [TAG],
                    "approvedScopes": [{"name": SCOPE, "description": "x\u2066y"}],
                    "clients": [
                        {"name": CLIENT, "scopes": [SCOPE]},
                        {"name": f"c{CSI}"},
                        {"name": f"c{CSI}"},
                    ],
                },
            ]
        }
    )
    out = tmp_path / "exported"
    assert run(["export", "--out", str(out), "--project-id", PROJECT]) == 0
    said = _output(capsys)
    assert_safe(said)
    assert f'warning: server "{visible("twice" + TITLE)}" (' in said
    assert f'warning: client "{visible(SERVER)}/{visible("c" + CSI)}" is skipped' in said
    for path in out.rglob("*.yaml"):
        assert_safe(path.read_text(encoding="utf-8").replace("\n", ""))
    manifest = load_manifest([str(out)], environ={})
    [server] = manifest.servers
    assert (server.name, server.description, server.tags) == (SERVER, f"d{FORGED}\n{RLO}", (TAG,))
    assert [c.name for c in server.clients] == [CLIENT]
    assert server.approvedScopes[0].description == "x\u2066y"

    assert run(["validate", str(out)]) == 0
    captured = capsys.readouterr()
    assert_safe(captured.out + captured.err)
    assert "Manifests are valid" in captured.out
    assert f'warning: server "{visible(SERVER)}": its name holds control or bidi characters' in captured.err


def test_validate_warns_of_control_characters_and_still_passes(
    manifests: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["validate", str(manifests)]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("Manifests are valid: 1 server, 1 client")
    assert_safe(captured.err)
    server_file = manifests / "server.yaml"
    assert captured.err.splitlines() == [
        f'{server_file}:1:1: warning: server "cal\\x1b]0;pwned\\x07": its name holds control or bidi '
        "characters (\\x1b, \\x07), which can rewrite or reorder text where it is shown as it is; "
        "mcp-reconciler shows them escaped",
        f'{server_file}:1:1: warning: server "cal\\x1b]0;pwned\\x07": tags[0] "team:\\u202egold" holds '
        "control or bidi characters (\\u202e), which can rewrite or reorder text where it is shown as it "
        "is; mcp-reconciler shows them escaped",
        f'{server_file}:1:1: warning: server "cal\\x1b]0;pwned\\x07": approvedScopes[0].name "read\\x9b" '
        "holds control or bidi characters (\\x9b), which can rewrite or reorder text where it is shown as "
        "it is; mcp-reconciler shows them escaped",
        f'{server_file}:15:5: warning: client "cal\\x1b]0;pwned\\x07/bot\\x1b[2K\\r+ server "fake" will be '
        'created": its name holds control or bidi characters (\\x1b, \\r), which can rewrite or reorder '
        "text where it is shown as it is; mcp-reconciler shows them escaped",
        f'{server_file}:15:5: warning: client "cal\\x1b]0;pwned\\x07/bot\\x1b[2K\\r+ server "fake" will be '
        'created": tags[0] "t\\x9b" holds control or bidi characters (\\x9b), which can rewrite or '
        "reorder text where it is shown as it is; mcp-reconciler shows them escaped",
    ]


def test_clean_manifests_have_no_warnings() -> None:
    assert control_character_warnings(load_manifest([str(EXAMPLES)], environ={})) == []


# ---- logs ------------------------------------------------------------------------------------------


def _record(message: str, *args: Any, exc_info: Any = None) -> logging.LogRecord:
    return logging.LogRecord("reconciler.api", logging.WARNING, __file__, 1, message, args, exc_info)


def test_log_messages_and_tracebacks_are_escaped() -> None:
    formatter = VisibleFormatter("%(levelname)s %(name)s: %(message)s")
    line = formatter.format(_record("deleting %s: %s", SERVER, FORGED))
    assert line == f"WARNING reconciler.api: deleting {visible(SERVER)}: {visible(FORGED)}"
    try:
        raise ValueError(f"bad name {TITLE}\nWARNING forged: line")
    except ValueError:
        record = _record("failed", exc_info=sys.exc_info())
    record.exc_text = f"raw {TITLE}"  # as another handler might have cached it
    text = formatter.format(record)
    assert_safe(text)
    assert "ValueError: bad name \\x1b]0;pwned\\x07\\nWARNING forged: line" in text
    assert text.splitlines()[1] == "Traceback (most recent call last):"
    assert record.exc_text == f"raw {TITLE}"  # other handlers see the record as it was


def test_the_cli_logs_through_the_escaping_formatter(
    monkeypatch: pytest.MonkeyPatch, manifests: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # pytest's own handlers sit on the root logger, and basicConfig leaves a configured root alone.
    monkeypatch.setattr(logging.root, "handlers", [])
    reconciler = logging.getLogger("reconciler")
    level, root_level = reconciler.level, logging.root.level
    try:
        assert run(["-v", "validate", str(manifests)]) == 0
        [handler] = logging.root.handlers
        assert isinstance(handler.formatter, VisibleFormatter)
        capsys.readouterr()
        logging.getLogger("reconciler.test").info("server %s", SERVER)
        assert capsys.readouterr().err == f"INFO reconciler.test: server {visible(SERVER)}\n"
    finally:
        reconciler.setLevel(level)
        logging.root.setLevel(root_level)


def test_json_output_keeps_the_data_and_escapes_what_a_terminal_would_act_on() -> None:
    value = {"name": "a\x1bb\x9bc\u202ed\u2028e\x7ff é"}
    text = json_visible(json.dumps(value, ensure_ascii=False))
    assert json.loads(text) == value
    assert not any(c in text for c in "\x1b\x9b\u202e\u2028\x7f")
    assert "é" in text
