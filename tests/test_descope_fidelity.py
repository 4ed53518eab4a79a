"""Scope categories as Descope's own clients see them: kept through export, adopt, edit and apply;
a category change is a reviewed change; only writable fields are sent (issue 14)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.cli import run
from reconciler.descope.wire import LiveServer
from reconciler.emulator import EmulatorConfig, RunningEmulator, running_emulator
from reconciler.tags import ROTATION_PREFIX
from tests.conftest import serving

KEY = "K2-categories-key-3b7d"
PROJECT = "P2CATEGORIES"
OWNER = "managed-by:mcp-reconciler"
CATEGORIZED = {
    "permissionsScopes": [{"name": "mcp:read", "description": "Read events"}],
    "attributesScopes": [{"name": "profile:email", "description": "Your email address"}],
    "connectionsScopes": [
        {"name": "google:calendar", "description": "Google Calendar", "values": ["google-calendar"]}
    ],
}


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RunningEmulator]:
    with serving(monkeypatch, PROJECT, KEY) as handle:
        monkeypatch.setenv("DESCOPE_PROJECT_ID", PROJECT)
        monkeypatch.chdir(tmp_path)
        yield handle


def _call(emulator: RunningEmulator, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """A Management API call as another client (Descope's console, its Go SDK) makes it."""
    answer = httpx.post(
        f"{emulator.base_url}/v1/mgmt/mcp/{path}",
        json=body,
        headers={"Authorization": f"Bearer {PROJECT}:{KEY}"},
    )
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def _scopes(emulator: RunningEmulator, server_id: str) -> Any:
    return _call(emulator, "server/load", {"id": server_id})["server"]["approvedScopes"]


def test_a_server_made_elsewhere_keeps_every_scope_category_through_export_adopt_edit_and_apply(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    made = _call(
        emulator,
        "server/create",
        {"name": "calendar", "description": "Calendar", "approvedScopes": CATEGORIZED},
    )
    server_id = made["server"]["id"]
    assert _scopes(emulator, server_id) == CATEGORIZED

    assert run(["export", "--out", "exported", "--adopt"]) == 0
    exported = (tmp_path / "exported" / "servers" / "calendar.yaml").read_text()
    for name, category in [
        ("mcp:read", "permissions"),
        ("profile:email", "attributes"),
        ("google:calendar", "connections"),
    ]:
        assert exported.count(f"category: {category}") == 1
        line = next(line for line in exported.splitlines() if f"name: {name}" in line)
        block = exported[exported.index(line) :].split("\n  - ")[0]
        assert f"category: {category}" in block, block

    # An unrelated edit, and the category lines taken out: nothing may move for want of them.
    edited = exported.replace("description: Calendar\n", "description: Calendar tools for agents\n")
    edited = "\n".join(line for line in edited.splitlines() if "category:" not in line) + "\n"
    assert edited != exported
    (tmp_path / "exported" / "servers" / "calendar.yaml").write_text(edited)
    capsys.readouterr()
    assert run(["plan", "exported", "--format", "json", "--out", "plan.json"]) == 0
    plan = json.loads((tmp_path / "plan.json").read_text())
    (change,) = plan["changes"]
    assert change["action"] == "adopt"
    assert [f["path"] for f in change["fields"]] == ["description"]  # no scope moves

    assert run(["apply", "exported", "--auto-approve"]) == 0
    assert _scopes(emulator, server_id) == CATEGORIZED
    loaded = _call(emulator, "server/load", {"id": server_id})["server"]
    assert loaded["description"] == "Calendar tools for agents"
    capsys.readouterr()
    assert run(["plan", "exported", "--detailed-exitcode"]) == 0


def test_moving_a_scope_between_categories_is_a_planned_change_that_apply_makes_exactly(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _call(emulator, "server/create", {"name": "calendar", "approvedScopes": CATEGORIZED})
    assert run(["export", "--out", "exported", "--adopt"]) == 0
    path = tmp_path / "exported" / "servers" / "calendar.yaml"
    text = path.read_text()
    assert "category: attributes" in text
    path.write_text(text.replace("category: attributes", "category: permissions"))
    capsys.readouterr()
    assert run(["plan", "exported"]) == 0
    out = capsys.readouterr().out
    assert '~ approvedScopes["profile:email"].category: "attributes" -> "permissions"' in out
    assert run(["apply", "exported", "--auto-approve"]) == 0
    (server,) = _call(emulator, "servers/all", {})["servers"]
    assert server["approvedScopes"] == {
        "permissionsScopes": [
            {"name": "mcp:read", "description": "Read events"},
            {"name": "profile:email", "description": "Your email address"},
        ],
        "connectionsScopes": CATEGORIZED["connectionsScopes"],
    }


def test_a_new_project_creates_servers_with_the_categorized_object(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "project.yaml").write_text(
        f"kind: Project\nprojectId: {PROJECT}\ndefaultSink: local\nsinks:\n  local: {{type: file, path: s.json}}\n"
    )
    (tmp_path / "m" / "calendar.yaml").write_text(
        "kind: MCPServer\nname: calendar\napprovedScopes:\n"
        "  - {name: read}\n"
        "  - {name: email, category: attributes}\n"
        "  - {name: sync, values: [salesforce]}\n"
    )
    assert run(["apply", "m", "--auto-approve"]) == 0
    (server,) = _call(emulator, "servers/all", {})["servers"]
    assert server["approvedScopes"] == {
        "permissionsScopes": [{"name": "read"}],
        "attributesScopes": [{"name": "email"}],
        "connectionsScopes": [{"name": "sync", "values": ["salesforce"]}],
    }


def test_login_page_url_in_another_spelling_is_read_and_written_as_the_canonical_one(
    emulator: RunningEmulator, tmp_path: Path
) -> None:
    assert LiveServer.from_wire({"loginPageUrl": "https://l.example.com"}).fields == {
        "loginPageURL": "https://l.example.com"
    }
    both = LiveServer.from_wire(
        {"loginPageUrl": "https://old.example.com", "loginPageURL": "https://l.example.com"}
    )
    assert both.fields == {"loginPageURL": "https://l.example.com"}  # the canonical spelling wins

    emulator.seed({"servers": [{"name": "cal", "tags": [OWNER], "loginPageUrl": "https://l.example.com"}]})
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "project.yaml").write_text(f"kind: Project\nprojectId: {PROJECT}\n")
    (tmp_path / "m" / "cal.yaml").write_text(
        "kind: MCPServer\nname: cal\ndescription: new\nloginPageURL: https://l.example.com\n"
    )
    assert run(["plan", "m", "--format", "json", "--out", "plan.json"]) == 0
    (change,) = json.loads((tmp_path / "plan.json").read_text())["changes"]
    assert [f["path"] for f in change["fields"]] == ["description"]  # the URL is not a change
    assert run(["apply", "m", "--auto-approve"]) == 0
    (server,) = emulator.state()["servers"]
    assert server["loginPageURL"] == "https://l.example.com"
    assert "loginPageUrl" not in server


def test_client_updates_and_rotation_markers_send_only_writable_fields(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A strict emulator refuses clientId, registrationType and status in a write (as Descope's Go
    SDK never sends them); updating a client's scopes and recording a rotation both pass it."""
    config = EmulatorConfig(project_id=PROJECT, management_key=KEY, strict=True)
    with running_emulator(config) as strict:
        monkeypatch.setenv("DESCOPE_BASE_URL", strict.base_url)
        monkeypatch.setenv("DESCOPE_MANAGEMENT_KEY", KEY)
        monkeypatch.chdir(tmp_path)
        (tmp_path / "m").mkdir()
        (tmp_path / "m" / "project.yaml").write_text(
            f"kind: Project\nprojectId: {PROJECT}\ndefaultSink: local\n"
            "sinks:\n  local: {type: file, path: s.json}\n"
        )
        server = "kind: MCPServer\nname: cal\napprovedScopes: [{name: read}, {name: write}]\nclients:\n"
        (tmp_path / "m" / "cal.yaml").write_text(server + "  - {name: bot, scopes: [read]}\n")
        assert run(["apply", "m", "--auto-approve"]) == 0
        (tmp_path / "m" / "cal.yaml").write_text(
            server + "  - {name: bot, scopes: [read, write], secret: {rotation: '2026-12-01'}}\n"
        )
        assert run(["apply", "m", "--auto-approve"]) == 0
        (stored,) = strict.state()["servers"]
        (client,) = stored["clients"]
        assert client["scopes"] == ["read", "write"]
        assert f"{ROTATION_PREFIX}2026-12-01" in client["tags"]
        assert client["clientId"]  # the read-only fields the updates left out are still there
        # And the strict emulator does refuse what the reconciler no longer sends.
        refused = httpx.post(
            f"{strict.base_url}/v1/mgmt/mcp/server/client/update",
            json={
                "id": client["id"],
                "mcpServerId": stored["id"],
                "name": "bot",
                "clientId": client["clientId"],
            },
            headers={"Authorization": f"Bearer {PROJECT}:{KEY}"},
        )
        assert refused.status_code == 400
        assert "clientId" in refused.text
