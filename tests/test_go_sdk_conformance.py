"""The emulator as Descope's own Go SDK sees it (go-sdk PR #793, summarised in tests/data/go_sdk_mcp_types.*).

Every endpoint the SDK calls is driven over HTTP with bodies shaped as the SDK sends them: each field
present only when non-zero (omitempty), client load with all three of id, clientId and mcpServerId. Each
answer is then held to the SDK's types, read from tests/data/go_sdk_mcp_types.json: exactly the keys the
SDK decodes at the top, within objects only the field names its type declares (a field it does not
declare would be dropped on decode: the emulator must not invent one), and every value of the declared
JSON type; approvedScopes is the categorized object, since the SDK cannot decode the guide's list.

One exception, from the wire reference (``shared/reference/descope-mcp-api.md``, "load all servers"):
servers/all answers ``total`` beside ``servers``. The SDK does not decode it, but its own test mock
sends it, so a real answer is expected to carry it; it must still be a JSON integer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from reconciler.descope import assumptions
from reconciler.emulator import EmulatorConfig, RunningEmulator, running_emulator
from tests.conftest import DATA

PROJECT = "P2GOSDKCONFORMANCE"
KEY = "K2-go-sdk-conformance-key-51c0"
PREFIX = "/v1/mgmt/mcp/"
SDK: dict[str, Any] = json.loads((DATA / "go_sdk_mcp_types.json").read_text(encoding="utf-8"))
TYPES: dict[str, Any] = SDK["types"]
ENDPOINTS: dict[str, dict[str, Any]] = {e["path"].removeprefix(PREFIX): e for e in SDK["endpoints"]}
# Keys an answer may carry beside those the SDK decodes, each documented by the wire reference (above).
DOCUMENTED_EXTRAS = {"servers/all": {"total": "integer"}}
SCALARS: dict[str, Callable[[Any], bool]] = {
    "string": lambda value: isinstance(value, str),
    "boolean": lambda value: isinstance(value, bool),
    "integer": lambda value: isinstance(value, int) and not isinstance(value, bool),
}


# ---- the checker -----------------------------------------------------------------------------------


def json_kind(value: Any) -> str:
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array"}
    return names.get(type(value), "an object")


def fields_of(type_name: str) -> dict[str, str]:
    """The JSON names of an SDK type's fields, with their JSON types."""
    return {field["json"]: field["json_type"] for field in TYPES[type_name]["fields"]}


def value_problems(value: Any, json_type: str, path: str) -> list[str]:
    """How ``value`` differs from ``json_type`` ("string", "array of object MCPServer", ...)."""
    if json_type in SCALARS:
        return [] if SCALARS[json_type](value) else [f"{path}: expected {json_type}, got {json_kind(value)}"]
    if json_type.startswith("array of "):
        if not isinstance(value, list):
            return [f"{path}: expected {json_type}, got {json_kind(value)}"]
        item_type = json_type.removeprefix("array of ")
        return [p for i, item in enumerate(value) for p in value_problems(item, item_type, f"{path}[{i}]")]
    if json_type.startswith("object "):
        return object_problems(value, json_type.removeprefix("object "), path)
    raise AssertionError(f"go_sdk_mcp_types.json: unknown json_type {json_type!r} at {path}")


def object_problems(value: Any, type_name: str, path: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{path}: expected an object {type_name}, got {json_kind(value)}"]
    declared = fields_of(type_name)
    problems = [
        f"{path}.{key}: {type_name} declares no such field (the Go SDK would drop it)"
        for key in value
        if key not in declared
    ]
    for key, item in value.items():
        if key in declared:
            problems += value_problems(item, declared[key], f"{path}.{key}")
    return problems


def decoded(endpoint: str) -> dict[str, str]:
    """The top-level keys the SDK decodes from ``endpoint``'s answer, with their JSON types."""
    response = ENDPOINTS[endpoint]["response"]
    decoders = [
        decoder
        for name, decoder in SDK["response_decoders"].items()
        if not name.startswith("_") and endpoint in decoder["used_by"]
    ]
    if decoders:  # a wrapper struct: {"server": ...}, {"clients": ..., "total": ...}
        keys = {field["json_key_matched"]: field["json_type"] for field in decoders[0]["fields"]}
    elif response["into"]:  # decoded flat into an SDK type (client create)
        keys = fields_of(response["into"].lstrip("*"))
    else:  # the SDK never reads the body (the deletes)
        keys = {}
    assert sorted(keys) == sorted(response["decoded_keys"]), endpoint  # the JSON agrees with itself
    return keys


def answer_problems(endpoint: str, answer: Any) -> list[str]:
    """How an answer of ``endpoint`` differs from what the Go SDK decodes; [] when it conforms."""
    if not isinstance(answer, dict):
        return [f"{endpoint}: expected an object, got {json_kind(answer)}"]
    expected = {**decoded(endpoint), **DOCUMENTED_EXTRAS.get(endpoint, {})}
    problems = [f"{endpoint}: {key} is missing" for key in expected if key not in answer]
    problems += [f"{endpoint}: {key} is not decoded by the Go SDK" for key in answer if key not in expected]
    for key, value in answer.items():
        if key in expected:
            problems += value_problems(value, expected[key], f"{endpoint}: {key}")
    return problems


def test_the_extras_are_those_the_sdk_test_shows() -> None:
    for endpoint, extras in DOCUMENTED_EXTRAS.items():
        assert sorted(extras) == ENDPOINTS[endpoint]["response"]["ignored_keys_seen_in_sdk_test"]


def test_the_checker_reports_what_the_sdk_could_not_decode() -> None:
    scope = {"name": "a", "optional": True, "values": ["v"]}
    good = {"server": {"id": "M1", "approvedScopes": {"permissionsScopes": [scope]}}}
    assert answer_problems("server/load", good) == []
    assert answer_problems("servers/all", {"servers": [], "total": 0}) == []
    bad_scopes = {"permissionsScopes": [{**scope, "category": "permissions"}], "resourceScopes": []}
    assert answer_problems("server/load", {"server": {"approvedScopes": bad_scopes}}) == [
        "server/load: server.approvedScopes.resourceScopes: MCPApprovedScopes declares no such field "
        "(the Go SDK would drop it)",
        "server/load: server.approvedScopes.permissionsScopes[0].category: MCPApplicationScope declares "
        "no such field (the Go SDK would drop it)",
    ]
    assert answer_problems("servers/all", {"servers": [{"tags": "a"}], "total": 1.0}) == [
        "servers/all: servers[0].tags: expected array of string, got a string",
        "servers/all: total: expected integer, got a number",
    ]
    assert answer_problems("server/client/load", {"Client": {}}) == [
        "server/client/load: client is missing",
        "server/client/load: Client is not decoded by the Go SDK",
    ]
    assert answer_problems("server/client/create", {"id": "C1", "clientId": "c", "cleartext": 1}) == [
        "server/client/create: cleartext: expected string, got an integer"
    ]
    assert answer_problems("server/delete", {"deleted": True}) == [
        "server/delete: deleted is not decoded by the Go SDK"
    ]


# ---- bodies as the SDK sends them ------------------------------------------------------------------


def sample(json_type: str, path: str) -> Any:
    """A non-zero value of ``json_type`` (omitempty would leave a zero out), told apart by ``path``."""
    if json_type == "string":
        return path
    if json_type == "boolean":
        return True
    if json_type == "integer":
        return 7
    if json_type.startswith("array of "):
        return [sample(json_type.removeprefix("array of "), f"{path}[0]")]
    if json_type.startswith("object "):
        return sample_object(json_type.removeprefix("object "), path)
    raise AssertionError(f"go_sdk_mcp_types.json: unknown json_type {json_type!r} at {path}")


def sample_object(type_name: str, path: str, *, only: list[str] | None = None) -> dict[str, Any]:
    """Every field of ``type_name`` (or those in ``only``) set to a non-zero value."""
    return {
        key: sample(json_type, f"{path}.{key}")
        for key, json_type in fields_of(type_name).items()
        if only is None or key in only
    }


def writable(name: str) -> list[str]:
    keys: list[str] = SDK["writable_sets"][name]["keys"]
    return keys


# The SDK sends the whole MCPServer on create; Descope assigns the id, so a caller leaves it unset.
SERVER = sample_object("MCPServer", "server", only=[k for k in writable("server_create") if k != "id"])
# The client request minus id ("ignored on create") and mcpServerId (set per call).
CLIENT = sample_object(
    "MCPServerClientRequest",
    "client",
    only=[k for k in writable("client_create") if k not in ("id", "mcpServerId")],
)


def drive(api: httpx.Client) -> list[tuple[str, Any]]:
    """Call every endpoint the SDK calls, as it calls them; the answers, in order."""
    answers: list[tuple[str, Any]] = []

    def call(endpoint: str, body: dict[str, Any]) -> Any:
        response = api.post(PREFIX + endpoint, json=body)
        assert response.status_code == 200, (endpoint, response.text)
        answers.append((endpoint, response.json()))
        return response.json()

    server = call("server/create", {**SERVER, "name": "calendar"})["server"]
    server_id = server["id"]
    call("server/update", {"server": {**SERVER, "id": server_id, "name": "calendar"}})
    call("server/load", {"id": server_id})
    spare = call("server/create", {"name": "spare"})["server"]["id"]
    call("servers/all", {})
    created = call("server/client/create", {**CLIENT, "mcpServerId": server_id, "name": "agent"})
    other = call("server/client/create", {"mcpServerId": server_id, "name": "other"})
    ref = {"id": created["id"], "mcpServerId": server_id}
    call("server/client/update", {**CLIENT, **ref, "name": "agent"})
    call("server/client/load", {**ref, "clientId": ""})
    call("server/client/load", {"id": "", "clientId": created["clientId"], "mcpServerId": server_id})
    call("server/clients/search", {"mcpServerId": server_id})
    # Every search option, each filter one the client matches; page 0 is never sent (omitempty).
    matching = {
        **sample_object("MCPServerClientSearchOptions", "search", only=["limit", "sort"]),
        "mcpServerId": server_id,
        "name": "agent",
        "text": "age",
        "clientId": created["clientId"],
        "status": assumptions.CLIENT_STATUS_ACTIVE,
        "registrationMethod": assumptions.REGISTRATION_PRE_REGISTERED,
        "tag": CLIENT["tags"][0],
    }
    assert call("server/clients/search", matching)["total"] == 1
    every_option = {**matching, "page": 1}  # past the only match: an empty page
    assert sorted(every_option) == sorted(fields_of("MCPServerClientSearchOptions"))
    assert call("server/clients/search", every_option)["clients"] == []
    call("server/client/secret", ref)
    call("server/client/secret/rotate", ref)
    call("server/client/delete", {"id": other["id"], "mcpServerId": server_id})
    call("server/clients/delete", {"ids": [created["id"]], "mcpServerId": server_id})
    call("server/delete", {"id": spare})
    call("servers/delete", {"ids": [server_id]})
    return answers


@pytest.fixture(params=[{}, {"scopes_format": "list"}], ids=["default", "list"])
def emulator(request: pytest.FixtureRequest) -> Iterator[RunningEmulator]:
    with running_emulator(EmulatorConfig(project_id=PROJECT, management_key=KEY, **request.param)) as handle:
        yield handle


def test_every_answer_has_the_shape_the_go_sdk_decodes(emulator: RunningEmulator) -> None:
    with httpx.Client(base_url=emulator.base_url, headers=emulator.headers) as api:
        answers = drive(api)
    assert sorted({endpoint for endpoint, _ in answers}) == sorted(ENDPOINTS)  # every endpoint of the SDK
    problems = [problem for endpoint, answer in answers for problem in answer_problems(endpoint, answer)]
    if emulator.config.scopes_format == "list":
        # The negative case: the guide's list is what the SDK cannot decode, and the checker says so.
        expected = "approvedScopes: expected an object MCPApprovedScopes, got an array"
        assert problems == [
            f"server/create: server.{expected}",
            f"server/update: server.{expected}",
            f"server/load: server.{expected}",
            f"servers/all: servers[0].{expected}",
        ]
        return
    assert emulator.config.strict  # the default of the suite (tests/conftest.py): bodies as the SDK sends
    assert problems == []


def test_what_the_sdk_sends_comes_back_as_sent() -> None:
    """Every field the SDK can send is kept and answered (each non-zero, so none is left out)."""
    with (
        running_emulator(EmulatorConfig(project_id=PROJECT, management_key=KEY)) as em,
        httpx.Client(base_url=em.base_url, headers=em.headers) as api,
    ):
        created = api.post(PREFIX + "server/create", json=SERVER).json()["server"]
        assert created == {"id": created["id"], **SERVER}
        assert set(created["approvedScopes"]) == {
            "permissionsScopes",
            "attributesScopes",
            "connectionsScopes",
        }
        client = api.post(
            PREFIX + "server/client/create", json={**CLIENT, "mcpServerId": created["id"]}
        ).json()
        ref = {"id": client["id"], "clientId": "", "mcpServerId": created["id"]}
        loaded = api.post(PREFIX + "server/client/load", json=ref).json()["client"]
    assert loaded == {
        **CLIENT,
        "id": client["id"],
        "clientId": client["clientId"],
        "mcpServerId": created["id"],
        "registrationType": assumptions.REGISTRATION_PRE_REGISTERED,
        "status": assumptions.CLIENT_STATUS_ACTIVE,
    }
