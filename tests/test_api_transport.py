"""The client's HTTP layer and its at-most-once calls, against a scripted in-process transport.

Each call takes its method and path from the kind's Endpoint and joins the path to the base URL,
keeping a path the base URL has of its own; a GET sends query parameters and no body. A create or a
rotation whose answer is lost is settled by looking, never by blindly sending it again.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import pytest

from reconciler import kinds
from reconciler.descope.client import DescopeClient
from reconciler.descope.endpoints import API_PREFIX, Endpoint
from reconciler.descope.mcp_servers import READ_SECRET
from reconciler.descope.transport import RetryPolicy
from reconciler.errors import AmbiguousObject, ApiUnavailable, BadRequest, NotFound, UsageError
from reconciler.secret import Secret

KEY = "K2-transport-management-key-3f8a"
PROJECT = "P2TRANSPORT"
QUICK = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.01)
THINGS = Endpoint("GET", API_PREFIX + "things/search")

Answer = Callable[[], httpx.Response]


class Script:
    """Answers a request to ``endpoint`` (its path after /v1/mgmt/mcp/) with ``answers[endpoint]()``;
    records the requests, their JSON bodies by endpoint, and the client's sleeps."""

    def __init__(self, answers: Mapping[str, Answer]) -> None:
        self.answers = answers
        self.requests: list[httpx.Request] = []
        self.sent: Counter[str] = Counter()
        self.bodies: defaultdict[str, list[Any]] = defaultdict(list)
        self.slept: list[float] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        endpoint = request.url.path.rpartition(API_PREFIX)[2]
        self.sent[endpoint] += 1
        self.bodies[endpoint].append(json.loads(request.content) if request.content else None)
        return self.answers[endpoint]()

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    def client(self, base_url: str = "https://api.example", **options: Any) -> DescopeClient:
        options.setdefault("retry", QUICK)
        return DescopeClient(
            project_id=PROJECT,
            management_key=KEY,
            base_url=base_url,
            transport=httpx.MockTransport(self),
            sleep=self.sleep,
            **options,
        )


def ok(data: Any) -> Answer:
    return lambda: httpx.Response(200, json=data)


def refused(status: int, data: Any) -> Answer:
    return lambda: httpx.Response(status, json=data)


def dropped() -> httpx.Response:
    """The connection closes before the answer: the call may or may not have taken effect."""
    raise httpx.RemoteProtocolError("Server disconnected without sending a response.")


def sequence(*answers: Answer) -> Answer:
    """Each call answers with the next of ``answers``."""
    left = list(answers)

    def next_answer() -> httpx.Response:
        return left.pop(0)()

    return next_answer


def servers(*ids_and_names: str) -> Answer:
    """A servers/all answer: ``"S1:s"`` is the server S1 named s."""
    return ok(
        {"servers": [dict(zip(("id", "name"), item.split(":"), strict=True)) for item in ids_and_names]}
    )


# ---- method, path, query ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://api.example", "https://api.example/v1/mgmt/mcp/servers/all"),
        ("https://api.example/", "https://api.example/v1/mgmt/mcp/servers/all"),
        ("https://proxy.example/descope", "https://proxy.example/descope/v1/mgmt/mcp/servers/all"),
        ("https://proxy.example/descope/", "https://proxy.example/descope/v1/mgmt/mcp/servers/all"),
        ("http://127.0.0.1:8765/a/b", "http://127.0.0.1:8765/a/b/v1/mgmt/mcp/servers/all"),
    ],
)
async def test_the_path_is_joined_to_the_base_url_and_its_own_path(base_url: str, expected: str) -> None:
    script = Script({"servers/all": servers()})
    async with script.client(base_url) as api:
        assert await api.load_all_servers() == []
    (request,) = script.requests
    assert (request.method, str(request.url)) == ("POST", expected)
    assert script.bodies["servers/all"] == [{}]
    assert request.headers["Authorization"] == f"Bearer {PROJECT}:{KEY}"


async def test_a_post_sends_its_json_body_to_the_kinds_endpoint() -> None:
    script = Script({"server/client/secret": ok({"cleartext": "read-secret-0001"})})
    async with script.client() as api:
        assert await api.get_client_secret("S1", "C1") == Secret("read-secret-0001")
    (request,) = script.requests
    assert request.method == "POST"
    assert request.url.path == READ_SECRET.path == "/v1/mgmt/mcp/server/client/secret"
    assert script.bodies["server/client/secret"] == [{"id": "C1", "mcpServerId": "S1"}]


async def test_a_get_sends_its_query_and_no_body(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "reconciler.api")
    script = Script({"things/search": ok({"things": []})})
    async with script.client("https://proxy.example/descope") as api:
        data = await api._call(THINGS, query={"name": "a b&c", "page": "2"}, idempotent=True)
    assert data == {"things": []}
    (request,) = script.requests
    assert request.method == "GET"
    assert request.url.path == "/descope/v1/mgmt/mcp/things/search"
    assert dict(request.url.params) == {"name": "a b&c", "page": "2"}
    assert request.content == b""
    assert "content-type" not in request.headers
    assert "GET /v1/mgmt/mcp/things/search -> 200" in caplog.text


async def test_an_error_names_the_method_and_the_path() -> None:
    script = Script(
        {"things/search": refused(404, {"errorCode": "E011003", "errorDescription": "no such thing"})}
    )
    async with script.client() as api:
        with pytest.raises(NotFound) as caught:
            await api._call(THINGS, query={"id": "T1"}, idempotent=True)
    assert str(caught.value) == "GET /v1/mgmt/mcp/things/search failed: 404 E011003 no such thing"
    assert caught.value.endpoint == THINGS
    assert (caught.value.status, caught.value.error_code) == (404, "E011003")


async def test_a_post_error_names_the_method_and_the_path() -> None:
    script = Script({"server/create": refused(400, {"errorCode": "E011003", "errorDescription": "no name"})})
    async with script.client() as api:
        with pytest.raises(BadRequest) as caught:
            await api.create_server({"description": "no name"})
    assert str(caught.value) == "POST /v1/mgmt/mcp/server/create failed: 400 E011003 no name"
    assert caught.value.endpoint == kinds.SERVER.endpoints.create


async def test_a_get_with_a_body_is_refused_before_anything_is_sent() -> None:
    script = Script({})
    async with script.client() as api:
        with pytest.raises(TypeError, match="sends no body"):
            await api._call(THINGS, {"x": 1}, idempotent=True)
    assert script.requests == []


@pytest.mark.parametrize("base_url", ["https://api.example/?region=eu", "https://api.example/descope#top"])
def test_a_base_url_with_a_query_or_a_fragment_is_a_usage_error(base_url: str) -> None:
    with pytest.raises(
        UsageError, match=r"DESCOPE_BASE_URL\) cannot be used: it may have a path but no query"
    ):
        DescopeClient(project_id=PROJECT, management_key=KEY, base_url=base_url)


# ---- creates whose outcome is unknown ----------------------------------------------------------------


async def test_a_lost_create_with_several_candidates_is_ambiguous_and_never_sent_again() -> None:
    script = Script({"server/create": dropped, "servers/all": servers("S0:s", "S1:s", "S2:s")})
    async with script.client() as api:
        with pytest.raises(AmbiguousObject) as caught:
            await api.create_server({"name": "s"}, exclude_ids=["S0"])
    assert (
        str(caught.value) == "POST /v1/mgmt/mcp/server/create failed: several new servers named 's': S1, S2"
    )
    assert script.sent == {"server/create": 1, "servers/all": 1}


async def test_a_lost_create_found_once_is_taken_as_made() -> None:
    script = Script({"server/create": dropped, "servers/all": servers("S0:s", "S1:s", "T:t")})
    async with script.client() as api:
        found = await api.create_server({"name": "s"}, exclude_ids=["S0"])
    assert found.id == "S1"
    assert script.sent == {"server/create": 1, "servers/all": 1}
    assert script.slept == []


async def test_a_create_that_succeeds_on_a_retry_deletes_what_the_lost_one_made_late() -> None:
    script = Script(
        {
            "server/create": sequence(dropped, ok({"server": {"id": "S2", "name": "s"}})),
            # The lookup finds nothing new; after the settle wait, the lost create has landed as S1.
            "servers/all": sequence(servers("S0:s"), servers("S0:s", "S1:s", "S2:s", "T:t")),
            "servers/delete": ok({}),
        }
    )
    async with script.client(timeout=7.0) as api:
        created = await api.create_server({"name": "s"}, exclude_ids=["S0"])
    assert created.id == "S2"
    assert script.bodies["servers/delete"] == [{"ids": ["S1"]}]
    assert script.sent == {"server/create": 2, "servers/all": 2, "servers/delete": 1}
    assert script.slept[-1] == 7.0  # waited as long as a request may take before looking again


async def test_a_client_create_that_succeeds_on_a_retry_deletes_the_late_duplicate() -> None:
    late = [{"id": "C1", "name": "c"}, {"id": "C2", "name": "c"}]
    script = Script(
        {
            "server/client/create": sequence(
                dropped, ok({"id": "C2", "clientId": "cid2", "cleartext": "created-secret-02"})
            ),
            "server/clients/search": sequence(
                ok({"clients": [], "total": 0}), ok({"clients": late, "total": 2})
            ),
            "server/clients/delete": ok({}),
        }
    )
    async with script.client() as api:
        created = await api.create_client("S1", {"name": "c"})
    assert (created.id, created.client_id, created.recovered) == ("C2", "cid2", False)
    assert created.secret == Secret("created-secret-02")
    assert script.bodies["server/clients/delete"] == [{"ids": ["C1"], "mcpServerId": "S1"}]


async def test_a_lost_client_create_found_once_reads_its_secret_back() -> None:
    script = Script(
        {
            "server/client/create": dropped,
            "server/clients/search": ok(
                {"clients": [{"id": "C1", "clientId": "cid1", "name": "c"}], "total": 1}
            ),
            "server/client/secret": ok({"cleartext": "found-secret-0001"}),
        }
    )
    async with script.client() as api:
        created = await api.create_client("S1", {"name": "c"})
    assert (created.id, created.client_id, created.recovered) == ("C1", "cid1", True)
    assert created.secret == Secret("found-secret-0001")
    assert script.bodies["server/client/secret"] == [{"id": "C1", "mcpServerId": "S1"}]
    assert script.sent == {"server/client/create": 1, "server/clients/search": 1, "server/client/secret": 1}


async def test_creates_lost_every_time_with_nothing_found_end_with_the_last_failure() -> None:
    script = Script({"server/create": dropped, "servers/all": servers()})
    async with script.client() as api:
        with pytest.raises(ApiUnavailable, match="server/create failed: the connection was dropped"):
            await api.create_server({"name": "s"})
    assert script.sent == {"server/create": QUICK.attempts, "servers/all": QUICK.attempts}


# ---- rotations whose outcome is unknown --------------------------------------------------------------


async def test_a_lost_rotation_that_changed_nothing_is_sent_again_and_the_current_secret_wins() -> None:
    script = Script(
        {
            "server/client/secret/rotate": sequence(dropped, ok({"cleartext": "rotated-secret-02"})),
            # The lookup: unchanged, so rotate again; after the settle wait, the lost one has landed.
            "server/client/secret": sequence(
                ok({"cleartext": "before-secret-001"}), ok({"cleartext": "landed-secret-03"})
            ),
        }
    )
    async with script.client(timeout=3.0) as api:
        secret = await api.rotate_client_secret("S1", "C1", before=Secret("before-secret-001"))
    assert secret == Secret("landed-secret-03")
    assert script.sent == {"server/client/secret/rotate": 2, "server/client/secret": 2}
    assert script.slept[-1] == 3.0


async def test_a_lost_rotation_that_changed_the_secret_is_not_sent_again() -> None:
    script = Script(
        {
            "server/client/secret/rotate": dropped,
            "server/client/secret": ok({"cleartext": "changed-secret-01"}),
        }
    )
    async with script.client() as api:
        secret = await api.rotate_client_secret("S1", "C1", before=Secret("before-secret-001"))
    assert secret == Secret("changed-secret-01")
    assert script.sent == {"server/client/secret/rotate": 1, "server/client/secret": 1}
    assert script.slept == []
