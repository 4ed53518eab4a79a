"""The client under rate limits, faults and slow answers, against the emulator over real HTTP."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from reconciler.descope.client import DescopeClient
from reconciler.descope.transport import RetryPolicy
from reconciler.emulator import EmulatorConfig, running_emulator
from reconciler.errors import ApiUnavailable, RateLimited, ServerError
from reconciler.throttle import Throttle, ThrottleSettings

KEY = "K2-resilience-management-key-51be"
PROJECT = "P2RESILIENCE"
FAST_RETRY = RetryPolicy(attempts=8, base_delay=0.005, max_delay=0.05, rate_limited_attempts=50)
UNLIMITED = ThrottleSettings(concurrency=16, requests=100_000, per_seconds=1.0)
# The client's deadline per request, which is also how long it waits, after a create or rotation
# succeeded only on a retry, for a lost attempt to land (then it looks for late duplicates): the
# default 30 s made each such wait half a minute. The emulator in this process answers in
# milliseconds, and an attempt of its faults never lands late (refused before handling, or committed
# before its answer is lost). Tests of the timeout itself pass their own.
TIMEOUT = 2.0


def _client(base_url: str, *, throttle: ThrottleSettings = UNLIMITED, **options: Any) -> DescopeClient:
    options.setdefault("retry", FAST_RETRY)
    options.setdefault("timeout", TIMEOUT)
    return DescopeClient(
        project_id=PROJECT, management_key=KEY, base_url=base_url, throttle=Throttle(throttle), **options
    )


def _config(**options: Any) -> EmulatorConfig:
    return EmulatorConfig(project_id=PROJECT, management_key=KEY, **options)


def _max_in_any_window(times: list[float], window: float) -> int:
    times = sorted(times)
    return max(sum(1 for t in times if start <= t < start + window) for start in times)


# ---- faults -------------------------------------------------------------------------------------


async def test_50_creates_with_faults_after_commit_make_exactly_50_clients() -> None:
    with running_emulator(_config(fault_after_commit_rate=0.3, seed=7)) as emulator:
        server_id = emulator.seed({"servers": [{"name": "s"}]})["servers"][0]["id"]
        async with _client(emulator.base_url) as api:
            created = await asyncio.gather(
                *(api.create_client(server_id, {"name": f"c{i:02}"}) for i in range(50))
            )
            secrets = await asyncio.gather(*(api.get_client_secret(server_id, c.id) for c in created))
        stats = emulator.stats()
        clients = emulator.state()["servers"][0]["clients"]
    assert stats["faultsAfterCommit"] >= 8  # about 30% of 50: the faults really happened
    # Every create whose answer was lost was found again, not repeated.
    assert sum(c.recovered for c in created) == stats["faultsAfterCommit"]
    assert stats["requests"]["server/client/create"] == 50
    assert sorted(c["name"] for c in clients) == [f"c{i:02}" for i in range(50)]
    assert len({c.id for c in created}) == 50
    assert [c.secret for c in created] == list(secrets)


async def test_mixed_faults_converge_without_duplicates() -> None:
    with running_emulator(_config(fault_rate=0.2, fault_after_commit_rate=0.2, seed=11)) as emulator:
        async with _client(emulator.base_url) as api:
            servers = await asyncio.gather(*(api.create_server({"name": f"s{i}"}) for i in range(5)))
            created = await asyncio.gather(
                *(api.create_client(s.id, {"name": f"c{j}"}) for s in servers for j in range(6))
            )
            rotated = await asyncio.gather(
                *(api.rotate_client_secret(servers[0].id, c.id) for c in created[:6])
            )
            updated = await asyncio.gather(
                *(api.update_server({**s.fields, "description": "x"}) for s in servers)
            )
            current = await asyncio.gather(*(api.get_client_secret(servers[0].id, c.id) for c in created[:6]))
        state = emulator.state()["servers"]
        stats = emulator.stats()
    assert stats["faultsBefore"] > 0
    assert stats["faultsAfterCommit"] > 0
    assert sorted(s["name"] for s in state) == [f"s{i}" for i in range(5)]
    assert all(sorted(c["name"] for c in s["clients"]) == [f"c{j}" for j in range(6)] for s in state)
    assert list(rotated) == list(current)
    assert all(s.fields["description"] == "x" for s in updated)


async def test_a_persistent_5xx_gives_up_after_the_configured_attempts_without_a_mutation() -> None:
    with running_emulator(_config(fault_rate=1.0, seed=1)) as emulator:
        async with _client(emulator.base_url, retry=RetryPolicy(attempts=3, base_delay=0.001)) as api:
            with pytest.raises(ServerError) as caught:
                await api.load_all_servers()
            assert caught.value.status in (500, 502, 503)
            with pytest.raises(ServerError):
                await api.create_server({"name": "never"})
        stats = emulator.stats()
        assert emulator.state()["servers"] == []
    # The create's outcome is unknown and the lookup that would settle it fails too: the client
    # reports the failure rather than risk a duplicate by creating again.
    assert stats["requests"]["servers/all"] == 3 + 3
    assert stats["requests"]["server/create"] == 1


async def test_a_rotation_whose_answer_is_lost_happens_exactly_once() -> None:
    with running_emulator(_config(fault_after_commit_rate=1.0, seed=3)) as emulator:
        seeded = emulator.seed(
            {"servers": [{"name": "s", "clients": [{"name": "c", "secret": "before-secret-0001"}]}]}
        )
        server_id = seeded["servers"][0]["id"]
        client_id = seeded["servers"][0]["clients"][0]["id"]
        async with _client(emulator.base_url) as api:
            secret = await api.rotate_client_secret(server_id, client_id)
        stats = emulator.stats()
        stored = emulator.state()["servers"][0]["clients"][0]["secret"]
    assert stats["requests"]["server/client/secret/rotate"] == 1
    assert stats["faultsAfterCommit"] == 1
    assert secret.reveal() == stored != "before-secret-0001"


async def test_dropped_connections_and_5xx_on_idempotent_updates_are_retried() -> None:
    with running_emulator(_config(fault_after_commit_rate=0.5, seed=1)) as emulator:
        server_id = emulator.seed({"servers": [{"name": "s"}]})["servers"][0]["id"]
        async with _client(emulator.base_url) as api:
            for n in range(10):
                await api.update_server({"id": server_id, "name": "s", "description": f"v{n}"})
            final = await api.load_server(server_id)
        stats = emulator.stats()
    assert stats["faultsAfterCommit"] >= 3
    assert final.fields["description"] == "v9"


async def test_a_slow_answer_past_the_timeout_is_retried_then_reported() -> None:
    with running_emulator(_config(latency_ms=300)) as emulator:
        async with _client(
            emulator.base_url, timeout=0.05, retry=RetryPolicy(attempts=2, base_delay=0.001)
        ) as api:
            with pytest.raises(ApiUnavailable, match="timed out"):
                await api.load_all_servers()
        assert emulator.stats()["requests"]["servers/all"] == 2


# ---- rate limits and concurrency ----------------------------------------------------------------


async def test_429_with_retry_after_pauses_the_whole_run_then_succeeds() -> None:
    with running_emulator(_config(rate_limit=(5, 1.0))) as emulator:
        async with _client(emulator.base_url) as api:
            results = await asyncio.gather(*(api.load_all_servers() for _ in range(12)))
        log = emulator.requests()
        stats = emulator.stats()
    assert len(results) == 12
    assert stats["rateLimited"] >= 1
    first_429 = min(entry["t"] for entry in log if entry["status"] == 429)
    after = [entry["t"] for entry in log if entry["t"] > first_429 and entry["status"] != 429]
    # Nothing more was sent until the Retry-After (1 s) had passed: the whole run paused.
    assert after
    assert min(after) - first_429 >= 0.9


async def test_a_429_that_outlasts_the_budget_is_reported() -> None:
    with running_emulator(_config(rate_limit=(1, 30.0))) as emulator:
        async with _client(emulator.base_url, retry=RetryPolicy(rate_limited_attempts=0)) as api:
            await api.load_all_servers()
            with pytest.raises(RateLimited) as caught:
                await api.load_all_servers()
        assert emulator.stats()["rateLimited"] == 1
    assert caught.value.retry_after == 30
    assert caught.value.error_code == "E130429"


async def test_the_client_never_has_more_than_its_concurrency_in_flight() -> None:
    with running_emulator(_config(latency_ms=60)) as emulator:
        async with _client(
            emulator.base_url, throttle=ThrottleSettings(concurrency=4, requests=10_000, per_seconds=1)
        ) as api:
            await asyncio.gather(*(api.load_all_servers() for _ in range(20)))
        stats = emulator.stats()
    assert stats["maxInFlight"] == 4
    assert stats["total"] == 20


async def test_the_client_stays_under_its_rate_limit_and_never_trips_the_servers() -> None:
    # The server allows a little more than the client asks for, as Descope's 1,000 / 10 s is above the
    # default 400 / 10 s: the emulator runs in a thread of this process, and under a loaded test run
    # its arrival times lag the client's sends by more than the throttle's 0.1 s margin now and then.
    with running_emulator(_config(rate_limit=(12, 0.5))) as emulator:
        settings = ThrottleSettings(concurrency=8, requests=10, per_seconds=0.5)
        async with _client(emulator.base_url, throttle=settings) as api:
            await asyncio.gather(*(api.load_all_servers() for _ in range(40)))
        log = emulator.requests()
        stats = emulator.stats()
    assert stats["rateLimited"] == 0
    assert len(log) == 40
    # At most 10 sends in any 0.6 s (0.5 s and the margin): any 0.4 s of arrivals holds at most 10,
    # however they lag, up to 0.2 s.
    assert _max_in_any_window([entry["t"] for entry in log], 0.4) <= 10
    # ... while using the budget: 40 requests at 10 per 0.5 s take at least 1.5 s and not much more.
    span = max(e["t"] for e in log) - min(e["t"] for e in log)
    assert 1.5 <= span < 2.5


# ---- secret hygiene -----------------------------------------------------------------------------


async def test_debug_logs_name_calls_but_never_the_key_or_a_secret(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with running_emulator(_config(fault_after_commit_rate=0.5, seed=2)) as emulator:
        server_id = emulator.seed({"servers": [{"name": "s"}]})["servers"][0]["id"]
        async with _client(emulator.base_url) as api:
            created = [await api.create_client(server_id, {"name": f"c{i}"}) for i in range(6)]
            rotated = [await api.rotate_client_secret(server_id, c.id) for c in created]
        secrets = [s["secret"] for s in emulator.state()["servers"][0]["clients"]]
    assert "POST /v1/mgmt/mcp/server/client/create -> 200" in caplog.text
    assert KEY not in caplog.text
    for secret in [*secrets, *(c.secret.reveal() for c in created), *(r.reveal() for r in rotated)]:
        assert secret not in caplog.text
