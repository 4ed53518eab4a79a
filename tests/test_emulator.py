"""The Descope emulator over real HTTP: wire shapes, auth, search, scopes, faults, persistence, admin."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.descope import assumptions
from reconciler.emulator import (
    EmulatorConfig,
    RunningEmulator,
    create_app,
    running_emulator,
)
from reconciler.emulator.app import STRICT_VARIABLE
from reconciler.emulator.faults import RateLimiter
from reconciler.scopes import CATEGORY_KEY

PROJECT = "P2EMULATORTEST"
KEY = "K2-emulator-test-key-3f9a"
V1 = "/v1/mgmt/mcp/"
FAULT_STATUSES = {500, 502, 503}


def config(**options: Any) -> EmulatorConfig:
    return EmulatorConfig(project_id=PROJECT, management_key=KEY, **options)


@pytest.fixture(scope="module")
def shared() -> Iterator[RunningEmulator]:
    with running_emulator(config()) as handle:
        yield handle


@pytest.fixture
def em(shared: RunningEmulator) -> RunningEmulator:
    shared.reset()
    return shared


@pytest.fixture
def api(em: RunningEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=em.base_url, headers=em.headers) as client:
        yield client


@pytest.fixture(scope="module")
def lenient() -> Iterator[RunningEmulator]:
    """An emulator that is not strict: it ignores the fields Descope assigns when a write carries them."""
    with running_emulator(config(strict=False)) as handle:
        yield handle


@pytest.fixture
def lenient_api(lenient: RunningEmulator) -> Iterator[httpx.Client]:
    lenient.reset()
    with httpx.Client(base_url=lenient.base_url, headers=lenient.headers) as client:
        yield client


def post(client: httpx.Client, endpoint: str, body: Any = None) -> httpx.Response:
    return client.post(V1 + endpoint, json={} if body is None else body)


def ok(client: httpx.Client, endpoint: str, body: Any = None) -> dict[str, Any]:
    response = post(client, endpoint, body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"errorCode", "errorDescription", "errorMessage"}
    assert body["errorCode"] == code
    return body


def new_server(client: httpx.Client, name: str = "calendar", **fields: Any) -> str:
    server_id: str = ok(client, "server/create", {"name": name, **fields})["server"]["id"]
    return server_id


def new_client(client: httpx.Client, server_id: str, name: str = "agent", **fields: Any) -> dict[str, Any]:
    return ok(client, "server/client/create", {"mcpServerId": server_id, "name": name, **fields})


# ---- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"management_key": ""},
        {"fault_rate": 1.5},
        {"latency_ms": -1},
        {"max_page_size": 0},
        {"scopes_format": "xml"},
    ],
)
def test_config_refuses_bad_values(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"."):
        EmulatorConfig(**{"management_key": KEY, **options})


def test_config_repr_hides_the_key() -> None:
    assert KEY not in repr(config())


def test_config_defaults_to_categorized_scopes_and_strict_as_the_environment_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert config().scopes_format == "categorized"
    for value, strict in [("1", True), ("0", False), ("", False), ("true", False)]:
        monkeypatch.setenv(STRICT_VARIABLE, value)
        assert config().strict is strict, value
        assert config(strict=not strict).strict is not strict  # an explicit choice wins
    monkeypatch.delenv(STRICT_VARIABLE)
    assert config().strict is False


def test_the_suite_runs_strict() -> None:
    """tests/conftest.py turns strict mode on for every emulator the suite starts."""
    assert os.environ.get(STRICT_VARIABLE) == "1"
    assert config().strict is True


# ---- servers --------------------------------------------------------------------------------------


def test_server_create_load_and_all(api: httpx.Client) -> None:
    fields = {
        "name": "calendar",
        "description": "Calendar",
        "tags": ["team:a"],
        "dynamicRegistration": {"enabled": True},
    }
    created = ok(api, "server/create", fields)
    server_id = created["server"]["id"]
    assert server_id.startswith("MS")
    assert len(server_id) == 29
    assert server_id.isalnum()
    assert created == {"server": {"id": server_id, **fields}}
    assert ok(api, "server/load", {"id": server_id}) == created
    second = new_server(api, "calendar")  # duplicate names are accepted
    everything = ok(api, "servers/all")
    assert everything == {
        "servers": [{"id": server_id, **fields}, {"id": second, "name": "calendar"}],
        "total": 2,
    }


def test_server_update_is_full_replacement(api: httpx.Client) -> None:
    server_id = new_server(api, description="old", loginPageURL="https://l.example.com", tags=["a"])
    updated = ok(api, "server/update", {"server": {"id": server_id, "name": "renamed", "tags": ["b"]}})
    assert updated == {"server": {"id": server_id, "name": "renamed", "tags": ["b"]}}
    assert ok(api, "server/load", {"id": server_id}) == updated


def test_server_errors(api: httpx.Client) -> None:
    assert_error(post(api, "server/load", {"id": "MSnope"}), 404, assumptions.INVALID_ARGUMENTS_CODE)
    assert_error(post(api, "server/load", {}), 400, assumptions.MISSING_ARGUMENTS_CODE)
    assert_error(post(api, "server/create", {"description": "x"}), 400, assumptions.MISSING_ARGUMENTS_CODE)
    assert_error(post(api, "server/create", {"name": ""}), 400, assumptions.MISSING_ARGUMENTS_CODE)
    assert_error(post(api, "server/create", {"name": 7}), 400, assumptions.VALIDATION_FAILURE_CODE)
    body = assert_error(
        post(api, "server/create", {"name": "a", "tags": ["x", 1]}), 400, assumptions.VALIDATION_FAILURE_CODE
    )
    assert body["errorDescription"] == "server.tags[1]: expected a string, got an integer"
    nested = {"name": "a", "dynamicRegistration": {"enabled": "yes"}}
    body = assert_error(post(api, "server/create", nested), 400, assumptions.VALIDATION_FAILURE_CODE)
    assert body["errorDescription"] == "server.dynamicRegistration.enabled: expected a boolean, got a string"
    expiry = {"name": "a", "sessionSettings": {"sessionTokenExpiration": True}}
    assert_error(post(api, "server/create", expiry), 400, assumptions.VALIDATION_FAILURE_CODE)
    assert_error(post(api, "server/update", {}), 400, assumptions.MISSING_ARGUMENTS_CODE)
    assert_error(post(api, "server/update", {"server": []}), 400, assumptions.VALIDATION_FAILURE_CODE)
    assert_error(
        post(api, "server/update", {"server": {"id": "MSnope", "name": "a"}}),
        404,
        assumptions.INVALID_ARGUMENTS_CODE,
    )
    malformed = api.post(V1 + "server/create", content=b"{not json")
    assert_error(malformed, 400, assumptions.MALFORMED_REQUEST_CODE)
    assert_error(post(api, "server/create", ["name"]), 400, assumptions.MALFORMED_REQUEST_CODE)
    assert_error(
        api.post(V1 + "server/create", content=b'{"name": NaN}'), 400, assumptions.MALFORMED_REQUEST_CODE
    )
    assert ok(api, "servers/all") == {"servers": [], "total": 0}


def test_server_delete_cascades_and_bulk_delete_ignores_absent_ids(api: httpx.Client) -> None:
    one, two, three = new_server(api, "one"), new_server(api, "two"), new_server(api, "three")
    client_id = new_client(api, one)["id"]
    assert ok(api, "server/delete", {"id": one}) == {}
    assert_error(post(api, "server/delete", {"id": one}), 404, assumptions.INVALID_ARGUMENTS_CODE)
    assert_error(
        post(api, "server/client/load", {"mcpServerId": one, "id": client_id}),
        404,
        assumptions.INVALID_ARGUMENTS_CODE,
    )
    assert ok(api, "servers/delete", {"ids": [two, "MSabsent"]}) == {}
    assert_error(post(api, "servers/delete", {}), 400, assumptions.MISSING_ARGUMENTS_CODE)
    assert [s["id"] for s in ok(api, "servers/all")["servers"]] == [three]


# ---- the unpublished behaviours follow reconciler/descope/assumptions.py --------------------------


def server_ids(client: httpx.Client) -> list[str]:
    return [server["id"] for server in ok(client, "servers/all")["servers"]]


def client_ids(client: httpx.Client, server_id: str) -> list[str]:
    return [c["id"] for c in ok(client, "server/clients/search", {"mcpServerId": server_id})["clients"]]


@pytest.mark.parametrize("cascades", [True, False])
def test_deleting_a_server_with_clients_follows_server_delete_cascades(
    api: httpx.Client, monkeypatch: pytest.MonkeyPatch, cascades: bool
) -> None:
    monkeypatch.setattr(assumptions, "SERVER_DELETE_CASCADES", cascades)
    full, empty, last = new_server(api, "full"), new_server(api, "empty"), new_server(api, "last")
    new_client(api, full)
    new_client(api, last)
    single = post(api, "server/delete", {"id": full})
    bulk = post(api, "servers/delete", {"ids": [empty, last]})
    if cascades:
        assert (single.json(), bulk.json()) == ({}, {})
        assert server_ids(api) == []
        return
    assert (
        "still has clients"
        in assert_error(single, 400, assumptions.VALIDATION_FAILURE_CODE)["errorDescription"]
    )
    assert (
        f"{last!r} still has clients"
        in assert_error(bulk, 400, assumptions.VALIDATION_FAILURE_CODE)["errorDescription"]
    )
    assert server_ids(api) == [full, empty, last]  # the bulk delete deleted nothing, the empty one neither
    assert ok(api, "servers/delete", {"ids": [empty]}) == {}
    assert server_ids(api) == [full, last]


@pytest.mark.parametrize("ignored", [True, False])
def test_bulk_deletes_of_absent_ids_follow_bulk_delete_ignores_absent_ids(
    api: httpx.Client, monkeypatch: pytest.MonkeyPatch, ignored: bool
) -> None:
    monkeypatch.setattr(assumptions, "BULK_DELETE_IGNORES_ABSENT_IDS", ignored)
    one, two = new_server(api, "one"), new_server(api, "two")
    first, second = new_client(api, one, "first")["id"], new_client(api, one, "second")["id"]
    clients = post(api, "server/clients/delete", {"mcpServerId": one, "ids": [first, "MSCabsent"]})
    servers = post(api, "servers/delete", {"ids": [two, "MSabsent", "MSgone"]})
    if ignored:
        assert (clients.json(), servers.json()) == ({}, {})
        assert (client_ids(api, one), server_ids(api)) == ([second], [one])
        return
    body = assert_error(clients, 404, assumptions.INVALID_ARGUMENTS_CODE)
    assert body["errorDescription"] == f"no client of MCP server {one!r} with id 'MSCabsent'"
    body = assert_error(servers, 404, assumptions.INVALID_ARGUMENTS_CODE)
    assert body["errorDescription"] == "no MCP server with id 'MSabsent', 'MSgone'"
    assert (client_ids(api, one), server_ids(api)) == ([first, second], [one, two])  # nothing deleted
    assert ok(api, "server/clients/delete", {"mcpServerId": one, "ids": [first, first]}) == {}
    assert ok(api, "servers/delete", {"ids": [two]}) == {}
    assert (client_ids(api, one), server_ids(api)) == ([second], [one])


@pytest.mark.parametrize("accepted", [True, False])
def test_repeated_names_follow_duplicate_names_accepted(
    api: httpx.Client, em: RunningEmulator, monkeypatch: pytest.MonkeyPatch, accepted: bool
) -> None:
    monkeypatch.setattr(assumptions, "DUPLICATE_NAMES_ACCEPTED", accepted)
    calendar, mail = new_server(api, "calendar"), new_server(api, "mail")
    agent, bot = new_client(api, calendar, "agent")["id"], new_client(api, calendar, "bot")["id"]
    # Never a clash: a server or client keeping its own name, a client named like one of another server.
    ok(api, "server/update", {"server": {"id": calendar, "name": "calendar", "description": "kept"}})
    ok(api, "server/client/update", {"mcpServerId": calendar, "id": agent, "name": "agent", "tags": ["x"]})
    new_client(api, mail, "agent")
    repeats = [
        post(api, "server/create", {"name": "calendar"}),
        post(api, "server/update", {"server": {"id": mail, "name": "calendar"}}),
        post(api, "server/client/create", {"mcpServerId": calendar, "name": "agent"}),
        post(api, "server/client/update", {"mcpServerId": calendar, "id": bot, "name": "agent"}),
    ]
    names = [s["name"] for s in ok(api, "servers/all")["servers"]]
    search = ok(api, "server/clients/search", {"mcpServerId": calendar})
    if accepted:
        assert [r.status_code for r in repeats] == [200] * 4
        assert names == ["calendar", "calendar", "calendar"]
        assert [c["name"] for c in search["clients"]] == ["agent", "agent", "agent"]
        return
    descriptions = [
        assert_error(r, 400, assumptions.VALIDATION_FAILURE_CODE)["errorDescription"] for r in repeats
    ]
    assert descriptions == [
        "name: an MCP server is already named 'calendar'",
        "name: an MCP server is already named 'calendar'",
        f"name: a client of MCP server {calendar!r} is already named 'agent'",
        f"name: a client of MCP server {calendar!r} is already named 'agent'",
    ]
    assert names == ["calendar", "mail"]  # nothing was created or renamed
    assert [c["name"] for c in search["clients"]] == ["agent", "bot"]
    # The admin seed stages any live state, repeated names included.
    em.seed({"servers": [{"name": "calendar", "clients": [{"name": "x"}, {"name": "x"}]}]})
    assert [s["name"] for s in ok(api, "servers/all")["servers"]] == ["calendar", "mail", "calendar"]


# ---- clients --------------------------------------------------------------------------------------


def test_client_create_load_and_secret(api: httpx.Client, em: RunningEmulator) -> None:
    server_id = new_server(api)
    fields = {
        "name": "agent",
        "scopes": ["read"],
        "tags": ["t"],
        "approvedCallbackUrls": ["https://a.example.com/cb"],
        "logo": "L",
    }
    created = ok(api, "server/client/create", {"mcpServerId": server_id, **fields})
    assert set(created) == {"id", "clientId", "cleartext"}
    assert created["id"].startswith("MSC")
    assert len(created["id"]) == 30
    assert len(created["clientId"]) == 32
    assert created["clientId"] != created["id"]
    assert len(created["cleartext"]) == 43  # token_urlsafe(32)
    expected = {
        "id": created["id"],
        "clientId": created["clientId"],
        "mcpServerId": server_id,
        "registrationType": assumptions.REGISTRATION_PRE_REGISTERED,
        "status": assumptions.CLIENT_STATUS_ACTIVE,
        **fields,
    }
    assert ok(api, "server/client/load", {"mcpServerId": server_id, "id": created["id"]}) == {
        "client": expected
    }
    assert ok(api, "server/client/load", {"mcpServerId": server_id, "clientId": created["clientId"]}) == {
        "client": expected
    }
    assert ok(api, "server/client/secret", {"mcpServerId": server_id, "id": created["id"]}) == {
        "cleartext": created["cleartext"]
    }
    assert em.state()["servers"][0]["clients"][0]["secret"] == created["cleartext"]


def test_client_errors(api: httpx.Client) -> None:
    server_id = new_server(api)
    other = new_server(api, "other")
    client = new_client(api, server_id)
    assert_error(post(api, "server/client/create", {"name": "a"}), 400, assumptions.MISSING_ARGUMENTS_CODE)
    assert_error(
        post(api, "server/client/create", {"mcpServerId": "MSnope", "name": "a"}),
        404,
        assumptions.INVALID_ARGUMENTS_CODE,
    )
    assert_error(
        post(api, "server/client/create", {"mcpServerId": server_id}), 400, assumptions.MISSING_ARGUMENTS_CODE
    )
    assert_error(
        post(api, "server/client/create", {"mcpServerId": server_id, "name": "a", "scopes": "read"}),
        400,
        assumptions.VALIDATION_FAILURE_CODE,
    )
    assert_error(
        post(api, "server/client/load", {"mcpServerId": other, "id": client["id"]}),
        404,
        assumptions.INVALID_ARGUMENTS_CODE,
    )
    assert_error(
        post(api, "server/client/load", {"mcpServerId": server_id, "clientId": "nope"}),
        404,
        assumptions.INVALID_ARGUMENTS_CODE,
    )
    assert_error(
        post(api, "server/client/load", {"mcpServerId": server_id}), 400, assumptions.MISSING_ARGUMENTS_CODE
    )
    assert_error(
        post(api, "server/client/update", {"mcpServerId": server_id, "id": client["id"]}),
        400,
        assumptions.MISSING_ARGUMENTS_CODE,
    )


def test_client_update_is_full_replacement_and_keeps_read_only_fields(lenient_api: httpx.Client) -> None:
    api = lenient_api
    server_id = new_server(api)
    created = new_client(api, server_id, tags=["t"], logo="L", scopes=["read"])
    attempt = {
        "id": created["id"],
        "mcpServerId": server_id,
        "name": "renamed",
        "scopes": ["read", "write"],
        "clientId": "forged",
        "registrationType": assumptions.REGISTRATION_DYNAMIC,
        "status": "disabled",
        "cleartext": "not-a-field",
    }
    updated = ok(api, "server/client/update", attempt)
    expected = {
        "id": created["id"],
        "clientId": created["clientId"],
        "mcpServerId": server_id,
        "registrationType": assumptions.REGISTRATION_PRE_REGISTERED,
        "status": assumptions.CLIENT_STATUS_ACTIVE,
        "name": "renamed",
        "scopes": ["read", "write"],
    }
    assert updated == {"client": expected}
    assert ok(api, "server/client/load", {"mcpServerId": server_id, "id": created["id"]}) == {
        "client": expected
    }


def test_client_deletes(api: httpx.Client) -> None:
    server_id = new_server(api)
    one, two, three = (new_client(api, server_id, name)["id"] for name in ("one", "two", "three"))
    assert ok(api, "server/client/delete", {"mcpServerId": server_id, "id": one}) == {}
    assert_error(
        post(api, "server/client/delete", {"mcpServerId": server_id, "id": one}),
        404,
        assumptions.INVALID_ARGUMENTS_CODE,
    )
    assert ok(api, "server/clients/delete", {"mcpServerId": server_id, "ids": [two, "MSCabsent"]}) == {}
    remaining = ok(api, "server/clients/search", {"mcpServerId": server_id})
    assert [c["id"] for c in remaining["clients"]] == [three]
    assert remaining["total"] == 1


def test_rotate_invalidates_the_old_secret(api: httpx.Client) -> None:
    server_id = new_server(api)
    created = new_client(api, server_id)
    ref = {"mcpServerId": server_id, "id": created["id"]}
    rotated = ok(api, "server/client/secret/rotate", ref)
    assert set(rotated) == {"cleartext"}
    assert rotated["cleartext"] != created["cleartext"]
    assert ok(api, "server/client/secret", ref) == rotated
    assert_error(
        post(api, "server/client/secret/rotate", {**ref, "id": "MSCnope"}),
        404,
        assumptions.INVALID_ARGUMENTS_CODE,
    )


# ---- strict mode ---------------------------------------------------------------------------------

# A value for each field Descope assigns, as a caller might forge it.
FORGED = {
    "id": "MSforged",
    "clientId": "forged",
    "registrationType": assumptions.REGISTRATION_DYNAMIC,
    "status": "disabled",
    "cleartext": "not-a-field",
}
CLIENT_ASSIGNED = ("clientId", "registrationType", "status", "cleartext")
# Each write endpoint with the fields strict mode refuses on it, and the name of its body in messages.
STRICT_CASES = [
    ("server/create", "server", "id"),
    *(("server/client/create", "client", key) for key in CLIENT_ASSIGNED),
    *(("server/client/update", "client", key) for key in CLIENT_ASSIGNED),
]


@pytest.fixture(scope="module")
def strict() -> Iterator[RunningEmulator]:
    with running_emulator(config(strict=True)) as handle:
        yield handle


@pytest.fixture
def strict_api(strict: RunningEmulator) -> Iterator[httpx.Client]:
    strict.reset()
    with httpx.Client(base_url=strict.base_url, headers=strict.headers) as client:
        yield client


def acceptable_write(api: httpx.Client, endpoint: str) -> dict[str, Any]:
    """A body for ``endpoint`` that a strict emulator accepts, with what it refers to created first."""
    server_id = new_server(api, "host")
    if endpoint == "server/create":
        return {"name": "new"}
    if endpoint == "server/client/create":
        return {"mcpServerId": server_id, "name": "agent"}
    client = new_client(api, server_id, "existing")
    return {"mcpServerId": server_id, "id": client["id"], "name": "renamed"}


@pytest.mark.parametrize(("endpoint", "what", "key"), STRICT_CASES)
def test_strict_refuses_each_read_only_field_on_each_write_endpoint(
    strict_api: httpx.Client, strict: RunningEmulator, endpoint: str, what: str, key: str
) -> None:
    body = acceptable_write(strict_api, endpoint)
    before = strict.state()
    # Even empty or null: Descope's Go SDK never sends the key at all.
    for value in (FORGED[key], "", None):
        refused = post(strict_api, endpoint, {**body, key: value})
        description = assert_error(refused, 400, assumptions.VALIDATION_FAILURE_CODE)["errorDescription"]
        assert description == f"{what}.{key} is read-only: Descope assigns it"
    assert strict.state() == before  # nothing was written
    assert post(strict_api, endpoint, body).status_code == 200  # the same write without it is accepted


def test_strict_names_every_read_only_field_a_write_carries(strict_api: httpx.Client) -> None:
    body = acceptable_write(strict_api, "server/client/update")
    refused = post(strict_api, "server/client/update", {**body, "status": "x", "clientId": "y"})
    assert assert_error(refused, 400, assumptions.VALIDATION_FAILURE_CODE)["errorDescription"] == (
        "client.clientId, client.status are read-only: Descope assigns them"
    )


def test_strict_accepts_ids_where_they_are_keys_and_filters(strict_api: httpx.Client) -> None:
    server_id = new_server(strict_api, "calendar")
    created = new_client(strict_api, server_id, "agent")
    ok(strict_api, "server/update", {"server": {"id": server_id, "name": "renamed"}})
    ok(strict_api, "server/client/update", {"mcpServerId": server_id, "id": created["id"], "name": "bot"})
    ref = {"mcpServerId": server_id, "id": "", "clientId": created["clientId"]}
    assert ok(strict_api, "server/client/load", ref)["client"]["name"] == "bot"
    query = {"mcpServerId": server_id, "clientId": created["clientId"], "status": "verified"}
    assert ok(strict_api, "server/clients/search", query)["total"] == 1


def test_lenient_accepts_and_ignores_read_only_fields(lenient_api: httpx.Client) -> None:
    server = ok(lenient_api, "server/create", {"name": "calendar", "id": FORGED["id"]})["server"]
    assert server["id"] != FORGED["id"]
    assert server["id"].startswith("MS")
    forged = {key: FORGED[key] for key in CLIENT_ASSIGNED}
    created = new_client(lenient_api, server["id"], "agent", **forged)
    assert created["clientId"] != FORGED["clientId"]
    assert created["cleartext"] != FORGED["cleartext"]
    loaded = ok(lenient_api, "server/client/load", {"mcpServerId": server["id"], "id": created["id"]})
    assert loaded == {
        "client": {
            "id": created["id"],
            "clientId": created["clientId"],
            "mcpServerId": server["id"],
            "registrationType": assumptions.REGISTRATION_PRE_REGISTERED,
            "status": assumptions.CLIENT_STATUS_ACTIVE,
            "name": "agent",
        }
    }


def test_seed_is_never_strict(strict_api: httpx.Client, strict: RunningEmulator) -> None:
    client = {
        "id": "MSCdyn",
        "name": "dcr",
        "clientId": "dyn-1",
        "registrationType": assumptions.REGISTRATION_DYNAMIC,
        "status": "disabled",
        "secret": "s3cret",
    }
    strict.seed({"servers": [{"id": "MSseeded", "name": "seeded", "clients": [client]}]})
    loaded = ok(strict_api, "server/client/load", {"mcpServerId": "MSseeded", "clientId": "dyn-1"})
    expected = {k: v for k, v in client.items() if k != "secret"}
    assert loaded == {"client": {**expected, "mcpServerId": "MSseeded"}}
    state = strict.state()
    strict.reset()
    strict.seed(state)  # what the state holds (ids, clientIds, statuses, secrets) goes back in as it was
    assert strict.state() == state


# ---- wire shapes ----------------------------------------------------------------------------------


def test_unknown_fields_round_trip(api: httpx.Client) -> None:
    future: dict[str, Any] = {"futureField": {"x": 1, "list": ["a"]}, "futureFlag": True}
    server_id = new_server(api, **future, dynamicRegistration={"enabled": True, "futureSub": "s"})
    loaded = ok(api, "server/load", {"id": server_id})["server"]
    assert loaded == {
        "id": server_id,
        "name": "calendar",
        **future,
        "dynamicRegistration": {"enabled": True, "futureSub": "s"},
    }
    assert ok(api, "server/update", {"server": loaded})["server"] == loaded
    client = new_client(api, server_id, futureClientField=[1, 2])
    ref = {"mcpServerId": server_id, "id": client["id"]}
    assert ok(api, "server/client/load", ref)["client"]["futureClientField"] == [1, 2]


def test_zero_values_are_omitted_recursively(api: httpx.Client, em: RunningEmulator) -> None:
    zeros = {
        "description": "",
        "tags": [],
        "skipConsentScreen": False,
        "dynamicRegistration": {"enabled": False, "flowId": ""},
        "sessionSettings": {"enabled": True, "sessionTokenExpiration": 0, "refreshTokenExpiration": 30},
        "futureField": {"nested": {"zero": 0.0}},
        "logo": None,
    }
    created = ok(api, "server/create", {"name": "z", **zeros})["server"]
    assert created == {
        "id": created["id"],
        "name": "z",
        "sessionSettings": {"enabled": True, "refreshTokenExpiration": 30},
    }
    client = new_client(api, created["id"], scopes=[], forceAddAllAuthorizationInfo=False)
    loaded = ok(api, "server/client/load", {"mcpServerId": created["id"], "id": client["id"]})["client"]
    assert "scopes" not in loaded
    assert "forceAddAllAuthorizationInfo" not in loaded
    assert em.state()["servers"][0]["skipConsentScreen"] is False  # stored as sent, only omitted on the wire


CATEGORIZED: dict[str, Any] = {
    "permissionsScopes": [{"name": "calendar:read", "description": "Read", "optional": False}],
    "attributesScopes": [{"name": "email"}],
    "connectionsScopes": [{"name": "google", "values": ["google-calendar"]}],
}
FLAT: list[dict[str, Any]] = [
    {"name": "calendar:read", "description": "Read"},
    {"name": "email"},
    {"name": "google", "values": ["google-calendar"]},
]


def test_emulator_reads_both_scope_shapes_and_writes_categories_by_default(
    api: httpx.Client, em: RunningEmulator
) -> None:
    assert em.config.scopes_format == "categorized"
    from_categorized = ok(api, "server/create", {"name": "a", "approvedScopes": CATEGORIZED})["server"]
    from_list = ok(api, "server/create", {"name": "b", "approvedScopes": FLAT})["server"]
    # Categories are remembered; zero values (optional: false) are left out on the wire.
    assert from_categorized["approvedScopes"] == {
        "permissionsScopes": [{"name": "calendar:read", "description": "Read"}],
        "attributesScopes": [{"name": "email"}],
        "connectionsScopes": [{"name": "google", "values": ["google-calendar"]}],
    }
    # A flat list has no categories: plain scopes are permissions, those with values connections.
    assert from_list["approvedScopes"] == {
        "permissionsScopes": [{"name": "calendar:read", "description": "Read"}, {"name": "email"}],
        "connectionsScopes": [{"name": "google", "values": ["google-calendar"]}],
    }
    everything = ok(api, "servers/all")["servers"]
    assert [s["approvedScopes"] for s in everything] == [
        from_categorized["approvedScopes"],
        from_list["approvedScopes"],
    ]
    # An item of a list carries no category, whatever its keys look like; none is invented.
    marked = [{"name": "a", CATEGORY_KEY: "attributes"}, {"name": "b", CATEGORY_KEY: "nonsense"}]
    from_marked = ok(api, "server/create", {"name": "m", "approvedScopes": marked})["server"]
    assert from_marked["approvedScopes"] == {"permissionsScopes": [{"name": "a"}, {"name": "b"}]}
    bad = post(api, "server/create", {"name": "c", "approvedScopes": {"resourceScopes": []}})
    assert assert_error(bad, 400, assumptions.VALIDATION_FAILURE_CODE)["errorDescription"].startswith(
        "server.approvedScopes.resourceScopes: unknown category"
    )
    assert_error(
        post(api, "server/create", {"name": "c", "approvedScopes": "read"}),
        400,
        assumptions.VALIDATION_FAILURE_CODE,
    )
    bad_item = {"name": "c", "approvedScopes": [{"name": "x", "optional": "no"}]}
    assert_error(post(api, "server/create", bad_item), 400, assumptions.VALIDATION_FAILURE_CODE)


def test_list_emulator_reads_both_scope_shapes_and_writes_the_guide_list() -> None:
    with (
        running_emulator(config(scopes_format="list")) as em,
        httpx.Client(base_url=em.base_url, headers=em.headers) as api,
    ):
        from_categorized = ok(api, "server/create", {"name": "a", "approvedScopes": CATEGORIZED})["server"]
        from_list = ok(api, "server/create", {"name": "b", "approvedScopes": FLAT})["server"]
        loaded = ok(api, "server/load", {"id": from_categorized["id"]})["server"]
    assert from_categorized["approvedScopes"] == FLAT
    assert from_list["approvedScopes"] == FLAT
    assert loaded["approvedScopes"] == FLAT


# ---- search ---------------------------------------------------------------------------------------


def seed_search_server(em: RunningEmulator) -> str:
    clients = [
        {"id": "MSC1", "name": "Bravo", "tags": ["prod", "eu"], "clientId": "cid-1"},
        {"id": "MSC2", "name": "alpha", "tags": ["prod"], "status": "disabled"},
        {"id": "MSC3", "name": "Charlie-bravo", "registrationType": assumptions.REGISTRATION_DYNAMIC},
        {"id": "MSC4", "name": "alpha", "tags": ["dev"], "registrationType": assumptions.REGISTRATION_CIMD},
    ]
    server_id: str = em.seed({"servers": [{"name": "s", "clients": clients}]})["servers"][0]["id"]
    return server_id


def search_ids(api: httpx.Client, server_id: str, **query: Any) -> tuple[list[str], int]:
    result = ok(api, "server/clients/search", {"mcpServerId": server_id, **query})
    return [c["id"] for c in result["clients"]], result["total"]


def test_search_filters(api: httpx.Client, em: RunningEmulator) -> None:
    server_id = seed_search_server(em)
    assert search_ids(api, server_id) == (["MSC1", "MSC2", "MSC3", "MSC4"], 4)
    assert search_ids(api, server_id, name="alpha") == (["MSC2", "MSC4"], 2)
    assert search_ids(api, server_id, name="Alpha") == ([], 0)
    assert search_ids(api, server_id, text="BRAVO") == (["MSC1", "MSC3"], 2)
    assert search_ids(api, server_id, clientId="cid-1") == (["MSC1"], 1)
    assert search_ids(api, server_id, tag="prod") == (["MSC1", "MSC2"], 2)
    assert search_ids(api, server_id, tag="eu", text="b") == (["MSC1"], 1)
    assert search_ids(api, server_id, status="disabled") == (["MSC2"], 1)
    assert search_ids(api, server_id, status=assumptions.CLIENT_STATUS_ACTIVE) == (
        ["MSC1", "MSC3", "MSC4"],
        3,
    )
    assert search_ids(api, server_id, registrationMethod=assumptions.REGISTRATION_DYNAMIC) == (["MSC3"], 1)
    assert search_ids(api, server_id, registrationMethod=assumptions.REGISTRATION_PRE_REGISTERED) == (
        ["MSC1", "MSC2"],
        2,
    )
    assert search_ids(api, server_id, name="", text="") == (["MSC1", "MSC2", "MSC3", "MSC4"], 4)
    assert_error(
        post(api, "server/clients/search", {"mcpServerId": server_id, "tag": ["prod"]}),
        400,
        assumptions.VALIDATION_FAILURE_CODE,
    )
    assert_error(
        post(api, "server/clients/search", {"mcpServerId": "MSnope"}), 404, assumptions.INVALID_ARGUMENTS_CODE
    )


def test_search_sort(api: httpx.Client, em: RunningEmulator) -> None:
    server_id = seed_search_server(em)
    assert search_ids(api, server_id, sort=[{"field": "name"}])[0] == ["MSC1", "MSC3", "MSC2", "MSC4"]
    assert search_ids(api, server_id, sort=[{"field": "name", "desc": True}])[0] == [
        "MSC2",
        "MSC4",
        "MSC3",
        "MSC1",
    ]
    by_type_then_name = [{"field": "registrationType", "desc": True}, {"field": "name", "desc": True}]
    assert search_ids(api, server_id, sort=by_type_then_name)[0] == ["MSC2", "MSC1", "MSC3", "MSC4"]
    bad = {"mcpServerId": server_id, "sort": [{"desc": True}]}
    assert_error(post(api, "server/clients/search", bad), 400, assumptions.MISSING_ARGUMENTS_CODE)
    assert_error(
        post(api, "server/clients/search", {"mcpServerId": server_id, "sort": "name"}),
        400,
        assumptions.VALIDATION_FAILURE_CODE,
    )


def test_search_pages_through_250_clients(api: httpx.Client, em: RunningEmulator) -> None:
    seeded = em.seed({"servers": [{"name": "big", "clients": [{"name": f"c{i:03}"} for i in range(250)]}]})
    server_id = seeded["servers"][0]["id"]
    all_ids = [c["id"] for c in seeded["servers"][0]["clients"]]
    pages = [search_ids(api, server_id, page=page, limit=100) for page in range(4)]
    assert [len(ids) for ids, _ in pages] == [100, 100, 50, 0]
    assert {total for _, total in pages} == {250}
    assert [i for ids, _ in pages for i in ids] == all_ids
    assert search_ids(api, server_id, limit=0)[0] == all_ids[:100]  # 0 is the default
    assert search_ids(api, server_id, page=1, limit=1000)[0] == all_ids[100:200]  # capped at the maximum
    assert search_ids(api, server_id, page=2, limit=7)[0] == all_ids[14:21]
    assert search_ids(api, server_id, text="c24", limit=5) == (all_ids[240:245], 10)
    assert_error(
        post(api, "server/clients/search", {"mcpServerId": server_id, "page": -1}),
        400,
        assumptions.VALIDATION_FAILURE_CODE,
    )
    assert_error(
        post(api, "server/clients/search", {"mcpServerId": server_id, "limit": "5"}),
        400,
        assumptions.VALIDATION_FAILURE_CODE,
    )


# ---- auth and routing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        f"{PROJECT}:{KEY}",
        f"Basic {PROJECT}:{KEY}",
        f"Bearer {KEY}",
        f"Bearer {PROJECT}:",
        f"Bearer :{KEY}",
    ],
)
def test_missing_or_malformed_bearer_is_401(em: RunningEmulator, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = httpx.post(em.base_url + V1 + "servers/all", json={}, headers=headers)
    assert_error(response, 401, assumptions.UNAUTHORIZED_CODE)
    assert KEY not in response.text


def test_wrong_key_is_401_and_other_project_is_403(em: RunningEmulator) -> None:
    wrong = httpx.post(
        em.base_url + V1 + "servers/all", json={}, headers={"Authorization": f"Bearer {PROJECT}:not-the-key"}
    )
    assert_error(wrong, 401, assumptions.UNAUTHORIZED_CODE)
    assert "not-the-key" not in wrong.text
    other = httpx.post(
        em.base_url + V1 + "servers/all", json={}, headers={"Authorization": f"Bearer P2OTHER:{KEY}"}
    )
    assert_error(other, 403, assumptions.UNAUTHORIZED_CODE)
    assert KEY not in other.text
    lower = httpx.post(
        em.base_url + V1 + "servers/all", json={}, headers={"Authorization": f"bearer {PROJECT}:{KEY}"}
    )
    assert lower.status_code == 200  # no x-descope-project-id needed either
    admin = httpx.get(
        em.base_url + "/emulator/state", headers={"Authorization": f"Bearer {PROJECT}:not-the-key"}
    )
    assert_error(admin, 401, assumptions.UNAUTHORIZED_CODE)


def test_unknown_endpoints_and_methods(api: httpx.Client, em: RunningEmulator) -> None:
    assert_error(post(api, "server/explode"), 404, assumptions.MALFORMED_REQUEST_CODE)
    assert_error(api.get(V1 + "servers/all"), 405, assumptions.MALFORMED_REQUEST_CODE)
    assert_error(api.get("/nowhere"), 404, assumptions.MALFORMED_REQUEST_CODE)
    assert em.stats()["requests"] == {"server/explode": 1, "servers/all": 1}


# ---- rate limit, latency, faults ------------------------------------------------------------------


def test_rate_limiter_window_and_retry_after() -> None:
    now = [0.0]
    limiter = RateLimiter(2, 10.0, clock=lambda: now[0])
    arrivals = [
        (0.0, None),
        (1.0, None),
        (2.5, 8),
        (9.5, 1),
        (10.0, None),
        (10.5, 1),
        (11.0, None),
        (11.0, 9),
    ]
    for t, expected in arrivals:
        now[0] = t
        assert limiter.admit() == expected, t


def test_rate_limit_answers_429_before_the_mutation() -> None:
    with (
        running_emulator(config(rate_limit=(5, 1.0))) as em,
        httpx.Client(base_url=em.base_url, headers=em.headers) as api,
    ):
        statuses = [post(api, "server/create", {"name": f"s{i}"}).status_code for i in range(5)]
        limited = post(api, "server/create", {"name": "s5"})
        body = assert_error(limited, 429, assumptions.RATE_LIMITED_CODE)
        assert limited.headers["Retry-After"] == "1"
        assert body["errorDescription"] == "rate limit exceeded"
        unauthenticated = httpx.post(em.base_url + V1 + "servers/all", json={})
        stats, state, log = em.stats(), em.state(), em.requests()
    assert statuses == [200] * 5
    assert unauthenticated.status_code == 429  # the limit comes before everything, auth included
    assert [s["name"] for s in state["servers"]] == [f"s{i}" for i in range(5)]
    assert stats["rateLimited"] == 2
    assert stats["total"] == 7
    assert [entry["status"] for entry in log] == [200] * 5 + [429, 429]


def test_rate_limit_window_slides_and_rejections_do_not_count() -> None:
    def statuses(api: httpx.Client, count: int) -> list[int]:
        return [post(api, "servers/all").status_code for _ in range(count)]

    with (
        running_emulator(config(rate_limit=(2, 0.4))) as em,
        httpx.Client(base_url=em.base_url, headers=em.headers) as api,
    ):
        start = time.monotonic()
        admitted = statuses(api, 2)
        time.sleep(0.2)
        rejected = statuses(api, 2)  # these would still be in the window at start + 0.45 if they counted
        time.sleep(max(0.0, start + 0.45 - time.monotonic()))
        later = statuses(api, 3)
    assert (admitted, rejected, later) == ([200, 200], [429, 429], [200, 200, 429])


def test_latency_and_max_in_flight() -> None:
    async def burst(em: RunningEmulator, count: int) -> list[int]:
        async with httpx.AsyncClient(base_url=em.base_url, headers=em.headers) as client:
            responses = await asyncio.gather(
                *(client.post(V1 + "servers/all", json={}) for _ in range(count))
            )
        return [r.status_code for r in responses]

    with running_emulator(config(latency_ms=150)) as em:
        start = time.monotonic()
        assert asyncio.run(burst(em, 6)) == [200] * 6
        elapsed = time.monotonic() - start
        stats = em.stats()
        em.reset(counters_only=True)
        with httpx.Client(base_url=em.base_url, headers=em.headers) as api:
            ok(api, "servers/all")
            ok(api, "servers/all")
        sequential = em.stats()
    assert elapsed >= 0.15
    assert stats["maxInFlight"] == 6
    assert stats["requests"] == {"servers/all": 6}
    assert sequential["maxInFlight"] == 1


def test_fault_rate_one_fails_every_request_before_handling() -> None:
    with (
        running_emulator(config(fault_rate=1.0, seed=11)) as em,
        httpx.Client(base_url=em.base_url, headers=em.headers) as api,
    ):
        responses = [post(api, "server/create", {"name": f"s{i}"}) for i in range(6)]
        responses += [post(api, "servers/all"), post(api, "server/load", {"id": "MSx"})]
        wrong_key = httpx.post(
            em.base_url + V1 + "servers/all", json={}, headers={"Authorization": f"Bearer {PROJECT}:no"}
        )
        stats, state = em.stats(), em.state()
    assert {r.status_code for r in responses} <= FAULT_STATUSES
    assert len({r.status_code for r in responses}) > 1  # the statuses vary
    assert {r.json()["errorCode"] for r in responses} == {"E000500"}
    assert wrong_key.status_code == 401  # auth is checked before a fault is drawn
    assert state == {"servers": [], "resources": []}
    assert stats["faultsBefore"] == 8
    assert stats["faultsAfterCommit"] == 0


def after_commit_series(seed: int, count: int) -> tuple[list[str], dict[str, Any], dict[str, Any], list[int]]:
    """What a caller saw for ``count`` creates, with the emulator's state, stats and logged statuses."""
    seen: list[str] = []
    with running_emulator(config(fault_after_commit_rate=1.0, seed=seed)) as em:
        with httpx.Client(base_url=em.base_url, headers=em.headers) as api:
            for i in range(count):
                try:
                    seen.append(str(post(api, "server/create", {"name": f"s{i}"}).status_code))
                except httpx.RemoteProtocolError:
                    seen.append("dropped")
            after = ok(api, "servers/all")  # the emulator keeps serving
        assert after["total"] == count
        return seen, em.state(), em.stats(), [entry["status"] for entry in em.requests()]


def test_fault_after_commit_commits_then_fails_in_a_seeded_series() -> None:
    seen, state, stats, logged = after_commit_series(seed=3, count=12)
    assert set(seen) <= {"dropped", "500", "502", "503"}
    assert "dropped" in seen
    assert set(seen) - {"dropped"}
    assert [s["name"] for s in state["servers"]] == [f"s{i}" for i in range(12)]
    assert stats["faultsAfterCommit"] == 12
    assert logged == [0 if s == "dropped" else int(s) for s in seen] + [200]
    assert after_commit_series(seed=3, count=12)[0] == seen  # the same seed, the same series


def test_fault_after_commit_spares_reads_and_failed_mutations() -> None:
    with (
        running_emulator(config(fault_after_commit_rate=1.0, seed=1)) as em,
        httpx.Client(base_url=em.base_url, headers=em.headers) as api,
    ):
        assert post(api, "servers/all").status_code == 200
        assert_error(post(api, "server/delete", {"id": "MSnope"}), 404, assumptions.INVALID_ARGUMENTS_CODE)
        assert em.stats()["faultsAfterCommit"] == 0


def test_dropped_connection_is_an_httpx_transport_error_in_process() -> None:
    async def create() -> None:
        transport = httpx.ASGITransport(app=create_app(config(fault_after_commit_rate=1.0, seed=5)))
        headers = {"Authorization": f"Bearer {PROJECT}:{KEY}"}
        async with httpx.AsyncClient(
            transport=transport, base_url="http://emulator", headers=headers
        ) as client:
            for i in range(12):
                try:
                    await client.post(V1 + "server/create", json={"name": f"s{i}"})
                except httpx.TransportError:
                    return
        raise AssertionError("no dropped connection in 12 seeded faults")

    asyncio.run(create())


# ---- persistence ----------------------------------------------------------------------------------


def test_state_file_survives_a_restart(tmp_path: Path) -> None:
    state_file = tmp_path / "state" / "emulator.json"
    options = {"state_file": state_file}
    with (
        running_emulator(config(**options)) as em,
        httpx.Client(base_url=em.base_url, headers=em.headers) as api,
    ):
        server = ok(api, "server/create", {"name": "kept", "approvedScopes": CATEGORIZED, "futureField": 1})[
            "server"
        ]
        client = new_client(api, server["id"])
        on_disk = json.loads(state_file.read_text(encoding="utf-8"))
    assert [c["secret"] for c in on_disk["servers"][0]["clients"]] == [client["cleartext"]]
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    assert sorted(p.name for p in state_file.parent.iterdir()) == ["emulator.json"]  # no temp files left
    with (
        running_emulator(config(**options)) as em,
        httpx.Client(base_url=em.base_url, headers=em.headers) as api,
    ):
        assert ok(api, "server/load", {"id": server["id"]}) == {"server": server}
        ref = {"mcpServerId": server["id"], "id": client["id"]}
        assert ok(api, "server/client/secret", ref) == {"cleartext": client["cleartext"]}
        ok(api, "server/delete", {"id": server["id"]})
    with running_emulator(config(**options)) as em:
        assert em.state() == {"servers": [], "resources": []}


def test_a_state_file_of_before_scope_categories_keeps_them(tmp_path: Path) -> None:
    """Such a file marked each scope item with its wire key under "_category"."""
    marked = [
        {**FLAT[0], "_category": "permissionsScopes"},
        {**FLAT[1], "_category": "attributesScopes"},
        {**FLAT[2], "_category": "connectionsScopes"},
    ]
    server = {"id": "MSold", "name": "old", "approvedScopes": marked}
    state_file = tmp_path / "old.json"
    state_file.write_text(json.dumps({"version": 1, "servers": [{"fields": server, "clients": []}]}))
    categorized = {
        "permissionsScopes": [FLAT[0]],
        "attributesScopes": [FLAT[1]],
        "connectionsScopes": [FLAT[2]],
    }
    for shape, expected in [("categorized", categorized), ("list", FLAT)]:
        with (
            running_emulator(config(state_file=state_file, scopes_format=shape)) as em,
            httpx.Client(base_url=em.base_url, headers=em.headers) as api,
        ):
            assert ok(api, "server/load", {"id": "MSold"})["server"]["approvedScopes"] == expected, shape


def test_unreadable_state_file_fails_at_start(tmp_path: Path) -> None:
    state_file = tmp_path / "broken.json"
    state_file.write_text('{"servers": "nope"}', encoding="utf-8")
    with (
        pytest.raises(ValueError, match=r"state file .*broken\.json cannot be read"),
        running_emulator(config(state_file=state_file)),
    ):
        pass


# ---- admin surface --------------------------------------------------------------------------------


def test_stats_and_request_log(api: httpx.Client, em: RunningEmulator) -> None:
    before = time.monotonic()
    server_id = new_server(api)
    ok(api, "server/load", {"id": server_id})
    post(api, "server/load", {"id": "MSnope"})
    ok(api, "servers/all")
    em.state()  # admin calls are not counted
    assert em.stats() == {
        "requests": {"server/create": 1, "server/load": 2, "servers/all": 1},
        "total": 4,
        "rateLimited": 0,
        "faultsBefore": 0,
        "faultsAfterCommit": 0,
        "slowed": 0,
        "maxInFlight": 1,
    }
    log = em.requests()
    assert [(e["endpoint"], e["status"]) for e in log] == [
        ("server/create", 200),
        ("server/load", 200),
        ("server/load", 404),
        ("servers/all", 200),
    ]
    times = [e["t"] for e in log]
    assert times == sorted(times)
    assert before <= times[0] <= time.monotonic()


def test_reset_counters_only_keeps_objects(api: httpx.Client, em: RunningEmulator) -> None:
    new_server(api)
    em.reset(counters_only=True)
    assert em.stats()["total"] == 0
    assert em.requests() == []
    assert len(em.state()["servers"]) == 1
    em.reset()
    assert em.state() == {"servers": [], "resources": []}


def test_seed_stores_objects_as_given(api: httpx.Client, em: RunningEmulator) -> None:
    seeded = em.seed(
        {
            "servers": [
                {
                    "id": "MSunmanaged",
                    "name": "unmanaged",
                    "futureField": "f",
                    "clients": [
                        {
                            "name": "dcr",
                            "registrationType": assumptions.REGISTRATION_DYNAMIC,
                            "clientId": "dyn-1",
                            "secret": "s3cret",
                        },
                        {"id": "MSCpre", "name": "pre"},
                    ],
                },
                {"name": "empty"},
            ]
        }
    )
    dcr_id = seeded["servers"][0]["clients"][0]["id"]
    assert seeded == {
        "servers": [
            {
                "id": "MSunmanaged",
                "name": "unmanaged",
                "clients": [
                    {"id": dcr_id, "clientId": "dyn-1", "name": "dcr"},
                    {
                        "id": "MSCpre",
                        "clientId": seeded["servers"][0]["clients"][1]["clientId"],
                        "name": "pre",
                    },
                ],
            },
            {"id": seeded["servers"][1]["id"], "name": "empty", "clients": []},
        ],
        "resources": [],
    }
    assert ok(api, "server/load", {"id": "MSunmanaged"})["server"] == {
        "id": "MSunmanaged",
        "name": "unmanaged",
        "futureField": "f",
    }
    dcr = ok(api, "server/client/load", {"mcpServerId": "MSunmanaged", "clientId": "dyn-1"})["client"]
    assert dcr["registrationType"] == assumptions.REGISTRATION_DYNAMIC
    assert dcr["status"] == assumptions.CLIENT_STATUS_ACTIVE
    assert ok(api, "server/client/secret", {"mcpServerId": "MSunmanaged", "id": dcr_id}) == {
        "cleartext": "s3cret"
    }
    assert search_ids(api, "MSunmanaged", registrationMethod=assumptions.REGISTRATION_PRE_REGISTERED) == (
        ["MSCpre"],
        1,
    )
    with pytest.raises(ValueError, match="MSunmanaged"):
        em.seed({"servers": [{"id": "MSunmanaged", "name": "again"}]})
    with pytest.raises(ValueError, match=r"servers\[0\]\.name is required"):
        em.seed({"servers": [{"description": "no name"}]})
    assert len(em.state()["servers"]) == 2  # a refused seed adds nothing


def test_state_round_trips_through_seed(api: httpx.Client, em: RunningEmulator) -> None:
    server_id = new_server(api, approvedScopes=FLAT, tags=[])
    new_client(api, server_id, scopes=["calendar:read"])
    state = em.state()
    em.reset()
    em.seed(state)
    assert em.state() == state


def test_slow_answers_come_late_by_the_configured_time() -> None:
    config = EmulatorConfig(project_id="P2SLOW", management_key="k", slow_rate=1.0, slow_ms=300, seed=1)
    with running_emulator(config) as em:
        started = time.monotonic()
        response = em.http.post("/v1/mgmt/mcp/servers/all", json={})
        elapsed = time.monotonic() - started
        assert response.status_code == 200
        assert elapsed >= 0.3
        assert em.stats()["slowed"] == 1
