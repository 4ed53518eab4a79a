"""``mcp-reconciler emulator``, run as the README documents it: state across restarts, scope shapes, strict."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from reconciler.descope.client import DescopeClient

KEY = "K2-command-test-key-77aa"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start(
    state: Path | None, port: int, *options: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    env = {
        **(os.environ if env is None else env),
        "DESCOPE_MANAGEMENT_KEY": KEY,
        "DESCOPE_PROJECT_ID": "P2CMD",
    }
    stored = [] if state is None else ["--state-file", str(state)]
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "emulator", *stored, "--port", str(port), *options],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.post(f"http://127.0.0.1:{port}/v1/mgmt/mcp/servers/all", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError("the emulator did not start")


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=20)
    assert process.returncode == 130, output  # interrupted, by convention
    assert output.endswith("Emulator stopped.\n")
    return output


async def _create_then_list(port: int, name: str | None) -> list[str]:
    async with DescopeClient(
        project_id="P2CMD", management_key=KEY, base_url=f"http://127.0.0.1:{port}"
    ) as api:
        if name:
            await api.create_server({"name": name})
        return [s.name for s in await api.load_all_servers()]


def test_state_survives_a_restart_and_the_key_is_never_printed(tmp_path: Path) -> None:
    state, port = tmp_path / "demo.json", _free_port()
    first = _start(state, port)
    try:
        assert asyncio.run(_create_then_list(port, "kept")) == ["kept"]
    finally:
        output = _stop(first)
    assert f"Descope emulator for project P2CMD on http://127.0.0.1:{port}, state in {state}" in output
    assert state.stat().st_mode & 0o777 == 0o600
    second = _start(state, port)
    try:
        assert asyncio.run(_create_then_list(port, None)) == ["kept"]
    finally:
        output += _stop(second)
    assert KEY not in output


def test_a_missing_key_or_bad_option_is_a_clear_error() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DESCOPE_MANAGEMENT_KEY"}
    result = subprocess.run(
        [sys.executable, "-m", "reconciler", "emulator"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert (
        result.stderr
        == "error: set DESCOPE_MANAGEMENT_KEY (or --management-key): the key the emulator will accept\n"
    )
    bad = subprocess.run(
        [sys.executable, "-m", "reconciler", "emulator", "--rate-limit", "lots"],
        env={**env, "DESCOPE_MANAGEMENT_KEY": KEY},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert bad.returncode == 1
    assert bad.stderr == "error: invalid rate limit 'lots': expected REQUESTS/SECONDS, e.g. 400/10\n"


CATEGORIZED = {
    "permissionsScopes": [{"name": "calendar:read"}],
    "connectionsScopes": [{"name": "google", "values": ["google-calendar"]}],
}
FLAT = [{"name": "calendar:read"}, {"name": "google", "values": ["google-calendar"]}]


def _post(port: int, endpoint: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"http://127.0.0.1:{port}/v1/mgmt/mcp/{endpoint}",
        json=body,
        headers={"Authorization": f"Bearer P2CMD:{KEY}"},
        timeout=10,
    )


def _server_and_forged_client(port: int, scopes: Any) -> tuple[Any, httpx.Response]:
    """The scopes a new server is answered with, and the answer to a client create forging a status."""
    server = _post(port, "server/create", {"name": "calendar", "approvedScopes": scopes})
    assert server.status_code == 200, server.text
    server_id = server.json()["server"]["id"]
    forged = _post(port, "server/client/create", {"mcpServerId": server_id, "name": "a", "status": "x"})
    return server.json()["server"]["approvedScopes"], forged


def test_by_default_it_answers_categorized_scopes_and_is_strict_as_the_environment_says() -> None:
    port = _free_port()
    assert (
        os.environ["MCP_RECONCILER_EMULATOR_STRICT"] == "1"
    )  # tests/conftest.py; the subprocess inherits it
    process = _start(None, port)
    try:
        scopes, forged = _server_and_forged_client(port, FLAT)
    finally:
        output = _stop(process)
    assert scopes == CATEGORIZED
    assert forged.status_code == 400
    assert forged.json()["errorDescription"] == "client.status is read-only: Descope assigns it"
    assert "Strict: a write that carries a field Descope assigns is refused." in output


def test_scopes_format_list_still_answers_the_guide_list_and_no_strict_wins_over_the_environment() -> None:
    port = _free_port()
    process = _start(None, port, "--scopes-format", "list", "--no-strict")
    try:
        scopes, forged = _server_and_forged_client(port, CATEGORIZED)
    finally:
        output = _stop(process)
    assert scopes == FLAT
    assert forged.status_code == 200  # the forged status is ignored
    assert "Strict:" not in output


def test_strict_flag_without_the_environment() -> None:
    env = {k: v for k, v in os.environ.items() if k != "MCP_RECONCILER_EMULATOR_STRICT"}
    lenient_port, strict_port = _free_port(), _free_port()
    lenient = _start(None, lenient_port, env=env)
    try:
        strict = _start(None, strict_port, "--strict", env=env)
        try:
            answers = [_server_and_forged_client(port, FLAT)[1] for port in (lenient_port, strict_port)]
        finally:
            _stop(strict)
    finally:
        _stop(lenient)
    assert [answer.status_code for answer in answers] == [200, 400]
