"""Promises of the stale-plan check (``reconciler.stale.moved_since``), each pinned by its message.

A saved plan is refused when a live object it was planned on was changed or is gone, or when an object
it would create exists now. The pure function is checked on hand-built live states; then the CLI,
against the emulator, names the object and exits 1 without applying anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import run
from reconciler.descope.wire import LiveClient, LiveServer, LiveState
from reconciler.emulator import RunningEmulator
from reconciler.plan import Action, Change, Kind, Plan, fingerprint
from reconciler.stale import moved_since
from tests.conftest import project_yaml, serving

OWNER = "managed-by:mcp-reconciler"


def live_server(sid: str, name: str = "calendar", **fields: Any) -> LiveServer:
    return LiveServer.from_wire({"id": sid, "name": name, "tags": [OWNER], **fields})


def live_client(cid: str, server_id: str, name: str = "agent", **fields: Any) -> LiveClient:
    data = {"id": cid, "clientId": "oauth-" + cid, "mcpServerId": server_id, "name": name, "tags": [OWNER]}
    return LiveClient.from_wire({**data, **fields})


def state(servers: list[LiveServer], clients: list[LiveClient] | None = None) -> LiveState:
    by_server: dict[str, tuple[LiveClient, ...]] = {s.id: () for s in servers}
    for c in clients or []:
        by_server[c.server_id] = (*by_server.get(c.server_id, ()), c)
    return LiveState(tuple(servers), by_server)


def update_of(server: LiveServer) -> Change:
    """An update planned against ``server`` as it is now."""
    return Change(
        kind=Kind.SERVER,
        action=Action.UPDATE,
        name=server.name,
        id=server.id,
        fingerprint=fingerprint(server.fields),
    )


def client_update_of(client: LiveClient, server: str = "calendar") -> Change:
    return Change(
        kind=Kind.CLIENT,
        action=Action.UPDATE,
        name=client.name,
        server=server,
        id=client.id,
        server_id=client.server_id,
        fingerprint=fingerprint(client.fields),
    )


def plan_of(*changes: Change) -> Plan:
    return Plan(project_id="P2STALE", ownership_tag=OWNER, changes=changes)


# ---- the pure check --------------------------------------------------------------------------------


def test_a_plan_whose_objects_are_as_planned_is_not_stale() -> None:
    server = live_server("MS1", description="Calendar tools")
    agent = live_client("MSC1", "MS1", description="An agent")
    creates = (
        Change(kind=Kind.SERVER, action=Action.CREATE, name="mail"),
        Change(kind=Kind.CLIENT, action=Action.CREATE, name="bot", server="calendar", server_id="MS1"),
    )
    plan = plan_of(update_of(server), client_update_of(agent), *creates)
    assert moved_since(plan, state([server], [agent])) == []


def test_a_server_changed_since_the_plan_is_named_changed() -> None:
    planned = live_server("MS1", description="Calendar tools")
    now = live_server("MS1", description="Edited by hand")
    assert moved_since(plan_of(update_of(planned)), state([now])) == [
        'server "calendar" (MS1) was changed since the plan was made'
    ]


def test_a_field_the_plan_does_not_manage_counts_as_a_change_too() -> None:
    planned = live_server("MS1")
    now = live_server("MS1", logo="https://example.com/new.png")  # a field no manifest mentions
    assert moved_since(plan_of(update_of(planned)), state([now])) == [
        'server "calendar" (MS1) was changed since the plan was made'
    ]


def test_a_client_changed_since_the_plan_is_named_changed() -> None:
    server = live_server("MS1")
    planned = live_client("MSC1", "MS1", scopes=["read"])
    now = live_client("MSC1", "MS1", scopes=["read", "write"])
    assert moved_since(plan_of(client_update_of(planned)), state([server], [now])) == [
        'client "calendar/agent" (MSC1) was changed since the plan was made'
    ]


def test_a_server_deleted_since_the_plan_is_named_gone() -> None:
    planned = live_server("MS1")
    other = live_server("MS2", name="mail")
    assert moved_since(plan_of(update_of(planned)), state([other])) == [
        'server "calendar" (MS1) no longer exists'
    ]


def test_a_client_deleted_since_the_plan_is_named_gone() -> None:
    server = live_server("MS1")
    planned = live_client("MSC1", "MS1")
    deletion = Change(
        kind=Kind.CLIENT,
        action=Action.DELETE,
        name="agent",
        server="calendar",
        id="MSC1",
        server_id="MS1",
        fingerprint=fingerprint(planned.fields),
    )
    # Another client of the same name, under a new id, is not the one the plan was made on.
    renewed = live_client("MSC9", "MS1")
    assert moved_since(plan_of(deletion), state([server], [renewed])) == [
        'client "calendar/agent" (MSC1) no longer exists'
    ]


def test_a_server_created_since_the_plan_is_named_and_the_plan_would_create_another() -> None:
    create = Change(kind=Kind.SERVER, action=Action.CREATE, name="calendar")
    assert moved_since(plan_of(create), state([live_server("MS7")])) == [
        'server "calendar" now exists (MS7); the plan would create another'
    ]
    twice = state([live_server("MS7"), live_server("MS8")])
    assert moved_since(plan_of(create), twice) == [
        'server "calendar" now exists (MS7, MS8); the plan would create another'
    ]


def test_a_client_created_since_the_plan_is_named_and_the_plan_would_create_another() -> None:
    server = live_server("MS1")
    create = Change(kind=Kind.CLIENT, action=Action.CREATE, name="agent", server="calendar", server_id="MS1")
    assert moved_since(plan_of(create), state([server], [live_client("MSC3", "MS1")])) == [
        'client "calendar/agent" now exists (MSC3); the plan would create another'
    ]
    # A client of that name under another server is no obstacle.
    other = live_server("MS2", name="mail")
    assert moved_since(plan_of(create), state([server, other], [live_client("MSC4", "MS2")])) == []


def test_every_moved_object_is_named_once_in_order() -> None:
    planned = live_server("MS1", description="Calendar tools")
    gone = live_server("MS2", name="mail")
    changes = (
        update_of(planned),
        update_of(planned),  # twice in the plan, named once
        update_of(gone),
        Change(kind=Kind.SERVER, action=Action.CREATE, name="notes"),
    )
    now = state([live_server("MS1", description="Edited"), live_server("MS5", name="notes")])
    assert moved_since(plan_of(*changes), now) == [
        'server "calendar" (MS1) was changed since the plan was made',
        'server "mail" (MS2) no longer exists',
        'server "notes" now exists (MS5); the plan would create another',
    ]


# ---- through the CLI ---------------------------------------------------------------------------------

PROJECT = "P2STALECLI"
KEY = "K2-stale-promises-management-key-51c"
PROJECT_YAML = project_yaml(PROJECT)
SERVER_YAML = """\
kind: MCPServer
name: calendar
description: Calendar tools
approvedScopes:
  - name: calendar:read
"""
# The server as someone made it by hand: the plan adopts nothing, it updates the description.
SEEDED = {"id": "MSCAL1", "name": "calendar", "description": "Old text", "tags": [OWNER]}


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RunningEmulator]:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "project.yaml").write_text(PROJECT_YAML)
    (tmp_path / "manifests" / "calendar.yaml").write_text(SERVER_YAML)
    with serving(monkeypatch, PROJECT, KEY) as handle:
        yield handle


@pytest.mark.parametrize(
    ("seeded", "meanwhile", "moved"),
    [
        (
            [SEEDED],
            [{**SEEDED, "description": "Edited by hand"}],
            'server "calendar" (MSCAL1) was changed since the plan was made',
        ),
        ([SEEDED], [], 'server "calendar" (MSCAL1) no longer exists'),
        (
            [],
            [{**SEEDED, "id": "MSCAL2", "description": "Calendar tools"}],
            'server "calendar" now exists (MSCAL2); the plan would create another',
        ),
    ],
    ids=["changed", "gone", "now-exists"],
)
def test_apply_of_a_stale_plan_names_what_moved_and_applies_nothing(
    emulator: RunningEmulator,
    capsys: pytest.CaptureFixture[str],
    seeded: list[dict[str, Any]],
    meanwhile: list[dict[str, Any]],
    moved: str,
) -> None:
    if seeded:
        emulator.seed({"servers": seeded})
    assert run(["plan", "manifests", "--out", "plan.json"]) == 0
    planned = [c["action"] for c in json.loads(Path("plan.json").read_text())["changes"]]
    assert planned == (["update"] if seeded else ["create"])
    emulator.reset()  # the project changes between plan and apply
    if meanwhile:
        emulator.seed({"servers": meanwhile})
    before = emulator.state()["servers"]
    capsys.readouterr()
    assert run(["apply", "plan.json"]) == 1
    err = capsys.readouterr().err
    assert "error: the saved plan is stale: 1 object changed since it was made; run plan again" in err
    assert f"\n  {moved}\n" in err
    assert emulator.state()["servers"] == before
    requests = emulator.stats()["requests"]
    assert not [name for name in requests if "create" in name or "update" in name or "delete" in name]
