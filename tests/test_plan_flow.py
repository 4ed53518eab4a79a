"""plan and drift end to end against the emulator: exact changes, call counts, exit codes, saved plans."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import run
from reconciler.descope.client import DescopeClient
from reconciler.diff import overlay
from reconciler.emulator import RunningEmulator
from reconciler.ghactions import SUMMARY_LIMIT, append_summary
from reconciler.plan import Action, Kind, Plan
from tests.conftest import EXAMPLES, serving

KEY = "K2-plan-flow-key-4411"
PROJECT = "P2MCPRECONCILERDEMO"
OWNER = "managed-by:mcp-reconciler"

REALISTIC = {
    "servers": [
        {
            "id": "MS00000000000000000000000000CA",
            "name": "calendar",
            "description": "changed by hand in the console",
            "tags": ["team:productivity", "tier:gold", OWNER, "mcp-reconciler:protect"],
            "audienceWhitelist": ["https://calendar.mcp.example.com/mcp"],
            "approvedScopes": [
                {"name": "calendar:read", "description": "Read your calendar events"},
                {"name": "calendar:write", "description": "Create and change events", "optional": True},
                {
                    "name": "calendar:freebusy",
                    "description": "See when you are free or busy",
                    "optional": True,
                },
            ],
            "approvedCallbackUrls": [
                "http://localhost:8976/callback",
                "https://agents.example.com/oauth/callback",
            ],
            "loginPageURL": "https://login.example.com",
            "forceAddAllAuthorizationInfo": True,
            "someFutureField": {"kept": True},
            "clients": [
                {"name": "claude-desktop", "registrationType": "dcr", "scopes": ["calendar:read"]},
                {"name": "console-made", "scopes": ["calendar:read"]},
            ],
        },
        {"id": "MS00000000000000000000000000LG", "name": "legacy", "tags": [OWNER]},
        {"id": "MS00000000000000000000000000MN", "name": "manual", "description": "made by hand"},
    ]
}


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningEmulator]:
    with serving(monkeypatch, PROJECT, KEY) as handle:
        yield handle


def _plan_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = run(["plan", str(EXAMPLES), "--format", "json", "--allow-deletes", "5", *args])
    out = capsys.readouterr().out
    return code, json.loads(out)


async def _execute(plan: Plan, base_url: str) -> None:
    """Carry out a plan through the API client (what apply will do, minus sinks and journal)."""
    async with DescopeClient(project_id=PROJECT, management_key=KEY, base_url=base_url) as api:
        server_ids = {s.name: s.id for s in await api.load_all_servers()}
        for change in plan.changes:
            if change.kind is Kind.SERVER and change.action is Action.CREATE:
                server_ids[change.name] = (await api.create_server(change.desired)).id
            elif change.kind is Kind.SERVER and change.action in (Action.UPDATE, Action.ADOPT):
                live = await api.load_server(change.id or "")
                await api.update_server(overlay(live.fields, change.desired))
            elif change.kind is Kind.SERVER:
                await api.delete_servers([change.id or ""])
            elif change.action is Action.CREATE:
                await api.create_client(server_ids[change.server or ""], change.desired)
            elif change.action is Action.DELETE:
                await api.delete_clients(change.server_id or "", [change.id or ""])
            else:
                raise AssertionError(f"unexpected {change.action}")


def test_a_realistic_project_plans_exactly_then_converges(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.seed(REALISTIC)
    code, plan = _plan_json(capsys, "--detailed-exitcode")
    assert code == 2
    assert [(c["action"], c["kind"], c["server"], c["name"]) for c in plan["changes"]] == [
        ("update", "server", None, "calendar"),
        ("create", "server", None, "crm"),
        ("create", "server", None, "docs-search"),
        ("create", "server", None, "tickets"),
        ("create", "client", "calendar", "reporting-job"),
        ("create", "client", "calendar", "scheduling-agent"),
        ("create", "client", "crm", "sales-copilot"),
        ("create", "client", "docs-search", "platform-indexer"),
        ("create", "client", "tickets", "triage-bot"),
        ("delete", "server", None, "legacy"),
    ]
    calendar = plan["changes"][0]
    assert [f["path"] for f in calendar["fields"]] == [
        'cimdSettings.domainPolicies.policies["*.example.com"]',
        'cimdSettings.domainPolicies.policies["claude.ai"]',
        "cimdSettings.enabled",
        "description",
        "dynamicRegistration.disableApprovedScopesAsDefault",
        "dynamicRegistration.enabled",
        "sessionSettings.enabled",
        "sessionSettings.refreshTokenExpiration",
        "sessionSettings.refreshTokenExpirationUnit",
        "sessionSettings.sessionTokenExpiration",
        "sessionSettings.sessionTokenExpirationUnit",
    ]
    assert calendar["fields"][3] == {
        "path": "description",
        "before": "changed by hand in the console",
        "after": "Calendar tools for the company's agents (read, schedule, free/busy)",
    }
    assert plan["summary"] == {"create": 8, "update": 1, "adopt": 0, "rotate-secret": 0, "delete": 1}

    asyncio.run(_execute(Plan.from_json(plan), emulator.base_url))
    code, again = _plan_json(capsys, "--detailed-exitcode")
    assert code == 0
    assert again["changes"] == []
    # Fields the manifest does not manage survived the update; the unmanaged server was not touched.
    state = {s["name"]: s for s in emulator.state()["servers"]}
    assert state["calendar"]["loginPageURL"] == "https://login.example.com"
    assert state["calendar"]["forceAddAllAuthorizationInfo"] is True
    assert state["calendar"]["someFutureField"] == {"kept": True}
    assert state["manual"]["description"] == "made by hand"
    assert sorted(c["name"] for c in state["calendar"]["clients"]) == [
        "claude-desktop",
        "console-made",
        "reporting-job",
        "scheduling-agent",
    ]


def test_plan_makes_two_calls_plus_one_per_server(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    servers = [
        {
            "name": f"s{i:02}",
            "tags": [OWNER],
            "clients": [{"name": f"c{j}", "tags": [OWNER]} for j in range(5)],
        }
        for i in range(25)
    ]
    emulator.seed({"servers": servers})
    emulator.reset(counters_only=True)
    code, plan = _plan_json(capsys, "--no-prune")
    assert code == 0
    assert plan["summary"]["create"] == 9
    # 2 + S: the servers of both surfaces (MCP Server API, Resources), then the clients of each server.
    assert emulator.stats()["requests"] == {
        "servers/all": 1,
        "resources/load": 1,
        "server/clients/search": 25,
    }


def test_drift_exit_codes_and_a_saved_plan(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    emulator.seed(REALISTIC)
    assert run(["drift", str(EXAMPLES), "--detailed-exitcode"]) == 2
    text = capsys.readouterr().out
    assert '? server "manual" (MS00000000000000000000000000MN)' in text
    assert '- server "legacy"' in text
    assert "1 dynamically registered client (not drift)." in text
    saved = tmp_path / "plans" / "plan.json"
    assert run(["plan", str(EXAMPLES), "--allow-deletes", "1", "--out", str(saved)]) == 0
    captured = capsys.readouterr()
    document = json.loads(saved.read_text())
    assert captured.err == (
        f"Saved the plan to {saved} (change set {document['changeSet']}); "
        f"apply exactly it with: mcp-reconciler apply {saved}\n"
    )
    assert "Plan: 8 to create, 1 to update, 1 to delete, 0 secrets to rotate." in captured.out
    assert document["madeFrom"]["allowDeletes"] == 1
    assert document["checksum"].startswith("sha256:")
    assert Plan.from_json(document).summary["create"] == 8


def test_plan_errors_are_listed_and_exit_1(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator.seed(
        {"servers": [{"name": "crm", "description": "not ours"}, {"name": "calendar"}, {"name": "calendar"}]}
    )
    assert run(["plan", str(EXAMPLES)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == "error: cannot plan: 2 problems"
    assert err[0].startswith('  server "calendar" matches 2 live servers (')
    assert err[1].startswith('  server "crm" exists in Descope (')


def test_a_wrong_key_is_a_clear_error(
    emulator: RunningEmulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DESCOPE_MANAGEMENT_KEY", "wrong-key-canary")
    assert run(["plan", str(EXAMPLES)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: POST /v1/mgmt/mcp/servers/all failed: 401 ")
    assert "check DESCOPE_PROJECT_ID and DESCOPE_MANAGEMENT_KEY" in err
    assert "wrong-key-canary" not in err


def test_targets_that_name_nothing_are_usage_errors(
    emulator: RunningEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["plan", str(EXAMPLES), "--target", "server:calender"]) == 1
    assert (
        capsys.readouterr().err
        == "error: --target server:calender: no server named 'calender' in the manifests or live\n"
    )
    assert run(["plan", str(EXAMPLES), "--target", "nonsense"]) == 1
    assert "expected server:NAME or client:SERVER/NAME" in capsys.readouterr().err


def test_inside_github_actions_plan_writes_outputs_summary_and_groups(
    emulator: RunningEmulator,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outputs, summary = tmp_path / "output", tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_OUTPUT", str(outputs))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert run(["plan", str(EXAMPLES), "--detailed-exitcode"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("::group::Reading the live project and planning\n::endgroup::\n")
    assert "::group::" not in captured.out
    written = outputs.read_text()
    assert written.startswith("has-changes=true\ncreate=9\nupdate=0\nadopt=0\nrotate-secret=0\ndelete=0\n")
    assert re.fullmatch(r"changeset=sha256:[0-9a-f]{64}\n", written.splitlines(keepends=True)[-1])
    assert summary.read_text().startswith("<!-- mcp-reconciler:plan project=P2MCPRECONCILERDEMO -->\n")
    assert run(["drift", str(EXAMPLES)]) == 0
    assert outputs.read_text().endswith(
        "has-changes=true\nchanged=0\nmissing=9\norphaned=0\nunmanaged=0\ndynamicClients=0\n"
    )
    assert "<!-- mcp-reconciler:drift project=P2MCPRECONCILERDEMO -->" in summary.read_text()


def test_the_step_summary_stays_under_githubs_limit(tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    for _ in range(3):
        append_summary({"GITHUB_STEP_SUMMARY": str(summary)}, "x" * 600_000)
    assert SUMMARY_LIMIT - 100 < summary.stat().st_size <= SUMMARY_LIMIT < 1024 * 1024
    assert summary.read_text().endswith("_The rest is cut: GitHub allows 1 MiB of step summary._\n")


def test_with_pruning_off_a_removed_server_file_is_listed_as_not_deleted(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The exit code counts changes only (0 here), but the plan never says the project matches."""
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "p.yaml").write_text(f"kind: Project\nprojectId: {PROJECT}\nprune: false\n")
    (folder / "crm.yaml").write_text("kind: MCPServer\nname: crm\n")
    assert run(["apply", str(folder), "--auto-approve"]) == 0
    (folder / "crm.yaml").unlink()
    capsys.readouterr()
    assert run(["plan", str(folder), "--detailed-exitcode"]) == 0
    out = capsys.readouterr().out
    assert "No changes. The project matches the manifests." not in out
    assert 'server "crm" is kept: in no manifest; not deleted, since pruning is off' in out
    assert run(["plan", str(folder), "--format", "json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["changes"] == []
    assert [w["address"] for w in plan["withheld"]] == ['server "crm"']


def test_each_command_names_the_schema_of_its_own_json(capsys: pytest.CaptureFixture[str]) -> None:
    for command, schema in (("plan", "plan.schema.json"), ("drift", "drift.schema.json")):
        assert run([command, "--help"]) == 0
        assert f"schemas/{schema}" in " ".join(capsys.readouterr().out.split())
