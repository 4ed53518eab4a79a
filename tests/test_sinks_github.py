"""The GitHub sink against a local stand-in of the Actions-secrets API that decrypts what it receives."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from reconciler.secret import Secret
from reconciler.sinks import build_sinks
from reconciler.sinks.base import SecretRecord, Verification
from reconciler.sinks.github import GithubSink, secret_name
from tests.sink_servers import (
    READ,
    WRITE,
    GithubStandIn,
    closed_port_url,
    expect_sink_error,
    logged,
    running_github,
)

CANARY = "canary-G1thub-5ecret-e2a0"
SECRET = Secret(CANARY)
RECORD = SecretRecord("calendar", "claude-desktop", "cid-1", "calendar/claude-desktop")
REPO = "acme/agents"
TOKEN = "tok-write"


@pytest.fixture(scope="module")
def running() -> Iterator[GithubStandIn]:
    stand_in = GithubStandIn(
        repositories={REPO},
        environments={(REPO, "production")},
        tokens={TOKEN: {READ, WRITE}, "tok-read": {READ}, "tok-none": set()},
    )
    with running_github(stand_in) as served:
        yield served


@pytest.fixture
def github(running: GithubStandIn) -> GithubStandIn:
    """The stand-in, emptied of secrets and faults before each test."""
    with running.lock:
        running.secrets.clear()
        running.requests.clear()
        running.failures = 0
    return running


@pytest.fixture(autouse=True)
def _no_leak(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    assert CANARY not in logged(caplog)


def github_sink(url: str, token: str | None = TOKEN, **settings: Any) -> GithubSink:
    given = {"type": "github", "repository": REPO, "apiUrl": url, **settings}
    sink = build_sinks({"gh": given}, {"GITHUB_TOKEN": token} if token else {})["gh"]
    assert isinstance(sink, GithubSink)
    sink._retry_delay = 0  # the stand-in's faults need no real back-off
    return sink


def test_a_repository_secret_is_encrypted_for_the_repository_key(github: GithubStandIn) -> None:
    sink = github_sink(github.url)
    sink.check()
    assert sink.verify(RECORD, SECRET) is Verification.MISSING
    sink.deliver(RECORD, SECRET)
    assert github.secrets == {(REPO, "CALENDAR_CLAUDE_DESKTOP"): CANARY}  # decrypted by the stand-in
    assert sink.verify(RECORD, SECRET) is Verification.UNREADABLE
    sink.deliver(RECORD, Secret("rotated"))  # an update (204) replaces it
    assert github.secrets == {(REPO, "CALENDAR_CLAUDE_DESKTOP"): "rotated"}
    sink.close()


def test_an_environment_secret(github: GithubStandIn) -> None:
    sink = github_sink(github.url, environment="production")
    sink.check()
    sink.deliver(RECORD, SECRET)
    assert github.secrets == {(f"{REPO}:production", "CALENDAR_CLAUDE_DESKTOP"): CANARY}
    assert ("GET", "/repos/acme/agents/environments/production/secrets/public-key") in github.requests
    assert sink.verify(RECORD, SECRET) is Verification.UNREADABLE


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("calendar/claude-desktop", "CALENDAR_CLAUDE_DESKTOP"),
        ("a.b c", "A_B_C"),
        ("1st/client", "MCP_1ST_CLIENT"),
        ("github/token", "MCP_GITHUB_TOKEN"),
        ("GITHUBX", "GITHUBX"),
    ],
)
def test_secret_names(github: GithubStandIn, key: str, name: str) -> None:
    assert secret_name(key) == name
    github_sink(github.url).deliver(SecretRecord("s", "c", "id", key), SECRET)
    assert github.secrets == {(REPO, name): CANARY}


def test_a_rotated_public_key_is_fetched_again(github: GithubStandIn) -> None:
    sink = github_sink(github.url)
    sink.deliver(RECORD, Secret("before"))
    github.rotate_key()
    sink.deliver(RECORD, SECRET)  # the cached key id is refused once (422), then the new key is used
    assert github.secrets == {(REPO, "CALENDAR_CLAUDE_DESKTOP"): CANARY}


def test_server_errors_are_retried(github: GithubStandIn) -> None:
    sink = github_sink(github.url)
    github.failures = 2
    sink.deliver(RECORD, SECRET)
    assert github.secrets == {(REPO, "CALENDAR_CLAUDE_DESKTOP"): CANARY}


def test_a_wrong_token_is_refused_with_401(github: GithubStandIn) -> None:
    sink = github_sink(github.url, "tok-unknown")
    expected = "sink 'gh' (github): GitHub refused the token in GITHUB_TOKEN (401): set a valid token"
    assert expect_sink_error(sink.check, CANARY) == expected
    assert expect_sink_error(lambda: sink.deliver(RECORD, SECRET), CANARY) == expected


def test_a_token_without_write_permission_gets_403(github: GithubStandIn) -> None:
    read_only = github_sink(github.url, "tok-read")
    read_only.check()  # reading the key is allowed
    message = expect_sink_error(lambda: read_only.deliver(RECORD, SECRET), CANARY)
    assert "may not write the secret CALENDAR_CLAUDE_DESKTOP (403)" in message
    assert "it needs the secrets: write permission on acme/agents" in message
    assert github.secrets == {}
    nothing = github_sink(github.url, "tok-none")
    assert "may not read the public key (403)" in expect_sink_error(nothing.check, CANARY)


def test_an_unknown_repository_or_environment_gets_404(github: GithubStandIn) -> None:
    message = expect_sink_error(github_sink(github.url, repository="acme/other").check, CANARY)
    assert "acme/other was not found, or the token in GITHUB_TOKEN cannot see it (404)" in message
    message = expect_sink_error(github_sink(github.url, environment="staging").check, CANARY)
    assert "acme/agents (environment staging) was not found" in message


def test_a_missing_token_variable_is_named(github: GithubStandIn) -> None:
    sink = github_sink(github.url, None, tokenEnv="GH_SECRETS_TOKEN")
    expected = "the environment variable GH_SECRETS_TOKEN is not set: put a GitHub token in it"
    assert expected in expect_sink_error(sink.check, CANARY)
    assert expected in expect_sink_error(lambda: sink.deliver(RECORD, SECRET), CANARY)
    assert github.requests == []


def test_an_unreachable_api_is_reported() -> None:
    url = closed_port_url()
    sink = github_sink(url)
    message = expect_sink_error(sink.check, CANARY)
    assert f"cannot reach GitHub at {url} to read the public key (ConnectError)" in message


def test_one_sink_serves_many_threads(github: GithubStandIn) -> None:
    sink = github_sink(github.url)
    records = [SecretRecord("s", f"c{i}", f"id{i}", f"s/c{i}") for i in range(10)]
    with ThreadPoolExecutor(max_workers=10) as pool:
        list(pool.map(lambda i: sink.deliver(records[i], Secret(f"{CANARY}-{i}")), range(10)))
    assert github.secrets == {(REPO, f"S_C{i}"): f"{CANARY}-{i}" for i in range(10)}
    assert sum(1 for method, path in github.requests if path.endswith("/public-key")) == 1  # cached
