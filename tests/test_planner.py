"""The planner on hand-built live states: matching, ownership, adoption, pruning, budget, targets."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from reconciler import kinds
from reconciler.descope.wire import LiveClient, LiveServer, LiveState
from reconciler.errors import DeleteBudgetError, PlanError, UsageError
from reconciler.manifest import load_manifest
from reconciler.models import Manifest
from reconciler.plan import Action, Cascaded, FieldChange, Kind, Plan
from reconciler.planner import PlanOptions, Target, build_plan
from reconciler.tags import PROTECT_TAG, ROTATION_PREFIX
from tests.conftest import Writer

OWNER = "managed-by:mcp-reconciler"
PROJECT = "kind: Project\nprojectId: P2\ndefaultSink: local\nprune: true\nmaxDeletes: 3\nsinks:\n  local: {type: file, path: s.json}\n"


def manifest(write: Writer, servers: str, project: str = PROJECT) -> Manifest:
    write("project.yaml", project)
    folder: Path = write("servers.yaml", servers)
    return load_manifest([str(folder)], environ={})


def server(name: str, sid: str, *, owned: bool = True, **fields: Any) -> LiveServer:
    tags = [*fields.pop("tags", []), *([OWNER] if owned else [])]
    return LiveServer.from_wire({"id": sid, "name": name, "tags": tags, **fields})


def client(name: str, cid: str, server_id: str, *, owned: bool = True, **fields: Any) -> LiveClient:
    tags = [*fields.pop("tags", []), *([OWNER] if owned else [])]
    data = {"id": cid, "clientId": "oauth-" + cid, "mcpServerId": server_id, "name": name, "tags": tags}
    return LiveClient.from_wire({**data, **fields})


def state(servers: list[LiveServer], clients: list[LiveClient] = ()) -> LiveState:  # type: ignore[assignment]
    by_server: dict[str, tuple[LiveClient, ...]] = {s.id: () for s in servers}
    for c in clients:
        by_server[c.server_id] = (*by_server.get(c.server_id, ()), c)
    return LiveState(tuple(servers), by_server)


def reasons(manifest_: Manifest, live: LiveState, options: PlanOptions | None = None) -> list[str]:
    with pytest.raises(PlanError) as caught:
        build_plan(manifest_, live, options)
    return caught.value.reasons


def actions(plan: Plan) -> list[tuple[str, str]]:
    return [(c.action.value, c.address) for c in plan.changes]


CALENDAR = """kind: MCPServer
name: calendar
description: Calendar tools
tags: [team:a]
approvedScopes:
  - {name: read, description: Read}
clients:
  - name: agent
    scopes: [read]
"""


def test_an_empty_project_gets_everything_created_parents_first(write: Writer) -> None:
    plan = build_plan(manifest(write, CALENDAR), state([]))
    assert actions(plan) == [("create", 'server "calendar"'), ("create", 'client "calendar/agent"')]
    server_change, client_change = plan.changes
    assert server_change.desired["tags"] == ["team:a", OWNER]
    assert [f.path for f in server_change.fields] == ["approvedScopes", "description", "name", "tags"]
    assert client_change.server_id is None
    assert client_change.secret is not None
    assert (client_change.secret.sink, client_change.secret.key) == ("local", "calendar/agent")


def test_a_matching_project_plans_nothing_and_ignores_unmentioned_fields(write: Writer) -> None:
    live = state(
        [
            server(
                "calendar",
                "MS1",
                description="Calendar tools",
                tags=["team:a"],
                approvedScopes=[{"name": "read", "description": "Read"}],
                loginPageURL="https://x.example.com",
                futureField=1,
            )
        ],
        [client("agent", "C1", "MS1", scopes=["read"], approvedCallbackUrls=["https://cb.example.com"])],
    )
    plan = build_plan(manifest(write, CALENDAR), live)
    assert plan.changes == ()


def test_field_level_update_with_sets_compared_without_order(write: Writer) -> None:
    live = state(
        [
            server(
                "calendar",
                "MS1",
                description="Old",
                tags=["team:a"],
                approvedScopes=[{"name": "read", "description": "Read", "optional": True}],
            )
        ],
        [client("agent", "C1", "MS1", scopes=["read"])],
    )
    plan = build_plan(manifest(write, CALENDAR), live)
    (change,) = plan.changes
    assert change.action is Action.UPDATE
    assert change.id == "MS1"
    assert change.fields == (
        FieldChange('approvedScopes["read"].optional', True, False),
        FieldChange("description", "Old", "Calendar tools"),
    )
    assert change.fingerprint is not None
    assert change.desired["tags"] == ["team:a", OWNER]


def test_unmanaged_objects_are_conflicts_unless_adopted(write: Writer) -> None:
    live = state([server("calendar", "MS1", owned=False, description="Calendar tools")])
    with pytest.raises(PlanError) as caught:
        build_plan(manifest(write, CALENDAR), live)
    assert caught.value.reasons == [
        'server "calendar" exists in Descope (MS1) but is not managed by mcp-reconciler: '
        "set adopt: true to take it over, or choose another name"
    ]
    adopted = build_plan(
        manifest(write, CALENDAR.replace("tags: [team:a]", "tags: [team:a]\nadopt: true")), live
    )
    assert actions(adopted) == [("adopt", 'server "calendar"'), ("create", 'client "calendar/agent"')]
    tags = adopted.changes[0].desired["tags"]
    assert isinstance(tags, list)
    assert OWNER in tags


def test_two_live_objects_matching_one_entry_is_an_error_naming_both(write: Writer) -> None:
    live = state([server("calendar", "MS1"), server("calendar", "MS2")])
    assert reasons(manifest(write, CALENDAR), live) == [
        'server "calendar" matches 2 live servers (MS1, MS2); rename or delete all but one'
    ]


def test_pruning_deletes_only_owned_unprotected_pre_registered_objects(write: Writer) -> None:
    live = state(
        [
            server(
                "calendar",
                "MS1",
                description="Calendar tools",
                tags=["team:a"],
                approvedScopes=[{"name": "read", "description": "Read"}],
            ),
            server("old", "MS2"),
            server("kept", "MS3", tags=[PROTECT_TAG]),
            server("manual", "MS4", owned=False),
            server("busy", "MS5"),
        ],
        [
            client("agent", "C1", "MS1", scopes=["read"]),
            client("stale", "C2", "MS1"),
            client("guarded", "C3", "MS1", tags=[PROTECT_TAG]),
            client("dcr", "C4", "MS1", registrationType="dcr"),
            client("someones", "C5", "MS1", owned=False),
            client("user-app", "C6", "MS5", owned=False, registrationType="dcr"),
        ],
    )
    plan = build_plan(manifest(write, CALENDAR), live)
    assert actions(plan) == [("delete", 'client "calendar/stale"'), ("delete", 'server "old"')]
    assert [(w.address, w.reason) for w in plan.withheld] == [
        ('client "calendar/dcr"', "registered dynamically (dcr)"),
        ('client "calendar/guarded"', "protected (protect: true when last applied)"),
        (
            'server "busy"',
            "it has 1 clients that mcp-reconciler does not manage, and deleting it would delete them",
        ),
        ('server "kept"', "protected (protect: true when last applied)"),
    ]
    no_prune = build_plan(manifest(write, CALENDAR), live, PlanOptions(prune=False))
    assert no_prune.changes == ()


def test_the_delete_budget_refuses_the_whole_plan_unless_overridden(write: Writer) -> None:
    live = state([server(f"old{i}", f"MS{i}") for i in range(4)])
    assert reasons(manifest(write, CALENDAR), live) == [
        "the plan deletes 4 objects (4 servers), more than maxDeletes allows (3: 3); review the deletes "
        "in the plan, then accept them with --allow-deletes 4"
    ]
    with pytest.raises(DeleteBudgetError) as refused:  # the refusal carries the whole plan, to be shown
        build_plan(manifest(write, CALENDAR), live, PlanOptions(allow_deletes=3))
    assert refused.value.plan.deletes == 4
    assert refused.value.plan.refused == refused.value.reasons[0]
    assert "and --allow-deletes 3;" in refused.value.reasons[0]
    plan = build_plan(manifest(write, CALENDAR), live, PlanOptions(allow_deletes=4))
    assert plan.summary["delete"] == 4
    assert plan.refused is None
    percent = PROJECT.replace("maxDeletes: 3", "maxDeletes: 50%")
    assert "(50%: 2)" in reasons(manifest(write, CALENDAR, percent), live)[0]


def test_protect_is_recorded_on_the_live_object(write: Writer) -> None:
    live = state(
        [
            server(
                "calendar",
                "MS1",
                description="Calendar tools",
                tags=["team:a"],
                approvedScopes=[{"name": "read", "description": "Read"}],
            )
        ],
        [client("agent", "C1", "MS1", scopes=["read"])],
    )
    plan = build_plan(
        manifest(write, CALENDAR.replace("tags: [team:a]", "tags: [team:a]\nprotect: true")), live
    )
    (change,) = plan.changes
    assert change.fields == (FieldChange("protect", False, True),)
    assert change.desired["tags"] == ["team:a", OWNER, PROTECT_TAG]


def test_a_changed_rotation_marker_rotates_once_and_a_recorded_one_does_not(write: Writer) -> None:
    servers = CALENDAR.replace(
        "    scopes: [read]\n", "    scopes: [read]\n    secret: {rotation: '2026-11'}\n"
    )
    base = [
        server(
            "calendar",
            "MS1",
            description="Calendar tools",
            tags=["team:a"],
            approvedScopes=[{"name": "read", "description": "Read"}],
        )
    ]
    rotate = build_plan(
        manifest(write, servers), state(base, [client("agent", "C1", "MS1", scopes=["read"])])
    )
    assert actions(rotate) == [("rotate-secret", 'client "calendar/agent"')]
    assert rotate.changes[0].fields == (FieldChange("secret.rotation", None, "2026-11"),)
    done = [client("agent", "C1", "MS1", scopes=["read"], tags=[ROTATION_PREFIX + "2026-11"])]
    assert build_plan(manifest(write, servers), state(base, done)).changes == ()


def test_targets_limit_the_plan_and_mark_it_partial(write: Writer) -> None:
    two = CALENDAR + "---\nkind: MCPServer\nname: crm\n"
    plan = build_plan(manifest(write, two), state([]), PlanOptions(targets=(Target.parse("server:crm"),)))
    assert actions(plan) == [("create", 'server "crm"')]
    assert plan.partial
    assert plan.targets == ("server:crm",)
    only_client = PlanOptions(targets=(Target.parse("client:calendar/agent"),))
    assert reasons(manifest(write, two), state([]), only_client) == [
        'client "calendar/agent" needs its server created first: add --target server:calendar'
    ]


@pytest.mark.parametrize("text", ["server:", "client:calendar", "client:/x", "thing:x", "calendar"])
def test_bad_targets_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="expected server:NAME or client:SERVER/NAME"):
        Target.parse(text)


def test_plans_survive_a_json_round_trip(write: Writer) -> None:
    plan = build_plan(manifest(write, CALENDAR), state([server("old", "MS9")]))
    again = Plan.from_json(plan.to_json())
    assert again == plan
    assert again.to_json()["checksum"] == plan.to_json()["checksum"]
    assert {c.kind for c in plan.changes} == {Kind.SERVER, Kind.CLIENT}


@pytest.mark.parametrize("cascades", [True, False])
def test_pruning_a_server_deletes_its_clients_first_unless_the_api_cascades(
    write: Writer, monkeypatch: pytest.MonkeyPatch, cascades: bool
) -> None:
    """``assumptions.SERVER_DELETE_CASCADES`` reaches the plan through the server's descriptor: when
    a server's delete takes its clients with it, the plan says so; otherwise it deletes them first."""
    server_kind = replace(kinds.SERVER, delete_cascades=cascades)
    monkeypatch.setattr(kinds, "KINDS", MappingProxyType({**kinds.KINDS, Kind.SERVER: server_kind}))
    live = state([server("old", "MS2")], [client("a", "C1", "MS2"), client("b", "C2", "MS2")])
    plan = build_plan(manifest(write, CALENDAR), live)
    deletes = [(c.action.value, c.address, c.cascade) for c in plan.changes if c.action is Action.DELETE]
    if cascades:  # listed under the server, and counted by the summary like the budget counts them
        below = (Cascaded(Kind.CLIENT, "a", "C1"), Cascaded(Kind.CLIENT, "b", "C2"))
        assert deletes == [("delete", 'server "old"', below)]
    else:
        assert deletes == [
            ("delete", 'client "old/a"', ()),
            ("delete", 'client "old/b"', ()),
            ("delete", 'server "old"', ()),
        ]
    assert plan.summary["delete"] == plan.deletes == 3
    tight = PROJECT.replace("maxDeletes: 3", "maxDeletes: 2")
    assert reasons(manifest(write, CALENDAR, tight), live) == [
        "the plan deletes 3 objects (1 server and 2 clients), more than maxDeletes allows (2: 2); review "
        "the deletes in the plan, then accept them with --allow-deletes 3"
    ]


def test_with_pruning_off_an_owned_object_that_left_the_manifests_is_listed_as_not_deleted(
    write: Writer,
) -> None:
    live = state(
        [
            server(
                "calendar",
                "MS1",
                description="Calendar tools",
                tags=["team:a"],
                approvedScopes=[{"name": "read", "description": "Read"}],
            ),
            server("crm", "MS2"),
            server("someone-elses", "MS3", owned=False),
        ],
        [client("agent", "C1", "MS1", scopes=["read"]), client("gone", "C2", "MS1")],
    )
    plan = build_plan(manifest(write, CALENDAR), live, PlanOptions(prune=False))
    assert plan.changes == ()  # nothing is deleted ...
    assert [(w.address, w.reason) for w in plan.withheld] == [  # ... and nothing is hidden
        ('client "calendar/gone"', "in no manifest; not deleted, since pruning is off"),
        ('server "crm"', "in no manifest; not deleted, since pruning is off"),
    ]
