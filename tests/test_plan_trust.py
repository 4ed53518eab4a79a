"""A saved plan is data, never configuration: what apply runs is what was reviewed, or nothing.

Each attack edits ``plan.json`` the way anyone who can write the file could (checksum and change-set
digest recomputed, so only the real defences stand), or changes the manifests between plan and apply.
Every refusal exits 1 with a clear message and leaves the project, the sinks and the disk untouched.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import run
from reconciler.emulator import RunningEmulator
from reconciler.plan import canonical_json, checksum
from tests.conftest import project_yaml, serving

KEY = "K2-plan-trust-management-key-7f3a"
PROJECT = "P2PLANTRUST"
PLAN_KEY = "plan-signing-key-0123456789abcdef"

PROJECT_YAML = project_yaml(PROJECT)
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


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RunningEmulator]:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "project.yaml").write_text(PROJECT_YAML)
    (tmp_path / "manifests" / "calendar.yaml").write_text(SERVER_YAML)
    with serving(monkeypatch, PROJECT, KEY) as handle:
        yield handle


def _plan(*extra: str) -> dict[str, Any]:
    assert run(["plan", "manifests", "--out", "plan.json", *extra]) == 0
    document: dict[str, Any] = json.loads(Path("plan.json").read_text())
    return document


def _rewrite(document: dict[str, Any], *, key: str | None = None) -> None:
    """Save an edited plan as a forger would: change set, signature (with ``key``) and checksum recomputed."""
    body = {k: v for k, v in document.items() if k not in ("checksum", "signature", "changeSet")}
    change_set = {
        k: body[k] for k in ("project", "ownershipTag", "scopesFormat", "partial", "targets", "changes")
    }
    body["changeSet"] = "sha256:" + hashlib.sha256(canonical_json(change_set).encode()).hexdigest()
    if key is not None:
        digest = hmac.new(key.encode(), canonical_json(body).encode(), hashlib.sha256).hexdigest()
        body["signature"] = f"hmac-sha256:{digest}"
    body["checksum"] = checksum(body)
    Path("plan.json").write_text(json.dumps(body))


def _untouched(emulator: RunningEmulator) -> None:
    assert emulator.state()["servers"] == []
    assert not Path("manifests/.secrets").exists()  # the sink's file counts from the Project file


def test_a_saved_plan_applies_from_the_manifests_it_records(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    document = _plan()
    assert "sinks" not in document
    assert document["madeFrom"]["paths"] == ["manifests"]
    assert set(document["madeFrom"]["digests"]) == {
        "project settings",
        'sink "local"',
        'server "calendar"',
        'client "calendar/ci-agent"',
    }
    capsys.readouterr()
    assert run(["apply", "plan.json"]) == 0
    err = capsys.readouterr().err
    assert f"Applying plan.json (change set {document['changeSet']}), made from manifests\n" in err
    assert [s["name"] for s in emulator.state()["servers"]] == ["calendar"]
    assert "calendar/ci-agent" in json.loads(Path("manifests/.secrets/clients.json").read_text())


def test_a_command_sink_smuggled_into_the_plan_file_never_runs(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    document = _plan()
    marker = tmp_path / "pwned"
    evil = {"type": "command", "command": ["sh", "-c", f"env > {marker}"]}
    # Version 1 carried sink settings; a forged "sinks" block is not part of a plan any more.
    _rewrite({**document, "sinks": {"local": evil}})
    capsys.readouterr()
    assert run(["apply", "plan.json"]) == 1
    assert (
        "not a valid saved plan (at the top: Additional properties are not allowed" in capsys.readouterr().err
    )
    # Sending the secret to another sink name is caught too: the plan must say what the manifests say.
    document["changes"][1]["secret"]["sink"] = "evil"
    _rewrite(document)
    assert run(["apply", "plan.json"]) == 1
    err = capsys.readouterr().err
    assert "the saved plan is not what the manifests and the live project give now" in err
    assert '  create client "calendar/ci-agent": differs from what is planned now\n' in err
    assert not marker.exists()
    _untouched(emulator)


def test_an_edited_change_is_refused_and_nothing_is_applied(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    document = _plan()
    server = document["changes"][0]
    server["desired"]["approvedCallbackUrls"] = ["https://attacker.example/callback"]
    _rewrite(document)
    capsys.readouterr()
    assert run(["apply", "plan.json"]) == 1
    captured = capsys.readouterr()
    assert '  create server "calendar": differs from what is planned now\n' in captured.err
    assert captured.err.endswith("nothing was applied: plan again\n")
    assert captured.out == ""  # the file's own account of itself is never shown as the plan
    _untouched(emulator)


@pytest.mark.parametrize(
    ("edit", "difference"),
    [
        (("calendar.yaml", "description: Calendar tools", "description: Other"), 'server "calendar" changed'),
        (("calendar.yaml", "scopes: [calendar:read]", "scopes: []"), 'client "calendar/ci-agent" changed'),
        (
            (
                "project.yaml",
                "    type: file\n    path: .secrets/clients.json",
                "    type: command\n    command: [cat]",
            ),
            'sink "local" changed',
        ),
        (
            ("project.yaml", "defaultSink: local", "defaultSink: local\nprune: true"),
            "project settings changed",
        ),
    ],
)
def test_manifests_changed_since_the_plan_are_named_and_nothing_runs(
    emulator: RunningEmulator,
    capsys: pytest.CaptureFixture[str],
    edit: tuple[str, str, str],
    difference: str,
) -> None:
    _plan()
    name, old, new = edit
    path = Path("manifests") / name
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))
    capsys.readouterr()
    assert run(["apply", "plan.json"]) == 1
    err = capsys.readouterr().err
    assert f"  {difference}\n" in err
    assert "error: the manifests are not the ones the plan was made from (1 difference)" in err
    _untouched(emulator)


def test_a_plan_made_from_other_manifests_is_refused(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    _plan()
    other = Path("other")
    other.mkdir()
    (other / "project.yaml").write_text(PROJECT_YAML)
    capsys.readouterr()
    assert run(["apply", "plan.json", "other"]) == 1
    err = capsys.readouterr().err
    assert '  server "calendar" was removed\n' in err
    assert '  client "calendar/ci-agent" was removed\n' in err
    _untouched(emulator)


@pytest.mark.parametrize("recorded", ["../elsewhere", "/etc", "a/../../b"])
def test_recorded_paths_outside_the_working_directory_are_refused(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str], recorded: str
) -> None:
    document = _plan()
    document["madeFrom"]["paths"] = [recorded]
    _rewrite(document)
    capsys.readouterr()
    assert run(["apply", "plan.json"]) == 1
    assert f"the plan records the path {recorded!r}, outside the working directory" in capsys.readouterr().err
    _untouched(emulator)


def test_missing_manifests_at_apply_time_are_a_clear_error(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    _plan()
    Path("manifests/project.yaml").unlink()
    Path("manifests/calendar.yaml").unlink()
    capsys.readouterr()
    assert run(["apply", "plan.json"]) == 1
    assert "error: no manifest files (*.yaml, *.yml) found in manifests" in capsys.readouterr().err
    _untouched(emulator)


def test_with_a_plan_key_only_plans_signed_with_it_are_applied(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    unsigned = _plan()
    assert "signature" not in unsigned
    monkeypatch.setenv("MCP_RECONCILER_PLAN_KEY", PLAN_KEY)
    capsys.readouterr()
    assert run(["apply", "plan.json"]) == 1
    assert "the plan is not signed, and MCP_RECONCILER_PLAN_KEY is set" in capsys.readouterr().err

    signed = _plan()
    assert signed["signature"].startswith("hmac-sha256:")
    assert PLAN_KEY not in Path("plan.json").read_text()
    # A forger without the key signs with a key of their own: refused.
    _rewrite(signed, key="a-guess-at-the-signing-key-000")
    assert run(["apply", "plan.json"]) == 1
    err = capsys.readouterr().err
    assert "the plan's signature does not match MCP_RECONCILER_PLAN_KEY" in err
    assert PLAN_KEY not in err
    _untouched(emulator)

    _rewrite(signed, key=PLAN_KEY)  # the same content, signed with the real key, applies
    assert run(["apply", "plan.json"]) == 0
    assert [s["name"] for s in emulator.state()["servers"]] == ["calendar"]


def test_a_signed_plan_without_the_key_and_a_short_key_are_refused(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCP_RECONCILER_PLAN_KEY", PLAN_KEY)
    _plan()
    monkeypatch.delenv("MCP_RECONCILER_PLAN_KEY")
    capsys.readouterr()
    assert run(["apply", "plan.json"]) == 1
    assert "the plan is signed, but MCP_RECONCILER_PLAN_KEY is not set" in capsys.readouterr().err
    monkeypatch.setenv("MCP_RECONCILER_PLAN_KEY", "short")
    assert run(["plan", "manifests", "--out", "plan.json"]) == 1
    assert "MCP_RECONCILER_PLAN_KEY is too short" in capsys.readouterr().err
    _untouched(emulator)


@pytest.mark.parametrize("command", [["validate"], ["plan"], ["apply", "--auto-approve"], ["drift"]])
@pytest.mark.parametrize("variable", ["DESCOPE_MANAGEMENT_KEY", "MCP_RECONCILER_PLAN_KEY", "GITHUB_TOKEN"])
def test_a_credential_in_a_manifest_is_refused_and_never_shown(
    emulator: RunningEmulator,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
    variable: str,
) -> None:
    monkeypatch.setenv("MCP_RECONCILER_PLAN_KEY", PLAN_KEY)
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_not-a-real-token-but-long-enough")
    path = Path("manifests/calendar.yaml")
    path.write_text(path.read_text().replace("Calendar tools", f'"${{{variable}}}"'))
    assert run([command[0], "manifests", *command[1:]]) == 1
    captured = capsys.readouterr()
    assert (
        f"manifests/calendar.yaml:3:14: description: variable '{variable}' is, or looks like, a credential"
        in captured.err
    )
    for value in (KEY, PLAN_KEY, "ghs_not-a-real-token-but-long-enough"):
        assert value not in captured.out + captured.err
    _untouched(emulator)


def test_a_credential_under_an_innocent_name_is_refused(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MCP_VAR_NOTE", KEY)
    path = Path("manifests/calendar.yaml")
    path.write_text(path.read_text().replace("Calendar tools", "${NOTE}"))
    assert run(["plan", "manifests", "--out", "plan.json"]) == 1
    captured = capsys.readouterr()
    assert "contains the value of the credential DESCOPE_MANAGEMENT_KEY" in captured.err
    assert KEY not in captured.out + captured.err
    assert not Path("plan.json").exists()
    _untouched(emulator)
