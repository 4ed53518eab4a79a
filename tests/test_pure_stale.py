"""Tiny tests of the staleness checks of a saved plan: moved_since and plan_differences (reconciler.stale)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from reconciler.descope.wire import LiveClient, LiveServer, LiveState
from reconciler.plan import Action, Change, FieldChange, Kind, Plan, fingerprint
from reconciler.stale import moved_since, plan_differences

FALLBACK = "the plan's project settings or the order of its changes differ from what is planned now"


def _server(server_id: str, name: str, **fields: Any) -> LiveServer:
    return LiveServer.from_wire({"id": server_id, "name": name, **fields})


def _client(client_id: str, name: str, server_id: str, **fields: Any) -> LiveClient:
    return LiveClient.from_wire({"id": client_id, "name": name, **fields}, server_id)


def _plan(*changes: Change) -> Plan:
    return Plan("P2abc", "managed-by:mcp-reconciler", changes)


def _on(fields: Mapping[str, Any]) -> str:
    return fingerprint(fields)


CALENDAR = _server("S1", "calendar", description="Calendar")
DOCS = _server("S2", "docs")
CI = _client("C1", "ci", "S1", scopes=["read"])
BOT = _client("C2", "bot", "S1")
DOCS_CI = _client("C3", "ci", "S2")
LIVE = LiveState(servers=(CALENDAR, DOCS), clients={"S1": (CI, BOT), "S2": (DOCS_CI,)})


def _update_server(server: LiveServer) -> Change:
    return Change(Kind.SERVER, Action.UPDATE, server.name, id=server.id, fingerprint=_on(server.fields))


def _change_client(action: Action, server: str, client: LiveClient, server_id: str | None = None) -> Change:
    return Change(
        Kind.CLIENT,
        action,
        client.name,
        server=server,
        id=client.id,
        server_id=server_id or client.server_id,
        fingerprint=_on(client.fields),
    )


# ---- moved_since -------------------------------------------------------------------------------


def test_nothing_moved_when_every_object_is_as_planned() -> None:
    plan = _plan(
        Change(Kind.SERVER, Action.CREATE, "crm"),
        Change(Kind.CLIENT, Action.CREATE, "web", server="calendar", server_id="S1"),
        Change(Kind.CLIENT, Action.CREATE, "ci", server="crm"),  # its server is created by the plan
        _update_server(CALENDAR),
        _change_client(Action.UPDATE, "calendar", CI),
        _change_client(Action.ROTATE_SECRET, "calendar", CI),
        _change_client(Action.DELETE, "calendar", BOT),
        Change(Kind.SERVER, Action.DELETE, "docs", id="S2", fingerprint=_on(DOCS.fields)),
    )

    assert moved_since(plan, LIVE) == []
    assert moved_since(_plan(), LIVE) == []


def test_a_server_create_whose_name_now_exists_names_the_new_ids() -> None:
    live = LiveState(servers=(CALENDAR, _server("S7", "crm"), _server("S8", "crm")))

    assert moved_since(_plan(Change(Kind.SERVER, Action.CREATE, "crm")), live) == [
        'server "crm" now exists (S7, S8); the plan would create another'
    ]


def test_a_client_create_whose_name_now_exists_under_its_server_names_the_new_id() -> None:
    plan = _plan(Change(Kind.CLIENT, Action.CREATE, "ci", server="calendar", server_id="S1"))

    assert moved_since(plan, LIVE) == ['client "calendar/ci" now exists (C1); the plan would create another']


def test_a_client_create_looks_only_at_the_clients_of_its_server() -> None:
    # "bot" exists under S1 only; a "bot" planned under docs (S2) is not taken.
    plan = _plan(Change(Kind.CLIENT, Action.CREATE, "bot", server="docs", server_id="S2"))

    assert moved_since(plan, LIVE) == []


def test_an_update_whose_object_is_gone_says_it_no_longer_exists() -> None:
    live = LiveState(servers=(DOCS,), clients={"S2": (DOCS_CI,)})

    assert moved_since(_plan(_update_server(CALENDAR)), live) == ['server "calendar" (S1) no longer exists']


def test_an_update_whose_object_changed_says_so() -> None:
    live = LiveState(servers=(_server("S1", "calendar", description="Edited"), DOCS))

    assert moved_since(_plan(_update_server(CALENDAR)), live) == [
        'server "calendar" (S1) was changed since the plan was made'
    ]


def test_a_client_change_looks_only_at_the_clients_of_its_server_id() -> None:
    # C1 lives under S1; a change that names it under S2 does not find it there.
    plan = _plan(_change_client(Action.UPDATE, "docs", CI, server_id="S2"))

    assert moved_since(plan, LIVE) == ['client "docs/ci" (C1) no longer exists']


def test_a_changed_client_and_a_deleted_one_are_both_named() -> None:
    live = LiveState(servers=(CALENDAR, DOCS), clients={"S1": (_client("C1", "ci", "S1", scopes=["write"]),)})
    plan = _plan(
        _change_client(Action.UPDATE, "calendar", CI), _change_client(Action.DELETE, "calendar", BOT)
    )

    assert moved_since(plan, live) == [
        'client "calendar/bot" (C2) no longer exists',
        'client "calendar/ci" (C1) was changed since the plan was made',
    ]


def test_reasons_are_sorted_and_each_given_once() -> None:
    live = LiveState(servers=(DOCS,), clients={"S1": (_client("C1", "ci", "S1", scopes=["write"]),)})
    plan = _plan(
        _update_server(CALENDAR),
        _change_client(Action.UPDATE, "calendar", CI),
        _change_client(Action.ROTATE_SECRET, "calendar", CI),  # the same reason as the update
        Change(Kind.SERVER, Action.CREATE, "docs"),
    )

    assert moved_since(plan, live) == [
        'client "calendar/ci" (C1) was changed since the plan was made',
        'server "calendar" (S1) no longer exists',
        'server "docs" now exists (S2); the plan would create another',
    ]


# ---- plan_differences --------------------------------------------------------------------------

SERVER_UPDATE = Change(
    Kind.SERVER,
    Action.UPDATE,
    "calendar",
    id="S1",
    fingerprint="f1",
    fields=(FieldChange("description", "a", "b"),),
    desired={"description": "b"},
)
CLIENT_CREATE = Change(Kind.CLIENT, Action.CREATE, "ci", server="calendar", server_id="S1")
CLIENT_DELETE = Change(
    Kind.CLIENT, Action.DELETE, "old", server="calendar", id="C9", server_id="S1", fingerprint="f9"
)


def test_identical_plans_give_the_fallback_line() -> None:
    plan = _plan(SERVER_UPDATE, CLIENT_CREATE)

    assert plan_differences(plan, _plan(SERVER_UPDATE, CLIENT_CREATE)) == [FALLBACK]
    assert plan_differences(_plan(), _plan()) == [FALLBACK]


def test_plans_that_differ_only_in_order_give_the_fallback_line() -> None:
    assert plan_differences(_plan(SERVER_UPDATE, CLIENT_CREATE), _plan(CLIENT_CREATE, SERVER_UPDATE)) == [
        FALLBACK
    ]


def test_a_change_only_in_the_saved_plan_is_named() -> None:
    assert plan_differences(_plan(SERVER_UPDATE, CLIENT_DELETE), _plan(SERVER_UPDATE)) == [
        'delete client "calendar/old": in the saved plan, not planned now'
    ]


def test_a_change_only_planned_now_is_named() -> None:
    assert plan_differences(_plan(SERVER_UPDATE), _plan(SERVER_UPDATE, CLIENT_CREATE)) == [
        'create client "calendar/ci": planned now, not in the saved plan'
    ]


def test_a_change_that_differs_is_named() -> None:
    now = Change(
        Kind.SERVER,
        Action.UPDATE,
        "calendar",
        id="S1",
        fingerprint="f1",
        fields=(FieldChange("description", "a", "c"),),
        desired={"description": "c"},
    )

    assert plan_differences(_plan(SERVER_UPDATE), _plan(now)) == [
        'update server "calendar": differs from what is planned now'
    ]


def test_a_change_that_differs_only_in_what_it_was_planned_against_is_named() -> None:
    now = dataclasses.replace(SERVER_UPDATE, fingerprint="f2")

    assert plan_differences(_plan(SERVER_UPDATE), _plan(now)) == [
        'update server "calendar": differs from what is planned now'
    ]


def test_the_same_object_with_another_action_is_a_different_change() -> None:
    rotate = Change(Kind.CLIENT, Action.ROTATE_SECRET, "ci", server="calendar", id="C1", server_id="S1")
    update = Change(Kind.CLIENT, Action.UPDATE, "ci", server="calendar", id="C1", server_id="S1")

    assert plan_differences(_plan(rotate), _plan(update)) == [
        'rotate-secret client "calendar/ci": in the saved plan, not planned now',
        'update client "calendar/ci": planned now, not in the saved plan',
    ]


def test_a_server_and_a_client_of_the_same_name_are_different_changes() -> None:
    server = Change(Kind.SERVER, Action.CREATE, "ci")
    client = Change(Kind.CLIENT, Action.CREATE, "ci", server="calendar")

    assert plan_differences(_plan(server), _plan(client)) == [
        'create server "ci": in the saved plan, not planned now',
        'create client "calendar/ci": planned now, not in the saved plan',
    ]


def test_every_kind_of_difference_is_listed_saved_first_then_now_then_differing() -> None:
    moved = Change(
        Kind.SERVER, Action.UPDATE, "calendar", id="S1", fingerprint="f2", desired={"description": "b"}
    )

    assert plan_differences(_plan(SERVER_UPDATE, CLIENT_DELETE), _plan(CLIENT_CREATE, moved)) == [
        'delete client "calendar/old": in the saved plan, not planned now',
        'create client "calendar/ci": planned now, not in the saved plan',
        'update server "calendar": differs from what is planned now',
    ]
