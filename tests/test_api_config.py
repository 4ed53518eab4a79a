"""Where the client connects and with which credentials."""

from __future__ import annotations

import pytest

from reconciler.api import DescopeClient, resolve_base_url
from reconciler.errors import UsageError

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
