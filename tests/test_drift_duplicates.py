"""drift reports a manifest name that several live objects carry, as plan refuses it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from reconciler.cli import run
from reconciler.descope.wire import LiveClient, LiveServer, LiveState
from reconciler.drift import DriftReport, Duplicated, detect_drift
from reconciler.emulator import RunningEmulator
from reconciler.manifest import load_manifest
from reconciler.plan import Kind
from reconciler.render.markdown import render_drift_markdown
from reconciler.render.text import render_drift_text
from reconciler.schemas import format_checker, load_schema, schema_registry
from tests.conftest import EXAMPLES, serving

KEY = "K2-drift-duplicates-key-5e1"
PROJECT = "P2MCPRECONCILERDEMO"
OWNER = "managed-by:mcp-reconciler"
CALENDAR_A = "MS0000000000000000000000000CA1"
CALENDAR_B = "MS0000000000000000000000000CA2"


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningEmulator]:
    with serving(monkeypatch, PROJECT, KEY) as handle:
        yield handle


def _drift(capsys: pytest.CaptureFixture[str], output_format: str) -> tuple[int, str]:
    code = run(["drift", str(EXAMPLES), "--detailed-exitcode", "--format", output_format])
    return code, capsys.readouterr().out


def test_two_live_servers_of_one_managed_name_are_drift_with_both_ids(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.seed(
        {
            "servers": [
                {"id": CALENDAR_A, "name": "calendar", "tags": [OWNER]},
                {"id": CALENDAR_B, "name": "calendar", "tags": [OWNER]},
            ]
        }
    )
    code, text = _drift(capsys, "text")
    assert code == 2
    assert (
        "Duplicated (one manifest name, several live objects: plan refuses until all but one go):\n"
        f'  ! server "calendar" matches 2 live servers ({CALENDAR_A}, {CALENDAR_B})\n'
    ) in text
    assert text.endswith(", 1 duplicated.\n")
    assert "No drift" not in text

    code, out = _drift(capsys, "json")
    assert code == 2
    document = json.loads(out)
    assert document["format_version"] == 3
    assert document["drift"] is True
    assert document["duplicated"] == [
        {"kind": "server", "address": 'server "calendar"', "ids": [CALENDAR_A, CALENDAR_B]}
    ]
    assert document["summary"]["duplicated"] == 1
    assert list(_validator().iter_errors(document)) == []

    code, markdown = _drift(capsys, "markdown")
    assert code == 2
    assert "| duplicated | 1 |" in markdown
    assert (
        "### Duplicated: one manifest name, several live objects (1)\n\n"
        f'- server "calendar" matches 2 live servers (ids `{CALENDAR_A}`, `{CALENDAR_B}`): '
        "plan refuses until all but one go\n"
    ) in markdown

    # What drift reports is what plan refuses.
    assert run(["plan", str(EXAMPLES)]) == 1
    assert 'server "calendar" matches 2 live servers' in capsys.readouterr().err


def test_two_clients_of_one_server_with_a_managed_clients_name_are_drift(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    clients = [
        {"id": "MSC000000000000000000000000AG1", "name": "scheduling-agent", "tags": [OWNER]},
        {"id": "MSC000000000000000000000000AG2", "name": "scheduling-agent"},
    ]
    emulator.seed({"servers": [{"name": "calendar", "tags": [OWNER], "clients": clients}]})
    code, out = _drift(capsys, "json")
    assert code == 2
    assert json.loads(out)["duplicated"] == [
        {
            "kind": "client",
            "address": 'client "calendar/scheduling-agent"',
            "ids": ["MSC000000000000000000000000AG1", "MSC000000000000000000000000AG2"],
        }
    ]
    code, text = _drift(capsys, "text")
    assert (
        '  ! client "calendar/scheduling-agent" matches 2 live clients '
        "(MSC000000000000000000000000AG1, MSC000000000000000000000000AG2)\n"
    ) in text


def test_without_duplicates_drift_does_not_mention_them(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.seed(
        {"servers": [{"name": "calendar", "tags": [OWNER]}, {"name": "elsewhere", "tags": [OWNER]}]}
    )
    code, text = _drift(capsys, "text")
    assert code == 2
    assert "uplicated" not in text
    code, markdown = _drift(capsys, "markdown")
    assert "uplicated" not in markdown
    _, out = _drift(capsys, "json")
    assert json.loads(out)["duplicated"] == []


def _live(servers: list[dict[str, Any]]) -> LiveState:
    return LiveState(
        servers=tuple(LiveServer.from_wire(s) for s in servers),
        clients={
            s["id"]: tuple(LiveClient.from_wire(c, s["id"]) for c in s.get("clients", [])) for s in servers
        },
    )


def test_duplicates_are_matched_as_the_planner_matches() -> None:
    manifest = load_manifest([str(EXAMPLES)], environ={})
    live = _live(
        [
            {"id": "S1", "name": "calendar", "tags": [OWNER]},
            {"id": "S2", "name": "calendar", "tags": []},  # owned or not, a match is a match
            {"id": "S3", "name": "not-in-any-manifest", "tags": []},
            {"id": "S4", "name": "not-in-any-manifest", "tags": []},
            {
                "id": "S5",
                "name": "crm",
                "tags": [OWNER],
                "clients": [
                    {"id": "C1", "name": "sales-copilot", "tags": [OWNER]},
                    {"id": "C2", "name": "sales-copilot", "registrationType": "dcr"},
                    {"id": "C3", "name": "unlisted", "tags": [OWNER]},
                    {"id": "C4", "name": "unlisted", "tags": [OWNER]},
                ],
            },
        ]
    )
    report = detect_drift(manifest, live)
    assert report.duplicated == (
        Duplicated(Kind.SERVER, 'server "calendar"', ("S1", "S2")),
        Duplicated(Kind.CLIENT, 'client "crm/sales-copilot"', ("C1", "C2")),
    )
    assert report.has_drift
    # The step outputs keep their names; the JSON summary counts duplicates too.
    assert "duplicated" not in report.summary
    assert report.to_json()["summary"]["duplicated"] == 2
    assert list(_validator().iter_errors(report.to_json())) == []


def test_a_report_of_duplicates_alone_is_drift_in_every_rendering() -> None:
    report = DriftReport(
        "P2abc", (), (), (), (), 0, (Duplicated(Kind.SERVER, 'server "x"', ("S1", "S2", "S3")),)
    )
    assert report.has_drift
    text = render_drift_text(report)
    assert '! server "x" matches 3 live servers (S1, S2, S3)' in text
    assert text.endswith("Drift: 0 changed, 0 missing, 0 orphaned, 0 unmanaged, 1 duplicated.\n")
    coloured = render_drift_text(report, colour=True)
    assert '\x1b[31m! server "x" matches 3 live servers (S1, S2, S3)\x1b[0m' in coloured
    markdown = render_drift_markdown(report)
    assert "| duplicated | 1 |" in markdown
    assert "No drift" not in markdown


def test_the_schema_refuses_a_duplicate_with_one_id() -> None:
    report = DriftReport("P2abc", (), (), (), (), 0, (Duplicated(Kind.SERVER, 'server "x"', ("S1",)),))
    assert list(_validator().iter_errors(report.to_json())) != []


def _validator() -> Draft202012Validator:
    return Draft202012Validator(
        load_schema("drift.schema.json"), registry=schema_registry(), format_checker=format_checker
    )
