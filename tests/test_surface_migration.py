"""Moving an MCP server from the MCP Server API to the Resources surface: a reviewed plan, applied in
order (the Resource and its clients first, new secrets delivered, the old server last), and resumable
after a SIGKILL like any other apply (issue 15)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.cli import run
from reconciler.emulator import EmulatorConfig, RunningEmulator, running_emulator
from reconciler.journal import read_events

KEY = "K2-migration-key-77c1"
PROJECT = "P2MIGRATION"
OWNER = "managed-by:mcp-reconciler"
OLD_ID = "MScalendar".ljust(29, "0")
CLIENTS = ("agent-a", "agent-b")


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningEmulator]:
    # Slow answers, so that a kill lands between the new clients' deliveries and the old server's delete.
    config = EmulatorConfig(project_id=PROJECT, management_key=KEY, latency_ms=120)
    with running_emulator(config) as handle:
        monkeypatch.setenv("DESCOPE_BASE_URL", handle.base_url)
        monkeypatch.setenv("DESCOPE_MANAGEMENT_KEY", KEY)
        monkeypatch.setenv("DESCOPE_PROJECT_ID", PROJECT)
        handle.seed(
            {
                "servers": [
                    {
                        "id": OLD_ID,
                        "name": "calendar",
                        "tags": [OWNER],
                        "audienceWhitelist": ["https://calendar.example.com/mcp"],
                        "approvedScopes": [{"name": "read"}],
                        "clients": [
                            {"name": name, "scopes": ["read"], "tags": [OWNER], "secret": f"old-{name}"}
                            for name in CLIENTS
                        ],
                    }
                ]
            }
        )
        yield handle


def _manifests(folder: Path, surface: str) -> Path:
    manifests = folder / "manifests"
    manifests.mkdir(parents=True, exist_ok=True)
    (manifests / "project.yaml").write_text(
        f"kind: Project\nprojectId: {PROJECT}\nprune: true\ndefaultSink: local\n"
        f"sinks:\n  local: {{type: file, path: {folder / 'secrets.json'}}}\n"
    )
    clients = "".join(f"  - {{name: {name}, scopes: [read]}}\n" for name in CLIENTS)
    (manifests / "calendar.yaml").write_text(
        f"kind: MCPServer\nname: calendar\nsurface: {surface}\n"
        "audienceWhitelist: [https://calendar.example.com/mcp]\n"
        f"approvedScopes: [{{name: read}}]\nclients:\n{clients}"
    )
    return manifests


def _environ(emulator: RunningEmulator) -> dict[str, str]:
    own = ("DESCOPE_", "GITHUB_")
    keep = {k: v for k, v in os.environ.items() if not k.startswith(own)}
    return {**keep, "DESCOPE_BASE_URL": emulator.base_url, "DESCOPE_MANAGEMENT_KEY": KEY}


def test_a_surface_move_is_planned_as_such_in_every_format(
    emulator: RunningEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    manifests = _manifests(tmp_path, "resources")
    assert run(["plan", str(manifests), "--format", "json", "--out", str(tmp_path / "plan.json")]) == 0
    plan = json.loads((tmp_path / "plan.json").read_text())
    steps = [(c["action"], c["kind"], c["name"], c.get("surface")) for c in plan["changes"]]
    assert steps == [
        ("create", "server", "calendar", "resources"),
        ("create", "client", "agent-a", None),
        ("create", "client", "agent-b", None),
        ("delete", "server", "calendar", "mcp-servers"),
    ]
    create, *_, delete = plan["changes"]
    assert any("moves it from mcp-servers" in note for note in create["notes"])
    assert any("the copy on mcp-servers" in note for note in delete["notes"])
    capsys.readouterr()
    assert run(["plan", str(manifests)]) == 0
    text = capsys.readouterr().out
    assert 'server "calendar" (on resources) will be created' in text
    assert "moves it from mcp-servers" in text
    assert run(["plan", str(manifests), "--format", "markdown"]) == 0
    assert "moves it from mcp-servers" in capsys.readouterr().out


def test_a_surface_move_killed_midway_converges_with_both_new_secrets_delivered(
    emulator: RunningEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    manifests = _manifests(tmp_path, "resources")
    journal = tmp_path / "journal.jsonl"
    command = [
        sys.executable,
        "-m",
        "reconciler",
        "apply",
        str(manifests),
        "--auto-approve",
        "--journal",
        str(journal),
    ]
    with (tmp_path / "killed-run.log").open("wb") as log:
        process = subprocess.Popen(
            command, cwd=tmp_path, env=_environ(emulator), stdout=log, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 60
    killed = False
    while process.poll() is None and time.monotonic() < deadline and not killed:
        delivered = [e for e in read_events(journal) if e["event"] == "delivered"]
        if delivered:  # one new secret delivered: the Resource exists, the old server does too
            os.kill(process.pid, signal.SIGKILL)
            killed = True
        time.sleep(0.002)
    assert process.wait(timeout=30) == -signal.SIGKILL, (tmp_path / "killed-run.log").read_text()
    time.sleep(0.5)  # let the emulator answer what the killed run left in flight
    midway = emulator.state()
    assert [s["id"] for s in midway["servers"]] == [OLD_ID]  # killed before the old server went
    assert [r["name"] for r in midway["resources"]] == ["calendar"]

    codes = []
    for _ in range(3):
        codes.append(int(run(["apply", str(manifests), "--auto-approve", "--journal", str(journal)])))
        if codes[-1] == 0:
            break
    assert codes[-1] == 0, codes
    state = emulator.state()
    assert state["servers"] == []
    (resource,) = state["resources"]
    assert resource["name"] == "calendar"
    assert resource["uri"] == "https://calendar.example.com/mcp"
    live = {c["name"]: c["secret"] for c in resource["clients"]}
    assert sorted(live) == list(CLIENTS)
    held = json.loads((tmp_path / "secrets.json").read_text())
    assert {name: held[f"calendar/{name}"]["clientSecret"] for name in CLIENTS} == live
    assert all(not secret.startswith("old-") for secret in live.values())
    capsys.readouterr()
    assert run(["plan", str(manifests), "--detailed-exitcode"]) == 0
