"""export: manifests from a live project; a plan on a fresh export is empty; --adopt takes over."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import run
from reconciler.emulator import RunningEmulator
from tests.conftest import serving

KEY = "K2-export-key-61f0"
PROJECT = "P2EXPORT"
OWNER = "managed-by:mcp-reconciler"


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RunningEmulator]:
    with serving(monkeypatch, PROJECT, KEY) as handle:
        monkeypatch.setenv("DESCOPE_PROJECT_ID", PROJECT)
        monkeypatch.chdir(tmp_path)
        yield handle


def mixed_project(servers: int, clients_per_server: int, *, owned: bool, seed: int = 1) -> dict[str, Any]:
    """A realistic project: every server feature, connection scopes, DCR clients, odd text."""
    rng = random.Random(seed)  # noqa: S311 - test data, not cryptography
    tag = [OWNER] if owned else []
    result = []
    for i in range(servers):
        scopes = [{"name": f"s{i}:read", "description": "Read"}, {"name": f"s{i}:write", "optional": True}]
        if i % 3 == 0:
            scopes.append({"name": f"s{i}:sync", "description": "Sync", "values": ["salesforce", "hubspot"]})
        server: dict[str, Any] = {
            "name": f"server-{i:03}",
            "description": f"Server {i}: costs $5, uses ${{literal}} braces" if i % 7 == 0 else f"Server {i}",
            "tags": [f"team:{rng.choice(['a', 'b', 'c'])}", *tag]
            + (["mcp-reconciler:protect"] if i % 11 == 0 and owned else []),
            "audienceWhitelist": [f"https://s{i}.mcp.example.com/mcp"],
            "approvedScopes": scopes,
            "approvedCallbackUrls": ["https://agents.example.com/cb"] if i % 2 else [],
            "dynamicRegistration": {"enabled": bool(i % 2), "flowId": "dcr-flow" if i % 4 == 1 else ""},
            "cimdSettings": {
                "enabled": i % 5 == 0,
                "domainPolicies": {"policies": [{"domainPattern": "*.example.com", "enabled": True}]},
            },
            "sessionSettings": {
                "enabled": True,
                "sessionTokenExpiration": 10,
                "sessionTokenExpirationUnit": "minutes",
            },
            "skipConsentScreen": i % 6 == 0,
            "loginPageURL": "https://login.example.com" if i % 8 == 0 else "",
            "forceAddAllAuthorizationInfo": i % 9 == 0,
            "someUnknownField": {"kept": i},
            "clients": [
                {
                    "name": f"client-{j:02}",
                    "scopes": [f"s{i}:read"],
                    "tags": [f"owner:{j % 4}", *tag]
                    + ([f"mcp-reconciler:rotation=2026-0{1 + j % 9}"] if owned and j % 5 == 0 else []),
                    "approvedCallbackUrls": ["https://agents.example.com/cb"] if j % 2 else [],
                    "allowedTenants": ["T1"] if j % 3 == 0 else [],
                }
                for j in range(clients_per_server)
            ]
            + [{"name": "claude-desktop", "registrationType": "dcr", "scopes": [f"s{i}:read"]}],
        }
        result.append(server)
    return {"servers": result}


def test_a_plan_on_a_fresh_export_of_a_large_project_is_empty(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.seed(mixed_project(50, 10, owned=True))
    assert run(["export", "--out", "exported"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Exported 50 servers and 500 clients to exported;")
    assert (tmp_path / "exported" / ".gitignore").read_text().endswith(".secrets/\n")
    assert len(list((tmp_path / "exported" / "servers").glob("*.yaml"))) == 50
    assert run(["validate", "exported"]) == 0
    assert run(["plan", "exported", "--detailed-exitcode"]) == 0
    assert "No changes. The project matches the manifests." in capsys.readouterr().out
    text = (tmp_path / "exported" / "servers" / "server-000.yaml").read_text()
    assert "claude-desktop" not in text  # end users' clients are not exported
    assert "protect: true" in text
    assert "$${literal}" in text


def test_adopting_an_exported_project_delivers_every_secret(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.seed(mixed_project(4, 3, owned=False))
    assert run(["export", "--out", "exported"]) == 0
    assert "export with --adopt to take them over" in capsys.readouterr().err
    assert run(["plan", "exported"]) == 1  # not ours yet: conflicts, named
    assert run(["export", "--out", "exported", "--adopt", "--force"]) == 0
    capsys.readouterr()
    assert run(["plan", "exported", "--detailed-exitcode"]) == 2
    assert (
        "Plan: 0 to create, 0 to update, 16 to adopt, 0 to delete, 0 secrets to rotate."
        in capsys.readouterr().out
    )
    assert run(["apply", "exported", "--auto-approve"]) == 0
    held = json.loads((tmp_path / "exported" / ".secrets" / "mcp-clients.json").read_text())
    live = {
        f"{s['name']}/{c['name']}": c["secret"]
        for s in emulator.state()["servers"]
        for c in s["clients"]
        if c.get("registrationType") != "dcr"
    }
    assert {k: v["clientSecret"] for k, v in held.items()} == live
    assert run(["secrets", "check", "exported"]) == 0
    # The exported files still say adopt: true; with the tag stamped, a plan is now empty.
    assert run(["plan", "exported", "--detailed-exitcode"]) == 0


def test_export_filters_and_refuses_to_overwrite(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.seed(mixed_project(6, 1, owned=True))
    assert run(["export", "--out", "some", "--name", "server-00[0-2]"]) == 0
    assert sorted(p.name for p in (tmp_path / "some" / "servers").iterdir()) == [
        "server-000.yaml",
        "server-001.yaml",
        "server-002.yaml",
    ]
    assert run(["export", "--out", "some"]) == 1
    assert "already holds" in capsys.readouterr().err


def test_a_ten_thousand_character_live_name_is_a_clean_error_not_a_crash(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    emulator.seed({"servers": [{"name": "x" * 10_000, "clients": [{"name": "c" * 10_000}]}]})
    assert run(["export", "--out", "exported"]) == 1
    err = capsys.readouterr().err
    assert "internal error" not in err
    assert "name: is longer than 200 characters" in err
    files = list((tmp_path / "exported" / "servers").glob("*.yaml"))
    assert len(files) == 1
    assert len(files[0].name) < 100  # the file name is cut (with a digest), the name inside is whole
