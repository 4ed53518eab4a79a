"""Messages that do not leave users guessing (issue 18): errors name the host and what was tried, every
long wait says what it waits for and how long (at the default verbosity), the emulator on a taken port
says so in one line, and secrets check counts the secrets it cannot verify apart.

Waits are made short through the settings the code reads (thresholds, timeouts, fake clocks): no test
here sleeps for real for more than a fraction of a second.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler import lock as lock_module
from reconciler.cli import run
from reconciler.descope import transport
from reconciler.descope.client import DescopeClient
from reconciler.descope.transport import RetryPolicy
from reconciler.emulator import EmulatorConfig, RunningEmulator, running_emulator
from reconciler.errors import ApiUnavailable, ServerError, Unauthorized
from reconciler.lock import LockHeld, LockSettings, ProjectLock
from reconciler.render.results import secrets_summary
from reconciler.schemas import validator_for_document
from reconciler.throttle import Throttle, ThrottleSettings
from tests.conftest import serving

KEY = "K2-messages-management-key-93fd"
PROJECT = "P2MESSAGES"
QUICK = RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.01)
UNLIMITED = ThrottleSettings(concurrency=8, requests=100_000, per_seconds=1.0)
SERVERS_ALL = "POST /v1/mgmt/mcp/servers/all"


def _client(base_url: str, **options: Any) -> DescopeClient:
    options.setdefault("retry", QUICK)
    options.setdefault("throttle", Throttle(UNLIMITED))
    return DescopeClient(project_id=PROJECT, management_key=KEY, base_url=base_url, **options)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port  # closed again: nothing listens there


def _waits(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "reconciler.wait"]


@pytest.fixture
def waits(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    caplog.set_level(logging.INFO, logger="reconciler.wait")
    return lambda: _waits(caplog)


def _failing(cause: BaseException) -> httpx.MockTransport:
    """A transport whose every connection fails with ``cause`` underneath, as httpx wraps it."""

    def handler(request: httpx.Request) -> httpx.Response:
        try:
            raise cause
        except BaseException as exc:
            raise httpx.ConnectError(str(exc), request=request) from exc

    return httpx.MockTransport(handler)


# ---- errors name the host, what was tried and how often ---------------------------------------------


async def test_a_refused_connection_names_host_port_call_cause_and_attempts() -> None:
    port = _closed_port()
    async with _client(f"http://127.0.0.1:{port}") as api:
        with pytest.raises(ApiUnavailable) as caught:
            await api.load_all_servers()
    message = str(caught.value)
    assert re.fullmatch(
        rf"{SERVERS_ALL} failed: could not connect to 127\.0\.0\.1:{port}: connection refused "
        r"\(is anything listening there\?\), after 3 attempts in \d+\.\d s",
        message,
    ), message
    assert KEY not in message
    assert "Bearer" not in message


@pytest.mark.parametrize(
    ("cause", "expected", "attempts"),
    [
        (
            socket.gaierror(-2, "Name or service not known"),
            "could not connect to api.example.test:443: its host name could not be resolved "
            "(check DESCOPE_BASE_URL and the network's DNS), after 3 attempts",
            3,
        ),
        (
            ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"),
            "could not connect to api.example.test:443: its TLS certificate was refused",
            1,  # the same certificate comes back on every attempt: not retried
        ),
        (
            ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"),
            "could not connect to api.example.test:443: the TLS handshake failed",
            3,
        ),
        (
            OSError(101, "Network is unreachable"),
            "could not connect to api.example.test:443: network is unreachable, after 3 attempts",
            3,
        ),
    ],
)
async def test_connection_failures_say_why_in_plain_words(
    cause: BaseException, expected: str, attempts: int
) -> None:
    calls = 0
    failing = _failing(cause)

    async def counted(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return await failing.handle_async_request(request)

    async with _client("https://api.example.test", transport=httpx.MockTransport(counted)) as api:
        with pytest.raises(ApiUnavailable) as caught:
            await api.load_all_servers()
    assert expected in str(caught.value)
    assert str(caught.value).startswith(f"{SERVERS_ALL} failed: ")
    assert calls == attempts


async def test_a_base_url_with_a_path_and_credentials_shows_the_path_never_the_credentials() -> None:
    base = "https://someone:hunter2-password@proxy.example.test/descope"
    transport_ = _failing(ConnectionRefusedError(111, "Connection refused"))
    async with _client(base, transport=transport_) as api:
        with pytest.raises(ApiUnavailable) as caught:
            await api.load_all_servers()
    assert "could not connect to proxy.example.test:443/descope: connection refused" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    assert "someone" not in str(caught.value)


async def test_a_deadline_names_the_host_the_timeout_and_the_attempts() -> None:
    with running_emulator(EmulatorConfig(project_id=PROJECT, management_key=KEY, latency_ms=300)) as emu:
        async with _client(
            emu.base_url, timeout=0.05, retry=RetryPolicy(attempts=2, base_delay=0.001)
        ) as api:
            with pytest.raises(ApiUnavailable) as caught:
                await api.load_all_servers()
    where = emu.base_url.removeprefix("http://")
    assert f"timed out: no whole answer within 0.05 s from {where}, after 2 attempts in " in str(caught.value)


async def test_a_dropped_connection_names_the_host() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)

    async with _client("http://10.0.0.7:8080", transport=httpx.MockTransport(handler)) as api:
        with pytest.raises(ApiUnavailable) as caught:
            await api.load_all_servers()
    assert str(caught.value) == (
        f"{SERVERS_ALL} failed: the connection was dropped, or the answer was not valid HTTP (10.0.0.7:8080: "
        "Server disconnected without sending a response.), after 3 attempts in "
        + str(caught.value).rsplit(" in ", 1)[1]
    )


async def test_an_answer_keeps_its_own_words() -> None:
    # A 5xx is an answer: its status and text say what happened, as before.
    answer = httpx.MockTransport(lambda _request: httpx.Response(503, text="down for maintenance"))
    async with _client("https://api.example.test", transport=answer) as api:
        with pytest.raises(ServerError) as caught:
            await api.load_all_servers()
    assert str(caught.value) == f"{SERVERS_ALL} failed: 503 Service Unavailable"


async def test_a_refused_key_names_the_host_that_refused_it() -> None:
    answer = httpx.MockTransport(lambda _request: httpx.Response(401, json={"errorDescription": "bad key"}))
    async with _client("https://api.euc1.descope.com", transport=answer) as api:
        with pytest.raises(Unauthorized) as caught:
            await api.load_all_servers()
    assert str(caught.value) == (
        f"{SERVERS_ALL} failed: 401 bad key (check DESCOPE_PROJECT_ID and DESCOPE_MANAGEMENT_KEY; the answer "
        "came from api.euc1.descope.com:443)"
    )


# ---- waits say what they wait for ------------------------------------------------------------------


@dataclass
class FakeClock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


async def test_a_rate_limit_wait_of_seconds_is_said_once_a_short_one_not(
    waits: Callable[[], list[str]],
) -> None:
    clock = FakeClock()
    throttle = Throttle(
        ThrottleSettings(concurrency=1, requests=2, per_seconds=10.0), clock=clock, sleep=clock.sleep
    )
    for _ in range(3):
        async with throttle.slot():
            pass
    assert waits() == [
        "waiting 10 s before the next API call: the client-side rate limit (2 requests per 10 s, "
        "--rate-limit) is reached"
    ]
    quick = Throttle(
        ThrottleSettings(concurrency=1, requests=1, per_seconds=1.0), clock=clock, sleep=clock.sleep
    )
    for _ in range(3):
        async with quick.slot():
            pass
    assert len(waits()) == 1  # waits of about a second are the ordinary pacing of a busy run


async def test_a_429_pause_is_said_once_with_its_reason(waits: Callable[[], list[str]]) -> None:
    clock = FakeClock()
    answers = iter([httpx.Response(429, headers={"Retry-After": "5"}, json={"errorCode": "E130429"})])

    def handler(_request: httpx.Request) -> httpx.Response:
        return next(answers, httpx.Response(200, json={"servers": []}))

    throttle = Throttle(UNLIMITED, clock=clock, sleep=clock.sleep)
    options = {"throttle": throttle, "sleep": clock.sleep, "transport": httpx.MockTransport(handler)}
    async with _client("https://api.example.test", **options) as api:
        await asyncio.gather(api.load_all_servers(), api.load_all_servers())
    assert waits() == [
        f"pausing every API call for 5.0 s: api.example.test:443 answered {SERVERS_ALL} with 429 "
        "(rate limited), Retry-After 5 s"
    ]


async def test_retries_are_said_once_the_call_has_been_failing_a_while(
    waits: Callable[[], list[str]],
) -> None:
    clock = FakeClock()
    answer = httpx.MockTransport(lambda _request: httpx.Response(503, text="down"))
    policy = RetryPolicy(attempts=3, base_delay=4.0, max_delay=4.0)
    options = {"retry": policy, "sleep": clock.sleep, "transport": answer, "notice_after": 0.0}
    async with _client("https://api.example.test", **options) as api:
        with pytest.raises(ServerError):
            await api.load_all_servers()
    said = waits()
    assert len(said) == 2
    assert re.fullmatch(
        rf"retrying {SERVERS_ALL} in \d+\.\d s, attempt 2 of 3 \(503 Service Unavailable\)", said[0]
    ), said
    assert "attempt 3 of 3" in said[1]


async def test_a_slow_answer_is_said_while_it_is_awaited_one_line_for_all_the_calls(
    waits: Callable[[], list[str]],
) -> None:
    config = EmulatorConfig(project_id=PROJECT, management_key=KEY, latency_ms=450)
    with running_emulator(config) as emu:
        options = {"timeout": 5.0, "still_waiting_after": 0.1, "still_waiting_every": 0.2}
        async with _client(emu.base_url, **options) as api:
            await asyncio.gather(*(api.load_all_servers() for _ in range(4)))
    said = waits()
    where = emu.base_url.removeprefix("http://")
    assert 1 <= len(said) <= 3, said  # 0.1 s, 0.3 s (maybe 0.5 s): never one per call
    pattern = rf"still waiting for {SERVERS_ALL} to {where} \((\d+\.\d) s of the 5 s timeout, MCP_RECONCILER_TIMEOUT\)"
    first = re.match(pattern + r"; 3 more calls waiting too$", said[0])
    assert first, said
    assert 0.1 <= float(first[1]) < 0.4


async def test_a_quick_answer_is_not_said(waits: Callable[[], list[str]]) -> None:
    with running_emulator(EmulatorConfig(project_id=PROJECT, management_key=KEY)) as emu:
        async with _client(emu.base_url, still_waiting_after=0.5, still_waiting_every=0.5) as api:
            for _ in range(3):
                await api.load_all_servers()
    assert waits() == []


async def test_a_lock_wait_says_who_holds_it_every_so_often(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, waits: Callable[[], list[str]]
) -> None:
    monkeypatch.setattr(lock_module, "STILL_WAITING_EVERY", 0.1)
    started: list[object] = []
    holder = ProjectLock(
        PROJECT, base_url="https://api.descope.com", settings=LockSettings(tmp_path, command="a")
    )
    settings = LockSettings(tmp_path, timeout=0.35, command="b", on_wait=started.append)
    waiter = ProjectLock(PROJECT, base_url="https://api.descope.com", settings=settings)
    async with holder:
        with pytest.raises(LockHeld):
            await waiter.acquire()
    said = waits()
    assert len(started) == 1  # the first line is the CLI's (on_wait)
    assert 2 <= len(said) <= 3, said
    assert all(
        line.startswith(f"still waiting for the lock of project {PROJECT}, held by pid ") for line in said
    )
    assert all("running `a`" in line and "of 0.3 s, --lock-timeout)" in line for line in said)


# ---- at the default verbosity, from the command line --------------------------------------------------


@contextmanager
def cli_logging() -> Iterator[None]:
    """Let the CLI install its own stderr handler, as in a terminal or a CI log: pytest's handlers sit
    on the root logger (from the start of the test's call), and basicConfig leaves a configured root
    alone."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(logging.root, "handlers", [])
        level = logging.root.level
        try:
            yield
        finally:
            logging.root.setLevel(level)


def test_the_default_verbosity_shows_waits_and_warnings_not_other_steps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _manifests(tmp_path / "m", sinks={"local": "{type: file, path: out.json}"}, clients={})
    with cli_logging():
        assert run(["validate", folder]) == 0
        capsys.readouterr()
        logging.getLogger("reconciler.api").info("a step only -v shows")
        logging.getLogger("reconciler.wait").info("waiting 4.0 s for something")
        logging.getLogger("reconciler.delivery").warning("a warning")
        assert capsys.readouterr().err == "waiting 4.0 s for something\na warning\n"


MANIFESTS = (
    "kind: Project\nprojectId: {project}\ndefaultSink: {sink}\nsinks:\n{sinks}",
    "kind: MCPServer\nname: s\napprovedScopes: [{{name: r}}]\nclients:\n{clients}",
)


def _manifests(folder: Path, *, sinks: dict[str, str], clients: dict[str, str]) -> str:
    folder.mkdir(exist_ok=True)
    declared = "".join(f"  {name}: {spec}\n" for name, spec in sinks.items())
    listed = "".join(
        f"  - {{name: {name}, scopes: [r], secret: {{sink: {sink}}}}}\n" for name, sink in clients.items()
    )
    project, server = MANIFESTS
    (folder / "p.yaml").write_text(project.format(project=PROJECT, sink=next(iter(sinks)), sinks=declared))
    text = server.format(clients=listed)
    (folder / "s.yaml").write_text(text if clients else text.removesuffix("clients:\n"))
    return str(folder)


@pytest.fixture
def emulator(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RunningEmulator]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DESCOPE_PROJECT_ID", PROJECT)
    with serving(monkeypatch, PROJECT, KEY) as handle:
        yield handle


def test_apply_on_a_slow_api_is_never_silent_at_the_default_verbosity(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The reported silence: an apply waiting on a hung request said nothing for 30 s, even at -vv.
    # Here the emulator answers every request 0.4 s late; the thresholds are scaled down to match.
    monkeypatch.setattr(transport, "STILL_WAITING_AFTER", 0.1)
    monkeypatch.setattr(transport, "STILL_WAITING_EVERY", 0.3)
    monkeypatch.setenv("MCP_RECONCILER_TIMEOUT", "5")
    monkeypatch.chdir(tmp_path)
    config = EmulatorConfig(project_id=PROJECT, management_key=KEY, slow_rate=1.0, slow_ms=400)
    with running_emulator(config) as emu:
        monkeypatch.setenv("DESCOPE_BASE_URL", emu.base_url)
        monkeypatch.setenv("DESCOPE_MANAGEMENT_KEY", KEY)
        folder = _manifests(
            tmp_path / "m",
            sinks={"local": f"{{type: file, path: {tmp_path / 'out.json'}}}"},
            clients={"a": "local"},
        )
        with cli_logging():
            assert run(["apply", folder, "--auto-approve"]) == 0
    err = capsys.readouterr().err
    where = emu.base_url.removeprefix("http://")
    lines = [line for line in err.splitlines() if line.startswith("still waiting for ")]
    assert lines, err
    assert f"still waiting for {SERVERS_ALL} to {where} (" in lines[0]
    assert "of the 5 s timeout, MCP_RECONCILER_TIMEOUT)" in lines[0]
    assert KEY not in err


def test_a_hung_api_ends_with_an_error_that_names_host_and_attempts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MCP_RECONCILER_TIMEOUT", "0.1")
    # The run's back-off between attempts, shortened as the deadline is (its default takes seconds).
    monkeypatch.setattr(transport, "RetryPolicy", lambda: RetryPolicy(base_delay=0.001, max_delay=0.01))
    monkeypatch.chdir(tmp_path)
    config = EmulatorConfig(project_id=PROJECT, management_key=KEY, slow_rate=1.0, slow_ms=400)
    with running_emulator(config) as emu:
        monkeypatch.setenv("DESCOPE_BASE_URL", emu.base_url)
        monkeypatch.setenv("DESCOPE_MANAGEMENT_KEY", KEY)
        folder = _manifests(
            tmp_path / "m", sinks={"local": f"{{type: file, path: {tmp_path / 'out.json'}}}"}, clients={}
        )
        with cli_logging():
            assert run(["plan", folder]) == 1
    err = capsys.readouterr().err
    where = emu.base_url.removeprefix("http://")
    assert re.search(
        rf"^error: {SERVERS_ALL} failed: timed out: no whole answer within 0\.1 s from {where}, after 6 "
        r"attempts in \d+\.\d s$",
        err,
        re.M,
    ), err
    assert KEY not in err


# ---- the emulator on a taken port ------------------------------------------------------------------


def test_the_emulator_on_a_taken_port_says_so_in_one_line_and_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert run(["emulator", "--management-key", KEY, "--port", str(port)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"error: cannot listen on 127.0.0.1:{port}: it is already in use; pick another with --port "
        "(--port 0: any free one)\n"
    )


def test_the_emulator_on_an_address_not_of_this_machine_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["emulator", "--management-key", KEY, "--host", "192.0.2.1", "--port", "0"]) == 1
    assert capsys.readouterr().err == (
        "error: cannot listen on 192.0.2.1:0: that address is not one of this machine's; pick another with "
        "--host\n"
    )


# ---- secrets check: what cannot be verified is counted apart ------------------------------------------


@dataclass(frozen=True)
class Status:
    address: str
    sink: str
    state: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.state in ("match", "fixed")


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        (["match", "match"], "2 of 2 secrets are in their sinks."),
        (
            ["match", "unreadable", "unreadable"],
            '1 of 3 secrets are in their sinks; 2 in sinks that cannot be read back (command sink "run"): '
            "not verified; none missing.",
        ),
        (["absent", "match"], "1 of 2 secrets are in their sinks; 1 not issued yet; none missing."),
        (
            ["missing", "different", "undelivered", "unreadable"],
            '0 of 4 secrets are in their sinks; 1 in sinks that cannot be read back (command sink "run"): '
            "not verified; 3 not in their sinks.",
        ),
        (["error"], "0 of 1 secrets are in their sinks; 1 could not be checked."),
    ],
)
def test_the_summary_counts_each_kind_apart(states: list[str], expected: str) -> None:
    statuses = [
        Status(f'client "s/c{i}"', "run" if s == "unreadable" else "local", s) for i, s in enumerate(states)
    ]
    assert secrets_summary(statuses, {"run": "command", "local": "file"}) == expected


def test_secrets_check_counts_command_sinks_as_not_verified_and_exits_0(
    emulator: RunningEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _manifests(
        tmp_path / "m",
        sinks={
            "local": f"{{type: file, path: {tmp_path / 'out.json'}}}",
            "run": "{type: command, command: [sh, -c, 'cat > stored.txt']}",
        },
        clients={"a": "local", "b": "run", "c": "run"},
    )
    assert run(["apply", folder, "--auto-approve"]) == 0
    capsys.readouterr()
    assert run(["secrets", "check", folder]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith('     match  client "s/a" -> sink local'), out
    assert lines[1].startswith('unreadable  client "s/b" -> sink run'), out
    assert lines[1].endswith(": cannot be read back: not verified"), out
    assert out.endswith(
        '1 of 3 secrets are in their sinks; 2 in sinks that cannot be read back (command sink "run"): '
        "not verified; none missing.\n"
    )
    assert run(["secrets", "check", folder, "--format", "json"]) == 0
    document: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert list(validator_for_document("secrets-check.schema.json").iter_errors(document)) == []
    assert document["format_version"] == 2
    assert (document["ok"], document["exitCode"]) == (True, 0)
    assert document["counts"] == {
        "total": 3,
        "verified": 1,
        "unverified": 2,
        "problems": 0,
        "states": {"match": 1, "unreadable": 2},
    }
    assert [(s["address"], s["state"], s["ok"]) for s in document["secrets"]] == [
        ("s/a", "match", True),
        ("s/b", "unreadable", False),
        ("s/c", "unreadable", False),
    ]
