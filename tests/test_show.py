"""show: a saved plan, verified as apply verifies it, rendered offline; and a saved plan given where
manifests belong is refused with a pointer to show and apply."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import run
from reconciler.cli.common import is_saved_plan
from reconciler.emulator import RunningEmulator
from reconciler.plan import checksum, signature
from reconciler.render.markdown import plan_marker
from tests.conftest import project_yaml, serving

KEY = "K2-show-management-key-5c1e"
PROJECT = "P2SHOWPLAN"
PLAN_KEY = "show-signing-key-0123456789abcdef"

SERVER_YAML = """\
kind: MCPServer
name: calendar
description: Calendar tools
approvedScopes:
  - name: calendar:read
approvedCallbackUrls: [https://agents.example.com/callback]
clients:
  - name: ci-agent
    scopes: [calendar:read]
"""
NOT_CHECKED = (
    "The manifests were not checked: give their paths after the plan file to check that the plan was "
    "made from them.\n"
)


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RunningEmulator]:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "project.yaml").write_text(project_yaml(PROJECT))
    (tmp_path / "manifests" / "calendar.yaml").write_text(SERVER_YAML)
    with serving(monkeypatch, PROJECT, KEY) as handle:
        yield handle


def _plan(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[str, dict[str, Any]]:
    """Save a plan to plan.json; what plan printed (text) and the saved document."""
    capsys.readouterr()
    assert run(["plan", "manifests", "--out", "plan.json", *extra]) == 0
    printed = capsys.readouterr().out
    document: dict[str, Any] = json.loads(Path("plan.json").read_text())
    return printed, document


def _save(document: dict[str, Any], *, key: str | None = None) -> None:
    """Write ``document`` back with its checksum recomputed (and signed with ``key``), as someone who
    edits the file and knows the format would."""
    body = {k: v for k, v in document.items() if k not in ("checksum", "signature")}
    if key is not None:
        body["signature"] = signature(body, key.encode())
    body["checksum"] = checksum(body)
    Path("plan.json").write_text(json.dumps(body, indent=2))


def _show(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run(["show", "plan.json", *args])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert "internal error" not in captured.err
    return code, captured.out, captured.err


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_show_prints_the_saved_plan_in_every_format_without_calling_the_api(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    printed, document = _plan(capsys)
    calls = len(emulator.requests())
    assert calls > 0  # plan read the live project; show must add nothing to this

    code, out, err = _show(capsys)
    assert code == 0
    assert out == printed  # the same plan, rendered as plan rendered it
    for address in ('server "calendar"', 'client "calendar/ci-agent"'):
        assert address in out
    assert f"Verified plan.json: checksum, change set {document['changeSet']}, not signed\n" in err
    assert err.endswith(NOT_CHECKED)

    code, out, _ = _show(capsys, "--format", "json")
    assert code == 0
    shown = json.loads(out)
    assert shown["changeSet"] == document["changeSet"]
    assert shown["changes"] == document["changes"]
    assert shown["project"] == PROJECT

    code, out, _ = _show(capsys, "--format", "markdown")
    assert code == 0
    assert out.startswith(plan_marker(PROJECT) + "\n")
    assert document["changeSet"] in out

    assert len(emulator.requests()) == calls


def test_show_works_with_descope_out_of_reach_and_no_credentials(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    printed, _ = _plan(capsys)
    monkeypatch.delenv("DESCOPE_MANAGEMENT_KEY")
    monkeypatch.setenv("DESCOPE_BASE_URL", f"http://127.0.0.1:{_closed_port()}")
    code, out, _ = _show(capsys, "manifests")
    assert code == 0
    assert out == printed


def test_detailed_exitcode_says_whether_the_plan_changes_anything(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    _plan(capsys)
    assert _show(capsys, "--detailed-exitcode")[0] == 2
    assert _show(capsys)[0] == 0
    assert run(["apply", "plan.json"]) == 0  # a saved plan still applies: load() lets apply's flow be
    _, document = _plan(capsys)
    assert document["changes"] == []
    assert _show(capsys, "--detailed-exitcode")[0] == 0


def test_an_edited_plan_is_refused_and_not_shown(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    _, document = _plan(capsys)
    text = Path("plan.json").read_text()
    edited = text.replace("https://agents.example.com/callback", "https://attacker.example/callback")
    assert edited != text
    Path("plan.json").write_text(edited)  # the checksum kept: it no longer matches
    code, out, err = _show(capsys)
    assert (code, out) == (1, "")
    assert "error: plan.json: the checksum does not match: the plan was edited or damaged" in err

    # The checksum recomputed, the change-set digest not: still caught.
    document["changes"][0]["desired"]["approvedCallbackUrls"] = ["https://attacker.example/callback"]
    _save(document)
    code, out, err = _show(capsys)
    assert (code, out) == (1, "")
    assert "the change-set digest does not match the changes: the plan was edited" in err


def test_a_truncated_or_foreign_file_is_refused(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    _plan(capsys)
    text = Path("plan.json").read_text()
    Path("plan.json").write_text(text[: len(text) // 2])
    code, out, err = _show(capsys)
    assert (code, out) == (1, "")
    assert "error: plan.json: not a complete JSON document (truncated?)" in err

    Path("plan.json").write_text('{"format_version": 1}')
    code, out, err = _show(capsys)
    assert (code, out) == (1, "")
    assert "error: plan.json: plan format version 1; this mcp-reconciler reads" in err

    Path("plan.json").unlink()
    code, out, err = _show(capsys)
    assert (code, out) == (1, "")
    assert "error: plan.json: cannot read the saved plan" in err


def test_signatures_follow_the_rules_of_apply(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, unsigned = _plan(capsys)
    monkeypatch.setenv("MCP_RECONCILER_PLAN_KEY", PLAN_KEY)
    code, out, err = _show(capsys)
    assert (code, out) == (1, "")
    assert "the plan is not signed, and MCP_RECONCILER_PLAN_KEY is set" in err

    _, signed = _plan(capsys)
    code, out, err = _show(capsys)
    assert code == 0
    assert f"Verified plan.json: checksum, change set {signed['changeSet']}, signed with " in err
    assert "MCP_RECONCILER_PLAN_KEY\n" in err
    assert PLAN_KEY not in out + err

    _save(signed, key="a-guess-at-the-signing-key-000")
    code, out, err = _show(capsys)
    assert (code, out) == (1, "")
    assert "the plan's signature does not match MCP_RECONCILER_PLAN_KEY" in err
    assert PLAN_KEY not in err

    _save(signed, key=PLAN_KEY)
    monkeypatch.delenv("MCP_RECONCILER_PLAN_KEY")
    code, out, err = _show(capsys)
    assert (code, out) == (1, "")
    assert "the plan is signed, but MCP_RECONCILER_PLAN_KEY is not set" in err

    monkeypatch.setenv("MCP_RECONCILER_PLAN_KEY", "short")
    code, out, err = _show(capsys)
    assert (code, out) == (1, "")
    assert "MCP_RECONCILER_PLAN_KEY is too short" in err
    assert unsigned["changeSet"] == signed["changeSet"]


def test_with_paths_the_plan_must_have_been_made_from_them(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    printed, document = _plan(capsys)
    code, out, err = _show(capsys, "manifests")
    assert code == 0
    assert out == printed
    assert f"Verified plan.json: checksum, change set {document['changeSet']}, not signed, made from " in err
    assert "made from manifests\n" in err
    assert "not checked" not in err

    path = Path("manifests/calendar.yaml")
    path.write_text(path.read_text().replace("description: Calendar tools", "description: Other"))
    code, out, err = _show(capsys, "manifests")
    assert (code, out) == (1, "")
    assert '  server "calendar" changed\n' in err
    assert "error: the manifests are not the ones the plan was made from (1 difference)" in err

    other = Path("other")
    other.mkdir()
    (other / "project.yaml").write_text(project_yaml("P2SOMEOTHER"))
    code, out, err = _show(capsys, "other")
    assert (code, out) == (1, "")
    assert f"the plan is for project {PROJECT}, but the manifests are for P2SOMEOTHER" in err


def test_the_paths_the_plan_records_are_never_read(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    _, document = _plan(capsys)
    document["madeFrom"]["paths"] = ["/etc", "../elsewhere"]
    document["madeFrom"]["varFiles"] = ["/etc/passwd"]
    _save(document)
    code, out, err = _show(capsys)
    assert code == 0
    assert 'server "calendar"' in out
    assert err.endswith(NOT_CHECKED)
    assert "/etc" not in err


def test_var_file_without_paths_is_a_usage_error(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    _plan(capsys)
    Path("vars.yaml").write_text("A: b\n")
    code, out, err = _show(capsys, "--var-file", "vars.yaml")
    assert (code, out) == (1, "")
    assert "--var-file is only read with the manifest PATHS" in err


def test_show_help_says_it_stays_offline(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["show", "--help"]) == 0
    help_text = capsys.readouterr().out
    assert help_text.startswith("Usage: mcp-reconciler show [OPTIONS] PLAN [PATHS]...")
    assert "does not contact Descope" in help_text


@pytest.mark.parametrize(
    "command",
    [
        ["plan", "plan.json"],
        ["validate", "plan.json"],
        ["drift", "plan.json"],
        ["plan", "manifests", "plan.json"],
    ],
)
def test_a_saved_plan_given_as_a_manifest_points_at_show_and_apply(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    _plan(capsys)
    calls = len(emulator.requests())
    assert run(command) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "error: plan.json is a saved plan, not a manifest: view it with mcp-reconciler show plan.json, "
        "or apply it with mcp-reconciler apply plan.json\n"
    )
    assert len(emulator.requests()) == calls  # refused before anything was read live


def test_a_damaged_saved_plan_is_still_refused_as_a_manifest(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    _plan(capsys)
    text = Path("plan.json").read_text()
    Path("plan.json").write_text(text[: len(text) - 40])
    assert run(["validate", "plan.json"]) == 1
    assert "plan.json is a saved plan, not a manifest" in capsys.readouterr().err


def test_only_saved_plans_are_taken_for_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text('\ufeff{"format_version": 4, "project": "x", "changeSet": "sha256:00"}')
    assert is_saved_plan(plan)
    for name, text in [
        ("list.json", '[{"format_version": 4, "changeSet": "sha256:00"}]'),
        ("nested.json", '{"kind": "Project", "x": {"format_version": 4, "changeSet": "sha256:00"}}'),
        ("half.json", '{"format_version": 4, "changes": ['),
        ("empty.json", ""),
    ]:
        (tmp_path / name).write_text(text)
        assert not is_saved_plan(tmp_path / name), name
    assert not is_saved_plan(tmp_path / "missing.json")
    assert not is_saved_plan(tmp_path)

    # A manifest written as JSON (YAML reads it) is still a manifest.
    manifest = tmp_path / "project.json"
    manifest.write_text(json.dumps({"kind": "Project", "projectId": "P2JSON"}))
    assert run(["validate", str(manifest)]) == 0
    assert "project P2JSON" in capsys.readouterr().out
