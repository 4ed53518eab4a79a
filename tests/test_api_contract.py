"""API contract tests: the client against the emulator over real HTTP, or a live project with --live.

With ``--live`` (and DESCOPE_PROJECT_ID / DESCOPE_MANAGEMENT_KEY set) the tests marked ``both`` run
against the real project, creating objects under a unique name prefix and deleting them afterwards;
what they assert there checks the assumptions in ``reconciler/descope/assumptions.py``. Tests that need
the emulator's admin surface or fault injection run only against the emulator.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from reconciler.descope import assumptions
from reconciler.descope.client import DescopeClient
from reconciler.descope.transport import RetryPolicy, resolve_base_url
from reconciler.emulator import EmulatorConfig, running_emulator
from reconciler.errors import BadRequest, NotFound, Unauthorized

KEY = "K2-contract-test-management-key-9d1c"
PROJECT = "P2CONTRACT"
# Read before the autouse fixture clears DESCOPE_* variables from each test's environment.
LIVE_ENV = {k: v for k, v in os.environ.items() if k.startswith("DESCOPE_")}
FAST_RETRY = RetryPolicy(attempts=8, base_delay=0.005, max_delay=0.05, rate_limited_attempts=20)


@dataclass
class Target:
    """Where the contract runs: a base URL and credentials, plus the emulator when it is one."""

    base_url: str
    project_id: str
    management_key: str
    prefix: str
    emulator: Any = None

    def client(self, **options: Any) -> DescopeClient:
        options.setdefault("retry", FAST_RETRY)
        return DescopeClient(
            project_id=self.project_id, management_key=self.management_key, base_url=self.base_url, **options
        )


@pytest.fixture(scope="module")
def shared_emulator() -> Iterator[Any]:
    with running_emulator(EmulatorConfig(project_id=PROJECT, management_key=KEY)) as handle:
        yield handle


@pytest.fixture
async def target(request: pytest.FixtureRequest, shared_emulator: Any) -> AsyncIterator[Target]:
    prefix = f"contract-{uuid.uuid4().hex[:8]}-"
    if request.config.getoption("--live"):
        if not {"DESCOPE_PROJECT_ID", "DESCOPE_MANAGEMENT_KEY"} <= LIVE_ENV.keys():
            pytest.fail("--live needs DESCOPE_PROJECT_ID and DESCOPE_MANAGEMENT_KEY in the environment")
        project = LIVE_ENV["DESCOPE_PROJECT_ID"]
        live = Target(
            base_url=resolve_base_url(project, LIVE_ENV),
            project_id=project,
            management_key=LIVE_ENV["DESCOPE_MANAGEMENT_KEY"],
            prefix=prefix,
        )
        yield live
        async with live.client() as client:
            mine = [s.id for s in await client.load_all_servers() if s.name.startswith(prefix)]
            if mine:
                await client.delete_servers(mine)
            resources = [r.id for r in await client.load_all_resources() if r.name.startswith(prefix)]
            await client.delete_resources(resources)
        return
    shared_emulator.reset()
    yield Target(shared_emulator.base_url, PROJECT, KEY, prefix, shared_emulator)


def emulator_only(target: Target) -> Any:
    if target.emulator is None:
        pytest.skip("needs the emulator's admin surface")
    return target.emulator


SERVER = {
    "description": "contract test server",
    "tags": ["team:contract"],
    "audienceWhitelist": ["https://contract.example.com/mcp"],
    "approvedScopes": [
        {"name": "read", "description": "Read"},
        {"name": "sync", "description": "Sync", "optional": True, "values": ["salesforce"]},
    ],
    "approvedCallbackUrls": ["https://agents.example.com/cb"],
    "dynamicRegistration": {"enabled": True},
    "loginPageURL": "https://auth.example.com/login",
}


# ---- servers ------------------------------------------------------------------------------------


async def test_server_lifecycle_create_load_all_update_delete(target: Target) -> None:
    async with target.client() as api:
        created = await api.create_server({"name": target.prefix + "a", **SERVER})
        assert created.id
        assert created.fields["audienceWhitelist"] == ["https://contract.example.com/mcp"]
        loaded = await api.load_server(created.id)
        assert loaded.name == target.prefix + "a"
        assert [s["name"] for s in loaded.fields["approvedScopes"]] == ["read", "sync"]
        assert created.id in {s.id for s in await api.load_all_servers()}

        # Update is full replacement: a field left out (loginPageURL) is reset.
        replacement = {k: v for k, v in loaded.fields.items() if k != "loginPageURL"}
        updated = await api.update_server({**replacement, "description": "changed"})
        assert updated.fields["description"] == "changed"
        assert "loginPageURL" not in (await api.load_server(created.id)).fields

        await api.delete_servers([created.id])
        with pytest.raises(NotFound):
            await api.load_server(created.id)
        await api.delete_servers([created.id])  # gone ids are ignored (BULK_DELETE_IGNORES_ABSENT_IDS)


async def test_bulk_server_delete_cascades_to_clients(target: Target) -> None:
    async with target.client() as api:
        one = await api.create_server({"name": target.prefix + "one", **SERVER})
        two = await api.create_server({"name": target.prefix + "two", **SERVER})
        created = await api.create_client(one.id, {"name": "c", "scopes": ["read"]})
        await api.delete_servers([one.id, two.id])
        remaining = {s.id for s in await api.load_all_servers()}
        assert not {one.id, two.id} & remaining
        if assumptions.SERVER_DELETE_CASCADES:
            with pytest.raises(NotFound):
                await api.load_client(one.id, id=created.id)


# ---- clients ------------------------------------------------------------------------------------


async def test_client_lifecycle_and_secrets(target: Target) -> None:
    async with target.client() as api:
        server = await api.create_server({"name": target.prefix + "s", **SERVER})
        created = await api.create_client(
            server.id,
            {
                "name": "agent",
                "scopes": ["read"],
                "tags": ["t1"],
                "approvedCallbackUrls": ["https://a.example.com/cb"],
            },
        )
        assert created.id
        assert created.client_id
        assert not created.recovered
        assert await api.get_client_secret(server.id, created.id) == created.secret

        by_id = await api.load_client(server.id, id=created.id)
        by_client_id = await api.load_client(server.id, client_id=created.client_id)
        assert by_id.fields == by_client_id.fields
        assert by_id.name == "agent"
        assert "cleartext" not in by_id.fields

        # Full replacement: tags left out are reset, read-only fields survive. The body carries only
        # writable fields, as Descope's Go SDK sends it (a strict emulator refuses clientId and co).
        read_only = ("tags", "clientId", "registrationType", "status")
        body = {
            **{k: v for k, v in by_id.fields.items() if k not in read_only},
            "id": by_id.id,
            "mcpServerId": by_id.server_id,
        }
        updated = await api.update_client({**body, "scopes": ["read", "sync"]})
        assert updated.fields["scopes"] == ["read", "sync"]
        assert "tags" not in updated.fields
        assert updated.client_id == created.client_id

        rotated = await api.rotate_client_secret(server.id, created.id)
        assert rotated != created.secret
        assert await api.get_client_secret(server.id, created.id) == rotated

        await api.delete_clients(server.id, [created.id])
        with pytest.raises(NotFound):
            await api.load_client(server.id, id=created.id)
        await api.delete_clients(
            server.id, [created.id]
        )  # gone ids: ignored (BULK_DELETE_IGNORES_ABSENT_IDS)
        await api.delete_servers([server.id])


async def test_search_pages_to_the_end_with_filters(target: Target) -> None:
    async with target.client() as api:
        server = await api.create_server({"name": target.prefix + "paged", **SERVER})
        await asyncio.gather(
            *(
                api.create_client(server.id, {"name": f"c{i:02}", "tags": ["even" if i % 2 == 0 else "odd"]})
                for i in range(25)
            )
        )
        everything = await api.search_clients(server.id, page_size=10)
        assert sorted(c.name for c in everything) == [f"c{i:02}" for i in range(25)]
        evens = await api.search_clients(server.id, page_size=10, tag="even")
        assert len(evens) == 13
        assert [c.name for c in await api.search_clients(server.id, name="c07")] == ["c07"]
        ordered = await api.search_clients(server.id, page_size=10, sort=[{"field": "name", "desc": True}])
        assert ordered[0].name == "c24"
        await api.delete_clients(server.id, [c.id for c in everything[:5]] + ["no-such-id"])
        assert len(await api.search_clients(server.id)) == 20
        await api.delete_servers([server.id])


async def test_search_of_250_clients_takes_three_calls(target: Target) -> None:
    emulator = emulator_only(target)
    seeded = emulator.seed({"servers": [{"name": "big", "clients": [{"name": f"c{i}"} for i in range(250)]}]})
    server_id = seeded["servers"][0]["id"]
    emulator.reset(counters_only=True)
    async with target.client() as api:
        clients = await api.search_clients(server_id)
    assert len({c.id for c in clients}) == 250
    assert emulator.stats()["requests"] == {"server/clients/search": 3}


# ---- errors and auth ----------------------------------------------------------------------------


async def test_wrong_key_and_foreign_project_are_refused(target: Target) -> None:
    wrong = DescopeClient(
        project_id=target.project_id, management_key="not-the-key", base_url=target.base_url
    )
    async with wrong:
        with pytest.raises(Unauthorized) as caught:
            await wrong.load_all_servers()
    assert caught.value.status == 401
    assert "not-the-key" not in str(caught.value)
    foreign = DescopeClient(
        project_id="P2SOMEONEELSE", management_key=target.management_key, base_url=target.base_url
    )
    async with foreign:
        with pytest.raises(Unauthorized) as caught:
            await foreign.load_all_servers()
    assert caught.value.status in (401, 403)
    assert target.management_key not in str(caught.value)


async def test_bad_requests_and_unknown_ids_are_mapped(target: Target) -> None:
    async with target.client() as api:
        with pytest.raises(BadRequest) as bad:
            await api.create_server({"description": "no name"})
        assert bad.value.status == 400
        assert str(bad.value).startswith("POST /v1/mgmt/mcp/server/create failed: 400 ")
        with pytest.raises(NotFound):
            await api.load_server("MSdoesnotexist")


# ---- wire shapes --------------------------------------------------------------------------------


async def test_unknown_fields_survive_an_update(target: Target) -> None:
    emulator = emulator_only(target)
    seeded = emulator.seed(
        {
            "servers": [
                {
                    "name": "legacy",
                    "futureField": {"x": 1},
                    "loginPageURL": "https://l.example.com",
                    "tags": ["a", "b"],
                }
            ]
        }
    )
    async with target.client() as api:
        server = await api.load_server(seeded["servers"][0]["id"])
        await api.update_server({**server.fields, "description": "new"})
        after = await api.load_server(server.id)
    assert after.fields["futureField"] == {"x": 1}
    assert after.fields["loginPageURL"] == "https://l.example.com"
    assert after.fields["description"] == "new"


async def test_categorized_scopes_are_read_and_written_back_in_that_shape() -> None:
    config = EmulatorConfig(project_id=PROJECT, management_key=KEY, scopes_format="categorized")
    categorized = {"permissionsScopes": [{"name": "p"}], "attributesScopes": [{"name": "a"}]}
    with running_emulator(config) as emulator:
        emulator.seed({"servers": [{"name": "cat", "approvedScopes": categorized}]})
        async with DescopeClient(project_id=PROJECT, management_key=KEY, base_url=emulator.base_url) as api:
            (server,) = await api.load_all_servers()
            assert api.scopes_format == "categorized"
            assert [s["name"] for s in server.fields["approvedScopes"]] == ["p", "a"]
            await api.update_server({**server.fields, "description": "d"})
        raw = emulator.http.post("/v1/mgmt/mcp/server/load", json={"id": server.id}).json()
    assert raw["server"]["approvedScopes"] == categorized
    assert raw["server"]["description"] == "d"


async def test_the_list_shape_is_written_when_the_project_uses_it() -> None:
    """A project whose API answers with the guide's flat list (the emulator's --scopes-format list)
    is written in that shape once a load has shown it."""
    config = EmulatorConfig(project_id=PROJECT, management_key=KEY, scopes_format="list")
    with running_emulator(config) as emulator:
        async with DescopeClient(project_id=PROJECT, management_key=KEY, base_url=emulator.base_url) as api:
            before = api.scopes_format  # the default, before anything is known
            server = await api.create_server({"name": "l", **SERVER})
            await api.load_all_servers()  # learns the shape this project answers in
            assert (before, api.scopes_format) == ("categorized", "list")
            await api.update_server({**server.fields, "description": "again"})
        raw = emulator.http.post("/v1/mgmt/mcp/server/load", json={"id": server.id}).json()
    assert [s["name"] for s in raw["server"]["approvedScopes"]] == ["read", "sync"]
    assert raw["server"]["description"] == "again"


async def test_zero_values_are_read_as_missing(target: Target) -> None:
    async with target.client() as api:
        server = await api.create_server(
            {"name": target.prefix + "z", "skipConsentScreen": False, "tags": []}
        )
        loaded = await api.load_server(server.id)
        assert not loaded.fields.get("skipConsentScreen")
        assert loaded.tags == ()
        await api.delete_servers([server.id])


# ---- the Resources surface --------------------------------------------------------------------------

RESOURCE = {
    "description": "contract test resource",
    "tags": ["team:contract"],
    "approvedScopes": [
        {"name": "read", "description": "Read", "category": "permissions"},
        {"name": "email", "description": "Email", "category": "attributes"},
    ],
    "dynamicRegistration": {"enabled": True},
    "loginPageURL": "https://auth.example.com/login",
}


async def test_an_mcp_server_made_as_a_resource_lives_and_dies_with_its_clients(target: Target) -> None:
    """Resource create (flat body), load-all (GET, type mcp only), load by id (GET ?id=), update
    ({"resource"}, full replacement with what was read), clients through the MCP client endpoints
    with the Resource's id as mcpServerId, and delete."""
    name = target.prefix + "res"
    uri = f"https://{name}.contract.example.com/mcp"
    async with target.client() as api:
        created = await api.create_resource({"name": name, "audienceWhitelist": [uri], **RESOURCE})
        assert created.surface == "resources"
        assert created.id
        listed = [r for r in await api.load_all_resources() if r.name == name]
        assert [r.id for r in listed] == [created.id]
        loaded = await api.load_resource(created.id)
        assert loaded.fields["audienceWhitelist"] == [uri]
        assert [(s["name"], s["category"]) for s in loaded.fields["approvedScopes"]] == [
            ("read", "permissions"),
            ("email", "attributes"),
        ]
        assert loaded.tags == ("team:contract",)  # kept in dynamicRegistrationSettings.tags

        updated = await api.update_resource({**loaded.fields, "description": "changed"})
        assert updated.fields["description"] == "changed"
        assert updated.fields["loginPageURL"] == "https://auth.example.com/login"  # full object sent back

        client = await api.create_client(created.id, {"name": "agent", "scopes": ["read"]})
        assert [c.name for c in await api.search_clients(created.id)] == ["agent"]
        assert await api.get_client_secret(created.id, client.id) == client.secret
        rotated = await api.rotate_client_secret(created.id, client.id)
        assert rotated != client.secret

        await api.delete_resources([created.id])
        assert not [r for r in await api.load_all_resources() if r.name == name]
        with pytest.raises(NotFound):
            await api.load_resource(created.id)
