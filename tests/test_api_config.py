"""Where the client connects and with which credentials."""

from __future__ import annotations

import pytest

from reconciler.descope.client import DescopeClient
from reconciler.descope.transport import resolve_base_url
from reconciler.errors import UsageError
from reconciler.workflow import Connection

LONG_ID = "P2abCDefGHijKLmnOPqrSTuvWXyz0123"  # 32 characters: a regional project


@pytest.mark.parametrize(
    ("project", "environ", "expected"),
    [
        ("P2short", {}, "https://api.descope.com"),
        (LONG_ID, {}, "https://api.2abc.descope.com"),
        (LONG_ID, {"DESCOPE_BASE_URL": "http://127.0.0.1:8765/"}, "http://127.0.0.1:8765"),
        ("P2short", {"DESCOPE_BASE_URI": "https://api.euc1.descope.com"}, "https://api.euc1.descope.com"),
    ],
)
def test_base_url(project: str, environ: dict[str, str], expected: str) -> None:
    assert resolve_base_url(project, environ) == expected


async def test_from_env_needs_both_credentials_and_never_shows_the_key() -> None:
    with pytest.raises(UsageError, match="set DESCOPE_MANAGEMENT_KEY"):
        DescopeClient.from_env({"DESCOPE_PROJECT_ID": "P2x"})
    with pytest.raises(UsageError, match="set DESCOPE_PROJECT_ID"):
        DescopeClient.from_env({"DESCOPE_MANAGEMENT_KEY": "k"})
    client = DescopeClient.from_env({"DESCOPE_PROJECT_ID": "P2x", "DESCOPE_MANAGEMENT_KEY": "key-canary-01"})
    async with client:
        assert "key-canary-01" not in repr(client)
        assert "key-canary-01" not in repr(vars(client))


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "0", "-1", "abc", "601", "1e309", "30s"])
def test_an_unusable_timeout_from_the_environment_is_a_usage_error(value: str) -> None:
    connection = Connection({"MCP_RECONCILER_TIMEOUT": value, "DESCOPE_MANAGEMENT_KEY": "key-canary-01"})
    with pytest.raises(UsageError) as caught:
        connection.client("P2x")
    message = str(caught.value)
    assert message.startswith(f"MCP_RECONCILER_TIMEOUT={value!r} is not a usable timeout")
    assert "above 0 and at most 600" in message
    assert "key-canary-01" not in message


@pytest.mark.parametrize(("value", "seconds"), [("", 30.0), ("0.5", 0.5), (" 12 ", 12.0), ("600", 600.0)])
async def test_a_usable_timeout_is_the_deadline_of_each_request(value: str, seconds: float) -> None:
    connection = Connection({"MCP_RECONCILER_TIMEOUT": value, "DESCOPE_MANAGEMENT_KEY": "key-canary-01"})
    async with connection.client("P2x") as client:
        assert client.timeout == seconds


@pytest.mark.parametrize("key", ["ключ", "key-canary-01\n", "key\tcanary"])
def test_a_key_that_is_not_printable_ascii_is_a_usage_error_without_the_key(key: str) -> None:
    with pytest.raises(UsageError, match="must be ASCII") as caught:
        DescopeClient.from_env({"DESCOPE_PROJECT_ID": "P2x", "DESCOPE_MANAGEMENT_KEY": key})
    assert key.strip() not in str(caught.value)
