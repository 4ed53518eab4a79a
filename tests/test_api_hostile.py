"""The client against a hostile or broken API: every answer is bounded in time, memory and harm.

A tiny HTTP/1.1 server on 127.0.0.1 (raw asyncio, in a thread of its own) answers each request with
whatever the test scripts: absurd totals, short pages, endless or dripping bodies, wrong shapes, a
Retry-After of an hour, error bodies that echo the Authorization header. Each case must end in a
clean ReconcilerError with a clear message, in bounded time (and memory where it matters), and no
text the client shows or logs may hold the management key.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import run
from reconciler.descope import mcp_servers, transport
from reconciler.descope.client import DescopeClient
from reconciler.descope.endpoints import API_PREFIX
from reconciler.descope.transport import RetryPolicy
from reconciler.errors import (
    ApiError,
    ApiUnavailable,
    RateLimited,
    ReconcilerError,
    ServerError,
    Unauthorized,
    UsageError,
)
from reconciler.throttle import Throttle, ThrottleSettings
from tests.conftest import project_yaml

KEY = "K2-hostile-management-key-7e4b91"
PROJECT = "P2HOSTILE"
BEARER = f"Bearer {PROJECT}:{KEY}"
MIB = 1024 * 1024
UNLIMITED = ThrottleSettings(concurrency=8, requests=100_000, per_seconds=1.0)
QUICK = RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.01, rate_limited_attempts=3)
# A loaded 2-core machine runs the suite with other work: bounds are generous, but finite.
MARGIN_S = 4.0

Respond = Callable[[str, dict[str, Any], asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture(autouse=True)
def _guard_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The canary guard then fails any test in which this key reaches a log or an output stream."""
    monkeypatch.setenv("DESCOPE_MANAGEMENT_KEY", KEY)


# ---- the hostile server ---------------------------------------------------------------------------


@dataclass
class Hostile:
    base_url: str
    seen: list[str] = field(default_factory=list)  # the endpoints asked for, in order
    lines: list[str] = field(default_factory=list)  # the request lines, in order ("POST /v1/... HTTP/1.1")

    def count(self, endpoint: str) -> int:
        return self.seen.count(endpoint)


@contextmanager
def hostile(respond: Respond) -> Iterator[Hostile]:
    """Serve ``respond(endpoint, body, writer)`` on 127.0.0.1; each connection serves one request."""
    loop = asyncio.new_event_loop()
    handle = Hostile("")

    async def serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            lengths = [
                line.split(":", 1)[1] for line in head[1:] if line.lower().startswith("content-length:")
            ]
            raw = await reader.readexactly(int(lengths[0]) if lengths else 0)
            handle.lines.append(head[0])
            endpoint = head[0].split(" ")[1].removeprefix(API_PREFIX)
            handle.seen.append(endpoint)
            await respond(endpoint, json.loads(raw) if raw else {}, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client gave up on the answer (what these tests want), or the server stops
        finally:
            writer.close()

    thread = threading.Thread(target=loop.run_forever, name="hostile", daemon=True)
    thread.start()
    starting = asyncio.start_server(serve_one, "127.0.0.1", 0)
    server = asyncio.run_coroutine_threadsafe(starting, loop).result(10)
    handle.base_url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    async def shutdown() -> None:
        server.close()
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()

    try:
        yield handle
    finally:
        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def http(
    status: int = 200,
    body: bytes | str | Any = b"{}",
    *,
    reason: str = "OK",
    headers: Sequence[tuple[str, str]] = (),
    length: int | None = None,
) -> bytes:
    """A whole HTTP/1.1 answer; a body that is not bytes or str is sent as JSON."""
    if isinstance(body, str):
        body = body.encode()
    elif not isinstance(body, bytes):
        body = json.dumps(body).encode()
    lines = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body) if length is None else length}"]
    lines += ["Connection: close", *(f"{name}: {value}" for name, value in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def answering(answer: Callable[[str, dict[str, Any]], bytes]) -> Respond:
    async def respond(endpoint: str, body: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        writer.write(answer(endpoint, body))
        await writer.drain()

    return respond


def always(data: bytes) -> Respond:
    return answering(lambda _endpoint, _body: data)


def dripping(fast: bytes, slow: bytes, every: float = 0.1) -> Respond:
    """Send ``fast`` at once, then ``slow`` one byte at a time, ``every`` seconds apart."""

    async def respond(_endpoint: str, _body: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        writer.write(fast)
        for byte in slow:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(every)

    return respond


def streaming(head: bytes, chunk: bytes, total: int) -> Respond:
    """Send ``head``, then ``chunk`` over and over until ``total`` bytes or the client hangs up."""

    async def respond(_endpoint: str, _body: dict[str, Any], writer: asyncio.StreamWriter) -> None:
        writer.write(head)
        sent = 0
        while sent < total:
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)

    return respond


def client(base_url: str, **options: Any) -> DescopeClient:
    options.setdefault("retry", QUICK)
    options.setdefault("timeout", 5.0)
    return DescopeClient(
        project_id=PROJECT, management_key=KEY, base_url=base_url, throttle=Throttle(UNLIMITED), **options
    )


def clients(first: int, count: int, **extra: Any) -> list[dict[str, Any]]:
    return [
        {"id": f"C{n:06}", "clientId": f"cid{n}", "name": f"c{n}", **extra}
        for n in range(first, first + count)
    ]


def clean(error: BaseException) -> str:
    """The message of an error as the CLI shows it, checked: a ReconcilerError, no key, no chained cause."""
    assert isinstance(error, ReconcilerError)
    message = str(error)
    assert KEY not in message
    assert error.__cause__ is None
    assert "internal error" not in message
    return message


# ---- search fan-out ---------------------------------------------------------------------------------


@pytest.mark.parametrize("total", ["1000000000", '"1000000000"', "1e9"])
async def test_a_huge_total_is_refused_before_any_further_page(total: str) -> None:
    page = f'{{"clients": {json.dumps(clients(0, 100))}, "total": {total}}}'
    with hostile(always(http(body=page))) as server:
        async with client(server.base_url) as api_client:
            tracemalloc.start()
            try:
                with pytest.raises(ApiError) as caught:
                    await api_client.search_clients("S1")
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
    message = clean(caught.value)
    assert "1,000,000,000 clients, more than the 100,000" in message
    assert server.count("server/clients/search") == 1  # not one more page
    assert peak < 16 * MIB  # the unbounded fan-out made 10,000,000 coroutines first (over 6 GB)


def paged(total: Callable[[int], int], page_of: Callable[[int], list[dict[str, Any]]]) -> Respond:
    """Search pages: ``page_of(page)`` clients and ``total(request number)`` as the total."""
    calls = 0

    def answer(endpoint: str, body: dict[str, Any]) -> bytes:
        nonlocal calls
        calls += 1
        return http(body={"clients": page_of(body.get("page", 0)), "total": total(calls)})

    return answering(answer)


async def test_pages_that_add_up_are_read_whole() -> None:
    respond = paged(lambda _: 250, lambda page: clients(page * 100, min(100, 250 - page * 100)))
    with hostile(respond) as server:
        async with client(server.base_url) as api_client:
            found = await api_client.search_clients("S1")
    assert [c.name for c in found] == [f"c{n}" for n in range(250)]
    assert server.count("server/clients/search") == 3


async def test_a_short_page_before_the_last_is_an_error_after_a_few_reads() -> None:
    respond = paged(lambda _: 250, lambda page: clients(page * 100, 40 if page == 1 else 100))
    with hostile(respond) as server:
        async with client(server.base_url) as api_client:
            started = time.monotonic()
            with pytest.raises(ApiError) as caught:
                await api_client.search_clients("S1")
    message = clean(caught.value)
    assert "page 2 of 3 held 40 clients, not 100" in message
    assert f"in {mcp_servers.SEARCH_READS} reads" in message
    assert server.count("server/clients/search") == 3 * mcp_servers.SEARCH_READS
    assert time.monotonic() - started < MARGIN_S


async def test_a_list_that_changed_while_it_was_read_is_read_again() -> None:
    # A client registered between the first page and the second: the second read is consistent.
    respond = paged(lambda call: 151 if call == 2 else 150, lambda page: clients(page * 100, 100 - page * 50))
    with hostile(respond) as server:
        async with client(server.base_url) as api_client:
            found = await api_client.search_clients("S1")
    assert len(found) == 150
    assert server.count("server/clients/search") == 4


async def test_a_total_that_keeps_changing_is_an_error_not_an_endless_loop() -> None:
    respond = paged(lambda call: 150 + call, lambda page: clients(page * 100, 100 if page == 0 else 51))
    with hostile(respond) as server:
        async with client(server.base_url) as api_client:
            with pytest.raises(ApiError) as caught:
                await api_client.search_clients("S1")
    assert "the total went from" in clean(caught.value)
    assert server.count("server/clients/search") == 2 * mcp_servers.SEARCH_READS


async def test_a_client_on_two_pages_is_an_error() -> None:
    respond = paged(lambda _: 200, lambda _page: clients(0, 100))  # page 1 repeats page 0
    with hostile(respond) as server:
        async with client(server.base_url) as api_client:
            with pytest.raises(ApiError, match="a client was listed twice"):
                await api_client.search_clients("S1")


async def test_an_empty_first_page_of_a_nonzero_total_is_an_error() -> None:
    with hostile(paged(lambda _: 5, lambda _page: [])) as server:
        async with client(server.base_url) as api_client:
            with pytest.raises(ApiError, match="0 clients were listed of a total of 5"):
                await api_client.search_clients("S1")
        assert server.count("server/clients/search") == mcp_servers.SEARCH_READS


async def test_pages_much_smaller_than_asked_for_cannot_fan_out_past_the_page_cap() -> None:
    with hostile(paged(lambda _: 5_000, lambda page: clients(page, 1))) as server:
        async with client(server.base_url) as api_client:
            with pytest.raises(ApiError) as caught:
                await api_client.search_clients("S1")
    assert "5,000 clients in pages of 1 take 5,000 pages, more than the 1,000" in clean(caught.value)
    assert server.count("server/clients/search") == 1


async def test_the_pages_of_one_search_share_a_byte_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mcp_servers, "MAX_SEARCH_BYTES", 256 * 1024)
    fat = "x" * 1_000  # 100 clients of ~1 KB: ~100 KB a page, 10 pages
    respond = paged(lambda _: 1_000, lambda page: clients(page * 100, 100, description=fat))
    with hostile(respond) as server:
        async with client(server.base_url) as api_client:
            with pytest.raises(ApiError, match=r"more than 0\.25 MiB in all"):
                await api_client.search_clients("S1")


async def test_more_servers_than_the_cap_are_refused() -> None:
    body = {"servers": [{"id": f"S{n}", "name": f"s{n}"} for n in range(transport.MAX_SERVERS + 1)]}
    with hostile(always(http(body=body))) as server:
        async with client(server.base_url) as api_client:
            with pytest.raises(ApiError, match="10,001 servers, more than the 10,000"):
                await api_client.load_all_servers()
        assert server.count("server/clients/search") == 0


# ---- Retry-After ------------------------------------------------------------------------------------

RATE_LIMITED = {"errorCode": "E130429", "errorDescription": "rate limit exceeded"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3600", "asked to wait 3600 s (Retry-After), more than the 120 s this tool waits"),
        ("121", "asked to wait 121 s"),
        ("99999999999999999999999", "asked to wait 99999999999999999999999 s"),
        ("inf", "Retry-After 'inf' is not a number of seconds"),
        ("nan", "Retry-After 'nan' is not a number of seconds"),
        ("-1", "Retry-After '-1' is not a number of seconds"),
        ("1e9", "Retry-After '1e9' is not a number of seconds"),
        ("soon", "Retry-After 'soon' is not a number of seconds"),
        ("Wed, 21 Oct 2015 07:28:00 GMT", "is not a number of seconds"),
    ],
)
async def test_a_retry_after_past_the_ceiling_or_unreadable_ends_the_call_at_once(
    value: str, expected: str
) -> None:
    answer = http(429, RATE_LIMITED, reason="Too Many Requests", headers=[("Retry-After", value)])
    with hostile(always(answer)) as server:
        async with client(server.base_url) as api_client:
            started = time.monotonic()
            with pytest.raises(RateLimited) as caught:
                await api_client.load_all_servers()
            elapsed = time.monotonic() - started
        assert server.count("servers/all") == 1
    message = clean(caught.value)
    assert expected in message
    assert message.startswith("POST /v1/mgmt/mcp/servers/all failed: 429 E130429 rate limit exceeded; ")
    assert elapsed < MARGIN_S


async def test_a_retry_after_at_the_ceiling_is_honoured() -> None:
    now = 0.0

    def clock() -> float:
        return now

    async def sleep(seconds: float) -> None:
        nonlocal now
        now += seconds

    calls = 0

    def answer(_endpoint: str, _body: dict[str, Any]) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 1:
            return http(429, RATE_LIMITED, reason="Too Many Requests", headers=[("Retry-After", "120")])
        return http(body={"servers": []})

    with hostile(answering(answer)) as server:
        throttle = Throttle(UNLIMITED, clock=clock, sleep=sleep)
        async with DescopeClient(
            project_id=PROJECT, management_key=KEY, base_url=server.base_url, throttle=throttle, retry=QUICK
        ) as api_client:
            assert await api_client.load_all_servers() == []
    assert now == pytest.approx(120, abs=1)  # the whole run paused for the 120 s asked for


# ---- deadlines --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "respond",
    [
        pytest.param(dripping(http(body=b"", length=10_000), b"x" * 10_000), id="body"),
        pytest.param(dripping(b"", http(body={"servers": []})), id="headers"),
    ],
)
async def test_a_server_that_drips_is_cut_off_at_the_deadline(respond: Respond) -> None:
    # A byte every 0.1 s never trips a per-read timeout of 1 s: only the whole-request deadline can.
    with hostile(respond) as server:
        async with client(server.base_url, timeout=1.0) as api_client:
            started = time.monotonic()
            with pytest.raises(ApiUnavailable) as caught:
                await api_client.load_all_servers()
            elapsed = time.monotonic() - started
        assert server.count("servers/all") == QUICK.attempts
    assert "timed out: no whole answer within 1 s" in clean(caught.value)
    assert QUICK.attempts * 1.0 <= elapsed < QUICK.attempts * 1.0 + MARGIN_S


async def test_a_create_that_drips_is_looked_up_never_sent_twice() -> None:
    with hostile(dripping(b"", http(body={"id": "C1", "cleartext": "never-read-secret-01"}))) as server:
        async with client(server.base_url, timeout=1.0) as api_client:
            started = time.monotonic()
            with pytest.raises(ApiUnavailable):
                await api_client.create_client("S1", {"name": "c"})
            elapsed = time.monotonic() - started
    # The create's outcome is unknown: the client looks (the search drips too, and fails) rather
    # than create again.
    assert server.count("server/client/create") == 1
    assert server.count("server/clients/search") == QUICK.attempts
    assert elapsed < (1 + QUICK.attempts) * 1.0 + MARGIN_S


# ---- sizes ------------------------------------------------------------------------------------------

UNSIZED = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"


async def test_an_endless_body_is_cut_off_at_the_cap_in_bounded_memory() -> None:
    respond = streaming(UNSIZED + b'{"servers": [], "pad": "', b"x" * MIB, 1024 * MIB)
    with hostile(respond) as server:
        async with client(server.base_url, timeout=60.0) as api_client:
            started = time.monotonic()
            tracemalloc.start()
            try:
                with pytest.raises(ApiError) as caught:
                    await api_client.load_all_servers()
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            elapsed = time.monotonic() - started
        assert server.count("servers/all") == 1  # too large is not retried
    assert "the response is larger than 32 MiB; stopped reading it" in clean(caught.value)
    assert peak < transport.MAX_RESPONSE_BYTES + 16 * MIB
    assert elapsed < 30


async def test_a_declared_length_past_the_cap_is_refused_unread() -> None:
    with hostile(streaming(http(body=b"", length=10**12), b"x" * MIB, 64 * MIB)) as server:
        async with client(server.base_url) as api_client:
            started = time.monotonic()
            with pytest.raises(ApiError, match="larger than 32 MiB"):
                await api_client.load_all_servers()
            assert time.monotonic() - started < MARGIN_S


async def test_a_gzip_bomb_counts_at_its_decompressed_size() -> None:
    bomb = gzip.compress(b'{"servers": [], "pad": "' + b" " * (40 * MIB) + b'"}', compresslevel=9)
    assert len(bomb) < MIB
    answer = http(body=bomb, headers=[("Content-Encoding", "gzip")])
    with hostile(always(answer)) as server:
        async with client(server.base_url) as api_client:
            with pytest.raises(ApiError, match="larger than 32 MiB"):
                await api_client.load_all_servers()


async def test_a_huge_error_body_is_read_only_as_far_as_its_message() -> None:
    head = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\n"
    with hostile(streaming(head, b"<html>" * 100_000, 1024 * MIB)) as server:
        async with client(server.base_url) as api_client:
            started = time.monotonic()
            with pytest.raises(ServerError) as caught:
                await api_client.load_all_servers()
            assert time.monotonic() - started < MARGIN_S
    assert clean(caught.value) == "POST /v1/mgmt/mcp/servers/all failed: 503 Service Unavailable"


# ---- shapes -----------------------------------------------------------------------------------------

DEEP = b"[" * 100_000 + b"]" * 100_000
FAIRLY_DEEP = b'{"servers": [{"id": "S1", "name": "s", "extra": ' + b"[" * 70 + b"]" * 70 + b"}]}"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"servers": "abc"}', "unexpected response: servers is a string, not a list"),
        (b'{"servers": [1, 2]}', "unexpected response: servers[0] is a number, not an object"),
        (b'{"servers": [{"id": "S1", "name": 5}]}', "servers[0].name is a number, not a string"),
        (b'{"servers": [{"id": 7, "name": "s"}]}', "servers[0].id is a number, not a string"),
        (b'{"servers": [{"name": "s", "tags": "abc"}]}', "servers[0].tags is a string, not a list"),
        (b'{"servers": [{"name": "s", "tags": [1]}]}', "servers[0].tags[0] is a number, not a string"),
        (b'{"servers": [{"name": "s", "approvedScopes": 5}]}', "servers[0].approvedScopes (a list or"),
        (
            b'{"servers": [{"name": "s", "approvedScopes": [{"name": "a", "values": [1, "x"]}]}]}',
            "servers[0].approvedScopes[0].values[0] is a number",
        ),
        (
            b'{"servers": [{"name": "s", "approvedScopes": {"permissionsScopes": "x"}}]}',
            "servers[0].approvedScopes.permissionsScopes is a string, not a list",
        ),
        (
            b'{"servers": [{"name": "s", "cimdSettings": {"domainPolicies": {"policies": 3}}}]}',
            "servers[0].cimdSettings.domainPolicies.policies is a number, not a list",
        ),
        (b'{"servers": [{"name": "s", "sessionSettings": []}]}', "servers[0].sessionSettings is a list"),
        (b"[1, 2]", "the response is a list, not a JSON object"),
        (b'"servers"', "the response is a string, not a JSON object"),
        (b"42", "the response is a number, not a JSON object"),
        (b"null", "the response is null, not a JSON object"),
        (b"<html><body>502 Bad Gateway</body></html>", "the response is not valid JSON"),
        (b"", "the response is not valid JSON"),
        (b'{"servers": [], "x": NaN}', "the response is not valid JSON"),
        (b'{"servers": [], "x": 1' + b"0" * 5_000 + b"}", "the response is not valid JSON"),
        (b'{"servers": [{"name": "\xff"}]}', "the response is not valid JSON"),
        (b'{"servers": [], "x": 1e999}', "a number too large"),
        (b'{"servers": [{"name": "\\ud800"}]}', "not valid Unicode"),
        (DEEP, "nested more than 64 levels deep"),
        (FAIRLY_DEEP, "nested more than 64 levels deep"),
    ],
)
async def test_answers_of_the_wrong_shape_are_clean_api_errors(body: bytes, expected: str) -> None:
    with hostile(always(http(body=body))) as server:
        async with client(server.base_url) as api_client:
            with pytest.raises(ApiError) as caught:
                await api_client.load_all_servers()
        assert server.count("servers/all") == 1  # a wrong answer is not asked for again
    message = clean(caught.value)
    assert message.startswith("POST /v1/mgmt/mcp/servers/all failed: 200 ")
    assert expected in message
    assert caught.value.status == 200


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"clients": "x"}, "clients is a string, not a list"),
        ({"clients": [{"id": "C1", "name": ["c"]}]}, "clients[0].name is a list, not a string"),
        ({"clients": [{"id": "C1", "scopes": "read"}]}, "clients[0].scopes is a string, not a list"),
        ({"clients": [], "total": "many"}, "total is a string, not a count"),
        ({"clients": [], "total": -1}, "total is a number, not a count"),
        ({"clients": [], "total": True}, "total is a boolean, not a count"),
        ({"clients": [], "total": 2.5}, "total is a number, not a count"),
    ],
)
async def test_search_pages_of_the_wrong_shape_are_clean_api_errors(body: Any, expected: str) -> None:
    with hostile(always(http(body=body))) as server:
        async with client(server.base_url) as api_client:
            with pytest.raises(ApiError) as caught:
                await api_client.search_clients("S1")
    assert expected in clean(caught.value)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"clientId": "x", "cleartext": "created-secret-0001"}, "the response has no id"),
        ({"id": 5, "cleartext": "created-secret-0002"}, "id is a number, not a string"),
        ({"id": "C1", "clientId": {}, "cleartext": "created-secret-0003"}, "clientId is an object"),
        ({"id": "C1", "cleartext": 12345678}, "the response has no secret"),
    ],
)
async def test_a_create_answer_of_the_wrong_shape_never_shows_the_secret(body: Any, expected: str) -> None:
    with hostile(always(http(body=body))) as server:
        async with client(server.base_url) as api_client:
            with pytest.raises(ApiError) as caught:
                await api_client.create_client("S1", {"name": "c"})
    message = clean(caught.value)
    assert expected in message
    assert "created-secret" not in message


async def test_a_ten_thousand_character_name_is_data_not_an_error() -> None:
    name = "n" * 10_000
    body = {"servers": [{"id": "S1", "name": name, "description": "d" * 10_000}]}
    with hostile(always(http(body=body))) as server:
        async with client(server.base_url) as api_client:
            (found,) = await api_client.load_all_servers()
    assert found.name == name
    assert found.fields["description"] == "d" * 10_000


# ---- the key never shows ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (
            http(
                401,
                {
                    "errorCode": KEY,
                    "errorDescription": f"bad header: Authorization: {BEARER}",
                    "errorMessage": KEY,
                },
                reason=f"Unauthorized {KEY}",
                headers=[("WWW-Authenticate", BEARER), ("X-Echo", KEY)],
            ),
            Unauthorized,
        ),
        (http(401, f"<pre>Authorization: {BEARER}</pre>", reason=f"Denied {BEARER}"), Unauthorized),
        (http(500, f"upstream said: {KEY}", reason=f"Error {KEY}"), ServerError),
        (http(418, {"errorDescription": f"{KEY}{KEY}"}, reason="Teapot"), ApiError),
        (http(429, RATE_LIMITED, reason="Too Many Requests", headers=[("Retry-After", KEY)]), RateLimited),
        (
            http(429, RATE_LIMITED, reason="Too Many Requests", headers=[("Retry-After", "1" + KEY)]),
            RateLimited,
        ),
    ],
)
async def test_an_answer_that_echoes_the_key_never_shows_it(
    answer: bytes, kind: type[ApiError], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: ours (-vv) and the HTTP libraries' (-vvv)
    with hostile(always(answer)) as server:
        async with client(server.base_url) as api_client:
            with pytest.raises(kind) as caught:
                await api_client.load_all_servers()
    message = clean(caught.value)
    assert "***" in message
    assert "POST /v1/mgmt/mcp/servers/all" in caplog.text  # the debug lines were there, and clean
    assert KEY not in caplog.text


async def test_data_that_holds_the_key_holds_stars_instead(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    body = {
        "servers": [
            {
                "id": f"S-{KEY}",
                "name": f"{PROJECT}:{KEY}",
                "description": BEARER,
                "tags": [KEY],
                KEY: {"k": KEY},
            }
        ]
    }
    with hostile(always(http(body=body, headers=[("X-Echo", BEARER)]))) as server:
        async with client(server.base_url) as api_client:
            (found,) = await api_client.load_all_servers()
    assert (found.id, found.name, found.fields["description"]) == ("S-***", "***", "Bearer ***")
    assert found.tags == ("***",)
    assert found.fields["***"] == {"k": "***"}
    assert KEY not in repr(dict(found.fields))
    assert KEY not in caplog.text


# ---- credentials ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["ключ-ключ-ключ", "K2-key-with-a\nline-break", " K2-key-in-spaces ", "K2\x00nul-key"]
)
def test_a_key_httpx_cannot_send_is_a_usage_error_that_never_shows_it(key: str) -> None:
    with pytest.raises(UsageError) as caught:
        DescopeClient(project_id=PROJECT, management_key=key)
    message = clean(caught.value)
    assert "must be ASCII" in message
    assert key.strip() not in message


def test_a_project_id_httpx_cannot_send_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="project ID must be printable ASCII"):
        DescopeClient(project_id="P2ключ", management_key=KEY)


@pytest.mark.parametrize("timeout", [0.0, -1.0, float("nan"), float("inf"), 601.0])
def test_an_unusable_timeout_is_a_usage_error(timeout: float) -> None:
    with pytest.raises(UsageError, match="above 0 and at most 600"):
        DescopeClient(project_id=PROJECT, management_key=KEY, timeout=timeout)


def test_an_invalid_base_url_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="DESCOPE_BASE_URL"):
        DescopeClient(project_id=PROJECT, management_key=KEY, base_url="http://[::1")


async def test_a_base_url_with_a_path_keeps_it_in_front_of_each_call() -> None:
    with hostile(always(http(body={"servers": []}))) as server:
        async with client(server.base_url + "/descope/") as api_client:
            assert await api_client.load_all_servers() == []
    assert server.lines == ["POST /descope/v1/mgmt/mcp/servers/all HTTP/1.1"]


# ---- end to end through the CLI ---------------------------------------------------------------------

MANIFEST = project_yaml(PROJECT)


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "project.yaml").write_text(MANIFEST, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MCP_RECONCILER_TIMEOUT", raising=False)
    return tmp_path


def plan_against(
    answer: bytes | Respond, folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    with hostile(always(answer) if isinstance(answer, bytes) else answer) as server:
        monkeypatch.setenv("DESCOPE_BASE_URL", server.base_url)
        code = run(["plan", str(folder)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            http(body={"servers": "abc"}),
            "error: POST /v1/mgmt/mcp/servers/all failed: 200 unexpected response: servers is a string, not a list",
        ),
        (
            http(401, {"errorDescription": f"invalid token in header Authorization: {BEARER}"}, reason="No"),
            "error: POST /v1/mgmt/mcp/servers/all failed: 401 invalid token in header Authorization: Bearer *** (check",
        ),
        (
            http(body=DEEP),
            "error: POST /v1/mgmt/mcp/servers/all failed: 200 the response is nested more than 64 levels deep",
        ),
    ],
)
def test_the_cli_reports_a_hostile_answer_as_an_error_without_the_key(
    answer: bytes,
    expected: str,
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, output = plan_against(answer, folder, monkeypatch, capsys)
    assert code == 1
    assert expected in output
    assert "internal error" not in output
    assert KEY not in output


def test_the_cli_plans_with_a_ten_thousand_character_name(
    folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    servers = {"servers": [{"id": "S1", "name": "n" * 10_000, "tags": ["someone-else"]}]}
    search = {"clients": [{"id": "C1", "name": "c" * 10_000, "mcpServerId": "S1"}], "total": 1}
    answer = answering(
        lambda endpoint, _: http(body=search if endpoint == "server/clients/search" else servers)
    )
    code, output = plan_against(answer, folder, monkeypatch, capsys)
    assert code == 0, output
    assert "internal error" not in output


@pytest.mark.parametrize("timeout", ["nan", "inf", "0", "-1", "abc", "601"])
def test_the_cli_refuses_an_unusable_timeout(
    timeout: str, folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MCP_RECONCILER_TIMEOUT", timeout)
    code, output = plan_against(http(body={"servers": []}), folder, monkeypatch, capsys)
    assert code == 1
    assert f"error: MCP_RECONCILER_TIMEOUT='{timeout}' is not a usable timeout" in output
    assert "internal error" not in output


def test_the_cli_refuses_a_non_ascii_key_without_showing_it(
    folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DESCOPE_MANAGEMENT_KEY", "ключ-управления-1234")
    code, output = plan_against(http(body={"servers": []}), folder, monkeypatch, capsys)
    assert code == 1
    assert "error: the management key (DESCOPE_MANAGEMENT_KEY) must be ASCII" in output
    assert "ключ" not in output
    assert "internal error" not in output


def test_the_cli_debug_log_never_shows_an_echoed_key(folder: Path) -> None:
    """-vvv: our API call lines (-vv) and the HTTP libraries' own debug lines, which show the
    response's status line and headers."""
    answer = http(
        401,
        {"errorDescription": f"no such key: {BEARER}"},
        reason=f"Unauthorized {BEARER}",
        headers=[("WWW-Authenticate", BEARER), ("X-Echo-Authorization", BEARER)],
    )
    with hostile(always(answer)) as server:
        env = {**os.environ, "DESCOPE_BASE_URL": server.base_url, "DESCOPE_MANAGEMENT_KEY": KEY}
        done = subprocess.run(
            [sys.executable, "-m", "reconciler", "-vvv", "plan", str(folder)],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    output = done.stdout + done.stderr
    assert done.returncode == 1
    assert "DEBUG reconciler.api: POST /v1/mgmt/mcp/servers/all -> 401" in output
    assert "receive_response_headers.complete" in output  # httpcore's line with the headers
    assert "Bearer ***" in output
    assert KEY not in output
    assert "internal error" not in output


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 5_000 + b"\r\n\r\n{}", "not valid HTTP"),
        (b"HTTP/1.1 abc OK\r\n\r\n", "not valid HTTP"),
        (b"\x00\x01\x02 hello\r\n\r\n", "not valid HTTP"),
        (b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * 200_000 + b"\r\n\r\n{}", "not valid HTTP"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "not valid HTTP"),
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n", "not valid HTTP"),
        (b"", "the connection was dropped"),
        (http(body=b"not gzip", headers=[("Content-Encoding", "gzip")]), "the answer could not be decoded"),
    ],
)
async def test_an_answer_that_is_not_http_is_a_clean_error(answer: bytes, expected: str) -> None:
    with hostile(always(answer)) as server:
        async with client(server.base_url) as api_client:
            with pytest.raises(ApiUnavailable) as caught:
                await api_client.load_all_servers()
        assert server.count("servers/all") == QUICK.attempts  # retried: reading again is safe
    assert expected in clean(caught.value)


@pytest.mark.parametrize("seconds", [float("inf"), float("nan")])
def test_the_throttle_refuses_a_pause_without_end(seconds: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        Throttle(UNLIMITED).pause(seconds)
