"""The emulator's Resources surface over real HTTP (shared/reference/descope-resources-api.md): the six
routes and their errors, clients of a Resource through the MCP client endpoints, the two settings of
cross-surface visibility, the admin surface and the state file, strict mode, and every constant of the
"Resources surface" section of reconciler/descope/assumptions.py flipped."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from reconciler.descope import assumptions
from reconciler.emulator import EmulatorConfig, RunningEmulator, running_emulator

PROJECT = "P2RESOURCETEST"
KEY = "K2-resource-test-key-51c0"
MGMT = "/v1/mgmt/"
MCP = "/v1/mgmt/mcp/"
FAULT_STATUSES = {500, 502, 503}
SCOPES: dict[str, Any] = {
    "permissionsScopes": [{"name": "calendar:read", "description": "Read"}],
    "connectionsScopes": [{"name": "google", "values": ["google-calendar"]}],
}
SETTINGS: dict[str, Any] = {
    "dynamicRegistration": {"enabled": True, "disableApprovedScopesAsDefault": True, "flowId": "f1"},
    "cimdSettings": {
        "enabled": True,
        "domainPolicies": {"policies": [{"domainPattern": "*.x.com", "enabled": True}]},
    },
    "loginPageURL": "https://login.example.com",
    "skipConsentScreen": True,
    "forceAddAllAuthorizationInfo": True,
    "tags": ["team:a"],
    "sessionSettings": {
        "enabled": True,
        "sessionTokenExpiration": 10,
        "sessionTokenExpirationUnit": "minutes",
    },
}
CALENDAR: dict[str, Any] = {
    "name": "calendar",
    "description": "Calendar tools",
    "uri": "https://calendar.example.com/mcp",
    "type": "mcp",
    "scopes": SCOPES,
    "userAccess": "anything",
    "clientAccess": "else",
    "dynamicRegistrationSettings": SETTINGS,
}
SERVER_FIELDS = ("id", "version", "createdTime", "modifiedTime")


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
def projecting() -> Iterator[RunningEmulator]:
    with running_emulator(config(resource_surface="projected")) as handle:
        yield handle


@pytest.fixture
def projected_api(projecting: RunningEmulator) -> Iterator[httpx.Client]:
    projecting.reset()
    with httpx.Client(base_url=projecting.base_url, headers=projecting.headers) as client:
        yield client


@pytest.fixture(scope="module")
def lenient() -> Iterator[RunningEmulator]:
    with running_emulator(config(strict=False)) as handle:
        yield handle


@pytest.fixture
def lenient_api(lenient: RunningEmulator) -> Iterator[httpx.Client]:
    lenient.reset()
    with httpx.Client(base_url=lenient.base_url, headers=lenient.headers) as client:
        yield client


# ---- helpers --------------------------------------------------------------------------------------


def post(client: httpx.Client, endpoint: str, body: Any = None) -> httpx.Response:
    return client.post(MGMT + endpoint, json={} if body is None else body)


def get(client: httpx.Client, endpoint: str, **params: str) -> httpx.Response:
    return client.get(MGMT + endpoint, params=params)


def mcp(client: httpx.Client, endpoint: str, body: Any = None) -> httpx.Response:
    return client.post(MCP + endpoint, json={} if body is None else body)


def answer(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def assert_error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"errorCode", "errorDescription", "errorMessage"}
    assert body["errorCode"] == code
    description: str = body["errorDescription"]
    return description


def create(client: httpx.Client, **fields: Any) -> dict[str, Any]:
    body = {"name": "calendar", "type": "mcp", "uri": "https://calendar.example.com/mcp", **fields}
    resource: dict[str, Any] = answer(post(client, "resource/create", body))["resource"]
    return resource


def load(client: httpx.Client, resource_id: str) -> dict[str, Any]:
    resource: dict[str, Any] = answer(get(client, "resource/load", id=resource_id))["resource"]
    return resource


def update(client: httpx.Client, resource: dict[str, Any]) -> httpx.Response:
    return post(client, "resource/update", {"resource": resource})


def resource_ids(client: httpx.Client) -> list[str]:
    return [r["id"] for r in answer(get(client, "resources/load"))["resources"]]


def server_ids(client: httpx.Client) -> list[str]:
    return [s["id"] for s in answer(mcp(client, "servers/all"))["servers"]]


def new_server(client: httpx.Client, name: str = "legacy") -> str:
    server_id: str = answer(mcp(client, "server/create", {"name": name}))["server"]["id"]
    return server_id


def new_client(client: httpx.Client, owner: str, name: str = "agent", **fields: Any) -> dict[str, Any]:
    return answer(mcp(client, "server/client/create", {"mcpServerId": owner, "name": name, **fields}))


def rfc3339(value: Any) -> datetime:
    assert isinstance(value, str)
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value.removesuffix("Z") + "+00:00")


def without_server_fields(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in SERVER_FIELDS}


# ---- configuration --------------------------------------------------------------------------------


def test_resource_surface_is_isolated_by_default_and_checked() -> None:
    assert config().resource_surface == "isolated"
    assert config(resource_surface="projected").resource_surface == "projected"
    with pytest.raises(ValueError, match="resource_surface must be 'isolated' or 'projected'"):
        config(resource_surface="merged")


# ---- create, load, load by URI, load all ----------------------------------------------------------


def test_create_answers_the_whole_resource_and_every_load_finds_it(api: httpx.Client) -> None:
    before = time.time()
    created = answer(post(api, "resource/create", CALENDAR))
    assert set(created) == {"resource"}
    resource = created["resource"]
    assert re.fullmatch(r"RS[A-Za-z0-9]{27}", resource["id"])
    assert resource["version"] == "1"
    assert resource["createdTime"] == resource["modifiedTime"]
    assert before - 1 <= rfc3339(resource["createdTime"]).timestamp() <= time.time() + 1
    assert without_server_fields(resource) == CALENDAR  # every field as given, scopes categorized
    assert answer(get(api, "resource/load", id=resource["id"])) == created
    assert answer(get(api, "resource/load/uri", uri=CALENDAR["uri"])) == created
    api_resource = create(api, name="billing", type="api", uri="https://billing.example.com")
    assert answer(get(api, "resources/load")) == {"resources": [resource, api_resource], "total": 2}


def test_an_api_resource_needs_no_uri_and_load_all_may_be_empty(api: httpx.Client) -> None:
    assert answer(get(api, "resources/load")) == {"resources": [], "total": 0}
    resource = answer(post(api, "resource/create", {"name": "internal", "type": "api"}))["resource"]
    assert without_server_fields(resource) == {"name": "internal", "type": "api"}


def test_zero_values_are_omitted_and_scopes_stay_categorized(api: httpx.Client, em: RunningEmulator) -> None:
    zeros = {
        "description": "",
        "userAccess": "",
        "scopes": {"permissionsScopes": [], "attributesScopes": [{"name": "email", "optional": False}]},
        "dynamicRegistrationSettings": {"useTemplate": False, "tags": [], "skipConsentScreen": False},
        "futureField": {"nested": 0},
    }
    resource = create(api, **zeros)
    assert without_server_fields(resource) == {
        "name": "calendar",
        "type": "mcp",
        "uri": "https://calendar.example.com/mcp",
        "scopes": {"attributesScopes": [{"name": "email"}]},
    }
    (stored,) = em.state()["resources"]
    assert stored["description"] == ""  # kept as sent, left out only on the wire


def test_zero_values_follow_responses_omit_zero_values(
    api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(assumptions, "RESPONSES_OMIT_ZERO_VALUES", False)
    resource = create(api, description="", dynamicRegistrationSettings={"useTemplate": False})
    assert resource["description"] == ""
    assert resource["dynamicRegistrationSettings"] == {"useTemplate": False}
    assert answer(get(api, "resources/load"))["resources"] == [resource]


def test_unknown_fields_round_trip(api: httpx.Client) -> None:
    future = {"futureField": {"x": [1]}, "dynamicRegistrationSettings": {"futureSetting": "s"}}
    resource = create(api, **future)
    assert resource["futureField"] == {"x": [1]}
    assert resource["dynamicRegistrationSettings"] == {"futureSetting": "s"}
    assert answer(update(api, resource))["resource"]["futureField"] == {"x": [1]}


def test_load_arguments_are_url_encoded_query_values(api: httpx.Client) -> None:
    uri = "https://tedix-unified.mcp.tedix.dev/mcp?a=b&c=d e"
    resource = create(api, uri=uri)
    # As a third-party client builds it: encodeURIComponent, every reserved character escaped.
    encoded = api.get(MGMT + "resource/load/uri?uri=" + quote(uri, safe=""))
    assert answer(encoded)["resource"]["id"] == resource["id"]
    spaced = api.get(MGMT + "resource/load?id=" + quote("RS 123", safe=""))
    assert assert_error(spaced, 404, assumptions.INVALID_ARGUMENTS_CODE) == "no Resource with id 'RS 123'"
    assert load(api, resource["id"])["uri"] == uri
    assert answer(get(api, "resource/load/uri", uri=uri))["resource"]["id"] == resource["id"]
    # Exact match: no normalisation of a trailing slash, case or scheme.
    for other in (uri + "/", uri.upper(), uri.replace("https", "http")):
        assert_error(get(api, "resource/load/uri", uri=other), 404, assumptions.INVALID_ARGUMENTS_CODE)


def test_load_errors(api: httpx.Client) -> None:
    assert_error(get(api, "resource/load"), 400, assumptions.MISSING_ARGUMENTS_CODE)
    assert_error(get(api, "resource/load", id=""), 400, assumptions.MISSING_ARGUMENTS_CODE)
    description = assert_error(
        get(api, "resource/load", id="RS 123"), 404, assumptions.INVALID_ARGUMENTS_CODE
    )
    assert description == "no Resource with id 'RS 123'"
    assert_error(get(api, "resource/load/uri"), 400, assumptions.MISSING_ARGUMENTS_CODE)
    description = assert_error(
        get(api, "resource/load/uri", uri="https://nowhere"), 404, assumptions.INVALID_ARGUMENTS_CODE
    )
    assert description == "no Resource with uri 'https://nowhere'"


def test_create_errors(api: httpx.Client, em: RunningEmulator) -> None:
    def refused(body: Any, status: int, code: str) -> str:
        return assert_error(post(api, "resource/create", body), status, code)

    mcp_body = {"name": "a", "type": "mcp", "uri": "https://a.example.com/mcp"}
    missing, invalid = assumptions.MISSING_ARGUMENTS_CODE, assumptions.VALIDATION_FAILURE_CODE
    assert refused({"type": "api"}, 400, missing) == "resource.name is required"
    assert refused({"name": "a"}, 400, missing) == "resource.type is required"
    assert refused({"name": "a", "type": "mcp"}, 400, missing) == (
        "resource.uri is required for a Resource of type 'mcp'"
    )
    assert (
        refused({**mcp_body, "uri": ""}, 400, missing)
        == "resource.uri is required for a Resource of type 'mcp'"
    )
    assert refused({**mcp_body, "type": "tool"}, 400, invalid) == (
        "resource.type: 'tool' is not a Resource type (expected one of 'mcp', 'api')"
    )
    assert (
        refused({**mcp_body, "name": 7}, 400, invalid) == "resource.name: expected a string, got an integer"
    )
    assert refused({**mcp_body, "scopes": [{"name": "read"}]}, 400, invalid) == (
        "resource.scopes: expected an object, got an array"
    )
    assert refused({**mcp_body, "scopes": {"rolesScopes": []}}, 400, invalid).startswith(
        "resource.scopes.rolesScopes: unknown category"
    )
    settings = {"dynamicRegistration": {"enabled": "yes"}}
    assert refused({**mcp_body, "dynamicRegistrationSettings": settings}, 400, invalid) == (
        "resource.dynamicRegistrationSettings.dynamicRegistration.enabled: expected a boolean, got a string"
    )
    # Documented: useTemplate needs a non-empty dynamicRegistrationTemplateId.
    for template in ({}, {"dynamicRegistrationTemplateId": ""}):
        body = {**mcp_body, "dynamicRegistrationSettings": {"useTemplate": True, **template}}
        assert refused(body, 400, missing) == (
            "resource.dynamicRegistrationSettings.dynamicRegistrationTemplateId is required when useTemplate is true"
        )
    malformed = api.post(MGMT + "resource/create", content=b"{not json")
    assert_error(malformed, 400, assumptions.MALFORMED_REQUEST_CODE)
    assert em.state()["resources"] == []
    with_template = {"useTemplate": True, "dynamicRegistrationTemplateId": "T1"}
    assert (
        create(api, dynamicRegistrationSettings=with_template)["dynamicRegistrationSettings"] == with_template
    )


def test_a_uri_is_unique_in_the_project(api: httpx.Client) -> None:
    first = create(api)
    description = assert_error(
        post(api, "resource/create", {"name": "other", "type": "api", "uri": first["uri"]}),
        400,
        assumptions.VALIDATION_FAILURE_CODE,
    )
    assert description == f"resource.uri: Resource {first['id']!r} already has the uri {first['uri']!r}"
    second = create(api, name="mail", uri="https://mail.example.com/mcp")
    taken = assert_error(
        update(api, {**second, "uri": first["uri"]}), 400, assumptions.VALIDATION_FAILURE_CODE
    )
    assert "already has the uri" in taken
    assert (
        answer(update(api, {**first, "description": "kept its own uri"}))["resource"]["uri"] == first["uri"]
    )
    assert load(api, second["id"]) == second  # the refused update changed nothing


# ---- update ---------------------------------------------------------------------------------------


def test_update_replaces_every_settable_field_and_keeps_the_servers(api: httpx.Client) -> None:
    created = answer(post(api, "resource/create", CALENDAR))["resource"]
    time.sleep(0.002)
    replacement = {
        "id": created["id"],
        "name": "renamed",
        "type": "mcp",
        "uri": "https://renamed.example.com/mcp",
        "scopes": {"attributesScopes": [{"name": "email"}]},
    }
    updated = answer(update(api, replacement))
    assert set(updated) == {"resource"}
    resource = updated["resource"]
    assert resource == {
        **replacement,
        "version": "2",
        "createdTime": created["createdTime"],
        "modifiedTime": resource["modifiedTime"],
    }  # description, userAccess, clientAccess and dynamicRegistrationSettings were reset
    assert rfc3339(resource["modifiedTime"]) > rfc3339(created["modifiedTime"])
    assert load(api, created["id"]) == resource
    assert (
        answer(get(api, "resource/load/uri", uri="https://renamed.example.com/mcp"))["resource"] == resource
    )
    assert_error(get(api, "resource/load/uri", uri=CALENDAR["uri"]), 404, assumptions.INVALID_ARGUMENTS_CODE)
    # What a client loaded (version and times included) goes back as it was; version counts on.
    assert answer(update(api, resource))["resource"]["version"] == "3"
    assert answer(update(api, {**resource, "version": "1", "createdTime": "x"}))["resource"]["version"] == "4"
    assert load(api, created["id"])["createdTime"] == created["createdTime"]


def test_update_errors(api: httpx.Client, em: RunningEmulator) -> None:
    resource = create(api)
    server_id = new_server(api)
    before = em.state()
    invalid, missing = assumptions.VALIDATION_FAILURE_CODE, assumptions.MISSING_ARGUMENTS_CODE
    assert assert_error(post(api, "resource/update", {}), 400, missing) == "resource is required"
    assert_error(post(api, "resource/update", {"resource": []}), 400, invalid)
    assert assert_error(update(api, {"name": "x", "type": "mcp"}), 400, missing) == "resource.id is required"
    assert_error(update(api, {**resource, "id": "RSnope"}), 404, assumptions.INVALID_ARGUMENTS_CODE)
    assert_error(
        update(api, {"id": server_id, "name": "x", "type": "api"}), 404, assumptions.INVALID_ARGUMENTS_CODE
    )
    assert assert_error(update(api, {**resource, "type": "api"}), 400, invalid) == (
        "resource.type: a Resource's type cannot change (it is 'mcp', not 'api')"
    )
    assert assert_error(update(api, {"id": resource["id"], "name": "x", "type": "mcp"}), 400, missing) == (
        "resource.uri is required for a Resource of type 'mcp'"
    )
    without_type = {k: v for k, v in resource.items() if k != "type"}
    assert assert_error(update(api, without_type), 400, missing) == "resource.type is required"
    settings = {"useTemplate": True}
    assert_error(update(api, {**resource, "dynamicRegistrationSettings": settings}), 400, missing)
    assert assert_error(update(api, {**resource, "version": 1}), 400, invalid) == (
        "resource.version: expected a string, got an integer"
    )
    assert em.state() == before  # nothing changed, not even the version


# ---- delete ---------------------------------------------------------------------------------------


def test_delete_deletes_the_resource_and_its_clients(api: httpx.Client, em: RunningEmulator) -> None:
    resource, other = create(api), create(api, name="mail", uri="https://mail.example.com/mcp")
    client = new_client(api, resource["id"])
    assert answer(post(api, "resource/delete", {"id": resource["id"]})) == {}
    assert resource_ids(api) == [other["id"]]
    assert_error(get(api, "resource/load", id=resource["id"]), 404, assumptions.INVALID_ARGUMENTS_CODE)
    ref = {"mcpServerId": resource["id"], "id": client["id"]}
    assert_error(mcp(api, "server/client/load", ref), 404, assumptions.INVALID_ARGUMENTS_CODE)
    assert_error(mcp(api, "server/clients/search", {"mcpServerId": resource["id"]}), 404, "E011004")
    assert em.state()["resources"][0]["id"] == other["id"]
    # Its uri is free again.
    assert create(api)["uri"] == resource["uri"]


def test_delete_errors(api: httpx.Client) -> None:
    server_id = new_server(api)
    assert_error(post(api, "resource/delete", {}), 400, assumptions.MISSING_ARGUMENTS_CODE)
    description = assert_error(post(api, "resource/delete", {"id": "RSnope"}), 404, "E011004")
    assert description == "no Resource with id 'RSnope'"
    assert_error(post(api, "resource/delete", {"id": server_id}), 404, assumptions.INVALID_ARGUMENTS_CODE)
    assert server_ids(api) == [server_id]  # an MCP server is no Resource


# ---- routing, auth, rate limit, faults, latency, the request log ----------------------------------


def test_methods_and_unknown_paths(api: httpx.Client, em: RunningEmulator) -> None:
    resource = create(api)
    code = assumptions.MALFORMED_REQUEST_CODE
    for endpoint in ("resource/load", "resource/load/uri", "resources/load"):
        description = assert_error(post(api, endpoint, {"id": resource["id"]}), 405, code)
        assert description == f"{endpoint} takes GET only"
        assert_error(api.put(MGMT + endpoint), 405, code)
        assert_error(api.delete(MGMT + endpoint), 405, code)
    for endpoint in ("resource/create", "resource/update", "resource/delete"):
        assert assert_error(get(api, endpoint), 405, code) == f"{endpoint} takes POST only"
        assert_error(api.patch(MGMT + endpoint, json={}), 405, code)
    assert_error(post(api, "resource/explode"), 404, code)
    assert_error(get(api, "resources/load/all"), 404, code)
    # Resource endpoints live under /v1/mgmt/ only, MCP server endpoints under /v1/mgmt/mcp/ only.
    assert_error(mcp(api, "resource/create", {"name": "x", "type": "api"}), 404, code)
    assert_error(post(api, "server/create", {"name": "x"}), 404, code)
    assert resource_ids(api) == [resource["id"]]
    assert server_ids(api) == []
    # A GET's body is not read: its arguments are the query.
    loaded = api.request("GET", MGMT + "resource/load", params={"id": resource["id"]}, content=b"{not json")
    assert answer(loaded)["resource"] == resource


def test_auth_on_resource_routes(em: RunningEmulator) -> None:
    url = em.base_url + MGMT + "resources/load"
    assert_error(httpx.get(url), 401, assumptions.UNAUTHORIZED_CODE)
    wrong_key = httpx.get(url, headers={"Authorization": f"Bearer {PROJECT}:nope"})
    assert_error(wrong_key, 401, assumptions.UNAUTHORIZED_CODE)
    other = httpx.post(
        em.base_url + MGMT + "resource/create",
        json={"name": "x", "type": "api"},
        headers={"Authorization": f"Bearer P2OTHER:{KEY}"},
    )
    assert_error(other, 403, assumptions.UNAUTHORIZED_CODE)
    assert KEY not in other.text
    assert em.state()["resources"] == []


def test_rate_limit_answers_429_before_a_resource_is_made() -> None:
    with (
        running_emulator(config(rate_limit=(2, 5.0))) as em,
        httpx.Client(base_url=em.base_url, headers=em.headers) as api,
    ):
        statuses = [
            post(api, "resource/create", {"name": f"r{i}", "type": "api"}).status_code for i in range(3)
        ]
        limited = get(api, "resources/load")
        assert limited.headers["Retry-After"]
        assert_error(limited, 429, assumptions.RATE_LIMITED_CODE)
        assert [r["name"] for r in em.state()["resources"]] == ["r0", "r1"]
        assert em.stats()["rateLimited"] == 2
    assert statuses == [200, 200, 429]


def test_faults_before_handling_change_nothing() -> None:
    with (
        running_emulator(config(fault_rate=1.0, seed=7)) as em,
        httpx.Client(base_url=em.base_url, headers=em.headers) as api,
    ):
        responses = [post(api, "resource/create", {"name": f"r{i}", "type": "api"}) for i in range(6)]
        responses += [get(api, "resources/load"), get(api, "resource/load", id="RSx")]
        state, stats = em.state(), em.stats()
    assert {r.status_code for r in responses} <= FAULT_STATUSES
    assert {r.json()["errorCode"] for r in responses} == {"E000500"}
    assert state == {"servers": [], "resources": []}
    assert stats["faultsBefore"] == 8


def test_faults_after_commit_commit_resource_writes_and_spare_the_loads() -> None:
    seen: list[str] = []
    with running_emulator(config(fault_after_commit_rate=1.0, seed=3)) as em:
        with httpx.Client(base_url=em.base_url, headers=em.headers) as api:
            for i in range(8):
                try:
                    seen.append(
                        str(post(api, "resource/create", {"name": f"r{i}", "type": "api"}).status_code)
                    )
                except httpx.RemoteProtocolError:
                    seen.append("dropped")
            everything = answer(get(api, "resources/load"))
            failed = post(api, "resource/delete", {"id": "RSnope"})
        stats = em.stats()
    assert set(seen) <= {"dropped", "500", "502", "503"}
    assert "dropped" in seen
    assert [r["name"] for r in everything["resources"]] == [f"r{i}" for i in range(8)]
    assert failed.status_code == 404  # a refused write commits nothing, so nothing fails after it
    assert stats["faultsAfterCommit"] == 8


def test_latency_applies_to_resource_routes() -> None:
    with (
        running_emulator(config(latency_ms=120)) as em,
        httpx.Client(base_url=em.base_url, headers=em.headers) as api,
    ):
        started = time.monotonic()
        answer(get(api, "resources/load"))
        assert time.monotonic() - started >= 0.12


def test_the_request_log_shows_method_and_path(api: httpx.Client, em: RunningEmulator) -> None:
    resource = create(api)
    load(api, resource["id"])
    get(api, "resource/load/uri", uri=resource["uri"])
    new_client(api, resource["id"])
    post(api, "resource/load", {"id": resource["id"]})
    log = em.requests()
    assert [(e["method"], e["path"], e["endpoint"], e["status"]) for e in log] == [
        ("POST", "/v1/mgmt/resource/create", "resource/create", 200),
        ("GET", "/v1/mgmt/resource/load", "resource/load", 200),
        ("GET", "/v1/mgmt/resource/load/uri", "resource/load/uri", 200),
        ("POST", "/v1/mgmt/mcp/server/client/create", "server/client/create", 200),
        ("POST", "/v1/mgmt/resource/load", "resource/load", 405),
    ]
    assert not any(e["path"] == "/v1/mgmt/mcp/server/create" for e in log)  # no legacy server was made
    assert em.stats()["requests"] == {
        "resource/create": 1,
        "resource/load": 2,
        "resource/load/uri": 1,
        "server/client/create": 1,
    }


# ---- clients of a Resource ------------------------------------------------------------------------


def test_clients_of_a_resource_end_to_end(api: httpx.Client) -> None:
    resource = create(api, scopes=SCOPES)
    owner = resource["id"]
    created = new_client(api, owner, "agent", scopes=["calendar:read"], tags=["t"])
    assert set(created) == {"id", "clientId", "cleartext"}
    second = new_client(api, owner, "bot")
    ref = {"mcpServerId": owner, "id": created["id"]}
    loaded = answer(mcp(api, "server/client/load", ref))["client"]
    assert loaded == {
        "id": created["id"],
        "clientId": created["clientId"],
        "mcpServerId": owner,  # the Resource's RS id
        "registrationType": assumptions.REGISTRATION_PRE_REGISTERED,
        "status": assumptions.CLIENT_STATUS_ACTIVE,
        "name": "agent",
        "scopes": ["calendar:read"],
        "tags": ["t"],
    }
    by_client_id = {"mcpServerId": owner, "clientId": created["clientId"]}
    assert answer(mcp(api, "server/client/load", by_client_id))["client"] == loaded
    assert answer(mcp(api, "server/client/secret", ref)) == {"cleartext": created["cleartext"]}
    rotated = answer(mcp(api, "server/client/secret/rotate", ref))["cleartext"]
    assert rotated != created["cleartext"]
    assert answer(mcp(api, "server/client/secret", ref)) == {"cleartext": rotated}
    renamed = answer(mcp(api, "server/client/update", {**ref, "name": "renamed", "scopes": ["google"]}))
    assert renamed["client"]["name"] == "renamed"
    search = answer(mcp(api, "server/clients/search", {"mcpServerId": owner, "text": "REN"}))
    assert [c["id"] for c in search["clients"]] == [created["id"]]
    assert answer(mcp(api, "server/clients/search", {"mcpServerId": owner}))["total"] == 2
    assert answer(mcp(api, "server/client/delete", {"mcpServerId": owner, "id": second["id"]})) == {}
    third = new_client(api, owner, "third")
    bulk = {"mcpServerId": owner, "ids": [created["id"], third["id"], "MSCabsent"]}
    assert answer(mcp(api, "server/clients/delete", bulk)) == {}
    assert answer(mcp(api, "server/clients/search", {"mcpServerId": owner})) == {"clients": [], "total": 0}
    assert load(api, owner) == resource  # the Resource itself is untouched by its clients


def test_clients_of_an_api_resource_or_an_unknown_id_are_refused(api: httpx.Client) -> None:
    billing = create(api, name="billing", type="api", uri="https://billing.example.com")
    calls: list[tuple[str, dict[str, Any]]] = [
        ("server/client/create", {"name": "agent"}),
        ("server/clients/search", {}),
        ("server/client/load", {"id": "MSCx"}),
        ("server/clients/delete", {"ids": []}),
    ]
    for owner in (billing["id"], "RSunknown"):
        for endpoint, body in calls:
            response = mcp(api, endpoint, {"mcpServerId": owner, **body})
            description = assert_error(response, 404, assumptions.INVALID_ARGUMENTS_CODE)
            assert description == f"no MCP server with id {owner!r}", endpoint


def test_a_legacy_server_and_a_resource_keep_their_clients_apart(api: httpx.Client) -> None:
    server_id, resource = new_server(api), create(api)
    on_server, on_resource = new_client(api, server_id), new_client(api, resource["id"])
    wrong = {"mcpServerId": resource["id"], "id": on_server["id"]}
    assert_error(mcp(api, "server/client/load", wrong), 404, assumptions.INVALID_ARGUMENTS_CODE)
    listed = answer(mcp(api, "server/clients/search", {"mcpServerId": server_id}))["clients"]
    assert [c["id"] for c in listed] == [on_server["id"]]
    answer(post(api, "resource/delete", {"id": resource["id"]}))
    assert answer(mcp(api, "server/client/secret", {"mcpServerId": server_id, "id": on_server["id"]}))
    assert on_resource["id"] != on_server["id"]


# ---- do the surfaces see each other? --------------------------------------------------------------


def test_isolated_neither_surface_sees_the_others_objects(api: httpx.Client) -> None:
    server_id, resource = new_server(api), create(api)
    assert resource_ids(api) == [resource["id"]]
    assert server_ids(api) == [server_id]
    code = assumptions.INVALID_ARGUMENTS_CODE
    assert assert_error(mcp(api, "server/load", {"id": resource["id"]}), 404, code) == (
        f"no MCP server with id {resource['id']!r}"
    )
    assert_error(mcp(api, "server/update", {"server": {"id": resource["id"], "name": "x"}}), 404, code)
    assert_error(mcp(api, "server/delete", {"id": resource["id"]}), 404, code)
    assert answer(mcp(api, "servers/delete", {"ids": [resource["id"]]})) == {}  # absent ids are ignored
    assert_error(get(api, "resource/load", id=server_id), 404, code)
    assert load(api, resource["id"]) == resource


def test_projected_mcp_resources_also_answer_as_mcp_servers(
    projected_api: httpx.Client, projecting: RunningEmulator
) -> None:
    api = projected_api
    server_id = new_server(api)
    resource = answer(post(api, "resource/create", CALENDAR))["resource"]
    bare = create(api, name="bare", uri="https://bare.example.com/mcp")
    create(api, name="billing", type="api", uri="https://billing.example.com")
    projected = {
        "id": resource["id"],
        "name": "calendar",
        "description": "Calendar tools",
        "audienceWhitelist": [CALENDAR["uri"]],
        "approvedScopes": SCOPES,
        **{k: v for k, v in SETTINGS.items()},
    }
    assert answer(mcp(api, "server/load", {"id": resource["id"]})) == {"server": projected}
    everything = answer(mcp(api, "servers/all"))
    assert everything["total"] == 3  # the legacy server and the two mcp Resources, not the api one
    assert [s["id"] for s in everything["servers"]] == [server_id, resource["id"], bare["id"]]
    assert everything["servers"][1] == projected
    assert everything["servers"][2] == {"id": bare["id"], "name": "bare", "audienceWhitelist": [bare["uri"]]}
    # The other way round nothing changes: Resources are not MCP servers there.
    assert len(resource_ids(api)) == 3
    code = assumptions.INVALID_ARGUMENTS_CODE
    assert_error(get(api, "resource/load", id=server_id), 404, code)
    assert_error(mcp(api, "server/update", {"server": {"id": resource["id"], "name": "x"}}), 404, code)
    assert_error(mcp(api, "server/delete", {"id": resource["id"]}), 404, code)
    billing = next(r for r in projecting.state()["resources"] if r["type"] == "api")
    assert_error(mcp(api, "server/load", {"id": billing["id"]}), 404, code)
    # Projection follows the Resource: an update shows through, a delete takes it away.
    answer(
        update(api, {**resource, "uri": "https://moved.example.com/mcp", "dynamicRegistrationSettings": {}})
    )
    moved = answer(mcp(api, "server/load", {"id": resource["id"]}))["server"]
    assert moved["audienceWhitelist"] == ["https://moved.example.com/mcp"]
    assert "dynamicRegistration" not in moved
    answer(post(api, "resource/delete", {"id": resource["id"]}))
    assert server_ids(api) == [server_id, bare["id"]]


def test_projected_scopes_follow_the_scopes_format() -> None:
    with (
        running_emulator(config(resource_surface="projected", scopes_format="list")) as em,
        httpx.Client(base_url=em.base_url, headers=em.headers) as api,
    ):
        resource = create(api, scopes=SCOPES)
        server = answer(mcp(api, "server/load", {"id": resource["id"]}))["server"]
        assert load(api, resource["id"])["scopes"] == SCOPES  # a Resource's scopes are always categorized
    assert server["approvedScopes"] == [
        {"name": "calendar:read", "description": "Read"},
        {"name": "google", "values": ["google-calendar"]},
    ]


# ---- strict mode ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", SERVER_FIELDS)
def test_strict_refuses_server_fields_on_create(api: httpx.Client, em: RunningEmulator, key: str) -> None:
    assert em.config.strict  # tests/conftest.py
    body = {"name": "a", "type": "api"}
    for value in ("RSforged1234567890123456789AB", "", None):
        refused = post(api, "resource/create", {**body, key: value})
        description = assert_error(refused, 400, assumptions.VALIDATION_FAILURE_CODE)
        assert description == f"resource.{key} is read-only: Descope assigns it"
    assert em.state()["resources"] == []


def test_strict_names_every_server_field_and_accepts_them_back_on_update(api: httpx.Client) -> None:
    forged = {"name": "a", "type": "api", "id": "x", "version": "9"}
    description = assert_error(post(api, "resource/create", forged), 400, assumptions.VALIDATION_FAILURE_CODE)
    assert description == "resource.id, resource.version are read-only: Descope assigns them"
    resource = create(api)
    assert answer(update(api, resource))["resource"]["version"] == "2"  # as loaded, times included


def test_lenient_ignores_server_fields_on_create(lenient_api: httpx.Client) -> None:
    forged = {"id": "RSforged", "version": "9", "createdTime": "then", "modifiedTime": "then"}
    resource = answer(post(lenient_api, "resource/create", {"name": "a", "type": "api", **forged}))[
        "resource"
    ]
    assert resource["id"] != "RSforged"
    assert resource["version"] == "1"
    rfc3339(resource["createdTime"])


# ---- admin surface and the state file -------------------------------------------------------------


CONSOLE_MADE: dict[str, Any] = {
    "id": "RSconsoleMade0000000000000000",
    "version": "7",
    "createdTime": "2025-01-02T03:04:05Z",
    "modifiedTime": "2025-02-03T04:05:06Z",
    "type": "mcp",
    "name": "console",
    "uri": "https://console.example.com/mcp",
    "scopes": SCOPES,
    "clients": [
        {
            "id": "MSCdcr",
            "name": "dcr",
            "clientId": "dyn-1",
            "registrationType": assumptions.REGISTRATION_DYNAMIC,
            "secret": "s3cret",
        },
        {"name": "pre"},
    ],
}


def test_seed_stages_resources_made_in_the_console(api: httpx.Client, em: RunningEmulator) -> None:
    seeded = em.seed({"resources": [CONSOLE_MADE, {"name": "defaults"}]})
    pre_id = seeded["resources"][0]["clients"][1]["id"]
    defaults_id = seeded["resources"][1]["id"]
    assert seeded == {
        "servers": [],
        "resources": [
            {
                "id": CONSOLE_MADE["id"],
                "name": "console",
                "clients": [
                    {"id": "MSCdcr", "clientId": "dyn-1", "name": "dcr"},
                    {
                        "id": pre_id,
                        "clientId": seeded["resources"][0]["clients"][1]["clientId"],
                        "name": "pre",
                    },
                ],
            },
            {"id": defaults_id, "name": "defaults", "clients": []},
        ],
    }
    loaded = load(api, CONSOLE_MADE["id"])
    assert loaded == {k: v for k, v in CONSOLE_MADE.items() if k != "clients"}
    defaults = load(api, defaults_id)
    assert re.fullmatch(r"RS[A-Za-z0-9]{27}", defaults_id)
    assert (defaults["version"], defaults["type"]) == ("1", "mcp")  # a console MCP server, no uri needed
    dcr = {"mcpServerId": CONSOLE_MADE["id"], "clientId": "dyn-1"}
    assert answer(mcp(api, "server/client/load", dcr))["client"]["registrationType"] == "dcr"
    secret = answer(mcp(api, "server/client/secret", {"mcpServerId": CONSOLE_MADE["id"], "id": "MSCdcr"}))
    assert secret == {"cleartext": "s3cret"}
    assert answer(update(api, loaded))["resource"]["version"] == "8"  # counts on from the seeded version


def test_seed_refusals_add_nothing(em: RunningEmulator) -> None:
    em.seed({"servers": [{"id": "MSone", "name": "one"}], "resources": [{"id": "RSone", "name": "r"}]})
    before = em.state()
    refused: list[tuple[dict[str, Any], str]] = [
        ({}, "servers or resources is required"),
        ({"resources": [{"id": "RSone", "name": "again"}]}, "ids already in use: RSone"),
        ({"resources": [{"id": "MSone", "name": "clash"}]}, "ids already in use: MSone"),
        ({"servers": [{"id": "RStwo", "name": "s"}], "resources": [{"id": "RStwo", "name": "r"}]}, "RStwo"),
        (
            {"resources": [{"name": "r", "version": "v2"}]},
            r"resources\[0\]\.version: expected a decimal string",
        ),
        ({"resources": [{"type": "mcp"}]}, r"resources\[0\]\.name is required"),
        ({"resources": [{"name": "r", "scopes": []}]}, r"resources\[0\]\.scopes: expected an object"),
        ({"resources": {"name": "r"}}, "resources: expected an array"),
        (
            {
                "servers": [{"name": "ok"}],
                "resources": [{"name": "r", "clients": [{"id": "C", "name": "a"}] * 2}],
            },
            "used twice",
        ),
    ]
    for body, message in refused:
        with pytest.raises(ValueError, match=message):
            em.seed(body)
    assert em.state() == before


def test_seed_stages_any_live_state(api: httpx.Client, em: RunningEmulator) -> None:
    # A repeated uri, an mcp Resource without one, an unknown type: refused by the API, staged by seed.
    em.seed(
        {
            "resources": [
                {"name": "a", "uri": "https://same.example.com"},
                {"name": "a", "uri": "https://same.example.com"},
                {"name": "no uri", "type": "mcp"},
                {"name": "future", "type": "agent"},
            ]
        }
    )
    assert len(resource_ids(api)) == 4


def test_state_lists_resources_with_clients_and_round_trips_through_seed(
    api: httpx.Client, em: RunningEmulator
) -> None:
    server_id = new_server(api)
    new_client(api, server_id)
    resource = answer(post(api, "resource/create", CALENDAR))["resource"]
    client = new_client(api, resource["id"], scopes=["google"])
    create(api, name="billing", type="api", uri="https://billing.example.com", description="")
    state = em.state()
    assert set(state) == {"servers", "resources"}
    assert [s["id"] for s in state["servers"]] == [server_id]
    first = state["resources"][0]
    assert {k: v for k, v in first.items() if k != "clients"} == resource
    assert [(c["id"], c["secret"], c["mcpServerId"]) for c in first["clients"]] == [
        (client["id"], client["cleartext"], resource["id"])
    ]
    assert state["resources"][1]["description"] == ""  # as stored, not zero-omitted
    em.reset()
    assert em.state() == {"servers": [], "resources": []}
    em.seed(state)
    assert em.state() == state
    em.reset(counters_only=True)
    assert em.state() == state


def test_state_file_keeps_resources_across_a_restart(tmp_path: Path) -> None:
    state_file = tmp_path / "state" / "emulator.json"
    with (
        running_emulator(config(state_file=state_file)) as em,
        httpx.Client(base_url=em.base_url, headers=em.headers) as api,
    ):
        resource = answer(post(api, "resource/create", CALENDAR))["resource"]
        client = new_client(api, resource["id"])
        server_id = new_server(api)
        on_disk = json.loads(state_file.read_text(encoding="utf-8"))
    assert [r["fields"]["id"] for r in on_disk["resources"]] == [resource["id"]]
    assert [c["secret"] for c in on_disk["resources"][0]["clients"]] == [client["cleartext"]]
    with (
        running_emulator(config(state_file=state_file)) as em,
        httpx.Client(base_url=em.base_url, headers=em.headers) as api,
    ):
        assert load(api, resource["id"]) == resource
        ref = {"mcpServerId": resource["id"], "id": client["id"]}
        assert answer(mcp(api, "server/client/secret", ref)) == {"cleartext": client["cleartext"]}
        assert server_ids(api) == [server_id]
        answer(post(api, "resource/delete", {"id": resource["id"]}))
    with running_emulator(config(state_file=state_file)) as em:
        assert em.state()["resources"] == []
        assert [s["id"] for s in em.state()["servers"]] == [server_id]


def test_a_state_file_from_before_resources_still_loads(tmp_path: Path) -> None:
    state_file = tmp_path / "old.json"
    server = {"fields": {"id": "MSold", "name": "old"}, "clients": []}
    state_file.write_text(json.dumps({"version": 1, "servers": [server]}), encoding="utf-8")
    with (
        running_emulator(config(state_file=state_file)) as em,
        httpx.Client(base_url=em.base_url, headers=em.headers) as api,
    ):
        assert em.state() == {"servers": [{"id": "MSold", "name": "old", "clients": []}], "resources": []}
        resource = create(api)
    assert [r["fields"]["id"] for r in json.loads(state_file.read_text())["resources"]] == [resource["id"]]
    state_file.write_text(json.dumps({"version": 1, "servers": [], "resources": {}}), encoding="utf-8")
    with (
        pytest.raises(ValueError, match=r'"resources" is not a list'),
        running_emulator(config(state_file=state_file)),
    ):
        pass
    state_file.write_text(json.dumps({"version": 1, "servers": [], "resources": [{"fields": {}}]}))
    with (
        pytest.raises(ValueError, match="has no 'clients'"),
        running_emulator(config(state_file=state_file)),
    ):
        pass


# ---- the unpublished behaviours follow the "Resources surface" section of reconciler/descope/assumptions.py


def test_resource_id_prefix(api: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(assumptions, "RESOURCE_ID_PREFIX", "RX")
    assert re.fullmatch(r"RX[A-Za-z0-9]{27}", create(api)["id"])


def test_resource_types(api: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    body = {"name": "a", "type": "agent"}
    assert_error(post(api, "resource/create", body), 400, assumptions.VALIDATION_FAILURE_CODE)
    monkeypatch.setattr(assumptions, "RESOURCE_TYPES", ("mcp", "api", "agent"))
    assert answer(post(api, "resource/create", body))["resource"]["type"] == "agent"


def test_resource_required_fields(api: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    assert_error(post(api, "resource/create", {"type": "api"}), 400, assumptions.MISSING_ARGUMENTS_CODE)
    monkeypatch.setattr(assumptions, "RESOURCE_REQUIRED_FIELDS", ("type",))
    assert without_server_fields(answer(post(api, "resource/create", {"type": "api"}))["resource"]) == {
        "type": "api"
    }
    monkeypatch.setattr(assumptions, "RESOURCE_REQUIRED_FIELDS", ("name", "type", "description"))
    assert_error(post(api, "resource/create", {"name": "n", "type": "api"}), 400, "E011002")


@pytest.mark.parametrize("required", [True, False])
def test_resource_uri_required(api: httpx.Client, monkeypatch: pytest.MonkeyPatch, required: bool) -> None:
    monkeypatch.setattr(assumptions, "RESOURCE_URI_REQUIRED", required)
    response = post(api, "resource/create", {"name": "a", "type": "mcp"})
    if required:
        assert_error(response, 400, assumptions.MISSING_ARGUMENTS_CODE)
    else:
        assert "uri" not in answer(response)["resource"]


@pytest.mark.parametrize("unique", [True, False])
def test_resource_uri_unique(api: httpx.Client, monkeypatch: pytest.MonkeyPatch, unique: bool) -> None:
    monkeypatch.setattr(assumptions, "RESOURCE_URI_UNIQUE", unique)
    first = create(api, name="first")
    again = post(api, "resource/create", {"name": "second", "type": "mcp", "uri": first["uri"]})
    if unique:
        assert_error(again, 400, assumptions.VALIDATION_FAILURE_CODE)
        return
    answer(again)
    # Both are kept; a load by URI answers the first one made.
    assert answer(get(api, "resource/load/uri", uri=first["uri"]))["resource"]["id"] == first["id"]
    assert len(resource_ids(api)) == 2


@pytest.mark.parametrize("full", [True, False])
def test_resource_update_is_full_replacement(
    api: httpx.Client, monkeypatch: pytest.MonkeyPatch, full: bool
) -> None:
    monkeypatch.setattr(assumptions, "RESOURCE_UPDATE_IS_FULL_REPLACEMENT", full)
    resource = answer(post(api, "resource/create", CALENDAR))["resource"]
    sent = {
        "id": resource["id"],
        "name": "renamed",
        "type": "mcp",
        "uri": CALENDAR["uri"],
        "description": None,
    }
    updated = answer(update(api, sent))["resource"]
    assert updated["name"] == "renamed"
    assert updated["version"] == "2"
    if full:
        assert without_server_fields(updated) == {"name": "renamed", "type": "mcp", "uri": CALENDAR["uri"]}
    else:
        assert without_server_fields(updated) == {**CALENDAR, "name": "renamed"}  # null keeps the value too
        patched = answer(update(api, {"id": resource["id"], "description": "only this"}))["resource"]
        assert without_server_fields(patched) == {**CALENDAR, "name": "renamed", "description": "only this"}


@pytest.mark.parametrize("allowed", [True, False])
def test_resource_type_change_allowed(
    api: httpx.Client, monkeypatch: pytest.MonkeyPatch, allowed: bool
) -> None:
    monkeypatch.setattr(assumptions, "RESOURCE_TYPE_CHANGE_ALLOWED", allowed)
    resource = create(api)
    response = update(api, {**resource, "type": "api"})
    if allowed:
        assert answer(response)["resource"]["type"] == "api"
        assert_error(mcp(api, "server/clients/search", {"mcpServerId": resource["id"]}), 404, "E011004")
    else:
        assert_error(response, 400, assumptions.VALIDATION_FAILURE_CODE)
        assert load(api, resource["id"]) == resource


@pytest.mark.parametrize("checked", [True, False])
def test_resource_version_checked(api: httpx.Client, monkeypatch: pytest.MonkeyPatch, checked: bool) -> None:
    monkeypatch.setattr(assumptions, "RESOURCE_VERSION_CHECKED", checked)
    resource = create(api)
    current = answer(update(api, {**resource, "description": "one"}))["resource"]
    stale = update(api, {**resource, "description": "stale"})  # carries version "1"; "2" is stored
    without = {k: v for k, v in current.items() if k != "version"}
    if checked:
        description = assert_error(stale, 409, assumptions.VALIDATION_FAILURE_CODE)
        assert description == "resource.version: '1' is not the current version '2'; load it again"
        assert load(api, resource["id"]) == current
        assert answer(update(api, current))["resource"]["version"] == "3"
        assert answer(update(api, without))["resource"]["version"] == "4"  # no version: accepted
        monkeypatch.setattr(assumptions, "RESOURCE_VERSION_MISMATCH_STATUS", 400)
        assert_error(update(api, current), 400, assumptions.VALIDATION_FAILURE_CODE)
    else:
        assert answer(stale)["resource"] == {**answer(stale)["resource"], "description": "stale"}
        assert load(api, resource["id"])["version"] == "3"  # the stale update counted as any other


def test_resource_time_format(api: httpx.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    rfc3339(create(api)["createdTime"])
    monkeypatch.setattr(assumptions, "RESOURCE_TIME_FORMAT", "epoch")
    before = int(time.time())
    resource = create(api, name="later", uri="https://later.example.com")
    assert resource["createdTime"].isdecimal()
    assert before <= int(resource["createdTime"]) <= int(time.time())
    assert answer(update(api, resource))["resource"]["modifiedTime"].isdecimal()


@pytest.mark.parametrize("cascades", [True, False])
def test_resource_delete_cascades(api: httpx.Client, monkeypatch: pytest.MonkeyPatch, cascades: bool) -> None:
    monkeypatch.setattr(assumptions, "RESOURCE_DELETE_CASCADES", cascades)
    full, empty = create(api), create(api, name="empty", uri="https://empty.example.com")
    client = new_client(api, full["id"])
    response = post(api, "resource/delete", {"id": full["id"]})
    assert answer(post(api, "resource/delete", {"id": empty["id"]})) == {}
    if cascades:
        assert answer(response) == {}
        assert resource_ids(api) == []
        return
    description = assert_error(response, 400, assumptions.VALIDATION_FAILURE_CODE)
    assert description == f"Resource {full['id']!r} still has clients: delete them first"
    assert resource_ids(api) == [full["id"]]
    answer(mcp(api, "server/client/delete", {"mcpServerId": full["id"], "id": client["id"]}))
    assert answer(post(api, "resource/delete", {"id": full["id"]})) == {}


@pytest.mark.parametrize("error", [True, False])
def test_resource_delete_absent_is_error(
    api: httpx.Client, monkeypatch: pytest.MonkeyPatch, error: bool
) -> None:
    monkeypatch.setattr(assumptions, "RESOURCE_DELETE_ABSENT_IS_ERROR", error)
    response = post(api, "resource/delete", {"id": "RSabsent"})
    if error:
        assert_error(response, 404, assumptions.INVALID_ARGUMENTS_CODE)
    else:
        assert answer(response) == {}
    assert_error(post(api, "resource/delete", {}), 400, assumptions.MISSING_ARGUMENTS_CODE)  # either way


@pytest.mark.parametrize("only_mcp", [True, False])
def test_resource_clients_only_for_mcp(
    api: httpx.Client, monkeypatch: pytest.MonkeyPatch, only_mcp: bool
) -> None:
    monkeypatch.setattr(assumptions, "RESOURCE_CLIENTS_ONLY_FOR_MCP", only_mcp)
    billing = create(api, type="api")
    response = mcp(api, "server/client/create", {"mcpServerId": billing["id"], "name": "agent"})
    if only_mcp:
        assert_error(response, 404, assumptions.INVALID_ARGUMENTS_CODE)
    else:
        created = answer(response)
        ref = {"mcpServerId": billing["id"], "id": created["id"]}
        assert answer(mcp(api, "server/client/load", ref))["client"]["mcpServerId"] == billing["id"]


@pytest.mark.parametrize("checked", [True, False])
def test_resource_client_scopes_checked(
    api: httpx.Client, monkeypatch: pytest.MonkeyPatch, checked: bool
) -> None:
    monkeypatch.setattr(assumptions, "RESOURCE_CLIENT_SCOPES_CHECKED", checked)
    resource, server_id = create(api, scopes=SCOPES), new_server(api)
    known = new_client(api, resource["id"], "known", scopes=["calendar:read", "google"])
    unknown = mcp(
        api, "server/client/create", {"mcpServerId": resource["id"], "name": "u", "scopes": ["write"]}
    )
    ref = {"mcpServerId": resource["id"], "id": known["id"], "name": "known"}
    renamed = mcp(api, "server/client/update", {**ref, "scopes": ["calendar:read", "nope"]})
    assert new_client(api, server_id, scopes=["anything"])  # never checked on a legacy server
    if checked:
        description = assert_error(unknown, 400, assumptions.VALIDATION_FAILURE_CODE)
        assert description == f"client.scopes: 'write' not among the scopes of Resource {resource['id']!r}"
        assert_error(renamed, 400, assumptions.VALIDATION_FAILURE_CODE)
    else:
        assert (unknown.status_code, renamed.status_code) == (200, 200)


@pytest.mark.parametrize("accepted", [True, False])
def test_resource_loads_accept_post(
    api: httpx.Client, monkeypatch: pytest.MonkeyPatch, accepted: bool
) -> None:
    monkeypatch.setattr(assumptions, "RESOURCE_LOADS_ACCEPT_POST", accepted)
    resource = create(api)
    responses = [
        post(api, "resource/load", {"id": resource["id"]}),
        api.post(MGMT + "resource/load/uri", params={"uri": resource["uri"]}),
        post(api, "resources/load"),
    ]
    assert answer(get(api, "resource/load", id=resource["id"]))["resource"] == resource  # GET either way
    assert_error(api.put(MGMT + "resource/load"), 405, assumptions.MALFORMED_REQUEST_CODE)
    if accepted:
        assert [answer(r).get("resource", resource) for r in responses] == [resource] * 3
        assert answer(responses[2])["total"] == 1
    else:
        assert [r.status_code for r in responses] == [405] * 3


@pytest.mark.parametrize("accepted", [True, False])
def test_duplicate_names_accepted_applies_to_resources(
    api: httpx.Client, em: RunningEmulator, monkeypatch: pytest.MonkeyPatch, accepted: bool
) -> None:
    monkeypatch.setattr(assumptions, "DUPLICATE_NAMES_ACCEPTED", accepted)
    first = create(api)
    again = post(api, "resource/create", {"name": "calendar", "type": "api"})
    assert answer(update(api, first))["resource"]["name"] == "calendar"  # keeping its own name: no clash
    if accepted:
        answer(again)
    else:
        assert assert_error(again, 400, assumptions.VALIDATION_FAILURE_CODE) == (
            "name: a Resource is already named 'calendar'"
        )
    em.seed({"resources": [{"name": "calendar"}]})  # seed stages repeated names either way


# ---- the command ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run_command(*options: str) -> subprocess.Popen[str]:
    env = {**os.environ, "DESCOPE_MANAGEMENT_KEY": KEY, "DESCOPE_PROJECT_ID": PROJECT}
    return subprocess.Popen(
        [sys.executable, "-m", "reconciler", "emulator", *options],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and process.poll() is None:
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/mgmt/resources/load", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError("the emulator did not start")


@pytest.mark.parametrize("surface", ["isolated", "projected", None])
def test_the_command_takes_resource_surface(surface: str | None) -> None:
    port = _free_port()
    process = _run_command("--port", str(port), *(["--resource-surface", surface] if surface else []))
    try:
        _wait(port, process)
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {PROJECT}:{KEY}"}
        ) as api:
            resource = create(api)
            listed = server_ids(api)
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=20)
    assert process.returncode == 130, output
    assert listed == ([resource["id"]] if surface == "projected" else [])
    assert ("Projected: MCP server endpoints also answer Resources of type mcp." in output) is (
        surface == "projected"
    )


def test_the_command_refuses_an_unknown_resource_surface() -> None:
    process = _run_command("--resource-surface", "merged")
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 1  # the project's usage errors exit 1
    assert "'merged' is not one of 'isolated', 'projected'" in output
