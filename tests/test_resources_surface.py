"""MCP servers on Descope's Resources surface: seen, adopted, managed and pruned (issue 15)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import run
from reconciler.emulator import RunningEmulator
from tests.conftest import serving

KEY = "K2-resources-key-8d21"
PROJECT = "P2RESOURCES"
OWNER = "managed-by:mcp-reconciler"


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RunningEmulator]:
    with serving(monkeypatch, PROJECT, KEY) as handle:
        monkeypatch.setenv("DESCOPE_PROJECT_ID", PROJECT)
        monkeypatch.chdir(tmp_path)
        yield handle


def _console_resource(name: str, *, clients: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A Resource as Descope's console makes it: type mcp, one uri, categorized scopes, settings."""
    return {
        "name": name,
        "type": "mcp",
        "uri": f"https://{name}.mcp.example.com/mcp",
        "description": f"{name} tools",
        "userAccess": "all",
        "scopes": {
            "permissionsScopes": [{"name": f"{name}:read", "description": "Read"}],
            "connectionsScopes": [{"name": f"{name}:sync", "values": ["google-calendar"]}],
        },
        "dynamicRegistrationSettings": {
            "dynamicRegistration": {"enabled": True},
            "useTemplate": False,
            "dynamicRegistrationTemplateId": "tmpl-kept",
        },
        "clients": clients or [],
    }


def _requests(emulator: RunningEmulator) -> list[str]:
    return [f"{entry.get('method', 'POST')} {entry.get('path', '')}" for entry in emulator.requests()]


def _write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text)


def test_console_made_resources_are_drift_then_adopted_with_their_clients_secrets(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.seed(
        {
            "resources": [
                _console_resource("calendar", clients=[{"name": "ci-agent", "scopes": ["calendar:read"]}]),
                {"name": "billing-api", "type": "api", "uri": "https://billing.example.com"},
            ]
        }
    )
    _write(tmp_path / "m", "project.yaml", f"kind: Project\nprojectId: {PROJECT}\n")
    assert run(["drift", "m", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sorted(u["address"] for u in report["unmanaged"]) == [
        'client "calendar/ci-agent"',
        'server "calendar"',
    ]  # the API Resource is not an MCP server: neither reported nor touched

    assert run(["export", "--out", "exported", "--adopt"]) == 0
    text = (tmp_path / "exported" / "servers" / "calendar.yaml").read_text()
    assert "surface: resources" in text
    assert "https://calendar.mcp.example.com/mcp" in text
    capsys.readouterr()
    assert run(["apply", "exported", "--auto-approve"]) == 0
    state = emulator.state()
    (resource,) = [r for r in state["resources"] if r["name"] == "calendar"]
    assert OWNER in resource["dynamicRegistrationSettings"]["tags"]
    assert resource["userAccess"] == "all"  # what the reconciler does not manage stays
    assert resource["dynamicRegistrationSettings"]["dynamicRegistrationTemplateId"] == "tmpl-kept"
    (client,) = resource["clients"]
    held = json.loads((tmp_path / "exported" / ".secrets" / "mcp-clients.json").read_text())
    assert held["calendar/ci-agent"]["clientSecret"] == client["secret"]
    capsys.readouterr()
    assert run(["plan", "exported", "--detailed-exitcode"]) == 0
    assert not any(
        r.endswith("/mcp/server/create") or r.endswith("/mcp/server/update") for r in _requests(emulator)
    )


def test_a_project_on_the_resources_surface_is_managed_through_the_resources_endpoints(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "m"
    _write(
        folder,
        "project.yaml",
        f"kind: Project\nprojectId: {PROJECT}\nsurface: resources\nprune: true\ndefaultSink: local\n"
        "sinks:\n  local: {type: file, path: s.json}\n",
    )
    server = (
        "kind: MCPServer\nname: calendar\ndescription: Calendar\n"
        "audienceWhitelist: [https://calendar.example.com/mcp]\n"
        "approvedScopes:\n  - {name: read}\n  - {name: email, category: attributes}\n"
        "clients:\n  - {name: bot, scopes: [read]}\n"
    )
    _write(folder, "calendar.yaml", server)
    _write(
        folder, "old.yaml", "kind: MCPServer\nname: old\naudienceWhitelist: [https://old.example.com/mcp]\n"
    )
    assert run(["apply", "m", "--auto-approve"]) == 0
    state = emulator.state()
    assert state["servers"] == []
    names = sorted(r["name"] for r in state["resources"])
    assert names == ["calendar", "old"]
    (calendar,) = [r for r in state["resources"] if r["name"] == "calendar"]
    assert calendar["uri"] == "https://calendar.example.com/mcp"
    assert calendar["scopes"] == {
        "permissionsScopes": [{"name": "read"}],
        "attributesScopes": [{"name": "email"}],
    }
    assert [c["name"] for c in calendar["clients"]] == ["bot"]
    assert (
        json.loads((folder / "s.json").read_text())["calendar/bot"]["clientSecret"]
        == calendar["clients"][0]["secret"]
    )
    capsys.readouterr()
    assert run(["plan", "m", "--detailed-exitcode"]) == 0

    # Edited: a field changes, one server leaves the manifests (pruned).
    _write(folder, "calendar.yaml", server.replace("description: Calendar", "description: Calendar tools"))
    (folder / "old.yaml").unlink()
    capsys.readouterr()
    assert run(["drift", "m", "--detailed-exitcode"]) == 2
    assert run(["apply", "m", "--auto-approve"]) == 0
    state = emulator.state()
    assert [r["name"] for r in state["resources"]] == ["calendar"]
    assert state["resources"][0]["description"] == "Calendar tools"
    assert int(state["resources"][0]["version"]) >= 2  # updated through resource/update
    requests = _requests(emulator)
    assert not any("/mcp/server/create" in r or "/mcp/servers/delete" in r for r in requests)
    assert any(r.startswith("GET ") and r.endswith("/resources/load") for r in requests)


def test_fields_a_resource_cannot_hold_are_errors_naming_the_field_and_the_surface(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "m"
    _write(folder, "project.yaml", "kind: Project\nprojectId: P2X\nsurface: resources\n")
    _write(
        folder,
        "s.yaml",
        "kind: MCPServer\nname: s\naudienceWhitelist: [https://a.example.com, https://b.example.com]\n"
        "approvedCallbackUrls: [https://cb.example.com]\nconsentFlowId: consent\n",
    )
    assert run(["validate", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "approvedCallbackUrls" in err
    assert "consentFlowId" in err
    assert "one audience" in err
    assert err.count("resources surface") == 3
    # The same server on the MCP Server API is fine.
    _write(folder, "project.yaml", "kind: Project\nprojectId: P2X\n")
    assert run(["validate", str(folder)]) == 0


def test_a_name_on_both_surfaces_is_a_conflict_naming_both_ids(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.seed({"servers": [{"name": "calendar"}], "resources": [_console_resource("calendar")]})
    _write(tmp_path / "m", "project.yaml", f"kind: Project\nprojectId: {PROJECT}\n")
    _write(tmp_path / "m", "s.yaml", "kind: MCPServer\nname: calendar\nadopt: true\n")
    assert run(["plan", "m"]) == 1
    err = capsys.readouterr().err
    state = emulator.state()
    assert "exists on both surfaces" in err
    assert state["servers"][0]["id"] in err
    assert state["resources"][0]["id"] in err
