"""A running emulator's admin surface, reached over HTTP from another process (or thread).

``mcp-reconciler emulator-console`` and the demo's hand-made change both go through ``console``: the
same request to ``POST /emulator/console`` (``reconciler.emulator.console``), with the bearer the /v1
endpoints take. Errors say what to do, and never repeat the management key.
"""

from __future__ import annotations

from typing import Any

import httpx

from reconciler.descope import assumptions

TIMEOUT_S = 10.0
# Bytes of an answer quoted in an error when it is not the emulator's own error shape.
QUOTED = 300


class AdminError(Exception):
    """The emulator could not be reached, or refused the request: the message says why."""


def console(base_url: str, *, project_id: str, management_key: str, body: dict[str, Any]) -> dict[str, Any]:
    """Send one console request (``{"action": ..., "server": ..., ...}``) and return the answer."""
    url = f"{base_url.rstrip('/')}/emulator/console"
    headers = {"Authorization": f"Bearer {project_id}:{management_key}"}
    try:
        response = httpx.post(url, json=body, headers=headers, timeout=TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise AdminError(
            f"cannot reach an emulator at {base_url} ({type(exc).__name__}): start one with "
            "'mcp-reconciler emulator' and set DESCOPE_BASE_URL to the address it prints"
        ) from None
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.is_success and isinstance(answer, dict):
        return answer
    description = answer.get("errorDescription") if isinstance(answer, dict) else None
    code = answer.get("errorCode") if isinstance(answer, dict) else None
    if response.status_code in (404, 405) and code != assumptions.INVALID_ARGUMENTS_CODE:
        raise AdminError(
            f"{base_url} has no emulator console (HTTP {response.status_code} on /emulator/console): "
            "DESCOPE_BASE_URL must be a local emulator's address, never Descope's"
        )
    reason = description if isinstance(description, str) else response.text[:QUOTED]
    raise AdminError(f"the emulator refused the request (HTTP {response.status_code}): {reason}")
